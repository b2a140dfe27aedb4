import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface ServeCli {
  url: string;
  /** SIGTERM, then wait for the process to exit */
  stop(): Promise<void>;
}

/**
 * Starts the real `winnow serve` CLI on a free port (`serve ARGS --port 0`) and resolves with its
 * URL once the server logs `until` (`listening`, or `ready` to wait for the warm-up too). A
 * server that exits first rejects with its stderr.
 */
export async function startServeCli(args: readonly string[], until: 'listening' | 'ready' = 'listening'): Promise<ServeCli> {
  const child = spawn(process.execPath, [path.resolve('bin/winnow.js'), 'serve', ...args, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, WINNOW_NO_PROGRESS: '1' },
  });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await exited;
  };
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let at = '';
      createInterface({ input: child.stdout }).on('line', (line) => {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e.event === 'listening') at = e.url as string;
        if (e.event === until) resolve(at);
      });
      child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${stderr}`)));
    });
    return { url, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
