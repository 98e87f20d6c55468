/**
 * Input checks of the sparse attention entry points, run before anything changes
 * (sparse-attention.ts NOTE(4)): typed errors saying what was expected and what was given.
 */
import type { Arena } from '../../core/arena.js';
import { ConfigError, OutOfRangeError, ShapeError, checkInt } from '../../core/errors.js';
import type { BlockStorage } from '../paged/block-storage.js';

/** A row: table (Int32Array, logical -> physical id in [0, nBlocks)) covering seqLen tokens. */
export function checkRow(st: BlockStorage, table: Int32Array, seqLen: number): void {
  if (!(table instanceof Int32Array)) throw new ConfigError('block table', 'an Int32Array (logical block -> physical block id)', typeof table);
  checkInt('seqLen', seqLen, 0);
  const nBlocks = Math.ceil(seqLen / st.blockLen);
  if (table.length < nBlocks) throw new ShapeError(`block table length (seqLen ${seqLen} / blockLen ${st.blockLen}, rounded up)`, `at least ${nBlocks}`, table.length);
  for (let i = 0; i < nBlocks; i++) {
    if (table[i]! < 0 || table[i]! >= st.nBlocks) throw new OutOfRangeError(`block table[${i}] (physical block id)`, `an integer in [0, ${st.nBlocks})`, table[i]);
  }
}

/** Queries: positions (Int32Array, >= 0), q [nTokens, nqHeads, headDim] and (when given or needed) lse [nTokens, nqHeads]. */
export function checkQueries(arena: Arena, nqHeads: number, headDim: number, qOff: number, lseOff: number, positions: Int32Array, needLse: boolean): void {
  if (!(positions instanceof Int32Array)) throw new ConfigError('positions', 'an Int32Array [nTokens]', typeof positions);
  for (let i = 0; i < positions.length; i++) if (positions[i]! < 0) throw new OutOfRangeError(`positions[${i}]`, 'an integer >= 0', positions[i]);
  checkSpan(arena, 'q', qOff, positions.length * nqHeads * headDim);
  if (needLse || lseOff >= 0) checkSpan(arena, 'lse', lseOff, positions.length * nqHeads);
}

/** Throws OutOfRangeError unless [off, off + 4n) is a 4-aligned f32 span inside the arena. */
export function checkSpan(arena: Arena, what: string, off: number, n: number): void {
  const mapped = arena.mappedBytes;
  if (typeof off !== 'number' || !Number.isInteger(off) || off < 0 || off % 4 !== 0 || off + 4 * n > mapped) {
    throw new OutOfRangeError(`${what} arena byte offset ([${n}] f32)`, `a multiple of 4 in [0, ${mapped - 4 * n}]`, off);
  }
}
