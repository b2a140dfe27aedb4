/**
 * Names that reach us from outside (repository metadata, archive entries, manifests, flags) are
 * data, never paths: a Maven `<release>` of `../../x` or a wheel entry `/etc/cron.d/x` must not
 * decide where a file lands, and a checksum from the same server proves nothing about that.
 * Every place that turns such a name into a file path goes through `safeJoin`; every version
 * that ends up in a URL or a file name goes through `checkVersion`.
 *
 * Kept under src/models/ for now; nothing here is model-specific, so src/core could host it once
 * another area (e.g. collections) needs the same check.
 */
import path from 'node:path';
import { WinnowError } from '../core/errors.js';

function unsafe(name: string, what: string, why: string): WinnowError {
  return new WinnowError('bad_input', `refusing ${what} ${JSON.stringify(name)}: ${why}`,
    'names from a repository, an archive, a manifest or a flag must be relative paths that stay inside their folder; ' +
      'nothing was written for this one (a repository that sends such names is broken or hostile)');
}

/**
 * Checks that `name` is a relative path made of plain segments, and returns it. `what` names the
 * value in the error ("Maven version", "wheel entry", ...). Refused: empty names, NUL bytes,
 * backslashes (a separator on Windows, so a zip written there may mean one), drive letters and
 * absolute paths, and any `..` segment (even one that would come back inside: no model file
 * needs it, and accepting it invites mistakes).
 */
export function checkRelativePath(name: string, what: string): string {
  if (typeof name !== 'string' || name === '') throw unsafe(String(name), what, 'it is empty');
  if (name.includes('\0')) throw unsafe(name, what, 'it contains a NUL byte');
  if (name.includes('\\')) throw unsafe(name, what, 'it contains a backslash');
  if (/^[A-Za-z]:/.test(name) || path.isAbsolute(name)) throw unsafe(name, what, 'it is an absolute path');
  if (name.split('/').includes('..')) throw unsafe(name, what, 'it climbs out of its folder with ..');
  return name;
}

/** `root/name`, once `name` passed `checkRelativePath` and resolves to something strictly inside `root`. */
export function safeJoin(root: string, name: string, what: string): string {
  checkRelativePath(name, what);
  const base = path.resolve(root);
  const full = path.resolve(base, name);
  // Belt and braces over the checks above: whatever path.resolve makes of it must stay under root.
  if (full === base || !full.startsWith(base + path.sep)) throw unsafe(name, what, `it does not stay inside ${base}`);
  return full;
}

/**
 * One path segment (a file or folder name), e.g. a wheel's file name or a jar name built from a
 * version: no separators at all, not `.` or `..`.
 */
export function checkFileName(name: string, what: string): string {
  if (typeof name !== 'string' || name === '') throw unsafe(String(name), what, 'it is empty');
  if (/[/\\\0]/.test(name)) throw unsafe(name, what, 'a file name may not contain /, \\ or NUL');
  if (name === '.' || name === '..') throw unsafe(name, what, 'it is not a file name');
  if (/^[A-Za-z]:/.test(name)) throw unsafe(name, what, 'it starts with a drive letter');
  return name;
}

/**
 * Maven and PyPI versions in practice: `1.0.0`, `1.0.0-beta3`, `0.3.0.post1`, `1!2.0+local`.
 * Starts with a letter or digit, then letters, digits and `._+!-`, no `..`, at most 128 characters;
 * anything else is not a version we would put in a URL or a file name.
 */
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._+!-]{0,127}$/;

export function isVersion(v: string): boolean {
  return VERSION.test(v) && !v.includes('..');
}

export function checkVersion(version: string, what: string): string {
  if (typeof version !== 'string' || !isVersion(version)) {
    throw new WinnowError('bad_input', `refusing ${what} ${JSON.stringify(String(version).slice(0, 200))}: not a version`,
      'versions are letters, digits and . _ + ! - (e.g. 1.0.0-beta3), starting with a letter or digit');
  }
  return version;
}
