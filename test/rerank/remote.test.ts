import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { WinnowError } from '../../src/core/errors.js';
import { Costs, SEARCH_UNITS, TOKENS } from '../../src/core/costs.js';
import { docText, type Doc, type ScoreKind } from '../../src/core/types.js';
import { remoteScorer, type RemoteScorerOptions } from '../../src/rerank/remote/index.js';
import type { Scorer } from '../../src/rerank/scorer.js';
import { errorBody, fakeScore, fakeUsage, startFakeRerankServer, type FakeReply, type FakeShape } from '../helpers/fake-rerank-server.js';

const KEY = 'test-key';
const QUERY = 'how do cascade rerankers cut cost';

/** Every adapter, built through the ref factory the way a spec file would. */
interface Case {
  name: string;
  shape: FakeShape;
  kind: ScoreKind;
  raw?: boolean;
  /** the request field that must ask for every score */
  limitField: string;
  make(url: string, extra: RemoteScorerOptions): Scorer;
}

const common = (url: string, extra: RemoteScorerOptions): RemoteScorerOptions => ({ baseUrl: url, apiKey: KEY, env: {}, ...extra });

const CASES: Case[] = [
  { name: 'cohere v2', shape: 'cohere-v2', kind: 'probability', limitField: 'top_n', make: (u, x) => remoteScorer('cohere:rerank-v3.5', common(u, x)) },
  {
    name: 'cohere v1',
    shape: 'cohere-v1',
    kind: 'probability',
    limitField: 'top_n',
    make: (u, x) => remoteScorer('cohere:rerank-english-v3.0', common(u, { apiVersion: 'v1', ...x })),
  },
  { name: 'voyage', shape: 'voyage', kind: 'probability', limitField: 'top_k', make: (u, x) => remoteScorer('voyage:rerank-2', common(u, x)) },
  { name: 'jina', shape: 'jina', kind: 'probability', limitField: 'top_n', make: (u, x) => remoteScorer('jina:jina-reranker-v2-base-multilingual', common(u, x)) },
  { name: 'mixedbread', shape: 'mixedbread', kind: 'probability', limitField: 'top_k', make: (u, x) => remoteScorer('mixedbread:mxbai-rerank-large-v1', common(u, x)) },
  { name: 'pinecone', shape: 'pinecone', kind: 'probability', limitField: 'top_n', make: (u, x) => remoteScorer('pinecone:bge-reranker-v2-m3', common(u, x)) },
  { name: 'tei', shape: 'tei', kind: 'logit', raw: true, limitField: '', make: (u, x) => remoteScorer(`tei:${u}`, { apiKey: KEY, env: {}, model: 'BAAI/bge-reranker-base', ...x }) },
  { name: 'vllm', shape: 'vllm', kind: 'probability', limitField: 'top_n', make: (u, x) => remoteScorer(`vllm:${u}/BAAI/bge-reranker-v2-m3`, { apiKey: KEY, env: {}, ...x }) },
  {
    name: 'infinity',
    shape: 'infinity',
    kind: 'logit',
    raw: true,
    limitField: 'top_n',
    make: (u, x) => remoteScorer(`infinity:${u}/mixedbread-ai/mxbai-rerank-xsmall-v1`, { apiKey: KEY, env: {}, route: '/rerank', scoreKind: 'logit', extraBody: { raw_scores: true }, ...x }),
  },
  { name: 'winnow', shape: 'winnow', kind: 'logit', limitField: 'top_n', make: (u, x) => remoteScorer(`winnow:${u}/fast`, { apiKey: KEY, env: {}, ...x }) },
];

function corpus(n: number): Doc[] {
  const words = ['cascade', 'rerankers', 'cut', 'cost', 'bread', 'ocean', 'granite', 'violin'];
  return Array.from({ length: n }, (_, i) => ({
    id: `d${i}`,
    title: i % 3 === 0 ? `title ${i}` : undefined,
    // i-dependent overlap with the query, so results come back in a different order than sent
    text: `${words.filter((_, w) => (i * 7 + w * 3) % 5 < 2).join(' ')} doc ${i}`,
  }));
}

function expected(c: Case, docs: readonly Doc[]): number[] {
  return docs.map((d) => Math.fround(fakeScore(c.shape, QUERY, docText(d), c.raw)));
}

