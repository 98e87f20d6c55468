#!/usr/bin/env node
// llama.cpp as a peer, through node-llama-cpp's CPU prebuilt binary, for parity tests and
// side-by-side benchmarks. Installed on demand into .llama-cpp/ (git-ignored), never with the
// optional GPU binaries (they are ~700 MB): only node-llama-cpp and this platform's CPU package.
//
//   node scripts/llama-cpp.mjs install
//   node scripts/llama-cpp.mjs greedy --model M.gguf --prompt-ids 1,2,3 --n 32 [--threads 2] [--kv f32|f16|q8_0] [--ctx 4096]
//     -> one JSON line: {"tokens":[...],"promptTokens":N,"prefillMs":x,"decodeTokensPerS":y,"llamaCpp":"version"}
//   node scripts/llama-cpp.mjs bench --model M.gguf --ctx 16,2048 --gen 32 [--threads 2] [--kv f16] [--fa on|off]
//     -> one JSON line per context: {"ctx":c,"prefillTokensPerS":x,"decodeTokensPerS":y}
//   node scripts/llama-cpp.mjs serve --model M.gguf [--threads 2] [--kv f16] [--fa on|off] [--reply-fd 3]
//     -> reads one JSON command per stdin line, answers one JSON line each (interleaved benchmarks:
//        the caller times llama.cpp and its own engine in alternating rounds, so a noisy machine
//        slows both alike):
//        {"op":"open","ctx":c}   prefill the bench prompt of c tokens -> {"prefillMs":x}
//        {"op":"decode","n":k}   k more greedy tokens               -> {"ms":x,"n":k}
//        {"op":"close"}          free the context                    -> {}
//        errors answer {"error":"..."}; end of stdin exits. Answers go to stdout, or to the file
//        descriptor --reply-fd names: llama.cpp's native code may print to stdout (a bare newline
//        once cost a 32k benchmark its result), and a separate pipe keeps that out of the replies.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const VERSION = '3.22.1';
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, '.llama-cpp');

export function ensureInstalled(log = (s) => process.stderr.write(s + '\n')) {
  const marker = join(dir, 'installed.json');
  if (existsSync(marker) && JSON.parse(readFileSync(marker, 'utf8')).version === VERSION) return dir;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'kvcache-llama-cpp-peer', private: true, type: 'module' }));
  const cpuPackage = `@node-llama-cpp/${process.platform}-${process.arch}`;
  log(`installing node-llama-cpp ${VERSION} (${cpuPackage}, CPU only) into ${dir} ...`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  execFileSync(npm, ['install', '--no-audit', '--no-fund', '--omit=optional', '--ignore-scripts', `node-llama-cpp@${VERSION}`, `${cpuPackage}@${VERSION}`], {
    cwd: dir,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' },
  });
  writeFileSync(marker, JSON.stringify({ version: VERSION }));
  return dir;
}

async function loadLlama() {
  ensureInstalled();
  const req = createRequire(join(dir, 'package.json'));
  const entry = req.resolve('node-llama-cpp');
  const mod = await import(pathToFileURL(entry).href);
  const llama = await mod.getLlama({ gpu: false, build: 'never', usePrebuiltBinaries: true, progressLogs: false, logLevel: 'error' });
  return { mod, llama };
}

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    out[a.slice(2)] = argv[i + 1];
    i++;
  }
  return out;
}

const KV = { f32: 'F32', f16: 'F16', q8_0: 'Q8_0', q4_0: 'Q4_0' };

/** createContext options: size, threads, KV dtype (--kv) and flash attention (--fa). */
function contextOptions(opts, contextSize) {
  const kv = KV[opts.kv ?? 'f16'];
  if (!kv) throw new Error(`--kv expects one of ${Object.keys(KV).join(', ')}, given ${opts.kv}`);
  return {
    contextSize,
    batchSize: Math.min(contextSize, 512),
    threads: Number(opts.threads ?? 2),
    experimentalKvCacheKeyType: kv,
    experimentalKvCacheValueType: kv,
    // llama.cpp needs flash attention for a quantized V cache; --fa on|off (default: on for
    // quantized KV, off otherwise, as llama.cpp's own defaults pick on CPU).
    flashAttention: opts.fa === undefined ? kv.startsWith('Q') : opts.fa === 'on',
  };
}

async function openContext(llama, opts, contextSize) {
  const options = contextOptions(opts, contextSize);
  const model = await llama.loadModel({ modelPath: resolve(opts.model), gpuLayers: 0 });
  const context = await model.createContext(options);
  return { model, context };
}

async function greedy(opts) {
  const { llama } = await loadLlama();
  const prompt = String(opts['prompt-ids']).split(',').map(Number);
  const n = Number(opts.n ?? 32);
  const { model, context } = await openContext(llama, opts, Number(opts.ctx ?? Math.max(512, prompt.length + n + 16)));
  const seq = context.getSequence();
  const tokens = [];
  const t0 = performance.now();
  let tFirst = 0;
  for await (const t of seq.evaluate(prompt, { temperature: 0 })) {
    if (tokens.length === 0) tFirst = performance.now();
    tokens.push(Number(t));
    if (tokens.length >= n) break;
  }
  const t1 = performance.now();
  await context.dispose();
  await model.dispose();
  return { tokens, promptTokens: prompt.length, prefillMs: tFirst - t0, decodeTokensPerS: (tokens.length - 1) / ((t1 - tFirst) / 1000) };
}

