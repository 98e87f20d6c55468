/**
 * `npm run bench -- e2e [--preset NAME | --model DIR] [--ctx 16,2048,8192] [--kv f16,q8_0]
 *  [--weights q8_0] [--speedup-tokens 512] [--llama-cpp]`: the end-to-end benchmark of
 * `kvcache bench`, and with --llama-cpp the same prompts through llama.cpp (node-llama-cpp's CPU
 * build, installed on demand into .llama-cpp/) on the same weights exported as GGUF, same
 * threads, same KV dtypes, in the same run, with the ratio kvcache / llama.cpp per row.
 */
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBenchReport, type E2EReport } from '../src/cli/bench.js';
import { e2eTables } from '../src/generate/e2e-bench.js';
import { exportGguf } from '../src/model/gguf-export.js';
import type { DType } from '../src/core/dtype.js';

export interface E2ESuiteOptions {
  ctxs: number[] | null;
  threads: number;
  log: (s: string) => void;
  preset?: string;
  model?: string;
  kv: string;
  weights: string;
  speedupTokens: number;
  decodeTokens: number;
  llamaCpp: boolean;
}

interface LlamaRow {
  kv: string;
  ctx: number;
  prefillTokensPerS: number;
  decodeTokensPerS: number;
}

export interface E2ESuiteResult extends E2EReport {
  llamaCpp: { gguf: string; flashAttention: string; rows: LlamaRow[] } | null;
}

const SCRIPT = fileURLToPath(new URL('../../scripts/llama-cpp.mjs', import.meta.url));

function llamaCppRows(gguf: string, kvs: readonly DType[], ctxs: readonly number[], o: Pick<E2ESuiteOptions, 'decodeTokens' | 'threads' | 'log'>): LlamaRow[] {
  const rows: LlamaRow[] = [];
  for (const kv of kvs) {
    o.log(`  llama.cpp: kv ${kv}, contexts ${ctxs.join(',')} ...`);
    const r = spawnSync(process.execPath, [SCRIPT, 'bench', '--model', gguf, '--ctx', ctxs.join(','), '--gen', String(o.decodeTokens), '--threads', String(o.threads), '--kv', kv], {
      encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24,
    });
    if (r.status !== 0) throw new Error(`llama.cpp bench failed (exit ${r.status}); see the lines above`);
    for (const line of r.stdout.trim().split('\n')) {
      const x = JSON.parse(line) as { ctx: number; prefillTokensPerS: number; decodeTokensPerS: number };
      rows.push({ kv, ...x });
      o.log(`  llama.cpp kv ${kv} ctx ${x.ctx}: prefill ${x.prefillTokensPerS.toFixed(0)} tok/s, decode ${x.decodeTokensPerS.toFixed(1)} tok/s`);
    }
  }
  return rows;
}

/** The checkpoint's weights as GGUF for llama.cpp (same weights, exported once, kept beside it). */
export function ensureGguf(modelDir: string, weights: DType, log: (s: string) => void): string {
  if (weights === 'bf16') throw new Error('--llama-cpp: the GGUF export writes f32, f16, q8_0 or q4_0 weights, not bf16');
  const gguf = join(modelDir, `model-${weights}.gguf`);
  if (!existsSync(gguf)) {
    log(`  exporting ${gguf} (${weights} weights) for llama.cpp ...`);
    exportGguf(modelDir, gguf, { weights });
  }
  return gguf;
}

export async function benchE2E(o: E2ESuiteOptions): Promise<E2ESuiteResult> {
  const report = await runBenchReport(
    {
      model: o.model, preset: o.preset, ctx: (o.ctxs ?? [16, 2048, 8192]).join(','), weights: o.weights, kv: o.kv,
      decodeTokens: o.decodeTokens, speedupTokens: o.speedupTokens, chunk: 256, threads: o.threads,
    },
    o.log,
  );
  if (!o.llamaCpp) return { ...report, llamaCpp: null };
  const gguf = ensureGguf(report.model, report.weights, o.log);
  const kvs = [...new Set(report.runs.map((r) => r.kv))];
  const ctxs = [...new Set(report.runs.map((r) => r.ctx))];
  return { ...report, llamaCpp: { gguf, flashAttention: 'on for quantized KV, off for f16/f32', rows: llamaCppRows(gguf, kvs, ctxs, o) } };
}

export function e2eSuiteTables(r: E2ESuiteResult): string {
  let out = `model ${r.model}, weights ${r.weights}, kernels ${r.kernels} x${r.threads}, prefill chunk ${r.chunk}\n\n` + e2eTables(r);
  if (r.llamaCpp) {
    out += `\nside by side with llama.cpp (${r.llamaCpp.gguf}, ${r.threads} threads, flash attention ${r.llamaCpp.flashAttention}):\n\n`;
    out += '| KV dtype | context | kvcache prefill tok/s | llama.cpp prefill tok/s | ratio | kvcache decode tok/s | llama.cpp decode tok/s | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n';
    for (const k of r.runs) {
      const l = r.llamaCpp.rows.find((x) => x.kv === k.kv && x.ctx === k.ctx);
      if (!l) continue;
      out += `| ${k.kv} | ${k.ctx} | ${k.prefillTokensPerS.toFixed(0)} | ${l.prefillTokensPerS.toFixed(0)} | ${(k.prefillTokensPerS / l.prefillTokensPerS).toFixed(2)} | ${k.decodeTokensPerS.toFixed(1)} | ${l.decodeTokensPerS.toFixed(1)} | ${(k.decodeTokensPerS / l.decodeTokensPerS).toFixed(2)} |\n`;
    }
  }
  return out;
}
