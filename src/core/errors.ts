/**
 * Typed errors. Every error thrown for bad input is a KVCacheError subclass whose
 * message says what was expected and what was given; `expected` and `given` carry
 * the same facts for programs. A broken internal invariant is an assert (a bug),
 * not one of these.
 */

function show(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' || v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  try {
    return JSON.stringify(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

export class KVCacheError extends Error {
  /** What the call required, as a short phrase or value. */
  readonly expected: unknown;
  /** What the call actually received. */
  readonly given: unknown;

  constructor(what: string, expected: unknown, given: unknown) {
    super(`${what}: expected ${show(expected)}, given ${show(given)}`);
    this.name = new.target.name;
    this.expected = expected;
    this.given = given;
  }
}

/** A tensor or buffer has the wrong length or shape. */
export class ShapeError extends KVCacheError {}
/** An unknown dtype, or a dtype that cannot be used here (e.g. headDim not a multiple of 32 for q8_0). */
export class DTypeError extends KVCacheError {}
/** A size or option is invalid: non-integer, negative, inconsistent (e.g. nHeads % nKvHeads != 0). */
export class ConfigError extends KVCacheError {}
/** An index (layer, row, position) is outside its valid range. */
export class OutOfRangeError extends KVCacheError {}
/** A request would exceed a capacity (cache length, arena size). */
export class CapacityError extends KVCacheError {}
/** The wasm32 memory limit (4 GiB) or the arena's own maximum would be exceeded. */
export class MemoryLimitError extends CapacityError {}
/** A file is malformed: wrong magic, truncated, inconsistent header. */
export class FormatError extends KVCacheError {}
/** A file has a format version this build does not read. */
export class VersionError extends FormatError {}
/** A section's checksum does not match its bytes. */
export class ChecksumError extends FormatError {}
/** An operation on an object that was disposed. */
export class DisposedError extends KVCacheError {}
/** A precondition about state (e.g. reading an empty cache). */
export class StateError extends KVCacheError {}
/** A kernel failed on a thread (a WebAssembly trap or an exception in a worker). */
export class KernelError extends KVCacheError {}
/** A worker thread of the pool stopped; the pool cannot be used any more. */
export class WorkerDiedError extends KVCacheError {}

/** Internal invariant check: failing means a bug in kvcache, not bad input. */
export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(`kvcache internal invariant broken: ${msg}`);
}

/** Throws ConfigError unless `v` is an integer in [min, max]. */
export function checkInt(name: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new ConfigError(name, range, v);
  }
  return v;
}

/** Throws OutOfRangeError unless `v` is an integer index in [0, n). */
export function checkIndex(name: string, v: unknown, n: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= n) {
    throw new OutOfRangeError(name, `an integer in [0, ${n})`, v);
  }
  return v;
}

/** Throws ShapeError unless an array-like has exactly `n` elements. */
export function checkLength(name: string, arr: { length: number }, n: number): void {
  if (arr.length !== n) throw new ShapeError(`${name} length`, n, arr.length);
}
