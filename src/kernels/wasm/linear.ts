/**
 * JS side of the WASM linear kernels (assembly/linear-*.ts): y = W x (matvec, one token) and
 * Y = X W^T (matmul, prefill), with W resident in the arena in its stored dtype.
 *
 *   W  [nOut, nIn]     at wOffset, rows of rowSizeBytes(wDtype, nIn) bytes, back to back
 *   x  [nIn] f32       at xOffset   (matmul: X [nTokens, nIn])
 *   y  [nOut] f32      at yOffset   (matmul: Y [nTokens, nOut])
 *
 *   const w = uploadWeights(arena, encodeArray('q8_0', weights));  // once, at load time
 *   matvecAt(rt, w, 'q8_0', nOut, nIn, xOffset, yOffset);          // per token: no allocation
 *
 * NOTE(1): matvecAt / matmulAt are the hot entry points: they validate, fill the argument
 *   block and run the kernel; the only buffer they need (the int8-quantized activations for
 *   q8_0 / q4_0 weights) is a named runtime scratch, allocated once and reused.
 * NOTE(2): Work items are weight rows (output columns), split across threads in whole grains of
 *   ROW_GRAIN rows. Each row's arithmetic is fixed by the kernel (linear-float.ts NOTE(1),
 *   linear-quant.ts NOTE(2)), so results are bit-identical for any thread count, and a matmul
 *   of one token equals the matvec.
 * NOTE(3): Calls smaller than PARALLEL_MIN_BYTES of weights run on the calling thread: waking
 *   the workers costs more than such a call.
 * NOTE(4): The kernels read the activations in their own order: f32 weights read x as given;
 *   f16 / bf16 weights read a copy permuted per 8-group (linear_permute_x); q8_0 / q4_0 weights
 *   read x quantized per 32-block. That staging is one pass over x per call, into a scratch.
 *   The activations' quantized form (q8_0 / q4_0 weights) is laid out for the kernels,
 *   not as ggml blocks (assembly/linear-quant.ts header): xq [nTokens, nIn] i16 in even/odd
 *   order, then xs [nTokens, nGroups * 4] f32 block scales (4-block groups, zero padded).
 */
import type { Arena } from '../../core/arena.js';
import { DTYPES, checkRowLength, isDType, rowSizeBytes, type DType } from '../../core/dtype.js';
import { ConfigError, DTypeError, OutOfRangeError, ShapeError, checkInt } from '../../core/errors.js';
import type { KernelRuntime } from './runtime.js';

/** Rows per work grain (a multiple of the kernels' 4-row tiles and 16-row matmul chunks). */
const ROW_GRAIN = 16;
/** Token rows per grain of the activation quantizer. */
const TOKEN_GRAIN = 4;
/** Below this many weight bytes per call, run on the calling thread only (NOTE(3)). */
const PARALLEL_MIN_BYTES = 1 << 16;
const QK = 32;

const MATVEC_KERNEL: Readonly<Record<DType, string>> = {
  f32: 'matvec_f32', f16: 'matvec_f16', bf16: 'matvec_bf16', q8_0: 'matvec_q8_0', q4_0: 'matvec_q4_0',
};
const MATMUL_KERNEL: Readonly<Record<DType, string>> = {
  f32: 'matmul_f32', f16: 'matmul_f16', bf16: 'matmul_bf16', q8_0: 'matmul_q8_0', q4_0: 'matmul_q4_0',
};

/** Copy stored weight bytes into a new 64-byte-aligned arena allocation; returns its offset. */
export function uploadWeights(arena: Arena, w: Uint8Array): number {
  if (!(w instanceof Uint8Array)) throw new ShapeError('weights', 'a Uint8Array of stored weight bytes', typeof w);
  const offset = arena.alloc(w.byteLength);
  arena.bytes.set(w, offset);
  return offset;
}

/** Validates a layer's dtype and shape; returns the bytes of one weight row. */
function checkShape(wDtype: DType, nOut: number, nIn: number): number {
  if (!isDType(wDtype)) throw new DTypeError('linear weight dtype', 'one of f32|f16|bf16|q8_0|q4_0', wDtype);
  checkInt('linear nOut', nOut, 1);
  checkInt('linear nIn', nIn, 1);
  checkRowLength(wDtype, nIn, 'linear nIn');
  return rowSizeBytes(wDtype, nIn);
}

