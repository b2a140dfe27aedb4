import { WinnowError } from '../../core/errors.js';
import type { Scorer } from '../scorer.js';
import type { RemoteOptions } from './base.js';
import { cohereScorer, type CohereOptions } from './cohere.js';
import { jinaScorer, type JinaOptions } from './jina.js';
import { mixedbreadScorer, type MixedbreadOptions } from './mixedbread.js';
import { pineconeScorer, type PineconeOptions } from './pinecone.js';
import { teiScorer, type TeiOptions } from './tei.js';
import { vllmScorer, type VllmOptions } from './vllm.js';
import { voyageScorer, type VoyageOptions } from './voyage.js';
import { winnowScorer, type WinnowRemoteOptions } from './winnow.js';
import { registry } from '../../core/registry.js';

export { RemoteScorer, type RemoteOptions, type WireFormat } from './base.js';
export { HttpClient, RemoteError, type HttpOptions } from './http.js';
export * from './native.js';
export { cohereScorer, jinaScorer, mixedbreadScorer, pineconeScorer, teiScorer, vllmScorer, voyageScorer, winnowScorer };
export type { CohereOptions, JinaOptions, MixedbreadOptions, PineconeOptions, TeiOptions, VllmOptions, VoyageOptions, WinnowRemoteOptions };

/**
 * Options for `remoteScorer`: the shared ones plus whatever the provider takes (see its
 * `*Options` type). Spec files pass them through as written.
 */
export type RemoteScorerOptions = RemoteOptions & { model?: string } & Record<string, unknown>;

type Provider = 'cohere' | 'voyage' | 'jina' | 'mixedbread' | 'pinecone' | 'tei' | 'vllm' | 'winnow';

const ALIASES: Record<string, Provider> = {
  cohere: 'cohere',
  voyage: 'voyage',
  voyageai: 'voyage',
  jina: 'jina',
  mixedbread: 'mixedbread',
  mxbai: 'mixedbread',
  pinecone: 'pinecone',
  tei: 'tei',
  vllm: 'vllm',
  infinity: 'vllm',
  openai: 'vllm',
  winnow: 'winnow',
};

/** The parts of a remote scorer ref; `target` is a model name for hosted APIs, a URL otherwise. */
export interface RemoteRef {
  provider: Provider;
  model?: string;
  baseUrl?: string;
}

/** True when `ref` names a remote scorer (so a spec loader can tell it from a model folder). */
export function isRemoteRef(ref: string): boolean {
  const m = /^([a-z]+):/.exec(ref);
  return m !== null && m[1] in ALIASES && !/^[a-z]:[\\/]/i.test(ref);
}

/**
 * Parses a remote scorer ref:
 *
 * ```
 * ref      := provider ":" target
 * cohere:<model>                       cohere:rerank-v3.5          (COHERE_API_KEY)
 * voyage:<model>                       voyage:rerank-2             (VOYAGE_API_KEY)
 * jina:<model>                         jina:jina-reranker-v2-base-multilingual
 * mixedbread:<model> | mxbai:<model>   mixedbread:mxbai-rerank-large-v1
 * pinecone:<model>                     pinecone:bge-reranker-v2-m3
 * tei:[<url>]                          tei:http://host:8080        (empty → TEI_URL)
 * vllm:<url>[/<model>]                 vllm:http://host:8000/BAAI/bge-reranker-v2-m3
 *   (aliases infinity:, openai:)       everything after host:port is the model name, slashes included
 * winnow:<url>[/<cascade>]             winnow:http://host:7700/fast  (empty → WINNOW_URL)
 * ```
 * A hosted provider's model may also come from `options.model`; a model in both places must agree.
 */
export function parseRemoteRef(ref: string): RemoteRef {
  const colon = ref.indexOf(':');
  const name = colon < 0 ? '' : ref.slice(0, colon).toLowerCase();
  const provider = ALIASES[name];
  if (!provider) {
    throw new WinnowError(
      'bad_spec',
      `not a remote scorer ref: "${ref}"`,
      `write provider:target with provider one of ${Object.keys(ALIASES).join(', ')}`,
    );
  }
  const target = ref.slice(colon + 1).trim();
  switch (provider) {
    case 'tei':
      return { provider, baseUrl: target || undefined };
    case 'vllm':
    case 'winnow': {
      if (!target) return { provider };
      const { origin, rest } = splitUrl(target, ref);
      return { provider, baseUrl: origin, model: rest || undefined };
    }
    default:
      if (!target) throw new WinnowError('bad_spec', `${ref}: name the model, e.g. ${name}:<model>`);
      return { provider, model: target };
  }
}

function splitUrl(target: string, ref: string): { origin: string; rest: string } {
  let u: URL;
  try {
    u = new URL(target);
  } catch {
    throw new WinnowError('bad_spec', `${ref}: "${target}" is not a URL`, 'write it with a scheme, e.g. http://localhost:8000');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new WinnowError('bad_spec', `${ref}: only http(s) URLs are supported`);
  return { origin: u.origin, rest: decodeURIComponent(u.pathname.replace(/^\/+|\/+$/g, '')) };
}

/** Builds the scorer a ref names. See `parseRemoteRef` for the grammar and each `*Scorer` for options. */
export function remoteScorer(ref: string, options: RemoteScorerOptions = {}): Scorer {
  const parsed = parseRemoteRef(ref);
  if (parsed.model && options.model && parsed.model !== options.model) {
    throw new WinnowError('bad_spec', `${ref}: the ref names model "${parsed.model}" but options.model is "${options.model}"`);
  }
  const model = parsed.model ?? options.model;
  const base = parsed.baseUrl ?? options.baseUrl;
  switch (parsed.provider) {
    case 'cohere':
      return cohereScorer({ ...(options as CohereOptions), model });
    case 'voyage':
      return voyageScorer({ ...(options as VoyageOptions), model });
    case 'jina':
      return jinaScorer({ ...(options as JinaOptions), model });
    case 'mixedbread':
      return mixedbreadScorer({ ...(options as MixedbreadOptions), model });
    case 'pinecone':
      return pineconeScorer({ ...(options as PineconeOptions), model });
    case 'tei':
      return teiScorer({ ...(options as TeiOptions), baseUrl: base });
    case 'vllm':
      return vllmScorer({ ...(options as VllmOptions), baseUrl: base, model });
    case 'winnow': {
      const cascade = parsed.model ?? (options.cascade as string | undefined);
      return winnowScorer({ ...(options as WinnowRemoteOptions), baseUrl: base, cascade });
    }
  }
}

for (const [alias, provider] of Object.entries(ALIASES)) {
  registry.defineScorer(alias, (ref, options) => remoteScorer(ref, options), alias === provider ? `the ${provider} rerank API: \`${alias}:MODEL_OR_URL\`` : `alias of ${provider}:`);
}
