import { WinnowError } from '../core/errors.js';
import type { StageResult } from '../eval/experiment.js';
import { costColumns, type PlanSummary, type TuneResult } from '../eval/tune/tune.js';
import { callsIn } from '../eval/tune/simulate.js';
import {
  barChart,
  curveChart,
  type CurveRow,
  type LatencyPart,
  latencyBarChart,
  lineChart,
  reliabilityChart,
  type ReliabilityPoint,
  renderSvg,
  tradeoffChart,
} from './charts.js';
import { stageTable } from '../eval/table.js';

/** What `winnow eval --json` writes (rankings left out). */
export interface EvalJson {
  spec?: unknown;
  queries: number;
  stages: StageResult[];
  final: Record<string, number>;
  latencyMs: { p50: number; p95: number; p99: number; mean: number };
  warnings?: string[];
}

const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
const f4 = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x.toFixed(4) : 'n/a');
const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : 'n/a');

/** Indented JSON with number lists on one line (isotonic tables would otherwise run for pages). */
function compactJson(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(/\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]/g, (_m, inner: string) => `[${inner.split(/,\s+/).join(', ')}]`);
}

function table(header: string[], rows: unknown[][]): string {
  const head = header.map((h) => `<th>${esc(h)}</th>`).join('');
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function figure(svg: string, caption: string): string {
  return `<figure class="chart">${svg}<figcaption>${esc(caption)}</figcaption></figure>`;
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 24px; }
figure.chart { margin: 8px 0; } figcaption { font-size: 12px; color: #555; max-width: 560px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
pre { white-space: pre-wrap; word-break: break-all; font-size: 12px; background: #f8f8f8; padding: 8px; }
td:first-child, th:first-child, td:nth-child(2) { text-align: left; }
.kpi { display: flex; gap: 16px; margin: 12px 0; } .kpi div { background: #f6f8fa; border: 1px solid #e1e4e8; border-radius: 6px; padding: 8px 14px; }
.kpi b { display: block; font-size: 20px; } .warn { color: #b35900; } .bad { color: #c00; font-weight: bold; }
</style></head><body>
${body}
<p class="sub">Written by winnow report. Charts are Vega-Lite rendered to SVG at build time; this file loads nothing.</p>
</body></html>
`;
}

/** Mean predicted ms per stage of a plan: retriever median + fixed + per-pair cost times pairs. */
function latencyParts(r: TuneResult, plan: PlanSummary, label: string): LatencyPart[] {
  return r.stages.flatMap((s, order) => {
    const used = plan.steps.some((st) => st.stage === s.name);
    if (!used) return [];
    const msPerQuery =
      s.role === 'retriever'
        ? s.cost.medianQueryMs
        : s.scoring === 'listwise'
          ? s.cost.fixedMs + (s.cost.perCallMs ?? 0) * callsIn(plan.costs ?? {})
          : s.cost.fixedMs + s.cost.perPairMs * (plan.pairs[s.name] ?? 0);
    return [{ plan: label, stage: s.name, ms: msPerQuery, order }];
  });
}

function planRow(what: string, p: PlanSummary, extra: (p: PlanSummary) => string[]): unknown[] {
  const pairs = Object.values(p.pairs).reduce((a, b) => a + b, 0);
  return [what, p.label, f4(p['nDCG@10']), f4(p['R@10']), pairs.toFixed(0), ...extra(p), ms(p.latencyMs.p50), ms(p.latencyMs.p95)];
}

const sgn = (x: number) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(4)}` : 'n/a');

export async function tuneReport(r: TuneResult): Promise<string> {
  const parts: string[] = [];
  parts.push(`<h1>Winnow tuning report${r.specFile ? `: ${esc(r.specFile)}` : ''}</h1>`);
  parts.push(
    `<p class="sub">tuned on ${esc(r.splits.tune)} (${r.splits.tuneQueries} queries), reported on ${esc(r.splits.test)} (${r.splits.testQueries} queries); ` +
      `first-pass pool depth ${r.depth}; final k ${r.finalK}; plateau epsilon ${r.epsilon}; ${r.resamples} bootstrap resamples (seed ${r.seed})` +
      `${r.splits.note ? `<br>${esc(r.splits.note)}` : ''}</p>`,
  );
  parts.push(
    `<div class="kpi"><div>quality retained<b>${pct(r.summary.qualityRetained)}</b>of heavy stage on whole pool</div>` +
      `<div>heavy pairs avoided<b>${pct(r.summary.heavyPairsAvoided)}</b>vs whole pool</div>` +
      `<div>held-out nDCG@10<b>${f4(r.final.test['nDCG@10'])}</b>${esc(r.final.test.label)}</div>` +
      `<div>predicted ${r.budget.stat}<b>${ms(r.final.test.latencyMs[r.budget.stat])} ms</b>budget ${r.budget.ms} ms</div></div>`,
  );
  parts.push(`<p class="${r.budget.met ? '' : 'bad'}">${esc(r.budget.message)}</p>`);

  parts.push('<h2>Recall curves and plateau cut-offs</h2><div class="charts">');
  for (const c of r.curves) {
    const rows: CurveRow[] = c.points.map((p) => ({ k: p.k, value: p.recall, lo: p.recallLo, hi: p.recallHi, series: `R@k of ${c.stage}` }));
    for (const p of c.points) {
      if (p.ndcgNext !== undefined) rows.push({ k: p.k, value: p.ndcgNext, lo: p.ndcgNextLo ?? p.ndcgNext, hi: p.ndcgNextHi ?? p.ndcgNext, series: 'nDCG@10 after next stage' });
    }
    parts.push(
      figure(
        await renderSvg(curveChart(`${c.stage}: input ${c.inputK} candidates`, rows, c.plateau.k, `k=${c.plateau.k}`)),
        `Plateau k=${c.plateau.k}: smallest k with R@k within ${c.plateau.epsilon} of the best (${f4(c.plateau.maxRecall)}); ` +
          `95% bootstrap interval of k: ${c.plateau.kLo}-${c.plateau.kHi}. Bands: 95% intervals over queries.`,
      ),
    );
  }
  parts.push('</div>');
  parts.push(
    table(
      ['stage', 'input', 'plateau k', 'R@k', 'max R', 'k 95% CI'],
      r.curves.map((c) => [c.stage, c.inputK, c.plateau.k, f4(c.plateau.recall), f4(c.plateau.maxRecall), `${c.plateau.kLo}-${c.plateau.kHi}`]),
    ),
  );

  if (r.evidence?.steps.length) {
    const e = r.evidence;
    const lvl = `${Math.round(100 * e.level)}%`;
    parts.push('<h2>Optional steps: adopted only on evidence</h2>');
    parts.push(
      `<p>nDCG@10 with the step minus without it. Tuning gain: on the queries it was fitted on. CV gain: ${e.folds}-fold cross-validation over the tuning queries ` +
        `(each fold judged by a fit on the others), with its ${lvl} paired-bootstrap interval (${e.resamples} resamples, seed ${e.seed}). ` +
        `A dropped stage or fusion is adopted when the CV gain is at least ${e.minGain} and the interval is above 0; an early exit when it skips queries ` +
        'out of fold and the interval stays within the allowed loss. The held-out gain is reported, never used to choose.</p>',
    );
    parts.push(
      table(
        ['step', 'as fitted', 'tuning gain', 'CV gain', `${lvl} interval`, 'held-out gain', 'adopted', 'why'],
        e.steps.map((s) => [
          s.step,
          s.detail,
          sgn(s.tuneGain),
          sgn(s.cvGain),
          Number.isFinite(s.interval.lo) ? `[${sgn(s.interval.lo)}, ${sgn(s.interval.hi)}]` : 'n/a',
          sgn(s.testGain),
          s.adopted ? 'yes' : 'no',
          s.reason,
        ]),
      ),
    );
  }
  if (r.cutoffs?.some((c) => c.plateau.folds.length > 0)) {
    const span = (ks: readonly number[]) => (ks.length === 0 ? '-' : Math.min(...ks) === Math.max(...ks) ? `${ks[0]}` : `${Math.min(...ks)}-${Math.max(...ks)}`);
    parts.push(`<h2>Cut-offs per cross-validation fold</h2>`);
    parts.push(
      table(
        ['stage', 'plateau k', 'plateau k over folds', 'budget k', 'budget k over folds', 'note'],
        r.cutoffs.map((c) => [
          c.stage,
          c.plateau.k ?? '-',
          span(c.plateau.folds),
          c.budget.k ?? 'dropped',
          span(c.budget.folds),
          c.budget.widenedTo !== undefined ? `folds disagree > 2x: raised to ${c.budget.widenedTo}, still within budget` : '',
        ]),
      ),
    );
  }

  parts.push('<h2>Quality against latency</h2>');
  const kindOf = (c: TuneResult['configs'][number]) =>
    c.label === r.chosen.tune.label ? 'chosen plan' : c.pareto ? 'Pareto frontier' : c.withinBudget ? 'within budget' : 'over budget';
  const pts = r.configs.map((c) => ({ label: c.label, latency: c.tune.latencyMs[r.budget.stat], quality: c.tune['nDCG@10'], pareto: c.pareto, kind: kindOf(c) }));
  parts.push(
    figure(
      await renderSvg(tradeoffChart(pts, r.budget.stat, r.budget.ms)),
      `Every configuration the planner replayed (cut-offs on a log grid, stages dropped or kept). Black: Pareto frontier; red dashed: the ${r.budget.stat} budget of ${r.budget.ms} ms.`,
    ),
  );
  const plans: [string, PlanSummary][] = [['final plan', r.final.test], ['budget plan', r.chosen.test], ['plateau plan', r.plateauPlan.test], ['heavy, whole pool', r.baselines.heavyFullPool]];
  if (r.baselines.lightAlone) plans.push(['light alone', r.baselines.lightAlone]);
  plans.push(['first pass alone', r.baselines.firstPassAlone]);
  const extra = costColumns(plans.map(([, p]) => p));
  parts.push(table(['plan', 'stages', 'nDCG@10', 'R@10', 'pairs/query', ...extra.headers, 'p50 ms', 'p95 ms'], plans.map(([w, p]) => planRow(w, p, extra.cells))));

  parts.push('<h2>Where the time goes</h2>');
  const bars = plans.flatMap(([w, p]) => latencyParts(r, p, w));
  parts.push(figure(await renderSvg(latencyBarChart(bars, 'Mean predicted ms per query, by stage (held-out)')), 'Per-stage cost = fixed ms per query + ms per pair × pairs scored, measured on this machine (embedding stages cold, without their cache).'));
  parts.push(
    table(
      ['stage', 'role', 'score kind', 'ms/pair', 'ms/call', 'fixed ms/query', 'median ms/query (whole pool)'],
      r.stages.map((s) => [
        s.name,
        s.role,
        s.scoreKind,
        s.role === 'retriever' || s.scoring === 'listwise' ? '-' : s.cost.perPairMs.toFixed(4),
        s.cost.perCallMs === undefined ? '-' : ms(s.cost.perCallMs),
        ms(s.cost.fixedMs),
        ms(s.cost.medianQueryMs),
      ]),
    ),
  );

  if (r.calibration?.length) {
    parts.push('<h2>Calibration (held-out pairs; ECE over 10 equal-width bins)</h2><div class="charts">');
    for (const c of r.calibration) {
      const points: ReliabilityPoint[] = c.after.bins.map((b) => ({ predicted: b.predicted, observed: b.observed, count: b.count, series: `after (${c.method})` }));
      if (c.before) points.push(...c.before.bins.map((b) => ({ predicted: b.predicted, observed: b.observed, count: b.count, series: `before (${c.scoreKind})` })));
      parts.push(figure(await renderSvg(reliabilityChart(`${c.stage}: reliability`, points)), c.note ?? `${c.after.pairs} pairs, ${c.after.positives} relevant`));
    }
    parts.push('</div>');
    parts.push(
      table(
        ['stage', 'score kind', 'method', 'pairs', 'ECE before', 'Brier before', 'ECE after', 'Brier after'],
        r.calibration.map((c) => [c.stage, c.scoreKind, c.method, c.after.pairs, c.before ? f4(c.before.ece) : 'not a probability', c.before ? f4(c.before.brier) : '-', f4(c.after.ece), f4(c.after.brier)]),
      ),
    );
  }

  if (r.fusion) {
    const f = r.fusion;
    parts.push('<h2>Fusion</h2>');
    parts.push(
      f.note
        ? `<p>${esc(f.note)}</p>`
        : table(
            ['method', 'parameters', 'tune fused', 'tune last stage', 'held-out fused', 'held-out last stage', 'beats last stage (held-out)', 'adopted'],
            [[f.method, JSON.stringify(f.params), f4(f.tune.fused), f4(f.tune.lastStage), f4(f.test.fused), f4(f.test.lastStage), f.beatsLastStageOnTest ? 'yes' : 'no', f.adopted ? 'yes' : 'no']],
          ),
    );
  }

  if (r.earlyExit) {
    const e = r.earlyExit;
    parts.push('<h2>Early exit</h2>');
    if (e.note) parts.push(`<p>${esc(e.note)}</p>`);
    if (e.curve.length > 1) {
      const rows = e.curve.map((p) => ({ x: p.skipped, y: p.ndcg }));
      parts.push(
        figure(
          await renderSvg(lineChart('Tuning split: nDCG@10 against share of queries skipping the last stage', rows, 'fraction of queries skipped', 'nDCG@10', e.margin !== undefined ? { x: e.skipped, y: e.ndcgWithExit } : undefined)),
          `Margin = calibrated score of rank 1 minus rank ${e.k + 1} of the stage before the last; allowed loss ${pct(e.maxLoss)}.`,
        ),
      );
    }
    if (e.test) {
      parts.push(
        table(
          ['margin', 'skipped (tune)', 'skipped (held-out)', 'nDCG@10 (held-out)', 'p50 ms', 'p95 ms'],
          [[f4(e.margin), pct(e.skipped), pct(e.test.skipped ?? 0), f4(e.test['nDCG@10']), ms(e.test.latencyMs.p50), ms(e.test.latencyMs.p95)]],
        ),
      );
    }
  }
  parts.push('<h2>Tuned spec</h2>');
  parts.push(`<pre>${esc(compactJson(r.spec))}</pre>`);
  return page('Winnow tuning report', parts.join('\n'));
}

export async function evalReport(r: EvalJson): Promise<string> {
  const parts: string[] = [];
  parts.push('<h1>Winnow evaluation report</h1>');
  parts.push(
    `<p class="sub">${r.queries} queries; final ${Object.entries(r.final).map(([k, v]) => `${esc(k)} ${f4(v)}`).join(', ')}; ` +
      `latency p50 ${ms(r.latencyMs.p50)} ms, p95 ${ms(r.latencyMs.p95)} ms</p>`,
  );
  for (const w of r.warnings ?? []) parts.push(`<p class="warn">warning: ${esc(w)}</p>`);
  parts.push('<div class="charts">');
  parts.push(figure(await renderSvg(barChart('nDCG@10 after each stage', r.stages.map((s) => ({ label: s.stage, value: s.metrics['nDCG@10'] })), 'nDCG@10')), 'Mean over queries.'));
  const lat = r.stages.map((s, order) => ({ plan: 'cascade', stage: s.stage, ms: s.latencyMs.mean, order }));
  parts.push(figure(await renderSvg(latencyBarChart(lat, 'Mean ms per query, by stage')), 'Measured per query, as a user sees it.'));
  parts.push('</div>');
  const stages = stageTable(r.stages);
  parts.push(
    table(stages.header, stages.rows),
  );
  if (r.spec) parts.push(`<h2>Spec</h2><pre>${esc(compactJson(r.spec))}</pre>`);
  return page('Winnow evaluation report', parts.join('\n'));
}

/** Builds the report for whichever JSON it is given: `winnow tune --json` or `winnow eval --json`. */
export async function buildReport(json: unknown, where: string): Promise<string> {
  const o = json as Record<string, unknown>;
  if (o && o.kind === 'winnow-tune') return tuneReport(o as unknown as TuneResult);
  if (o && Array.isArray(o.stages) && o.final && typeof o.final === 'object') return evalReport(o as unknown as EvalJson);
  throw new WinnowError('bad_input', `${where}: not a winnow tune or winnow eval JSON file`, 'make one with winnow tune --json FILE or winnow eval --json FILE');
}