async function bench(opts) {
  const { llama } = await loadLlama();
  const ctxs = String(opts.ctx ?? '16').split(',').map(Number);
  const gen = Number(opts.gen ?? 32);
  const out = [];
  // Warm-up: the first evaluation in a process runs cold (page faults on the weights, thread
  // start-up, lazy init) and measured 16 tok/s where the next one gives 700; time only warm runs.
  {
    const { model, context } = await openContext(llama, opts, 128);
    const seq = context.getSequence();
    let n = 0;
    for await (const _t of seq.evaluate(Array.from({ length: 64 }, (_, i) => 1000 + i), { temperature: 0, yieldEogToken: true })) if (++n >= 4) break;
    await context.dispose();
    await model.dispose();
  }
  for (const ctx of ctxs) {
    const { model, context } = await openContext(llama, opts, ctx + gen + 16);
    const prompt = benchPrompt(ctx);
    const seq = context.getSequence();
    const t0 = performance.now();
    let tFirst = 0;
    let n = 0;
    // Sampling is greedy; ignore end-of-generation tokens so that every run decodes `gen` tokens.
    for await (const _t of seq.evaluate(prompt, { temperature: 0, yieldEogToken: true })) {
      if (n === 0) tFirst = performance.now();
      if (++n >= gen) break;
    }
    const t1 = performance.now();
    out.push({ ctx, prefillTokensPerS: ctx / ((tFirst - t0) / 1000), decodeTokensPerS: (n - 1) / ((t1 - tFirst) / 1000) });
    await context.dispose();
    await model.dispose();
  }
  return out;
}

/** The e2e benchmarks' prompt ids (src/generate/e2e-bench.ts benchPrompt: the same formula). */
function benchPrompt(n) {
  return Array.from({ length: n }, (_, i) => 1000 + ((i * 7919) % 20000));
}

/** One model, one context at a time, driven by stdin commands (see the header). */
async function serve(opts) {
  const { llama } = await loadLlama();
  const model = await llama.loadModel({ modelPath: resolve(opts.model), gpuLayers: 0 });
  let open = null; // { context, tokens: AsyncIterator }
  const close = async () => {
    if (!open) return;
    await open.tokens.return?.();
    await open.context.dispose();
    open = null;
  };
  const ops = {
    async open(cmd) {
      await close();
      const ctx = Number(cmd.ctx);
      const gen = Number(cmd.gen ?? 256);
      const context = await model.createContext(contextOptions(opts, ctx + gen + 16));
      const seq = context.getSequence();
      // Greedy; end-of-generation tokens are ignored so every decode request gets its tokens.
      const tokens = seq.evaluate(benchPrompt(ctx), { temperature: 0, yieldEogToken: true })[Symbol.asyncIterator]();
      open = { context, tokens };
      const t0 = performance.now();
      await tokens.next(); // the prompt's prefill ends with the first token
      return { prefillMs: performance.now() - t0 };
    },
    async decode(cmd) {
      if (!open) throw new Error('decode before open');
      const n = Number(cmd.n);
      const t0 = performance.now();
      for (let i = 0; i < n; i++) if ((await open.tokens.next()).done) throw new Error('generation ended early');
      return { ms: performance.now() - t0, n };
    },
    async close() {
      await close();
      return {};
    },
  };
  const replyFd = opts['reply-fd'] === undefined ? 1 : Number(opts['reply-fd']);
  const { createInterface } = await import('node:readline');
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue;
    let reply;
    try {
      const cmd = JSON.parse(line);
      const op = ops[cmd.op];
      if (!op) throw new Error(`unknown op ${JSON.stringify(cmd.op)} (expected open, decode, close)`);
      reply = await op(cmd);
    } catch (e) {
      reply = { error: String(e?.message ?? e) };
    }
    writeSync(replyFd, JSON.stringify(reply) + '\n');
  }
  await close();
  await model.dispose();
  return [];
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const [cmd, ...rest] = process.argv.slice(2);
  const opts = parseArgs(rest);
  const run = { install: async () => ({ dir: ensureInstalled() }), greedy: () => greedy(opts), bench: () => bench(opts), serve: () => serve(opts) }[cmd];
  if (!run) {
    process.stderr.write('usage: node scripts/llama-cpp.mjs install | greedy --model M --prompt-ids 1,2 [--n 32] | bench --model M [--ctx 16,2048] | serve --model M\n');
    process.exit(2);
  }
  run().then(
    (r) => {
      for (const line of Array.isArray(r) ? r : [r]) process.stdout.write(JSON.stringify(line) + '\n');
      process.exit(0);
    },
    (e) => {
      process.stderr.write(`llama-cpp: ${e?.stack ?? e}\n`);
      process.exit(1);
    },
  );
}
