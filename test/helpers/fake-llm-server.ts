import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback LLM for tests, speaking OpenAI's `/chat/completions` and Anthropic's
 * `/v1/messages`. Its "model" is deterministic: it reads the passages and query out of the
 * prompt and ranks by `relevance(query, passage)` (default: how often the passage says
 * "relevant"). It answers RankGPT prompts with `[i] > [j] …`, setwise prompts with the best
 * label, yes/no prompts with Yes/No (and P(yes) in logprobs when asked), graded prompts with
 * a digit (and the four grades' logprobs). Scripted replies are served first: statuses,
 * headers, raw answer text, hangs.
 */
export interface LlmReply {
  status?: number;
  headers?: Record<string, string>;
  /** a whole response body (object → JSON) */
  body?: unknown;
  /** a normal 200 answer whose text is this (for parse tests) */
  content?: string;
  /** never answer */
  hang?: boolean;
}

export interface LlmRequestSeen {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  /** the user message */
  prompt: string;
}

export interface FakeLlmServer {
  readonly url: string;
  readonly requests: LlmRequestSeen[];
  readonly replies: LlmReply[];
  /** most requests in flight at once, seen so far */
  readonly maxInFlight: number;
  close(): Promise<void>;
}

export interface FakeLlmOptions {
  relevance?: (query: string, passage: string) => number;
  /** OpenAI shape: omit logprobs even when asked (servers without them) */
  noLogprobs?: boolean;
  /** delay every answer (concurrency tests) */
  delayMs?: number;
  /** usage.prompt_tokens = this per request (default: prompt characters / 4) */
  tokensIn?: number;
  tokensOut?: number;
}

export const countRelevant = (_q: string, p: string): number => (p.match(/\brelevant\b/g) ?? []).length;

/** Passages as `[label] text` lines, in prompt order. */
export function promptPassages(prompt: string): { label: string; text: string }[] {
  return [...prompt.matchAll(/^\[([A-Z]{1,2}|\d+)\] (.*)$/gm)].map((m) => ({ label: m[1], text: m[2] }));
}

function promptQuery(prompt: string): string {
  return /Search Query: (.*)\.\n/.exec(prompt)?.[1] ?? /^Query: (.*)$/m.exec(prompt)?.[1] ?? '';
}

/** What the fake model says to a prompt, and the logprobs of its first token. */
export function fakeAnswer(prompt: string, relevance: (q: string, p: string) => number): { text: string; top?: { token: string; logprob: number }[] } {
  const query = promptQuery(prompt);
  if (/Rank the \d+ passages/.test(prompt) || /most relevant to the query\? Answer with its label/.test(prompt)) {
    const ps = promptPassages(prompt);
    // Stable: ties keep prompt order, so answers are exact and predictable.
    const ranked = ps.map((p, i) => ({ ...p, i, s: relevance(query, p.text) })).sort((a, b) => b.s - a.s || a.i - b.i);
    if (/Answer with its label/.test(prompt)) return { text: `[${ranked[0].label}]` };
    return { text: ranked.map((p) => `[${p.label}]`).join(' > ') };
  }
  const passage = /^Passage: (.*)$/m.exec(prompt)?.[1] ?? '';
  const s = relevance(query, passage);
  if (/Answer with Yes or No/.test(prompt)) {
    const p = 1 - 1 / (1 + s); // 0 → 0, 1 → 0.5, 3 → 0.75
    const yes = Math.max(p, 1e-6);
    const no = Math.max(1 - p, 1e-6);
    return { text: p >= 0.5 ? 'Yes' : 'No', top: [{ token: 'Yes', logprob: Math.log(yes) }, { token: 'No', logprob: Math.log(no) }, { token: 'The', logprob: -9 }] };
  }
  const grade = Math.min(3, s);
  return { text: String(grade), top: ['0', '1', '2', '3'].map((g) => ({ token: g, logprob: Math.log(Number(g) === grade ? 0.7 : 0.1) })) };
}

export async function startFakeLlm(opts: FakeLlmOptions = {}): Promise<FakeLlmServer> {
  const relevance = opts.relevance ?? countRelevant;
  const requests: LlmRequestSeen[] = [];
  const replies: LlmReply[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
          const messages = (body.messages as { role: string; content: string }[]) ?? [];
          const prompt = messages.find((m) => m.role === 'user')?.content ?? '';
          requests.push({ path: req.url ?? '', headers: req.headers, body, prompt });
          if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
          const scripted = replies.shift();
          if (scripted?.hang) return;
          if (scripted && scripted.content === undefined) {
            res.writeHead(scripted.status ?? 200, { 'content-type': 'application/json', ...scripted.headers });
            res.end(typeof scripted.body === 'string' ? scripted.body : JSON.stringify(scripted.body ?? {}));
            return;
          }
          const answer = scripted?.content !== undefined ? { text: scripted.content, top: undefined } : fakeAnswer(prompt, relevance);
          const tokensIn = opts.tokensIn ?? Math.ceil(prompt.length / 4);
          const tokensOut = opts.tokensOut ?? Math.max(1, Math.ceil(answer.text.length / 4));
          let out: unknown;
          if (req.url?.endsWith('/v1/messages')) {
            if (!req.headers['x-api-key'] || !req.headers['anthropic-version']) {
              res.writeHead(401, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ type: 'error', error: { type: 'authentication_error', message: 'x-api-key header is required' } }));
              return;
            }
            out = { id: 'msg_1', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'text', text: answer.text }], stop_reason: 'end_turn', usage: { input_tokens: tokensIn, output_tokens: tokensOut } };
          } else {
            const wantLogprobs = body.logprobs === true && !opts.noLogprobs;
            const top = wantLogprobs && answer.top ? answer.top.slice(0, Number(body.top_logprobs ?? 1)) : undefined;
            out = {
              id: 'chatcmpl-1',
              object: 'chat.completion',
              model: body.model,
              choices: [
                {
                  index: 0,
                  message: { role: 'assistant', content: answer.text },
                  finish_reason: 'stop',
                  ...(wantLogprobs ? { logprobs: { content: [{ token: top?.[0]?.token ?? answer.text, logprob: top?.[0]?.logprob ?? 0, top_logprobs: top ?? [] }] } } : {}),
                },
              ],
              usage: { prompt_tokens: tokensIn, completion_tokens: tokensOut, total_tokens: tokensIn + tokensOut },
            };
          }
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(out));
        } finally {
          inFlight--;
        }
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    replies,
    get maxInFlight() {
      return maxInFlight;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
