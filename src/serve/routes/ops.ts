/**
 * Routes for operators and machines: liveness (`/health`), readiness (`/ready`), Prometheus
 * metrics (`/metrics`) and the OpenAPI document (`/openapi.json`).
 */
import type { FastifyInstance } from 'fastify';
import { errorBody } from '../errors.js';
import type { Registry } from '../metrics.js';
import { type AuthDoc, routeSchema } from '../schemas.js';

export interface Readiness {
  /** why the server is not ready now (`warming`, `draining`), or undefined when it is */
  notReady(): { code: string; message: string } | undefined;
  models(): string[];
}

export function opsRoutes(app: FastifyInstance, metrics: Registry, readiness: Readiness, doc: AuthDoc): void {
  // alive as long as the process answers, also while warming and draining: restarting a
  // draining replica would cut the requests it is finishing
  app.get('/health', { schema: routeSchema('/health', doc) }, async () => ({ status: 'ok' }));

  // a load balancer's check: false until the models are warm and from the moment a drain
  // starts, so traffic moves elsewhere before the server stops accepting
  app.get('/ready', { schema: routeSchema('/ready', doc) }, async (_req, reply) => {
    const why = readiness.notReady();
    if (why) return reply.code(503).header('Retry-After', '1').send(errorBody(why.code, why.message));
    return { status: 'ready', models: readiness.models() };
  });

  app.get('/metrics', { schema: routeSchema('/metrics', doc) }, async (_req, reply) => {
    reply.type(metrics.contentType);
    return metrics.render();
  });

  app.get('/openapi.json', { schema: { hide: true } }, async (_req, reply) => {
    reply.type('application/json');
    return JSON.stringify(app.swagger());
  });
}
