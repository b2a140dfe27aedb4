/**
 * A small Prometheus registry: counters, gauges and histograms with labels, rendered in the
 * text exposition format (version 0.0.4). The server needs a dozen series; a client library
 * would add a dependency for less than this file.
 */

type Labels = Record<string, string>;

/**
 * Labels that name stages and scorers. A model's id is its folder's absolute path when it has
 * no manifest id, and /metrics is often scraped by people and systems that should not learn the
 * server's file layout, so these show each path's last segment (the model's slug) instead.
 */
const MODEL_LABELS = new Set(['stage', 'scorer']);

/** `/home/me/.cache/winnow/models/tiny-ce/` → `tiny-ce`, wherever a path stands in an id or label. */
export function withoutPaths(s: string): string {
  // an absolute POSIX or Windows path, at the start or after a separator an id or label uses
  return s.replace(/(^|[\s:=(,])((?:[A-Za-z]:)?[\\/][^\s|,()]*)/g, (_, lead: string, p: string) => {
    const parts = p.split(/[\\/]/).filter(Boolean);
    return lead + (parts.at(-1) ?? '');
  });
}

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.map((k) => `${k}="${escapeLabel(MODEL_LABELS.has(k) ? withoutPaths(labels[k]) : labels[k])}"`).join(',');
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function fmt(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return Number.isNaN(n) ? 'NaN' : String(n);
}

interface Metric {
  render(): string;
}

export class Counter implements Metric {
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const [k, v] of this.values) lines.push(`${this.name}${k ? `{${k}}` : ''} ${fmt(v)}`);
    return lines.join('\n');
  }
}

/** A gauge read at scrape time, so it can never go stale. */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Iterable<[Labels, number]>,
  ) {}
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    for (const [labels, v] of this.read()) {
      const k = labelKey(labels);
      lines.push(`${this.name}${k ? `{${k}}` : ''} ${fmt(v)}`);
    }
    return lines.join('\n');
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { counts: Float64Array; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}
  observe(labels: Labels, v: number): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Float64Array(this.buckets.length), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) s.counts[i]++;
    s.sum += v;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const sep = k ? `${k},` : '';
      this.buckets.forEach((b, i) => lines.push(`${this.name}_bucket{${sep}le="${fmt(b)}"} ${s.counts[i]}`));
      lines.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k ? `{${k}}` : ''} ${fmt(s.sum)}`);
      lines.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return lines.join('\n');
  }
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const PAIRS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

export class Registry {
  private readonly metrics: Metric[] = [];

  readonly requests = this.add(new Counter('winnow_http_requests_total', 'HTTP requests by route and status'));
  readonly requestSeconds = this.add(new Histogram('winnow_http_request_duration_seconds', 'HTTP request latency by route and status', SECONDS));
  readonly stageSeconds = this.add(new Histogram('winnow_stage_duration_seconds', 'Cascade phase latency by cascade and stage', SECONDS));
  /** every cost a stage reports (`core/costs.ts`), whatever its name: a new stage kind needs no new metric */
  readonly stageCosts = this.add(new Counter('winnow_stage_cost_total', 'What cascade phases paid, by cascade, stage, cost name and unit (pairs, calls, tokens, units, usd)'));
  readonly batchPairs = this.add(new Histogram('winnow_inference_batch_pairs', 'Query-document pairs per model call, by scorer', PAIRS));
  readonly batchRequests = this.add(new Histogram('winnow_inference_batch_requests', 'Requests merged into one model call, by scorer', PAIRS));
  readonly degraded = this.add(new Counter('winnow_degraded_responses_total', 'Responses that skipped a stage to meet their deadline, by cascade and skipped stage'));
  readonly rejected = this.add(
    new Counter(
      'winnow_rejected_requests_total',
      'Requests shed under load, by reason: queue_full (429, a scoring queue at its bound), predicted_wait (429, the queue ahead would outlast the deadline), buffer_budget (503, request bodies across all requests at their budget); scorer where one was the cause',
    ),
  );
  readonly dropped = this.add(new Counter('winnow_dropped_connections_total', 'Connections closed on arrival because the server held --max-connections already'));

  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }

  render(): string {
    return this.metrics.map((m) => m.render()).join('\n') + '\n';
  }
}