/** Records the waits the client asked for instead of waiting. */
function fakeSleep(): { sleeps: number[]; sleep: (ms: number) => Promise<void> } {
  const sleeps: number[] = [];
  return { sleeps, sleep: async (ms) => void sleeps.push(ms) };
}

/** A retryable error body in the shape's own form. */
function failing(c: Case, status: number, headers?: Record<string, string>): FakeReply {
  return { status, headers, body: errorBody(c.shape, status, status === 429 ? 'rate limited' : 'backend crashed') };
}

/** An error a provider (or a gateway in front of it) sends with status 200. */
function errorWith200(c: Case): FakeReply {
  const body: Record<FakeShape, unknown> = {
    'cohere-v1': { message: 'invalid request: too many tokens' },
    'cohere-v2': { message: 'invalid request: too many tokens' },
    voyage: { detail: 'invalid request: too many tokens' },
    jina: { detail: 'invalid request: too many tokens' },
    mixedbread: { message: 'invalid request: too many tokens' },
    pinecone: { error: { code: 'INVALID_ARGUMENT', message: 'invalid request: too many tokens' } },
    tei: { error: 'invalid request: too many tokens', error_type: 'Validation' },
    vllm: { object: 'error', message: 'invalid request: too many tokens', type: 'BadRequestError' },
    infinity: { error: { message: 'invalid request: too many tokens' } },
    winnow: { error: { code: 'bad_input', message: 'invalid request: too many tokens' } },
  };
  return { status: 200, body: body[c.shape] };
}

