import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';

// Schema-driven fuzzing against the served /openapi.json (schemathesis, fixed seed, bounded
// examples): no 5xx but the documented 504, no crash. `npm test` installs .venv/serve first.
const ready = existsSync('.venv/serve/bin/schemathesis');

test('schemathesis finds no server errors or schema violations', { skip: !ready && !process.env.CI && 'no .venv/serve (bash tools/test-setup.sh)', timeout: 300_000 }, () => {
  const r = spawnSync('bash', ['tools/fuzz_serve.sh', '30', '1'], { encoding: 'utf8', timeout: 280_000 });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /other 5xx: 0/);
});
