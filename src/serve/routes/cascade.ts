/**
 * Winnow's own routes: `/v1/cascade` ranks given candidates with every stage's scores and
 * timings; `/v1/search` retrieves from the server's corpus first, then runs the cascade.
 */
import type { FastifyInstance } from 'fastify';
import type { NativeDocument, NativeResponse } from '../../rerank/remote/native.js';
import { checkQuery } from '../bounds.js';
import { type Candidates, type ServeContext, toDocs, traceOf } from '../context.js';
import { HttpError } from '../errors.js';
import { type AuthDoc, routeSchema } from '../schemas.js';

export function cascadeRoutes(app: FastifyInstance, ctx: ServeContext, doc: AuthDoc): void {
  app.post('/v1/cascade', { schema: routeSchema('/v1/cascade', doc) }, async (req) => {
    const b = req.body as { query: string; documents: NativeDocument[]; model?: string; top_n?: number; deadline_ms?: number };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n, deadlineMs: b.deadline_ms };
    const { runner, result, hits } = await ctx.rerank(c, req);
    const res: NativeResponse & { model: string } = {
      model: runner.name,
      results: hits.map((h) => {
        const i = Number(h.docId);
        const d = b.documents[i];
        return { index: i, id: typeof d === 'string' || d.id === undefined ? String(i) : d.id, score: h.score, scores: h.scores };
      }),
      stages: traceOf(result),
    };
    if (result.skippedStage) Object.assign(res, { degraded: true, skipped_stage: result.skippedStage });
    return res;
  });

  app.post('/v1/search', { schema: routeSchema('/v1/search', doc) }, async (req) => {
    const b = req.body as { query: string; model?: string; top_n?: number; deadline_ms?: number; return_documents?: boolean };
    checkQuery(ctx.limits, b.query);
    const runner = ctx.pick(b.model);
    if (!runner.retrieverBacked) {
      throw new HttpError(400, 'not_a_retriever', `cascade "${runner.name}" does not start with a retriever, so it cannot search; use /v1/cascade or a rerank route`);
    }
    const deadline = ctx.deadlineOf(req, b.deadline_ms);
    // the retriever decides how many documents reach the first model; only the queue ahead is known
    ctx.admission.admit(runner, 0, deadline);
    const result = await runner.run({ id: req.id, text: b.query }, undefined, { docs: ctx.docs, cache: ctx.cache, start: req.winnow.start, deadline, gone: req.winnow.gone });
    req.winnow.model = runner.name;
    req.winnow.degraded = result.skippedStage;
    const hits = b.top_n ? result.hits.slice(0, b.top_n) : result.hits;
    const res: Record<string, unknown> = {
      model: runner.name,
      results: await Promise.all(
        hits.map(async (h) => {
          const item: Record<string, unknown> = { id: h.docId, score: h.score, scores: h.scores };
          const d = b.return_documents ? (h.doc ?? (await ctx.docs?.get(h.docId))) : undefined;
          if (d) {
            if (d.title !== undefined) item.title = d.title;
            item.text = d.text;
          }
          return item;
        }),
      ),
      stages: traceOf(result),
    };
    if (result.skippedStage) Object.assign(res, { degraded: true, skipped_stage: result.skippedStage });
    return res;
  });
}