for (const c of CASES) {
  describe(`remote scorer: ${c.name}`, () => {
    test('scores every document and maps result indexes back to input positions', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY });
      try {
        const scorer = c.make(server.url, {});
        assert.equal(scorer.kind, c.kind);
        const docs = corpus(6);
        const scores = await scorer.score(QUERY, docs);
        assert.deepEqual(Array.from(scores), expected(c, docs));
        assert.equal(server.requests.length, 1);
        const body = server.requests[0].body;
        assert.equal(body.query, QUERY, 'the query is sent whole');
        if (c.limitField) assert.equal(body[c.limitField], 6, `${c.limitField} asks for every score`);
        // the fake answers best first, so identity order would mean the mapping went untested
        const order = [...scores.keys()].sort((a, b) => scores[b] - scores[a]);
        assert.notDeepEqual(order, [0, 1, 2, 3, 4, 5]);
      } finally {
        await server.close();
      }
    });

    test('waits as long as Retry-After says on 429, then succeeds', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, replies: [failing(c, 429, { 'retry-after': '2' })] });
      try {
        const { sleeps, sleep } = fakeSleep();
        const docs = corpus(3);
        const scores = await c.make(server.url, { sleep }).score(QUERY, docs);
        assert.deepEqual(Array.from(scores), expected(c, docs));
        assert.deepEqual(sleeps, [2000]);
        assert.equal(server.requests.length, 2);
      } finally {
        await server.close();
      }
    });

    test('retries a 500 with jittered backoff, then succeeds', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, replies: [failing(c, 500), failing(c, 503)] });
      try {
        const { sleeps, sleep } = fakeSleep();
        const docs = corpus(3);
        const scores = await c.make(server.url, { sleep, random: () => 0.5, backoffBaseMs: 100 }).score(QUERY, docs);
        assert.deepEqual(Array.from(scores), expected(c, docs));
        assert.deepEqual(sleeps, [50, 100], 'full jitter: random x 100, then random x 200');
      } finally {
        await server.close();
      }
    });

    test('a server that never answers is retried, then fails with a clear error', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, replies: [{ hang: true }, { hang: true }] });
      try {
        const { sleeps, sleep } = fakeSleep();
        // Attempts are counted at the client: on a loaded machine an 80 ms timeout can fire before
        // a request reaches the server, so the server's count says nothing about retrying.
        let attempts = 0;
        const counted: typeof fetch = (input, init) => {
          attempts++;
          return fetch(input, init);
        };
        const scorer = c.make(server.url, { sleep, timeoutMs: 80, maxAttempts: 2, fetch: counted });
        await assert.rejects(scorer.score(QUERY, corpus(2)), (e: unknown) => {
          assert.ok(e instanceof WinnowError);
          assert.equal(e.code, 'unavailable');
          assert.match(e.message, /failed after 2 attempts: no answer within 80 ms/);
          return true;
        });
        assert.equal(attempts, 2);
        assert.ok(server.requests.length <= 2);
        assert.equal(sleeps.length, 1);
      } finally {
        await server.close();
      }
    });

    test('an error body with status 200 becomes an error carrying the provider message', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, replies: [errorWith200(c)] });
      try {
        await assert.rejects(c.make(server.url, {}).score(QUERY, corpus(2)), (e: unknown) => {
          assert.ok(e instanceof WinnowError);
          assert.match(e.message, /error in a HTTP 200 answer/);
          assert.match(e.message, /invalid request: too many tokens/);
          return true;
        });
        assert.equal(server.requests.length, 1, 'not retried: nothing says waiting helps');
      } finally {
        await server.close();
      }
    });

    test('malformed JSON is an error naming the provider and quoting the body', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, replies: [{ status: 200, body: '<html>gateway says hi</html>' }] });
      try {
        await assert.rejects(c.make(server.url, {}).score(QUERY, corpus(2)), (e: unknown) => {
          assert.ok(e instanceof WinnowError);
          assert.match(e.message, new RegExp(`^${c.make(server.url, {}).id.split(':')[0].replace('/', '\\/')}`));
          assert.match(e.message, /not JSON \(HTTP 200, text\/plain\): "<html>gateway says hi<\/html>"/);
          return true;
        });
      } finally {
        await server.close();
      }
    });

    test('splits over the per-request cap and merges in input order, counting usage', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, maxDocs: 4 });
      try {
        const docs = corpus(10);
        const stats = new Costs();
        const scores = await c.make(server.url, { maxDocsPerRequest: 4 }).score(QUERY, docs, stats);
        assert.deepEqual(Array.from(scores), expected(c, docs));
        assert.equal(server.requests.length, 3);
        const sizes = server.requests.map((r) => ((r.body.documents ?? r.body.texts ?? r.body.input) as unknown[]).length);
        assert.deepEqual([...sizes].sort(), [3, 3, 4]);
        // usage is summed over the sub-requests, from what each one reported
        let units = 0;
        let tokens = 0;
        for (const r of server.requests) {
          const sent = ((r.body.documents ?? r.body.texts ?? r.body.input) as Array<string | { text: string; title?: string }>).map((d) =>
            typeof d === 'string' ? d : d.title ? `${d.title} ${d.text}` : d.text,
          );
          const u = fakeUsage(c.shape, QUERY, sent);
          units += u.searchUnits;
          tokens += u.tokens;
        }
        assert.equal(stats.get(SEARCH_UNITS), units);
        assert.equal(stats.get(TOKENS), tokens);
        if (c.shape.startsWith('cohere') || c.shape === 'pinecone') assert.ok(stats.get(SEARCH_UNITS) > 0);
        if (['voyage', 'jina', 'mixedbread', 'vllm', 'infinity'].includes(c.shape)) assert.ok(stats.get(TOKENS) > 0);
      } finally {
        await server.close();
      }
    });

    test('a response missing some indexes is an error, not zeros', async () => {
      const server = await startFakeRerankServer({ shape: c.shape, apiKey: KEY, capResults: 3 });
      try {
        await assert.rejects(c.make(server.url, {}).score(QUERY, corpus(5)), /2 of 5 documents have no score|returned 3 of 5/);
      } finally {
        await server.close();
      }
    });
  });
}

test('tei: 70 documents under the default cap of 32 go out as 3 requests, merged in order', async () => {
  const server = await startFakeRerankServer({ shape: 'tei', maxDocs: 32 });
  try {
    const docs = corpus(70);
    const scorer = remoteScorer(`tei:${server.url}`, { env: {}, model: 'BAAI/bge-reranker-base' });
    const scores = await scorer.score(QUERY, docs);
    assert.equal(server.requests.length, 3);
    assert.ok(server.requests.every((r) => (r.body.texts as string[]).length <= 32));
    // each request's texts, concatenated in index order, are the input in order
    const sent = server.requests.flatMap((r) => r.body.texts as string[]);
    assert.deepEqual([...sent].sort(), docs.map(docText).sort());
    assert.deepEqual(Array.from(scores), docs.map((d) => Math.fround(fakeScore('tei', QUERY, docText(d), true))));
    assert.equal(server.requests[0].body.truncate, true);
    assert.equal(server.requests[0].body.raw_scores, true);
    assert.equal(server.requests[0].body.truncation_direction, undefined, 'Right is TEI default and not sent');
  } finally {
    await server.close();
  }
});

