/**
 * The provider-compatible rerank routes: Cohere v2 (`/v2/rerank`), Cohere v1 / Jina / vLLM
 * (`/v1/rerank`) and Text Embeddings Inference (`/rerank`). Each gives the request's documents
 * to the cascade as its candidates and answers in that provider's shape.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { NativeDocument } from '../../rerank/remote/native.js';
import { type Candidates, type ServeContext, toDocs } from '../context.js';
import { type AuthDoc, routeSchema } from '../schemas.js';

/** The provider shapes have no field for a degraded answer, so the skipped stage goes in a header. */
function markDegraded(reply: FastifyReply, skipped: string | undefined): void {
  if (skipped) reply.header('X-Winnow-Degraded', skipped.replace(/[^\x20-\x7e]/g, '?'));
}

const searchUnits = (n: number): number => Math.max(1, Math.ceil(n / 100));

export function rerankRoutes(app: FastifyInstance, ctx: ServeContext, doc: AuthDoc): void {
  app.post('/v2/rerank', { schema: routeSchema('/v2/rerank', doc) }, async (req, reply) => {
    const b = req.body as { query: string; documents: NativeDocument[]; model?: string; top_n?: number };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n };
    const { result, hits } = await ctx.rerank(c, req);
    markDegraded(reply, result.skippedStage);
    return {
      id: req.id,
      results: hits.map((h) => ({ index: Number(h.docId), relevance_score: ctx.relevance(result, h.score) })),
      meta: { api_version: { version: '2' }, billed_units: { search_units: searchUnits(c.docs.length) } },
    };
  });

  // Cohere v1, Jina and vLLM share this route and these fields; `model` is echoed for Jina/vLLM.
  app.post('/v1/rerank', { schema: routeSchema('/v1/rerank', doc) }, async (req, reply) => {
    const b = req.body as { query: string; documents: NativeDocument[]; model?: string; top_n?: number; return_documents?: boolean };
    const c: Candidates = { query: b.query, docs: toDocs(b.documents), model: b.model, topN: b.top_n };
    const { runner, result, hits } = await ctx.rerank(c, req);
    markDegraded(reply, result.skippedStage);
    return {
      id: req.id,
      model: runner.name,
      results: hits.map((h) => {
        const i = Number(h.docId);
        const item: Record<string, unknown> = { index: i, relevance_score: ctx.relevance(result, h.score) };
        if (b.return_documents) {
          const d = b.documents[i];
          // Cohere v1 returns object documents as sent, with all their fields.
          item.document = typeof d === 'string' ? { text: d } : d;
        }
        return item;
      }),
      meta: { api_version: { version: '1' }, billed_units: { search_units: searchUnits(c.docs.length) } },
    };
  });

  // TEI answers every text, best first, as a bare array.
  app.post('/rerank', { schema: routeSchema('/rerank', doc) }, async (req, reply) => {
    const b = req.body as { query: string; texts: string[]; raw_scores?: boolean; return_text?: boolean; model?: string };
    const c: Candidates = { query: b.query, docs: toDocs(b.texts), model: b.model };
    const { result, hits } = await ctx.rerank(c, req);
    markDegraded(reply, result.skippedStage);
    return hits.map((h) => {
      const i = Number(h.docId);
      const item: Record<string, unknown> = { index: i, score: b.raw_scores ? h.score : ctx.relevance(result, h.score) };
      if (b.return_text) item.text = b.texts[i];
      return item;
    });
  });
}
