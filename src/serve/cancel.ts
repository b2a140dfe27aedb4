/**
 * A one-shot "stop working on this request" flag. Not an AbortController: aborting one builds a
 * DOMException with a stack trace, and a controller per request cost a sixth of the CPU of a
 * fast request (profiled with a no-op scorer).
 */
export class Cancellation {
  private listeners: (() => void)[] | undefined = [];

  get cancelled(): boolean {
    return this.listeners === undefined;
  }

  cancel(): void {
    const fns = this.listeners;
    if (!fns) return;
    this.listeners = undefined;
    for (const fn of fns) fn();
  }

  /** Calls `fn` on cancel (at once if already cancelled); returns a function that unsubscribes. */
  onCancel(fn: () => void): () => void {
    if (!this.listeners) {
      fn();
      return () => undefined;
    }
    this.listeners.push(fn);
    return () => {
      const i = this.listeners?.indexOf(fn) ?? -1;
      if (i >= 0) this.listeners!.splice(i, 1);
    };
  }
}