test('tei: a server cap below ours (413) halves sub-requests until they fit', async () => {
  const server = await startFakeRerankServer({ shape: 'tei', maxDocs: 8 });
  try {
    const docs = corpus(20);
    const scores = await remoteScorer(`tei:${server.url}`, { env: {} }).score(QUERY, docs);
    assert.deepEqual(Array.from(scores), docs.map((d) => Math.fround(fakeScore('tei', QUERY, docText(d), true))));
    const accepted = server.requests.filter((r) => (r.body.texts as string[]).length <= 8);
    assert.equal(accepted.reduce((s, r) => s + (r.body.texts as string[]).length, 0), 20);
  } finally {
    await server.close();
  }
});

test('tei: rawScores false returns TEI sigmoid scores as probabilities; left truncation is sent as "Left"', async () => {
  const server = await startFakeRerankServer({ shape: 'tei' });
  try {
    const scorer = remoteScorer(`tei:${server.url}`, { env: {}, rawScores: false, truncationDirection: 'left' });
    assert.equal(scorer.kind, 'probability');
    const docs = corpus(4);
    assert.deepEqual(Array.from(await scorer.score(QUERY, docs)), docs.map((d) => Math.fround(fakeScore('tei', QUERY, docText(d), false))));
    assert.equal(server.requests[0].body.truncation_direction, 'Left');
  } finally {
    await server.close();
  }
});

test('cohere v2: the fake rejects a request without model (400) and the scorer refuses to build one', async () => {
  const server = await startFakeRerankServer({ shape: 'cohere-v2', apiKey: KEY });
  try {
    const res = await fetch(`${server.url}/v2/rerank`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ query: 'q', documents: ['a'] }),
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /model/);
    assert.throws(() => remoteScorer('cohere:', { env: {}, apiKey: KEY }), /name the model/);
  } finally {
    await server.close();
  }
});

test('cohere v2: max_tokens_per_doc is sent and part of the id', async () => {
  const server = await startFakeRerankServer({ shape: 'cohere-v2', apiKey: KEY });
  try {
    const a = remoteScorer('cohere:rerank-v3.5', { baseUrl: server.url, apiKey: KEY, env: {}, maxTokensPerDoc: 512 });
    const b = remoteScorer('cohere:rerank-v3.5', { baseUrl: server.url, apiKey: KEY, env: {} });
    assert.notEqual(a.id, b.id);
    await a.score(QUERY, corpus(2));
    assert.equal(server.requests[0].body.max_tokens_per_doc, 512);
    assert.equal(server.requests[0].body.model, 'rerank-v3.5');
  } finally {
    await server.close();
  }
});

test('pinecone: sends Api-Key and X-Pinecone-API-Version headers and {text} documents with truncate END', async () => {
  const server = await startFakeRerankServer({ shape: 'pinecone', apiKey: KEY });
  try {
    await remoteScorer('pinecone:bge-reranker-v2-m3', { baseUrl: server.url, apiKey: KEY, env: {} }).score(QUERY, corpus(2));
    const r = server.requests[0];
    assert.equal(r.headers['api-key'], KEY);
    assert.equal(r.headers['x-pinecone-api-version'], '2025-04');
    assert.equal(r.headers.authorization, undefined);
    assert.deepEqual(r.body.parameters, { truncate: 'END' });
    assert.equal(typeof (r.body.documents as Array<{ text: string }>)[0].text, 'string');
  } finally {
    await server.close();
  }
});

test('voyage: the token budget splits a request below the document cap', async () => {
  const server = await startFakeRerankServer({ shape: 'voyage', apiKey: KEY });
  try {
    const docs = corpus(12);
    const scorer = remoteScorer('voyage:rerank-2', {
      baseUrl: server.url,
      apiKey: KEY,
      env: {},
      maxTokensPerRequest: 60,
      estimateTokens: (t: string) => t.split(/\s+/).length,
    });
    const scores = await scorer.score(QUERY, docs);
    assert.ok(server.requests.length > 1, `expected several requests, got ${server.requests.length}`);
    for (const r of server.requests) {
      const sent = r.body.documents as string[];
      const cost = sent.reduce((s, d) => s + 6 + d.split(/\s+/).length, 0);
      assert.ok(cost <= 60 || sent.length === 1, `request over budget: ${cost}`);
      assert.equal(r.body.truncation, true);
      assert.equal(r.body.top_k, sent.length);
    }
    assert.deepEqual(Array.from(scores), docs.map((d) => Math.fround(fakeScore('voyage', QUERY, docText(d)))));
  } finally {
    await server.close();
  }
});

