/**
 * Checks of arena offsets handed to the low-level kernel bindings, so that a wrong offset or
 * length fails in JS with a typed error instead of trapping in wasm (or silently reading a
 * neighbour's bytes past the mapped memory), plus the read-back helper of the convenience forms.
 */
import { ConfigError, OutOfRangeError, checkInt } from '../../core/errors.js';
import type { KernelRuntime } from './runtime.js';

/** Throws unless [offsetBytes, offsetBytes + sizeBytes) lies in the arena's mapped memory. */
export function checkSpan(rt: KernelRuntime, what: string, offsetBytes: number, sizeBytes: number, align = 1): void {
  const mapped = rt.arena.mappedBytes;
  if (typeof offsetBytes !== 'number' || !Number.isInteger(offsetBytes) || offsetBytes < 0 || offsetBytes + sizeBytes > mapped) {
    throw new OutOfRangeError(`${what} arena offset (${sizeBytes} bytes from it must be mapped)`, `an integer in [0, ${mapped - sizeBytes}]`, offsetBytes);
  }
  if (offsetBytes % align !== 0) throw new ConfigError(`${what} arena offset`, `a multiple of ${align}`, offsetBytes);
}

/** An f32 / i32 buffer of n elements at offsetBytes (4-byte aligned). */
export function checkWords(rt: KernelRuntime, what: string, offsetBytes: number, n: number): void {
  checkSpan(rt, what, offsetBytes, 4 * n, 4);
}

/**
 * Rows of `len` f32 values every `stride` elements (stride >= len), nRows of them; returns stride.
 * The last row needs only `len` values, so a strided view into a wider tensor is accepted.
 */
export function checkRows(rt: KernelRuntime, what: string, offsetBytes: number, nRows: number, len: number, stride: number): number {
  checkInt(`${what} row stride`, stride, len);
  checkWords(rt, what, offsetBytes, nRows === 0 ? 0 : (nRows - 1) * stride + len);
  return stride;
}

/** Work items per thread share so that each share is worth ~`targetElements` elements. */
export function grainFor(elementsPerItem: number, targetElements = 8192): number {
  return Math.max(1, Math.ceil(targetElements / Math.max(1, elementsPerItem)));
}

/** A copy of n f32 values at offsetBytes (views are re-created after growth, so read right now). */
export function readF32(rt: KernelRuntime, offsetBytes: number, n: number): Float32Array {
  return rt.arena.f32.slice(offsetBytes >> 2, (offsetBytes >> 2) + n);
}
