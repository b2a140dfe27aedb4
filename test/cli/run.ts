import { spawnSync } from 'node:child_process';
import path from 'node:path';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real `winnow` binary, as a user would, with a private WINNOW_HOME. */
export function winnow(args: string[], env: Record<string, string> = {}): CliResult {
  const r = spawnSync(process.execPath, [path.resolve('bin/winnow.js'), ...args], {
    encoding: 'utf8',
    env: { ...process.env, WINNOW_NO_PROGRESS: '1', ...env },
    timeout: 120_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A user-facing failure: non-zero exit, the message asked for, and no stack trace. */
export function assertCleanFailure(r: CliResult, code: number, message: RegExp): void {
  const where = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  if (r.code !== code) throw new Error(`expected exit ${code}; ${where}`);
  if (!message.test(r.stderr)) throw new Error(`stderr does not match ${message}; ${where}`);
  if (/\n\s+at .+\(.*:\d+:\d+\)/.test(r.stderr) || /internal error/.test(r.stderr)) throw new Error(`stack trace or internal error; ${where}`);
}
