import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';

/**
 * Charts are Vega-Lite specs compiled and rendered to SVG here in Node (renderer 'none',
 * no canvas, no browser), so a report is static markup: it opens offline and needs no script.
 */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const compiled = vl.compile({ ...spec, config: { ...CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const CONFIG = {
  font: 'Helvetica, Arial, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12, gridColor: '#e5e5e5' },
  legend: { labelFontSize: 11, titleFontSize: 12 },
  title: { fontSize: 14, anchor: 'start' as const },
  view: { stroke: '#ccc' },
};

export interface CurveRow {
  k: number;
  value: number;
  lo: number;
  hi: number;
  series: string;
}

/** Recall@k (and nDCG@10 after the next stage) against k on a log axis, with intervals and the chosen k. */
export function curveChart(title: string, rows: CurveRow[], chosenK: number, chosenLabel: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 380,
    height: 220,
    layer: [
      {
        data: { values: rows },
        mark: { type: 'area', opacity: 0.18 },
        encoding: {
          x: { field: 'k', type: 'quantitative', scale: { type: 'log' }, title: 'cut-off k (log scale)' },
          y: { field: 'lo', type: 'quantitative', title: 'mean over queries', scale: { zero: false } },
          y2: { field: 'hi' },
          color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', labelLimit: 300 } },
        },
      },
      {
        data: { values: rows },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'k', type: 'quantitative', scale: { type: 'log' } },
          y: { field: 'value', type: 'quantitative' },
          color: { field: 'series', type: 'nominal' },
        },
      },
      {
        data: { values: [{ k: chosenK, label: chosenLabel }] },
        mark: { type: 'rule', color: '#d62728', strokeDash: [4, 3], strokeWidth: 2 },
        encoding: { x: { field: 'k', type: 'quantitative' } },
      },
      {
        data: { values: [{ k: chosenK, label: chosenLabel }] },
        mark: { type: 'text', color: '#d62728', align: 'left', dx: 4, baseline: 'top', y: 4, fontWeight: 'bold' },
        encoding: { x: { field: 'k', type: 'quantitative' }, text: { field: 'label' } },
      },
    ],
  };
}

export interface TradeoffPoint {
  label: string;
  latency: number;
  quality: number;
  pareto: boolean;
  kind: string;
}

/** Every configuration tried as a point; the Pareto frontier as a step line; the budget as a rule. */
export function tradeoffChart(points: TradeoffPoint[], stat: string, budgetMs: number): TopLevelSpec {
  const frontier = points.filter((p) => p.pareto).sort((a, b) => a.latency - b.latency);
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: `nDCG@10 vs predicted ${stat} latency (${points.length} configurations, tuning split)`,
    width: 560,
    height: 300,
    layer: [
      {
        data: { values: points },
        mark: { type: 'point', filled: true, opacity: 0.55, size: 40 },
        encoding: {
          x: { field: 'latency', type: 'quantitative', scale: { type: 'symlog' }, title: `predicted ${stat} ms per query (symlog)` },
          y: { field: 'quality', type: 'quantitative', scale: { zero: false }, title: 'nDCG@10' },
          color: { field: 'kind', type: 'nominal', title: 'configuration', legend: { orient: 'bottom' } },
          shape: { field: 'kind', type: 'nominal' },
          tooltip: [{ field: 'label' }, { field: 'quality' }, { field: 'latency' }],
        },
      },
      {
        data: { values: frontier },
        mark: { type: 'line', interpolate: 'step-after', color: '#333', strokeWidth: 1.5 },
        encoding: { x: { field: 'latency', type: 'quantitative' }, y: { field: 'quality', type: 'quantitative' } },
      },
      {
        data: { values: points.filter((p) => p.kind === 'chosen plan') },
        mark: { type: 'point', shape: 'diamond', filled: true, size: 220, color: '#d62728', stroke: '#000', strokeWidth: 1 },
        encoding: { x: { field: 'latency', type: 'quantitative' }, y: { field: 'quality', type: 'quantitative' } },
      },
      {
        data: { values: [{ budget: budgetMs }] },
        mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4], strokeWidth: 2 },
        encoding: { x: { field: 'budget', type: 'quantitative' } },
      },
    ],
  };
}

export interface LatencyPart {
  plan: string;
  stage: string;
  ms: number;
  order: number;
}

/** Mean predicted ms per query, stacked by stage, one bar per plan. */
export function latencyBarChart(parts: LatencyPart[], title: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 480,
    height: { step: 26 },
    data: { values: parts },
    mark: 'bar',
    encoding: {
      y: { field: 'plan', type: 'nominal', sort: null, title: null, axis: { labelLimit: 260 } },
      x: { field: 'ms', type: 'quantitative', stack: 'zero', title: 'ms per query' },
      color: { field: 'stage', type: 'nominal', title: 'stage', legend: { orient: 'bottom' } },
      order: { field: 'order', type: 'quantitative' },
      tooltip: [{ field: 'plan' }, { field: 'stage' }, { field: 'ms', format: '.2f' }],
    },
  };
}

export interface ReliabilityPoint {
  predicted: number;
  observed: number;
  count: number;
  series: string;
}

/** Reliability diagram: observed relevance rate per predicted-probability bin, against the diagonal. */
export function reliabilityChart(title: string, points: ReliabilityPoint[]): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 240,
    height: 240,
    layer: [
      {
        data: { values: [{ x: 0, y: 0 }, { x: 1, y: 1 }] },
        mark: { type: 'line', color: '#999', strokeDash: [4, 4] },
        encoding: {
          x: { field: 'x', type: 'quantitative', scale: { domain: [0, 1] }, title: 'predicted probability (bin mean)' },
          y: { field: 'y', type: 'quantitative', scale: { domain: [0, 1] }, title: 'observed fraction relevant' },
        },
      },
      {
        data: { values: points },
        mark: { type: 'line', point: true },
        encoding: {
          x: { field: 'predicted', type: 'quantitative' },
          y: { field: 'observed', type: 'quantitative' },
          color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom' } },
          size: { field: 'count', type: 'quantitative', legend: null },
        },
      },
    ],
  };
}

export interface Bar {
  label: string;
  value: number;
}

/** A plain horizontal bar chart (nDCG@10 per stage of an evaluation, early exit trade-off). */
export function barChart(title: string, bars: Bar[], axis: string): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 420,
    height: { step: 24 },
    data: { values: bars },
    mark: { type: 'bar', color: '#4c78a8' },
    encoding: {
      y: { field: 'label', type: 'nominal', sort: null, title: null, axis: { labelLimit: 260 } },
      x: { field: 'value', type: 'quantitative', title: axis },
    },
  };
}

/** A line chart of y against x (early exit: nDCG@10 against fraction of queries skipped). */
export function lineChart(title: string, rows: { x: number; y: number }[], xTitle: string, yTitle: string, mark?: { x: number; y: number }): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 380,
    height: 220,
    layer: [
      {
        data: { values: rows },
        mark: { type: 'line', point: { size: 18 } },
        encoding: {
          x: { field: 'x', type: 'quantitative', title: xTitle },
          y: { field: 'y', type: 'quantitative', title: yTitle, scale: { zero: false } },
        },
      },
      ...(mark
        ? [
            {
              data: { values: [mark] },
              mark: { type: 'point' as const, color: '#d62728', size: 120, filled: true },
              encoding: { x: { field: 'x', type: 'quantitative' as const }, y: { field: 'y', type: 'quantitative' as const } },
            },
          ]
        : []),
    ],
  };
}
