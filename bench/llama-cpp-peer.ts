/**
 * llama.cpp as a live peer for interleaved benchmarks: `node scripts/llama-cpp.mjs serve` in a
 * child process (node-llama-cpp, CPU build, installed on demand), one model, driven by one JSON
 * command per line. A benchmark opens a context (prefill of the bench prompt), then alternates
 * short decode rounds of its own engine and of the peer, so both are timed in the same minutes of
 * a noisy machine instead of one after the other.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { DType } from '../src/core/dtype.js';

const SCRIPT = fileURLToPath(new URL('../../scripts/llama-cpp.mjs', import.meta.url));

interface Reply {
  error?: string;
  prefillMs?: number;
  ms?: number;
}

export class LlamaCppPeer {
  private readonly pending: ((r: Reply) => void)[] = [];
  private exited: string | null = null;

  private constructor(private readonly child: ChildProcess & { stdin: Writable }) {
    // Replies come on fd 3, not stdout: llama.cpp's native code may print to stdout (stdout is
    // inherited, so such output lands in the bench's log instead of among the replies).
    createInterface({ input: child.stdio[3] as Readable }).on('line', (line) => {
      const next = this.pending.shift();
      if (!next) return;
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        reply = { error: `expected one JSON reply per line, got ${JSON.stringify(line.slice(0, 200))}` };
      }
      next(reply);
    });
    child.on('exit', (code, signal) => {
      this.exited = `llama.cpp peer exited (code ${code}, signal ${signal})`;
      for (const p of this.pending.splice(0)) p({ error: this.exited });
    });
  }

  /** Start the peer on a GGUF file (threads and KV dtype as the engine it is compared with). */
  static start(gguf: string, o: { threads: number; kv: DType }): LlamaCppPeer {
    const args = [SCRIPT, 'serve', '--model', gguf, '--threads', String(o.threads), '--kv', o.kv, '--reply-fd', '3'];
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'inherit', 'inherit', 'pipe'] });
    return new LlamaCppPeer(child as ChildProcess & { stdin: Writable });
  }

  /** Prefill the bench prompt of `ctx` tokens (room for `gen` more); returns the prefill time, ms. */
  async open(ctx: number, gen: number): Promise<number> {
    return (await this.ask({ op: 'open', ctx, gen })).prefillMs!;
  }

  /** Decode n greedy tokens; returns the time, ms. */
  async decode(n: number): Promise<number> {
    return (await this.ask({ op: 'decode', n })).ms!;
  }

  async close(): Promise<void> {
    await this.ask({ op: 'close' });
  }

  /**
   * End the child: stdin closed, so an idle peer frees its model and exits; one still busy with a
   * request (the bench failed meanwhile) is killed rather than left prefilling for minutes.
   */
  dispose(): void {
    if (this.exited !== null) return;
    this.child.stdin.end();
    if (this.pending.length > 0) this.child.kill();
  }

  private ask(cmd: object): Promise<Reply> {
    if (this.exited !== null) return Promise.reject(new Error(this.exited));
    return new Promise((resolve, reject) => {
      this.pending.push((r) => (r.error !== undefined ? reject(new Error(`llama.cpp peer: ${r.error}`)) : resolve(r)));
      this.child.stdin.write(JSON.stringify(cmd) + '\n');
    });
  }
}
