import assert from 'node:assert/strict';
import test from 'node:test';
import { slidingWindow, topDown, walkForTopK, windowStarts } from '../../../src/rerank/llm/window.js';
import { seededRandom } from '../../../src/eval/tune/random.js';

for (const n of [1, 5, 15, 20, 21, 25, 100, 101]) {
  test(`windowStarts covers every position, the head included, for n=${n} (window 20, stride 10)`, () => {
    const w = windowStarts(n, 20, 10);
    assert.equal(w[0][1], n, 'the first window processed ends at the tail');
    assert.equal(w[w.length - 1][0], 0, 'the last window processed starts at the head');
    const covered = new Set<number>();
    for (const [s, e] of w) {
      assert.ok(e - s <= 20 && e > s);
      for (let i = s; i < e; i++) covered.add(i);
    }
    assert.equal(covered.size, n);
    // back to front: starts never increase
    for (let i = 1; i < w.length; i++) assert.ok(w[i][0] <= w[i - 1][0]);
  });
}

test('windowStarts matches the corrected RankGPT windows for n=25', () => {
  assert.deepEqual(windowStarts(25, 20, 10), [[5, 25], [0, 20]]);
  assert.deepEqual(windowStarts(21, 20, 10), [[1, 21], [0, 20]]);
  assert.deepEqual(windowStarts(0, 20, 10), []);
  assert.throws(() => windowStarts(10, 20, 30), /stride/);
});

/** A perfect ranker: sorts each window by the item's value, descending. */
const perfect = async (w: number[]): Promise<number[]> => [...w].sort((a, b) => b - a);

test('one sliding pass brings the best item of any list to the head', async () => {
  for (const n of [1, 5, 15, 20, 21, 25, 100, 101]) {
    const items = Array.from({ length: n }, (_, i) => i); // best (largest) at the tail
    const { items: out, stopped } = await slidingWindow(items, 20, 10, 1, perfect);
    assert.equal(stopped, false);
    assert.equal(out[0], n - 1, `n=${n}`);
    assert.deepEqual([...out].sort((a, b) => a - b), items, 'a permutation of the input');
    if (n > 10) assert.deepEqual(out.slice(0, 10), Array.from({ length: 10 }, (_, i) => n - 1 - i), 'the top stride is fully sorted');
  }
});

test('repeated passes sort more of the list; a budget stop returns the order so far', async () => {
  const items = Array.from({ length: 40 }, (_, i) => i);
  const one = await slidingWindow(items, 10, 5, 1, perfect);
  const three = await slidingWindow(items, 10, 5, 3, perfect);
  const sortedPrefix = (xs: number[]): number => xs.findIndex((x, i) => x !== 39 - i);
  assert.ok(sortedPrefix(three.items) > sortedPrefix(one.items));
  let calls = 0;
  const limited = await slidingWindow(items, 10, 5, 1, async (w) => (++calls > 2 ? undefined : perfect(w)));
  assert.equal(limited.stopped, true);
  assert.deepEqual(limited.items.slice(25), [39, 38, 37, 36, 35, 29, 28, 27, 26, 25, 34, 33, 32, 31, 30], 'the two windows that ran');
  assert.deepEqual(limited.items.slice(0, 25), items.slice(0, 25), 'windows never reached keep their order');
});

test('topDown orders the top k exactly; what is below the pivot keeps its order', async () => {
  const items = Array.from({ length: 100 }, (_, i) => (i * 37) % 100);
  let calls = 0;
  const counted = async (w: number[]): Promise<number[]> => {
    calls++;
    return perfect(w);
  };
  const { items: out } = await topDown(items, 20, 10, counted);
  assert.deepEqual(out.slice(0, 10), [99, 98, 97, 96, 95, 94, 93, 92, 91, 90]);
  assert.deepEqual([...out].sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
  assert.ok(calls >= 6, 'first level: 1 + ceil(80 / 19) calls');
  // a list already in order: one level, the first window's pivot beats every later chunk
  calls = 0;
  const sorted = Array.from({ length: 100 }, (_, i) => 99 - i);
  const again = await topDown(sorted, 20, 10, counted);
  assert.deepEqual(again.items, sorted);
  assert.equal(calls, 1 + Math.ceil(80 / 19) + 1, 'first window, one call per chunk, then the 10 above the pivot');
});

test('walkForTopK: the pushed-down walk gives the full walk\'s top k on a consistent ranker, with no more calls', async () => {
  const rnd = seededRandom(5);
  for (let trial = 0; trial < 60; trial++) {
    const n = 1 + Math.floor(rnd() * 120);
    const window = 2 + Math.floor(rnd() * 25);
    const stride = 1 + Math.floor(rnd() * window);
    const passes = 1 + Math.floor(rnd() * 3);
    const k = 1 + Math.floor(rnd() * 30);
    const items = Array.from({ length: n }, (_, i) => (i * 7919) % (n + 13));
    let fullCalls = 0;
    let cutCalls = 0;
    const full = await slidingWindow(items, window, stride, passes, async (w) => (fullCalls++, perfect(w)));
    const walk = walkForTopK(window, stride, passes, k);
    const cut = await slidingWindow(items, window, walk.stride, walk.passes, async (w) => (cutCalls++, perfect(w)));
    const what = `n=${n} window=${window} stride=${stride} passes=${passes} k=${k} → ${JSON.stringify(walk)}`;
    assert.deepEqual(cut.items.slice(0, k), full.items.slice(0, k), what);
    assert.ok(cutCalls <= fullCalls, what);
  }
  assert.deepEqual(walkForTopK(20, 10, 3, 5), { stride: 15, passes: 1 });
  assert.deepEqual(walkForTopK(20, 10, 3, 15), { stride: 10, passes: 2 });
  assert.deepEqual(walkForTopK(20, 10, 3, undefined), { stride: 10, passes: 3 });
});
