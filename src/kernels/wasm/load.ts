/**
 * Which kernel build this runtime can use, and the compiled modules (compiled once per process).
 *
 * NOTE(1): Two builds of the same AssemblyScript source (scripts/build-wasm.mjs): `simd` (plain
 *   128-bit SIMD: Node 20 and every current browser) and `relaxed` (relaxed SIMD, fused
 *   multiply-add). The relaxed build is used where the engine validates it (Node 20 only behind
 *   --experimental-wasm-relaxed-simd). Where neither validates, or the memory cannot be shared,
 *   the reference TS kernels are the fallback.
 * NOTE(2): KVCACHE_KERNELS=ref|simd|relaxed (environment, Node) forces a choice: `ref` runs the
 *   whole engine on the reference kernels, which is how the test suite checks them all.
 */
import { ConfigError } from '../../core/errors.js';
import { relaxedBase64, simdBase64 } from './binary.generated.js';

export type KernelVariant = 'ref' | 'simd' | 'relaxed';

function decodeBase64(b64: string): Uint8Array {
  const g = globalThis as { Buffer?: { from(s: string, enc: string): Uint8Array }; atob?: (s: string) => string };
  if (g.Buffer) return new Uint8Array(g.Buffer.from(b64, 'base64'));
  const bin = g.atob!(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

const bytesOf: Record<Exclude<KernelVariant, 'ref'>, () => Uint8Array> = {
  simd: () => decodeBase64(simdBase64),
  relaxed: () => decodeBase64(relaxedBase64),
};
const compiled = new Map<KernelVariant, WebAssembly.Module>();

/** Whether this engine can run the given build (validates the real binary; cached). */
export function variantSupported(v: KernelVariant): boolean {
  if (v === 'ref') return true;
  if (typeof WebAssembly !== 'object' || typeof SharedArrayBuffer === 'undefined') return false;
  return WebAssembly.validate(bytesOf[v]() as BufferSource);
}

/** The variant forced by KVCACHE_KERNELS, or null. */
export function forcedVariant(): KernelVariant | null {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  const v = env?.KVCACHE_KERNELS;
  if (v === undefined || v === '') return null;
  if (v !== 'ref' && v !== 'simd' && v !== 'relaxed') {
    throw new ConfigError('KVCACHE_KERNELS', 'one of ref, simd, relaxed', v);
  }
  return v;
}

let bestCache: KernelVariant | null = null;
/** The variant used by default: forced, else relaxed, else simd, else ref. */
export function bestVariant(): KernelVariant {
  const forced = forcedVariant();
  if (forced) {
    if (!variantSupported(forced)) throw new ConfigError('KVCACHE_KERNELS', 'a kernel build this engine supports', forced);
    return forced;
  }
  bestCache ??= variantSupported('relaxed') ? 'relaxed' : variantSupported('simd') ? 'simd' : 'ref';
  return bestCache;
}

/** The compiled module of a wasm variant (synchronous compile; Node and workers). */
export function kernelModule(v: Exclude<KernelVariant, 'ref'>): WebAssembly.Module {
  let m = compiled.get(v);
  if (!m) {
    m = new WebAssembly.Module(bytesOf[v]() as BufferSource);
    compiled.set(v, m);
  }
  return m;
}

/**
 * Compile a variant asynchronously (browsers forbid large synchronous compiles on the main
 * thread): await this once before the first kernel call there.
 */
export async function preloadKernels(v: KernelVariant = bestVariant()): Promise<void> {
  if (v === 'ref' || compiled.has(v)) return;
  compiled.set(v, await WebAssembly.compile(bytesOf[v]() as BufferSource));
}
