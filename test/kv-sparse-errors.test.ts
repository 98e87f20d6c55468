/**
 * Bad configuration and bad input throw typed errors that say what was expected and what was
 * given, and a rejected call changes nothing (stored selections, anchors, importance).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Arena } from '../src/core/arena.js';
import { ConfigError, DisposedError, KVCacheError, OutOfRangeError, ShapeError } from '../src/core/errors.js';
import { kernelsFor } from '../src/kernels/registry.js';
import { SparseAttention } from '../src/kv/sparse/sparse-attention.js';
import { parseAnchorType, parseRetrievalType, resolveSparseConfig, type SparseOptions } from '../src/kv/sparse/sparse-config.js';
import { normalArray, mulberry32 } from './helpers/rng.js';
import { allocF32, buildRow, lastPositions, putF32 } from './helpers/sparse-fixture.js';

const arena = new Arena({ initialBytes: 16 << 20, maximumBytes: 256 << 20 });
const ks = kernelsFor(arena, 1);
after(() => arena.dispose());

const SHAPE = { nLayers: 4, nqHeads: 4, nKvHeads: 2, headDim: 32, blockLen: 16 };

test('bad options: ConfigError naming the option, the expected and the given value', () => {
  const bad: [SparseOptions, string, unknown][] = [
    [{ anchorType: 'foo' as never }, 'anchorType', 'foo'],
    [{ retrievalType: 'head' as never }, 'retrievalType', 'head'],
    [{ anchorType: 'quest', anchorNum: 1 }, 'quest', 1],
    [{ anchorNum: 0 }, 'anchorNum', 0],
    [{ anchorNum: 17 }, 'anchorNum', 17],
    [{ pick: -2 }, 'pick', -2],
    [{ init: -1 }, 'init', -1],
    [{ local: 1.5 }, 'local', 1.5],
    [{ tokenStep: 0 }, 'tokenStep', 0],
    [{ layerStep: 0 }, 'layerStep', 0],
    [{ layerOffset: 4 }, 'layerOffset', 4],
    [{ denseLayers: 5 }, 'denseLayers', 5],
    [{ denseFallback: 'yes' as never }, 'denseFallback', 'yes'],
    [{ importanceQueries: -1 }, 'importanceQueries', -1],
    [{ decodeImportance: 'always' as never }, 'decodeImportance', 'always'],
  ];
  for (const [opts, what, given] of bad) {
    assert.throws(() => resolveSparseConfig(opts, SHAPE), (e: unknown) => {
      assert.ok(e instanceof ConfigError, `${JSON.stringify(opts)}: ${e}`);
      assert.ok(e.message.includes(what), e.message);
      assert.equal(e.given, given);
      return true;
    });
  }
  assert.throws(() => resolveSparseConfig({}, { ...SHAPE, nqHeads: 3 }), (e: unknown) => e instanceof ConfigError && e.given === 3 && /multiple of 2/.test(e.message));
  assert.throws(() => resolveSparseConfig({}, { ...SHAPE, blockLen: 0 }), ConfigError);
  const c = resolveSparseConfig({}, SHAPE);
  assert.deepEqual(
    { ...c },
    { anchorType: 'dynamic', anchorNum: 1, retrievalType: 'layer', pick: 32, init: 4, local: 256, tokenStep: 100, layerStep: 1, layerOffset: 0, denseLayers: 2, denseFallback: true, importanceQueries: 32, decodeImportance: 'tail', nSlots: 4 },
  );
  assert.equal(resolveSparseConfig({ anchorType: 'quest' }, { ...SHAPE, blockLen: 128 }).anchorNum, 2);
  assert.equal(resolveSparseConfig({ anchorType: 'quest' }, { ...SHAPE, blockLen: 128 }).init, 1);
  assert.equal(resolveSparseConfig({ anchorType: 'quest' }, { ...SHAPE, blockLen: 128 }).decodeImportance, 'off');
  assert.equal(parseAnchorType('FIXED_ANCHOR'), 'fixed');
  assert.equal(parseAnchorType('Block_Max'), 'block_max');
  assert.equal(parseRetrievalType('KVHEAD'), 'kvhead');
  assert.throws(() => parseAnchorType('mean'), ConfigError);
  assert.throws(() => parseRetrievalType(3), ConfigError);
});

test('bad input to attend / onBlocksFilled / afterPrefill / invalidateBlocks: typed errors, nothing changed', () => {
  const rng = mulberry32(1);
  const seqLen = 16 * 9 + 3;
  const row = buildRow({ arena, nKvHeads: 2, headDim: 32, blockLen: 16, seqLen, seed: 2, nLayers: 4 });
  assert.throws(() => new SparseAttention(row.storage, 3), ConfigError);
  const sp = new SparseAttention(row.storage, 4, { anchorType: 'dynamic', pick: 2, init: 1, local: 1, denseLayers: 0 });
  const q = putF32(arena, normalArray(rng, 2 * 4 * 32));
  const out = allocF32(arena, 2 * 4 * 32);
  const lse = allocF32(arena, 2 * 4);
  const pos = lastPositions(seqLen, 1);
  sp.afterPrefill(ks, 0, row.table, 0, seqLen, q, pos);
  sp.attend(ks, 0, 0, row.table, seqLen, q, out, lse, pos, 0);
  const selection = sp.selection(0, 0);
  const anchors = sp.getAnchors(0, row.table[3]!);
  const importance = sp.getImportance(0, row.table[9]!);
  const attend = (over: Partial<{ layer: number; row: number; table: Int32Array; seqLen: number; q: number; out: number; lse: number; pos: Int32Array; tokenIdx: number }>, call = {}) => () =>
    sp.attend(ks, over.layer ?? 0, over.row ?? 0, over.table ?? row.table, over.seqLen ?? seqLen, over.q ?? q, over.out ?? out, over.lse ?? lse, over.pos ?? pos, over.tokenIdx ?? 0, call);
  const cases: [() => unknown, new (...a: never[]) => KVCacheError][] = [
    [attend({ layer: 4 }), OutOfRangeError],
    [attend({ row: -1 }), ConfigError],
    [attend({ tokenIdx: 1.5 }), ConfigError],
    [attend({ table: [...row.table] as never }), ConfigError],
    [attend({ table: row.table.subarray(0, 9) }), ShapeError],
    [attend({ table: Int32Array.from(row.table, (b, i) => (i === 4 ? row.storage.nBlocks : b)) }), OutOfRangeError],
    [attend({ table: Int32Array.from(row.table, (b, i) => (i === 4 ? -1 : b)) }), OutOfRangeError],
    [attend({ seqLen: -1 }), ConfigError],
    [attend({ pos: [seqLen - 1] as never }), ConfigError],
    [attend({ pos: Int32Array.of(-1) }), OutOfRangeError],
    [attend({ q: q + 2 }), OutOfRangeError],
    [attend({ lse: arena.mappedBytes - 8 }), OutOfRangeError],
    [attend({ out: -4 }), OutOfRangeError],
    [attend({ out: q }), ConfigError], // decode importance reads q after the attention
    [attend({}, { pick: -2 }), ConfigError],
    [attend({}, { local: -1 }), ConfigError],
    [attend({}, { scale: NaN }), ConfigError],
    [() => sp.onBlocksFilled(0, row.table, 20, 10), ConfigError],
    [() => sp.onBlocksFilled(0, row.table.subarray(0, 3), 0, seqLen), ShapeError],
    [() => sp.afterPrefill(ks, 0, row.table, seqLen + 1, seqLen, q, pos), ConfigError],
    [() => sp.accumulateImportance(ks, 0, row.table, seqLen, q + 1, pos), OutOfRangeError],
    [() => sp.invalidateBlocks([row.table[9]!, row.storage.nBlocks]), OutOfRangeError],
  ];
  cases.forEach(([fn, type], i) => assert.throws(fn, (e: unknown) => e instanceof type && e.message.includes('expected'), `case ${i}`));
  assert.deepEqual(sp.selection(0, 0), selection, 'selection unchanged');
  assert.deepEqual(sp.getAnchors(0, row.table[3]!), anchors, 'anchors unchanged');
  assert.deepEqual(sp.getImportance(0, row.table[9]!), importance, 'importance unchanged');
  assert.ok(importance.some((x) => x !== 0), 'the tail block has importance to lose');
  sp.dispose();
  assert.throws(attend({}), DisposedError);
  row.storage.dispose();
});