/** Throws unless [offset, offset + sizeBytes) lies in the arena's allocatable range. */
function checkRange(arena: Arena, what: string, offset: number, sizeBytes: number, align: number): void {
  if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < arena.reservedBytes || offset + sizeBytes > arena.mappedBytes) {
    throw new OutOfRangeError(what, `an arena offset in [${arena.reservedBytes}, ${arena.mappedBytes - sizeBytes}]`, offset);
  }
  if (offset % align !== 0) throw new ConfigError(what, `a multiple of ${align}`, offset);
}

function overlaps(a: number, aBytes: number, b: number, bBytes: number): boolean {
  return a < b + bBytes && b < a + aBytes;
}

/** Validates every operand of a call; returns the bytes of one weight row. */
function checkCall(rt: KernelRuntime, wOffset: number, wDtype: DType, nOut: number, nIn: number, xOffset: number, nTokens: number, yOffset: number): number {
  const rowBytes = checkShape(wDtype, nOut, nIn);
  const arena = rt.arena;
  const wBytes = nOut * rowBytes;
  const xBytes = nTokens * nIn * 4;
  const yBytes = nTokens * nOut * 4;
  checkRange(arena, 'linear weight offset', wOffset, wBytes, 1);
  checkRange(arena, 'linear x offset', xOffset, xBytes, 4);
  checkRange(arena, 'linear y offset', yOffset, yBytes, 4);
  if (overlaps(yOffset, yBytes, wOffset, wBytes) || overlaps(yOffset, yBytes, xOffset, xBytes)) {
    throw new ConfigError('linear y range', 'disjoint from the weights and x', `y at ${yOffset} (${yBytes} bytes) overlapping`);
  }
  return rowBytes;
}

/** Byte offset (from the scratch base) of xs [nTokens, nGroups * 4] f32: right after xq [nTokens, nIn] i16. */
function xsOffsetOf(nIn: number, nTokens: number): number {
  return nTokens * nIn * 2; // a multiple of 64 (nIn is a multiple of 32)
}

/**
 * Quantize nTokens activation rows at xOffset (f32 [nTokens, nIn]) into the runtime's scratch
 * (NOTE(4)); returns the scratch base, where xq starts.
 */
function quantizeActivations(rt: KernelRuntime, xOffset: number, nIn: number, nTokens: number): number {
  const nGroups = Math.ceil(nIn / (4 * QK));
  // xq [nTokens, nIn] i16, then xs [nTokens, nGroups * 4] f32
  const base = rt.scratch('linear.xq', xsOffsetOf(nIn, nTokens) + nTokens * nGroups * 16);
  rt.args().ptr(xOffset).ptr(base).ptr(base + xsOffsetOf(nIn, nTokens)).i32(nIn);
  if (nTokens < 2 * TOKEN_GRAIN) rt.runLocal('linear_quantize_x', 0, nTokens);
  else rt.parallelFor('linear_quantize_x', 0, nTokens, TOKEN_GRAIN);
  return base;
}

/**
 * Stage nTokens activation rows at xOffset in the even/odd order the f16 / bf16 kernels read
 * (assembly/linear-float.ts NOTE(4)); returns the scratch offset of the permuted rows.
 */
function permuteActivations(rt: KernelRuntime, xOffset: number, nIn: number, nTokens: number): number {
  const xp = rt.scratch('linear.xp', nTokens * nIn * 4); // [nTokens, nIn] f32
  rt.args().ptr(xOffset).ptr(xp).i32(nIn);
  if (nTokens < 2 * TOKEN_GRAIN) rt.runLocal('linear_permute_x', 0, nTokens);
  else rt.parallelFor('linear_permute_x', 0, nTokens, TOKEN_GRAIN);
  return xp;
}

/** The x the float kernels read: as given (f32 weights) or permuted (f16 / bf16). */
function floatActivations(rt: KernelRuntime, wDtype: DType, xOffset: number, nIn: number, nTokens: number): number {
  return wDtype === 'f32' ? xOffset : permuteActivations(rt, xOffset, nIn, nTokens);
}

