/**
 * The server's Prometheus metrics, on prom-client. Each server owns its own prom-client
 * registry (never the library's global one), so two servers in a process, as tests run them,
 * do not share counts. The classes here keep the small interface the rest of Winnow calls
 * (`inc(labels, by)`, `observe(labels, v)`, a gauge read at scrape time) and take care of the
 * two things every series needs: labels in a fixed order and model ids without paths.
 */
import * as prom from 'prom-client';

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

/** Sorted by name (prom-client prints labels in the order given) and with model paths cut to slugs. */
function clean(labels: Labels): Labels {
  const out: Labels = {};
  for (const k of Object.keys(labels).sort()) out[k] = MODEL_LABELS.has(k) ? withoutPaths(labels[k]) : labels[k];
  return out;
}

/** a prom-client metric (Counter, Gauge, Histogram, Summary) */
export type PromMetric = prom.Metric;

/** Something that can join a Registry: one of the classes below, or any prom-client metric. */
export interface Collector {
  readonly name: string;
  /** registers the underlying prom-client metric in `registry` */
  attach(registry: prom.Registry): void;
}

/**
 * A counter. `labelNames` lists every label it may carry; without it the first `inc` decides
 * them (prom-client fixes a metric's label set when it is created).
 */
export class Counter implements Collector {
  private metric?: prom.Counter<string>;
  private registry?: prom.Registry;
  constructor(
    readonly name: string,
    readonly help: string,
    labelNames?: readonly string[],
  ) {
    if (labelNames) this.metric = new prom.Counter({ name, help, labelNames, registers: [] });
  }
  attach(registry: prom.Registry): void {
    this.registry = registry;
    if (this.metric) registry.registerMetric(this.metric);
  }
  inc(labels: Labels = {}, by = 1): void {
    if (!this.metric) {
      this.metric = new prom.Counter({ name: this.name, help: this.help, labelNames: Object.keys(labels), registers: [] });
      this.registry?.registerMetric(this.metric);
    }
    this.metric.inc(clean(labels), by);
  }
}

/** A gauge read at scrape time, so it can never go stale, with whatever labels the reading gives. */
export class Gauge implements Collector {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Iterable<[Labels, number]>,
  ) {}
  attach(registry: prom.Registry): void {
    const { name, help, read } = this;
    // prom-client's own Gauge fixes its label names up front and keeps every label set it was
    // ever given; a reading replaces them all, so a scorer that has gone does not linger
    const metric = {
      name,
      help,
      type: 'gauge',
      aggregator: 'sum',
      get: async () => ({ name, help, type: 'gauge', aggregator: 'sum', values: [...read()].map(([labels, value]) => ({ labels: clean(labels), value })) }),
      reset: () => undefined,
    };
    // cast: prom-client's registry reads only the fields above (its metric interface), but types it as its own classes
    registry.registerMetric(metric as unknown as prom.Metric);
  }
}

/** A histogram; `labelNames` as for Counter (without it the first `observe` decides them). */
export class Histogram implements Collector {
  private metric?: prom.Histogram<string>;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
    labelNames?: readonly string[],
  ) {
    if (labelNames) this.metric = this.create(labelNames);
  }
  private create(labelNames: readonly string[]): prom.Histogram<string> {
    return new prom.Histogram({ name: this.name, help: this.help, buckets: [...this.buckets], labelNames, registers: [] });
  }
  attach(registry: prom.Registry): void {
    // prom-client prints `le` before the series' own labels; Winnow has always printed it last
    // (as the Prometheus client libraries for Go and Python do), and scripts and tests grep it so
    const exposed = {
      name: this.name,
      help: this.help,
      type: 'histogram',
      aggregator: 'sum',
      get: async () => {
        const data = this.metric ? await this.metric.get() : { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values: [] };
        return {
          ...data,
          values: data.values.map((v) => {
            const { le, ...rest } = v.labels as Record<string, string | number>;
            return { ...v, labels: le === undefined ? rest : { ...rest, le } };
          }),
        };
      },
      reset: () => this.metric?.reset(),
    };
    // cast: the registry reads only the fields above (prom-client's metric interface), but types it as its own classes
    registry.registerMetric(exposed as unknown as prom.Metric);
  }
  observe(labels: Labels, v: number): void {
    this.metric ??= this.create(Object.keys(labels));
    this.metric.observe(clean(labels), v);
  }
}

const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const PAIRS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

export class Registry {
  /** the prom-client registry behind /metrics; one per server */
  readonly prom = new prom.Registry();

  readonly requests = this.add(new Counter('winnow_http_requests_total', 'HTTP requests by route and status', ['route', 'status']));
  readonly requestSeconds = this.add(new Histogram('winnow_http_request_duration_seconds', 'HTTP request latency by route and status', SECONDS, ['route', 'status']));
  readonly stageSeconds = this.add(new Histogram('winnow_stage_duration_seconds', 'Cascade phase latency by cascade and stage', SECONDS, ['cascade', 'stage']));
  /** every cost a stage reports (`core/costs.ts`), whatever its name: a new stage kind needs no new metric */
  readonly stageCosts = this.add(
    new Counter('winnow_stage_cost_total', 'What cascade phases paid, by cascade, stage, cost name and unit (pairs, calls, tokens, units, usd)', ['cascade', 'stage', 'cost', 'unit']),
  );
  readonly batchPairs = this.add(new Histogram('winnow_inference_batch_pairs', 'Query-document pairs per model call, by scorer', PAIRS, ['scorer']));
  readonly batchRequests = this.add(new Histogram('winnow_inference_batch_requests', 'Requests merged into one model call, by scorer', PAIRS, ['scorer']));
  readonly degraded = this.add(new Counter('winnow_degraded_responses_total', 'Responses that skipped a stage to meet their deadline, by cascade and skipped stage', ['cascade', 'stage']));
  readonly rejected = this.add(
    new Counter(
      'winnow_rejected_requests_total',
      'Requests shed under load, by reason: queue_full (429, a scoring queue at its bound), predicted_wait (429, the queue ahead would outlast the deadline), buffer_budget (503, request bodies across all requests at their budget); scorer where one was the cause',
      ['reason', 'scorer'],
    ),
  );
  readonly dropped = this.add(new Counter('winnow_dropped_connections_total', 'Connections closed on arrival because the server held --max-connections already', []));

  /**
   * Adds a collector: one of this file's classes, or a prom-client metric created with
   * `registers: []` (other parts of Winnow, e.g. cache tiers, add their own series this way).
   */
  add<M extends Collector | prom.Metric>(m: M): M {
    if ('attach' in m) m.attach(this.prom);
    else this.prom.registerMetric(m);
    return m;
  }

  /** the text exposition format (version 0.0.4) */
  render(): Promise<string> {
    return this.prom.metrics();
  }

  get contentType(): string {
    return this.prom.contentType;
  }
}
