import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { compileSpec } from '../../src/cascade/spec.js';
import { runExperiment } from '../../src/eval/experiment.js';
import { buildReport } from '../../src/report/html.js';
import { cranfieldFixture, tuneFixture } from '../eval/tune_fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

interface ChartInfo {
  width: number;
  height: number;
  marks: number;
}

/** Opens a report in headless Chromium and measures every chart: size and drawn marks. */
async function chartsIn(file: string): Promise<{ charts: ChartInfo[]; scripts: number; requests: string[] }> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  try {
    const page = await browser.newPage();
    const requests: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith('file:')) requests.push(r.url());
    });
    await page.goto(`file://${file}`);
    const charts = await page.$$eval('figure.chart > svg', (svgs) =>
      svgs.map((svg) => {
        const box = svg.getBoundingClientRect();
        const marks = svg.querySelectorAll('g.mark-symbol path, g.mark-line path, g.mark-area path, g.mark-rect path, g.mark-rule line').length;
        return { width: box.width, height: box.height, marks };
      }),
    );
    const scripts = await page.$$eval('script', (s) => s.length);
    return { charts, scripts, requests };
  } finally {
    await browser.close();
  }
}

test('tune report: self-contained HTML whose charts render in Chromium', { skip: !existsSync(CHROMIUM) && !process.env.CI && 'chromium not installed (apt-get install -y chromium)' }, async () => {
  const r = await tuneFixture({ calibrate: 'isotonic', earlyExit: true, earlyExitLoss: 0.02, budgetMs: 1000 });
  const html = await buildReport(JSON.parse(JSON.stringify(r)), 'tune.json');
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-report-'));
  const file = path.join(dir, 'report.html');
  writeFileSync(file, html);
  const { charts, scripts, requests } = await chartsIn(file);
  assert.equal(scripts, 0);
  assert.deepEqual(requests, []);
  // two recall curves, the trade-off scatter, the latency bars, reliability diagrams per stage
  assert.ok(charts.length >= 5, `charts: ${charts.length}`);
  for (const c of charts) {
    assert.ok(c.width > 100 && c.height > 100, JSON.stringify(c));
    assert.ok(c.marks > 0, JSON.stringify(c));
  }
});

test('eval report: stage table with lift and charts', { skip: !existsSync(CHROMIUM) && !process.env.CI && 'chromium not installed' }, async () => {
  const f = await cranfieldFixture();
  const pipeline = await compileSpec(
    { stages: [{ retrieve: 'bm25', k: 100 }, { rerank: 'bm25', name: 'same', k1: 0.9, b: 0.4 }, { top: 10 }] },
    f.env,
  );
  const exp = await runExperiment({ pipeline, queries: f.test.slice(0, 10), qrels: f.qrels, docs: f.env.lookup, finalK: 10 });
  const { rankings: _r, ...json } = exp;
  // reranking BM25 with itself costs pairs and lifts nothing: the lift monitor must say so
  assert.equal(exp.stages[1].lift?.['nDCG@10'], 0);
  assert.match(exp.warnings.join('\n'), /stage "same → top\(10\)" adds 0.0% nDCG@10 .* under 2% for its cost/);
  const html = await buildReport(JSON.parse(JSON.stringify(json)), 'eval.json');
  assert.match(html, /ΔnDCG@10/);
  assert.match(html, /under 2% for its cost/);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'winnow-report-'));
  const file = path.join(dir, 'eval.html');
  writeFileSync(file, html);
  const { charts } = await chartsIn(file);
  assert.equal(charts.length, 2);
  for (const c of charts) assert.ok(c.marks > 0 && c.width > 100, JSON.stringify(c));
});

test('report refuses a JSON that is neither tune nor eval output', async () => {
  await assert.rejects(buildReport({ hello: 1 }, 'x.json'), /x.json: not a winnow tune or winnow eval JSON file/);
});