function run(rt: KernelRuntime, kernel: string, nOut: number, weightBytes: number): void {
  if (weightBytes < PARALLEL_MIN_BYTES) rt.runLocal(kernel, 0, nOut);
  else rt.parallelFor(kernel, 0, nOut, ROW_GRAIN);
}

/** y [nOut] = W [nOut, nIn] x [nIn]; every operand an arena offset (NOTE(1)). */
export function matvecAt(rt: KernelRuntime, wOffset: number, wDtype: DType, nOut: number, nIn: number, xOffset: number, yOffset: number): void {
  const rowBytes = checkCall(rt, wOffset, wDtype, nOut, nIn, xOffset, 1, yOffset);
  const kernel = MATVEC_KERNEL[wDtype];
  if (DTYPES[wDtype].quantized) {
    const base = quantizeActivations(rt, xOffset, nIn, 1);
    rt.args().ptr(wOffset).ptr(base).ptr(base + xsOffsetOf(nIn, 1)).ptr(yOffset).i32(nIn);
  } else {
    const x = floatActivations(rt, wDtype, xOffset, nIn, 1);
    rt.args().ptr(wOffset).ptr(x).ptr(yOffset).i32(nIn);
  }
  run(rt, kernel, nOut, nOut * rowBytes);
}

/**
 * Y [nTokens, nOut] = X [nTokens, nIn] W^T; every operand an arena offset (NOTE(1)). One token
 * runs the matvec kernel (NOTE(2): the same results).
 */
export function matmulAt(
  rt: KernelRuntime,
  wOffset: number,
  wDtype: DType,
  nOut: number,
  nIn: number,
  xOffset: number,
  nTokens: number,
  yOffset: number,
): void {
  checkInt('linear nTokens', nTokens, 1);
  if (nTokens === 1) {
    matvecAt(rt, wOffset, wDtype, nOut, nIn, xOffset, yOffset); // same results, multi-row tiles
    return;
  }
  const rowBytes = checkCall(rt, wOffset, wDtype, nOut, nIn, xOffset, nTokens, yOffset);
  const kernel = MATMUL_KERNEL[wDtype];
  if (DTYPES[wDtype].quantized) {
    const base = quantizeActivations(rt, xOffset, nIn, nTokens);
    rt.args().ptr(wOffset).ptr(base).ptr(base + xsOffsetOf(nIn, nTokens)).ptr(yOffset).i32(nIn).i32(nTokens).i32(nOut);
  } else {
    const x = floatActivations(rt, wDtype, xOffset, nIn, nTokens);
    rt.args().ptr(wOffset).ptr(x).ptr(yOffset).i32(nIn).i32(nTokens).i32(nOut);
  }
  run(rt, kernel, nOut, nOut * rowBytes * nTokens);
}

/** Convenience: y = W x with x from JS (staged into scratch); returns a new Float32Array [nOut]. */
export function wasmMatvec(rt: KernelRuntime, wOffset: number, wDtype: DType, nOut: number, nIn: number, x: Float32Array): Float32Array {
  return wasmMatmul(rt, wOffset, wDtype, nOut, nIn, x, 1);
}

/**
 * Convenience: Y = X W^T with X [nTokens, nIn] from JS; returns a new Float32Array
 * [nTokens, nOut].
 */
export function wasmMatmul(rt: KernelRuntime, wOffset: number, wDtype: DType, nOut: number, nIn: number, x: Float32Array, nTokens: number): Float32Array {
  checkShape(wDtype, nOut, nIn);
  checkInt('linear nTokens', nTokens, 1);
  if (!(x instanceof Float32Array) || x.length !== nTokens * nIn) {
    throw new ShapeError(`linear x length ([nTokens, nIn] = [${nTokens}, ${nIn}])`, nTokens * nIn, x instanceof Float32Array ? x.length : typeof x);
  }
  const xOffset = rt.stage('linear.x', x); // [nTokens, nIn] f32
  const yOffset = rt.scratch('linear.y', nTokens * nOut * 4); // [nTokens, nOut] f32
  matmulAt(rt, wOffset, wDtype, nOut, nIn, xOffset, nTokens, yOffset);
  const y0 = yOffset >> 2;
  return rt.arena.f32.slice(y0, y0 + nTokens * nOut);
}
