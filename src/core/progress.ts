/**
 * A progress bar on stderr for long work (indexing, evaluation). It draws only when stderr
 * is a terminal, so logs and CI output stay clean, and redraws at most every 100 ms so a
 * tight loop does not pay for terminal writes. A `total` of 0 means "unknown": it then shows
 * the count and rate only.
 */
export class Progress {
  private done = 0;
  private lastDraw = 0;
  private readonly start = Date.now();
  private readonly enabled: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit = 'items',
    stream: NodeJS.WriteStream = process.stderr,
  ) {
    this.stream = stream;
    this.enabled = Boolean(stream.isTTY) && process.env.WINNOW_NO_PROGRESS === undefined;
  }

  private readonly stream: NodeJS.WriteStream;

  tick(n = 1): void {
    this.done += n;
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < 100 && (this.total <= 0 || this.done < this.total)) return;
    this.lastDraw = now;
    this.draw(now);
  }

  finish(): void {
    if (!this.enabled) return;
    this.draw(Date.now());
    this.stream.write('\n');
  }

  private draw(now: number): void {
    const secs = Math.max((now - this.start) / 1000, 1e-3);
    const rate = this.done / secs;
    if (this.total <= 0) {
      // Unknown total (a stream of unknown length): counts and rate, no bar or ETA.
      this.stream.write(`\r${this.label} ${this.done} ${this.unit} ${rate.toFixed(rate < 10 ? 1 : 0)}/s   `);
      return;
    }
    const frac = this.total > 0 ? Math.min(this.done / this.total, 1) : 0;
    const width = 30;
    const filled = Math.round(frac * width);
    const eta = rate > 0 && this.total > this.done ? (this.total - this.done) / rate : 0;
    const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
    this.stream.write(
      `\r${this.label} ${bar} ${this.done}/${this.total} ${this.unit} ` +
        `${rate.toFixed(rate < 10 ? 1 : 0)}/s ETA ${formatSeconds(eta)}   `,
    );
  }
}

function formatSeconds(s: number): string {
  if (s < 60) return `${s.toFixed(0)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
}
