/**
 * The built-in kinds of stage. Each module registers its names in the one registry
 * (`core/registry.ts`) when loaded; importing them here is all it takes to make a new built-in
 * available to specs, CLI flags and the server.
 */
import './cascade/cutoff.js';
import './cascade/fusion.js';
import './cascade/early-exit.js';
import './retrieve/retriever.js';
import './retrieve/bm25/stage.js';
import './retrieve/collection/env.js';
import './retrieve/opensearch/retriever.js';
import './rerank/rerank.js';
import './rerank/load.js';
import './rerank/remote/index.js';
import './rerank/llm/index.js';
