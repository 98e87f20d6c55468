// The README's usage example is documentation that must stay true: run it against the build
// and check every `console.log(...) // expected` line prints what its comment says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

/** Far above an example's run time (a few seconds at most). */
const EXAMPLE_TIMEOUT_MS = 120_000;

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

test('README usage examples run and print what their comments say', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(blocks.length >= 2, 'README has its ```ts blocks');
  const dir = mkdtempSync(join(tmpdir(), 'kvcache-readme-'));
  try {
    const index = pathToFileURL(join(root, 'dist/src/index.js')).href;
    blocks.forEach((block, i) => {
      const code = block
        .replace(/from 'kvcache'/g, `from '${index}'`)
        .replace(/\/tmp\/demo\.kvsnap/g, join(dir, 'demo.kvsnap'))
        .replace(/\/tmp\/kvcache-tiny/g, join(dir, 'tiny'))
        .replace(/\/tmp\/kvcache-kt\.dump/g, join(dir, 'kt.dump'));
      const file = join(dir, `example${i}.mjs`);
      writeFileSync(file, code);
      // A bounded run: an example that never exits fails here (with what it printed) instead of
      // hanging the suite (seen once in CI: block 3 printed everything, then did not exit).
      const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: EXAMPLE_TIMEOUT_MS });
      assert.ok(r.error === undefined, `block ${i}: did not finish within ${EXAMPLE_TIMEOUT_MS} ms (${r.error?.message}); stdout: ${JSON.stringify(r.stdout)}`);
      assert.equal(r.status, 0, `block ${i}: ${r.stderr}`);
      const expected = [...code.matchAll(/console\.log\(.*\);\s*\/\/\s*(.+)$/gm)].map((x) => x[1]!.trim());
      assert.ok(expected.length >= 3, `block ${i} checks at least 3 outputs`);
      assert.deepEqual(r.stdout.trim().split('\n'), expected, `block ${i}`);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
