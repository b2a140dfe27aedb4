import assert from 'node:assert/strict';
import { test } from 'node:test';
import { COMMANDS } from '../../src/cli/main.js';
import { assertCleanFailure, winnow } from './run.js';

// Every command and subcommand, from the same table main() dispatches on.
const defs = Object.entries(COMMANDS).flatMap(([name, c]) => {
  assert.ok(c.defs.some((d) => d.name === name), `command ${name} has no definition of its own`);
  return c.defs;
});

test('winnow --help lists every command on stdout and exits 0', () => {
  const r = winnow(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const name of Object.keys(COMMANDS)) assert.match(r.stdout, new RegExp(`^  ${name} `, 'm'));
});

for (const def of defs) {
  test(`winnow ${def.name} --help and -h print every flag the parser accepts, to stdout, exit 0`, () => {
    for (const h of ['--help', '-h']) {
      const r = winnow([...def.name.split(' '), h]);
      assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
      assert.equal(r.stderr, '');
      assert.match(r.stdout, new RegExp(`^usage: winnow ${def.name} `));
      for (const [flag, f] of Object.entries(def.flags)) {
        assert.match(r.stdout, new RegExp(`^  (-${f.short}, )?--${flag}\\b`, 'm'), `--${flag} missing from winnow ${def.name} --help`);
      }
    }
  });

  test(`winnow ${def.name} refuses an unknown flag with the closest known one`, () => {
    const [first] = Object.keys(def.flags).filter((f) => f.length > 4);
    const typo = first ? `--${first.slice(0, -1)}x` : '--hlep';
    const r = winnow([...def.name.split(' '), typo]);
    assertCleanFailure(r, 2, new RegExp(`Unknown option '${typo}'; did you mean "--${first ?? 'help'}"\\?`));
  });
}
