import { costKind, PAIRS } from '../core/costs.js';
import type { ExperimentResult, StageResult } from './experiment.js';

/** Formats rows as an aligned text table; numbers right-aligned, text left-aligned. */
export function textTable(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => r[c].length)));
  const numeric = header.map((_, c) => rows.every((r) => typeof r[c] === 'number' || /^[\d.\s→,/%-]+$/.test(String(r[c]))));
  const line = (r: string[]) => r.map((cell, c) => (numeric[c] && c > 0 ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

const f3 = (x: number) => (Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0));
const signed = (x: number) => (x >= 0 ? `+${x.toFixed(4)}` : x.toFixed(4));
const count = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(1));
const amount = (x: number) => (Number.isInteger(x) ? x : Number(x.toPrecision(4)));

/**
 * The per-stage table of an evaluation, as header and cells: the terminal table and the HTML
 * report show the same columns. After the pairs column comes one column per other cost name
 * any stage reported (work first, then cache, then notes), so a new kind of stage's costs
 * show up without an edit here.
 */
export function stageTable(stages: readonly StageResult[]): { header: string[]; rows: (string | number)[][] } {
  const ROLE_ORDER = { work: 0, cache: 1, note: 2 };
  const extra = [...new Set(stages.flatMap((s) => Object.keys(s.costs)))]
    .filter((name) => name !== PAIRS)
    .sort((a, b) => ROLE_ORDER[costKind(a).role] - ROLE_ORDER[costKind(b).role]);
  const header = ['stage', 'in → out', 'pairs', 'R@out', 'nDCG@10', 'ΔnDCG@10', 'ΔR@10', 'p50 ms', 'p95 ms', 'p99 ms', ...extra.map((n) => costKind(n).label)];
  const rows = stages.map((s) => {
    const row: (string | number)[] = [
      s.stage,
      `${count(s.in)} → ${count(s.out)}`,
      s.costs[PAIRS] ?? 0,
      f3(s.metrics['R@out']),
      f3(s.metrics['nDCG@10']),
      s.lift ? signed(s.lift['nDCG@10']) : '-',
      s.lift ? signed(s.lift['R@10']) : '-',
      ms(s.latencyMs.p50),
      ms(s.latencyMs.p95),
      ms(s.latencyMs.p99),
    ];
    for (const name of extra) row.push(amount(s.costs[name] ?? 0));
    return row;
  });
  return { header, rows };
}

/** The eval table: one row per stage, then the final quality, latency and cache lines. */
export function formatExperiment(r: ExperimentResult, finalK: number): string {
  const { header, rows } = stageTable(r.stages);
  const lines = [textTable(header, rows), ''];
  lines.push(
    `final (${r.queries} queries): RR@10 ${f3(r.final['RR@10'])}  nDCG@10 ${f3(r.final['nDCG@10'])}  R@${finalK} ${f3(r.final[`R@${finalK}`])}`,
  );
  lines.push(
    `latency per query: p50 ${ms(r.latencyMs.p50)} ms  p95 ${ms(r.latencyMs.p95)} ms  p99 ${ms(r.latencyMs.p99)} ms  mean ${ms(r.latencyMs.mean)} ms`,
  );
  for (const w of r.warnings ?? []) lines.push(`warning: ${w}`);
  if (r.cache) {
    lines.push(
      `score cache: ${r.cache.hits} hits${r.cache.sharedHits ? ` (${r.cache.sharedHits} from Redis)` : ''}, ${r.cache.misses} misses (${(100 * r.cache.hitRatio).toFixed(1)}% hit), ${r.cache.entries} entries`,
    );
  }
  return lines.join('\n');
}
