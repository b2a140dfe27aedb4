import * as fs from 'node:fs';
import * as path from 'node:path';
import { IDENTITY, MANIFEST, pad, type Manifest } from './manifest.js';
import { fsyncDir, tmpNameOf } from './files.js';

const JOURNAL = /^gen-\d{6}\.journal$/;

/**
 * The record of what one write touches, kept so that nothing is ever deleted by pattern: every
 * file the write will create (and its temp name) is appended, and fsynced, before it is
 * created; just before the commit, the files the new generation drops are appended too.
 * Cleaning up is then one rule for every outcome: delete the journaled files the committed
 * manifest does not name. A write that fails or is killed before its commit loses its own
 * files; one that committed loses the previous generation's leftovers. Files a person put in
 * the folder are never in a journal, so they are never touched.
 */
export class Journal {
  readonly file: string;
  private readonly fd: number;
  private readonly names: string[] = [];

  constructor(
    readonly dir: string,
    generation: number,
  ) {
    this.file = `gen-${pad(generation)}.journal`;
    this.fd = fs.openSync(path.join(dir, this.file), 'w');
    fsyncDir(dir);
  }

  /** Records files this write is about to create (with the temp names they are written under). */
  creating(...names: string[]): void {
    this.append(names.flatMap((n) => [n, tmpNameOf(n)]));
  }

  /** Records files the new generation no longer needs (removed once it is committed). */
  obsolete(names: readonly string[]): void {
    this.append(names);
  }

  private append(names: readonly string[]): void {
    if (names.length === 0) return;
    this.names.push(...names);
    fs.writeSync(this.fd, `${names.join('\n')}\n`);
    fs.fsyncSync(this.fd);
  }

  /** Applies the rule for `committed` (the manifest now on disk) and removes the journal. */
  close(committed: Manifest): void {
    fs.closeSync(this.fd);
    cleanUp(this.dir, this.names, committed);
    fs.rmSync(path.join(this.dir, this.file), { force: true });
  }
}

function cleanUp(dir: string, names: readonly string[], committed: Manifest): void {
  for (const name of names) {
    // Journal lines come from our own writes; anything that could leave the folder is ignored.
    if (!name || name.includes('/') || name.includes(path.sep) || name === '.' || name === '..') continue;
    if (name === MANIFEST || name === IDENTITY || name in committed.files) continue;
    fs.rmSync(path.join(dir, name), { force: true });
  }
}

/**
 * Finishes the clean-up of writes that were killed (or crashed after their commit): run by the
 * next writer under the lock, against the manifest on disk.
 */
export function sweepJournals(dir: string, committed: Manifest): void {
  for (const f of fs.readdirSync(dir)) {
    if (!JOURNAL.test(f)) continue;
    const names = fs.readFileSync(path.join(dir, f), 'utf8').split('\n');
    cleanUp(dir, names, committed);
    fs.rmSync(path.join(dir, f), { force: true });
  }
}

/** Every file a journal in `dir` names (for removing a whole collection). */
export function journaledFiles(dir: string): string[] {
  const out: string[] = [];
  for (const f of fs.readdirSync(dir)) if (JOURNAL.test(f)) out.push(f, ...fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean));
  return out;
}
