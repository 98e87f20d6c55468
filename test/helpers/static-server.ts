/**
 * A static file server for browser tests: a folder over HTTP on 127.0.0.1 (a free port), every
 * response with the cross-origin isolation headers (COOP same-origin, COEP require-corp) without
 * which a browser has no SharedArrayBuffer, hence no shared WebAssembly.Memory and no workers.
 * `extra` serves generated files (path -> text) next to the folder's own.
 */
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';

const MIME: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
};

const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cache-Control': 'no-store',
};

export interface StaticServer {
  /** e.g. http://127.0.0.1:41234 */
  readonly origin: string;
  /** Paths requested that did not exist (a missing build output shows up here). */
  readonly notFound: string[];
  close(): Promise<void>;
}

export async function serveStatic(root: string, extra: Readonly<Record<string, string>> = {}): Promise<StaticServer> {
  const base = resolve(root);
  const notFound: string[] = [];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://host').pathname);
    const type = MIME[extname(path)] ?? 'application/octet-stream';
    const send = (status: number, body: string | Buffer, contentType = type): void => {
      res.writeHead(status, { ...ISOLATION_HEADERS, 'Content-Type': contentType });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed', 'text/plain');
    const generated = extra[path];
    if (generated !== undefined) return send(200, generated);
    const file = resolve(join(base, path));
    if (file !== base && !file.startsWith(base + sep)) return send(403, 'outside the served folder', 'text/plain');
    readFile(file).then(
      (body) => send(200, body),
      () => {
        notFound.push(path);
        send(404, 'not found', 'text/plain');
      },
    );
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    notFound,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
