/**
 * Passage windows over a token sequence: overlapping spans so a model with a short input
 * limit still sees the whole of a long document. Spans are over token positions (not
 * characters), so every window fills the model's budget exactly.
 */
export interface WindowOptions {
  /** tokens per window */
  size: number;
  /** tokens between window starts; `stride < size` makes windows overlap */
  stride: number;
}

/**
 * Start offsets of the windows over `length` tokens: 0, stride, 2*stride, ... up to the first
 * window that reaches the end. A sequence no longer than `size` has one window.
 */
export function windowStarts(length: number, { size, stride }: WindowOptions): Int32Array {
  if (!(size >= 1) || !(stride >= 1)) throw new RangeError(`window size and stride must be >= 1 (size ${size}, stride ${stride})`);
  if (length <= size) return new Int32Array([0]);
  const n = Math.ceil((length - size) / stride) + 1;
  const starts = new Int32Array(n);
  for (let i = 0; i < n; i++) starts[i] = Math.min(i * stride, length - size);
  return starts;
}
