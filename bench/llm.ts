/**
 * LLM tier costs, measured against the loopback fake OpenAI server of the tests (no model: the
 * numbers are what Winnow sends and how it schedules, not what a model costs to run).
 * Writes bench/results/llm.md.
 *
 *   npm run build && node dist/bench/llm.js [--dataset DIR]
 *
 * 1. Calls and prompt/answer tokens per query for window/stride 20/10, 10/5, 40/20 at pools of
 *    20, 50 and 100 real passages (SciFact, cut to 100 words; tokens = characters / 4, the fake's
 *    count), and the calls and prompt tokens when a `top: 10` follows and is pushed down into
 *    the stage (its window budget).
 * 2. Wall time per query with the fake answering after 200 ms, 16 queries in a batch, at
 *    endpoint concurrency 1, 4 and 16 (listwise pool 50 window 20/10; judge pool 20).
 * 3. How the parser reads a scripted corpus of answers (clean / repaired / fell back).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { Costs } from '../src/core/costs.js';
import type { Doc, Ranking } from '../src/core/types.js';
import { registry } from '../src/core/registry.js';
import type { Stage } from '../src/core/stage.js';
import { parsePermutation } from '../src/rerank/llm/parse.js';
import { TopK } from '../src/cascade/cutoff.js';
import { Pipeline } from '../src/cascade/pipeline.js';
import { startFakeLlm } from '../test/helpers/fake-llm-server.js';
import { readJsonl } from './common.js';
import '../src/builtins.js';

const { values } = parseArgs({ options: { dataset: { type: 'string', default: '/work/shared/datasets/scifact' } } });
const dataset = values.dataset as string;

const docs = new Map<string, Doc>();
for (const d of readJsonl<{ _id: string; title?: string; text: string }>(path.join(dataset, 'corpus.jsonl')).slice(0, 100)) {
  docs.set(d._id, { id: d._id, title: d.title, text: d.text });
}
const ids = [...docs.keys()];

function ranking(q: number, pool: number): Ranking {
  return { query: { id: `q${q}`, text: `query number ${q} about cell biology` }, hits: ids.slice(0, pool).map((docId, i) => ({ docId, score: pool - i, scores: {} })) };
}

async function build(entry: Record<string, unknown>): Promise<Stage> {
  const key = Object.keys(entry)[0];
  const { [key]: value, ...rest } = entry;
  return (registry.stage(key) as NonNullable<ReturnType<typeof registry.stage>>)(value, rest, { env: undefined as never, where: 'bench', compile: async () => [] });
}

const lines: string[] = [];
const out = (s = ''): void => {
  lines.push(s);
  console.log(s);
};

out('# LLM tier: calls, tokens, concurrency, parse repairs');
out();
out(`Measured ${new Date().toISOString().slice(0, 10)} with \`npm run build && node dist/bench/llm.js\` against the loopback`);
out('fake OpenAI-compatible server of the tests (`test/helpers/fake-llm-server.ts`): deterministic answers, tokens');
out('counted as characters / 4. Passages: the first 100 SciFact documents, cut to 100 words.');
out();

// 1. calls and tokens
{
  const fake = await startFakeLlm();
  out('## Calls and tokens per query (one sliding pass)');
  out();
  out('| window/stride | pool | calls | prompt tokens | answer tokens | calls, top 10 pushed down | prompt tokens, pushed down |');
  out('|---|---|---|---|---|---|---|');
  for (const [window, stride] of [[20, 10], [10, 5], [40, 20]]) {
    for (const pool of [20, 50, 100]) {
      const stage = await build({ listwise: { model: 'openai:bench', baseUrl: fake.url, window, stride, maxWords: 100 } });
      const costs = new Costs();
      await stage.run([ranking(0, pool)], { docs, costs });
      const [pushed] = Pipeline.of(stage, new TopK(10)).compile();
      const cut = new Costs();
      await pushed.run([ranking(0, pool)], { docs, costs: cut });
      out(
        `| ${window}/${stride} | ${pool} | ${costs.get('llm.calls')} | ${costs.get('llm.tokens.in')} | ${costs.get('llm.tokens.out')} | ${cut.get('llm.calls')} | ${cut.get('llm.tokens.in')} |`,
      );
    }
  }
  out();
  out('Pushed down: a listwise stage followed by `top: 10` walks only as far as the top 10 needs (one pass, stride');
  out('widened to window - 10 when 10 <= window - stride; see `walkForTopK` in `src/rerank/llm/window.ts`).');
  out();
  out('With repeated passes (window 20, stride 10), calls per query without and with a following `top: k` pushed down:');
  out();
  out('| passes | pool | calls | calls, top 10 | calls, top 5 | calls, top 15 |');
  out('|---|---|---|---|---|---|');
  for (const passes of [2, 3]) {
    for (const pool of [50, 100]) {
      const stage = await build({ listwise: { model: 'openai:bench', baseUrl: fake.url, window: 20, stride: 10, passes, maxWords: 100 } });
      const callsWith = async (k?: number): Promise<number> => {
        const [s] = k === undefined ? [stage] : Pipeline.of(stage, new TopK(k)).compile();
        const costs = new Costs();
        await s.run([ranking(0, pool)], { docs, costs });
        return costs.get('llm.calls');
      };
      out(`| ${passes} | ${pool} | ${await callsWith()} | ${await callsWith(10)} | ${await callsWith(5)} | ${await callsWith(15)} |`);
    }
  }
  out();
  await fake.close();
}

// 2. concurrency
{
  out('## Wall time per query at 200 ms per call (16 queries in one batch)');
  out();
  out('| stage | concurrency | calls | wall s (batch) | s per query |');
  out('|---|---|---|---|---|');
  for (const [label, entry] of [
    ['listwise pool 50, 20/10', (url: string, c: number) => ({ listwise: { model: 'openai:bench', baseUrl: url, window: 20, stride: 10, concurrency: c } })],
    ['judge pool 20', (url: string, c: number) => ({ judge: { model: 'openai:bench', baseUrl: url, concurrency: c } })],
  ] as const) {
    for (const c of [1, 4, 16]) {
      // A fresh server per setting: the per-endpoint limiter is keyed by URL.
      const fake = await startFakeLlm({ delayMs: 200 });
      const stage = await build(entry(`${fake.url}/c${c}`, c));
      const pool = label.startsWith('judge') ? 20 : 50;
      const batch = Array.from({ length: 16 }, (_, q) => ranking(q, pool));
      const costs = new Costs();
      const t0 = performance.now();
      await stage.run(batch, { docs, costs });
      const s = (performance.now() - t0) / 1000;
      out(`| ${label} | ${c} | ${costs.get('llm.calls')} | ${s.toFixed(2)} | ${(s / 16).toFixed(3)} |`);
      await fake.close();
    }
  }
  out();
  out('Floors: a listwise query makes its windows one after another (4 × 200 ms = 0.8 s for pool 50), so');
  out('concurrency helps across queries; 16 queries × 4 calls take at least 64 × 0.2 / c s (12.8, 3.2, 0.8).');
  out('A judge\'s calls are independent, so concurrency helps within a query too (320 × 0.2 / c: 64, 16, 4 s).');
  out(`What is above the floor is this machine: ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)} at the end of the run.`);
  out();
}

// 3. parse repairs
{
  const scripted: [string, number][] = [
    ['[3] > [1] > [2] > [4]', 4],
    ['3 > 1 > 2 > 4', 4],
    ['C > A > B > D', 4],
    ['Ranking: [2] > [4] > [1] > [3]. These are ordered by relevance.', 4],
    ['<think>Passage 1 mentions it, but [3] is closer.</think>[3] > [1] > [4] > [2]', 4],
    ['[٣] > [١] > [٢] > [٤]', 4],
    ['[3] > [1]', 4],
    ['[2] > [2] > [1] > [3] > [4]', 4],
    ['[9] > [1] > [2] > [3] > [4]', 4],
    ['[0] > [1] > [2]', 4],
    ['', 4],
    ['I cannot determine the ranking.', 4],
    ['<think>Let me consider [1] > [2]', 4],
    ['[1] > [2] > [3] > [4] > [5] > [6] > [7] > [8] > [9] > [10] > [11] > [12] > [13] > [14] > [15] > [16] > [17] > [18] > [19] > [20]', 20],
    ['[20] > [19] > [18] > [17] > [16] > [15] > [14] > [13] > [12] > [11]', 20],
  ];
  const counts = { clean: 0, repaired: 0, fallback: 0 };
  out('## Parse outcomes on the scripted answers');
  out();
  out('| answer | ids | read as | status |');
  out('|---|---|---|---|');
  for (const [answer, n] of scripted) {
    const style = /^[A-Z] >/.test(answer) ? 'letter' : 'number';
    const r = parsePermutation(answer, n, style);
    counts[r.status]++;
    const shown = answer.length > 60 ? `${answer.slice(0, 57)}…` : answer;
    out(`| \`${shown.replace(/\|/g, '\\|') || '(empty)'}\` | ${n} | ${r.order.slice(0, 6).map((i) => i + 1).join(' ')}${n > 6 ? ' …' : ''} | ${r.status} |`);
  }
  out();
  const total = scripted.length;
  out(`Of ${total}: ${counts.clean} clean (${((100 * counts.clean) / total).toFixed(0)}%), ${counts.repaired} repaired (${((100 * counts.repaired) / total).toFixed(0)}%), ${counts.fallback} fell back to the window's order (${((100 * counts.fallback) / total).toFixed(0)}%). No answer fails a query.`);
}

fs.mkdirSync('bench/results', { recursive: true });
fs.writeFileSync('bench/results/llm.md', `${lines.join('\n')}\n`);
