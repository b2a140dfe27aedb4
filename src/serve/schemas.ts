/**
 * JSON Schemas (2020-12) of every request and response body. The same objects validate
 * requests (Ajv) and document the API (OpenAPI 3.1 uses JSON Schema 2020-12 as is), so the
 * documentation cannot drift from what the server accepts.
 *
 * Request schemas allow unknown properties: clients of the providers we imitate send fields we
 * do not use (`rank_fields`, `priority`, `truncate_prompt_tokens`), and refusing them would
 * break clients that are meant to work unchanged. Size limits are not in the schemas; they are
 * server settings checked after validation so the error can name the limit and its value.
 */

type Schema = Record<string, unknown>;

const text = { type: 'string', description: 'document text' };
const query = { type: 'string', minLength: 1, description: 'the search query (never truncated)' };
const topN = { type: 'integer', minimum: 0, description: 'how many results to return; 0 or absent returns all (limits the response, not the scoring)' };
const model = { type: 'string', description: 'name of a configured cascade; absent selects the default cascade' };
const deadline = { type: 'integer', minimum: 1, description: 'time budget in milliseconds (overrides X-Request-Deadline-Ms); values above 300000 (5 minutes) count as 300000' };

/** A document as Cohere v1, Jina and vLLM accept it: a string or an object with `text`. */
const docItem = {
  anyOf: [
    { type: 'string' },
    { type: 'object', required: ['text'], properties: { text, title: { type: 'string' }, id: { type: 'string' } } },
  ],
};