test('winnow: sends {id, text, title} candidates; degraded answers are refused unless allowed', async () => {
  const server = await startFakeRerankServer({ shape: 'winnow', degraded: true });
  try {
    const docs = corpus(4);
    await assert.rejects(remoteScorer(`winnow:${server.url}/fast`, { env: {} }).score(QUERY, docs), /skipped stage "heavy"/);
    const body = server.requests[0].body as { documents: Array<{ id: string; title?: string }>; model: string; top_n: number };
    assert.equal(body.model, 'fast');
    assert.equal(body.top_n, 4);
    assert.deepEqual(body.documents.map((d) => d.id), ['d0', 'd1', 'd2', 'd3']);
    assert.equal(body.documents[0].title, 'title 0');
    const ok = await remoteScorer(`winnow:${server.url}/fast`, { env: {}, allowDegraded: true }).score(QUERY, docs);
    assert.deepEqual(Array.from(ok), docs.map((d) => Math.fround(fakeScore('winnow', QUERY, docText(d)))));
  } finally {
    await server.close();
  }
});

test('winnow: a result whose id does not match the candidate sent is an error', async () => {
  const wrong = { results: [{ index: 0, id: 'other', score: 1, scores: {} }], stages: [] };
  const server = await startFakeRerankServer({ shape: 'winnow', replies: [{ status: 200, body: wrong }] });
  try {
    await assert.rejects(remoteScorer(`winnow:${server.url}`, { env: {} }).score(QUERY, corpus(1)), /has id "other", sent "d0"/);
  } finally {
    await server.close();
  }
});

test('a wrong API key is a non-retried "unavailable" error with the provider message and a hint', async () => {
  const server = await startFakeRerankServer({ shape: 'jina', apiKey: KEY });
  try {
    const scorer = remoteScorer('jina:jina-reranker-v2-base-multilingual', { baseUrl: server.url, apiKey: 'wrong', env: {} });
    await assert.rejects(scorer.score(QUERY, corpus(2)), (e: unknown) => {
      assert.ok(e instanceof WinnowError);
      assert.equal(e.code, 'unavailable');
      assert.match(e.message, /HTTP 401.*invalid api key/);
      assert.match(e.hint ?? '', /JINA_API_KEY/);
      return true;
    });
    assert.equal(server.requests.length, 1);
  } finally {
    await server.close();
  }
});

test('a 4xx is bad_input carrying the FastAPI-style detail, not retried; a 404 is unavailable', async () => {
  // a server whose own cap is below the scorer's: a plain 400 (unlike TEI's 413) is not split further
  const server = await startFakeRerankServer({ shape: 'infinity', maxDocs: 2 });
  try {
    const scorer = remoteScorer(`infinity:${server.url}/m`, { env: {}, route: '/rerank' });
    await assert.rejects(scorer.score(QUERY, corpus(3)), (e: unknown) => {
      assert.ok(e instanceof WinnowError);
      assert.equal(e.code, 'bad_input');
      assert.match(e.message, /vllm: HTTP 400 from .*\/rerank: body: batch size 3 > maximum allowed batch size 2/);
      return true;
    });
    assert.equal(server.requests.length, 1);
    const wrongRoute = remoteScorer(`infinity:${server.url}/m`, { env: {}, route: '/nope' });
    await assert.rejects(wrongRoute.score(QUERY, corpus(1)), (e: unknown) => e instanceof WinnowError && e.code === 'unavailable' && /HTTP 404/.test(e.message));
    // top_n 0 means "all" to vLLM but Infinity rejects it, which is why the scorer always sends n
    const res = await fetch(`${server.url}/rerank`, { method: 'POST', body: JSON.stringify({ query: 'q', documents: ['a'], top_n: 0 }) });
    assert.equal(res.status, 422);
  } finally {
    await server.close();
  }
});