export const schemas = {
  ErrorResponse: {
    type: 'object',
    required: ['error'],
    properties: {
      error: {
        type: 'object',
        required: ['code', 'message'],
        properties: { code: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
  CohereV2RerankRequest: {
    type: 'object',
    required: ['query', 'documents'],
    properties: {
      model: { ...model, description: 'name of a configured cascade; Cohere requires it, Winnow falls back to the default cascade' },
      query,
      documents: { type: 'array', items: docItem },
      top_n: topN,
      max_tokens_per_doc: { type: 'integer', minimum: 1, description: 'accepted for compatibility; documents are truncated to the model\'s own maximum length' },
      priority: { type: 'integer', description: 'accepted for compatibility; ignored' },
    },
  },
  RerankRequest: {
    type: 'object',
    required: ['query', 'documents'],
    properties: {
      model,
      query,
      documents: { type: 'array', items: docItem },
      top_n: topN,
      return_documents: { type: 'boolean', default: false },
    },
  },
  TeiRerankRequest: {
    type: 'object',
    required: ['query', 'texts'],
    properties: {
      query,
      texts: { type: 'array', items: { type: 'string' } },
      raw_scores: { type: 'boolean', default: false, description: 'raw logits instead of sigmoid scores' },
      return_text: { type: 'boolean', default: false },
      truncate: { type: 'boolean', description: 'accepted for compatibility; Winnow always truncates documents to the model\'s length' },
      truncation_direction: { type: 'string', enum: ['left', 'right', 'Left', 'Right'] },
      model,
    },
  },
  CascadeRequest: {
    type: 'object',
    required: ['query', 'documents'],
    properties: {
      query,
      documents: { type: 'array', items: docItem },
      top_n: topN,
      model,
      deadline_ms: deadline,
    },
  },
  SearchRequest: {
    type: 'object',
    required: ['query'],
    properties: {
      query,
      top_n: topN,
      model,
      deadline_ms: deadline,
      return_documents: { type: 'boolean', default: false },
    },
  },
  CohereV2RerankResponse: {
    type: 'object',
    required: ['id', 'results', 'meta'],
    properties: {
      id: { type: 'string' },
      results: {
        type: 'array',
        items: { type: 'object', required: ['index', 'relevance_score'], properties: { index: { type: 'integer' }, relevance_score: { type: 'number' } } },
      },
      meta: { type: 'object' },
    },
  },
  RerankResponse: {
    type: 'object',
    required: ['id', 'model', 'results', 'meta'],
    properties: {
      id: { type: 'string' },
      model: { type: 'string' },
      results: {
        type: 'array',
        items: {
          type: 'object',
          required: ['index', 'relevance_score'],
          properties: { index: { type: 'integer' }, relevance_score: { type: 'number' }, document: { type: 'object', required: ['text'] } },
        },
      },
      meta: { type: 'object' },
    },
  },
  TeiRerankResponse: {
    type: 'array',
    items: {
      type: 'object',
      required: ['index', 'score'],
      properties: { index: { type: 'integer' }, score: { type: 'number' }, text: { type: 'string' } },
    },
  },
  StageTrace: {
    type: 'object',
    required: ['stage', 'in', 'out', 'ms'],
    properties: { stage: { type: 'string' }, in: { type: 'integer' }, out: { type: 'integer' }, ms: { type: 'number' } },
  },
  CascadeResponse: {
    type: 'object',
    required: ['results', 'stages'],
    properties: {
      model: { type: 'string' },
      results: {
        type: 'array',
        items: {
          type: 'object',
          required: ['index', 'id', 'score', 'scores'],
          properties: {
            index: { type: 'integer' },
            id: { type: 'string' },
            score: { type: 'number', description: 'the final stage\'s raw score' },
            scores: { type: 'object', additionalProperties: { type: 'number' }, description: 'every stage\'s score, by stage name' },
          },
        },
      },
      stages: { type: 'array', items: { $ref: '#/components/schemas/StageTrace' } },
      degraded: { type: 'boolean' },
      skipped_stage: { type: 'string' },
    },
  },
  SearchResponse: {
    type: 'object',
    required: ['results', 'stages'],
    properties: {
      model: { type: 'string' },
      results: {
        type: 'array',
        items: {
          type: 'object',
          required: ['id', 'score', 'scores'],
          properties: {
            id: { type: 'string' },
            score: { type: 'number' },
            scores: { type: 'object', additionalProperties: { type: 'number' } },
            title: { type: 'string' },
            text: { type: 'string' },
          },
        },
      },
      stages: { type: 'array', items: { $ref: '#/components/schemas/StageTrace' } },
      degraded: { type: 'boolean' },
      skipped_stage: { type: 'string' },
    },
  },
} satisfies Record<string, Schema>;

export type SchemaName = keyof typeof schemas;

interface RouteDoc {
  method: 'get' | 'post';
  path: string;
  summary: string;
  request?: SchemaName;
  response?: SchemaName;
  /** non-JSON success body */
  text?: string;
}

export const ROUTE_DOCS: readonly RouteDoc[] = [
  { method: 'post', path: '/v2/rerank', summary: 'Cohere v2 rerank', request: 'CohereV2RerankRequest', response: 'CohereV2RerankResponse' },
  { method: 'post', path: '/v1/rerank', summary: 'Cohere v1 / Jina / vLLM rerank', request: 'RerankRequest', response: 'RerankResponse' },
  { method: 'post', path: '/rerank', summary: 'Text Embeddings Inference (TEI) rerank', request: 'TeiRerankRequest', response: 'TeiRerankResponse' },
  { method: 'post', path: '/v1/cascade', summary: 'Run a cascade over the given candidates, with per-stage scores and timings', request: 'CascadeRequest', response: 'CascadeResponse' },
  { method: 'post', path: '/v1/search', summary: 'First-pass retrieval over the server\'s index, then the cascade', request: 'SearchRequest', response: 'SearchResponse' },
  { method: 'get', path: '/health', summary: 'Liveness' },
  { method: 'get', path: '/ready', summary: 'Readiness: 200 once the models are warm, 503 while warming up and from the start of a drain (SIGTERM)' },
  { method: 'get', path: '/metrics', summary: 'Prometheus metrics', text: 'text/plain; version=0.0.4' },
];

const ERROR_STATUSES: Record<string, string> = {
  '400': 'malformed JSON or a request over a configured limit (the error names the limit and its value)',
  '401': 'missing or wrong bearer token',
  '404': 'unknown model',
  '408': 'headers or body not sent in time (headersTimeoutMs, requestTimeoutMs, bodyTimeoutMs)',
  '413': 'body larger than the configured limit',
  '415': 'a body that is not declared as JSON (Content-Type application/json or a +json type)',
  '422': 'body does not match the schema',
  '429': 'scoring queue full, or the queue ahead is predicted to outlast the request\'s deadline; retry after the Retry-After header',
  '503': 'shutting down, or request bodies held across requests at the server\'s budget (maxBufferedBytes); retry after the Retry-After header',
  '504': 'deadline passed before any stage completed',
};

/** Who may call what: decides the 401 responses and security requirements in the document. */
export interface AuthDoc {
  auth: boolean;
  publicMetrics?: boolean;
}

/**
 * The fastify route schema of one documented route: the request body schema fastify validates
 * with, and the headers, responses and security that @fastify/swagger turns into the route's
 * OpenAPI operation. Headers are documented here and checked by the server itself (a bad
 * X-Request-Deadline-Ms gets a 400 naming the header, not a schema error).
 */
export function routeSchema(path: string, opts: AuthDoc): Schema {
  const r = ROUTE_DOCS.find((d) => d.path === path);
  if (!r) throw new Error(`no documentation for route ${path}`);
  const error = (description: string): Schema => ({ description, content: { 'application/json': { schema: schemas.ErrorResponse } } });
  const response: Record<string, unknown> = {};
  if (r.response) response['200'] = { description: 'OK', content: { 'application/json': { schema: schemas[r.response] } } };
  else if (r.text) response['200'] = { description: 'OK', content: { [r.text]: { schema: { type: 'string' } } } };
  else response['200'] = { description: 'OK', content: { 'application/json': { schema: { type: 'object' } } } };
  const op: Schema = { summary: r.summary, operationId: `${r.method}${r.path.replace(/[^a-z0-9]+/gi, '_')}`, response };
  if (r.request) {
    op.body = schemas[r.request];
    op.headers = {
      type: 'object',
      properties: {
        'X-Request-Deadline-Ms': { type: 'integer', minimum: 1, description: 'time budget in milliseconds; values above 300000 (5 minutes) count as 300000' },
        'X-Request-Id': { type: 'string', description: 'echoed back; generated when absent' },
      },
    };
    for (const [status, description] of Object.entries(ERROR_STATUSES)) {
      if (status === '401' && !opts.auth) continue;
      response[status] = error(description);
    }
    if (opts.auth) op.security = [{ bearer: [] }];
  } else if (r.path === '/ready') {
    response['503'] = error('not ready: warming up (models loading) or draining (shutting down)');
  } else if (r.path === '/metrics' && opts.auth && !opts.publicMetrics) {
    response['401'] = error(ERROR_STATUSES['401']);
    op.security = [{ bearer: [] }];
  }
  return op;
}

/** The parts of the OpenAPI 3.1 document that are not routes. */
export function openApiBase(opts: AuthDoc & { title: string; version: string; limits: Record<string, number>; models: string[] }): Schema {
  const limits = Object.entries(opts.limits).map(([k, v]) => `${k}=${v}`).join(', ');
  return {
    openapi: '3.1.0',
    info: {
      title: opts.title,
      version: opts.version,
      description: `Winnow cascade reranking server. Models (cascades): ${opts.models.join(', ')}. Limits: ${limits}.`,
    },
    components: {
      schemas,
      ...(opts.auth ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
    },
  };
}
