/**
 * Human-readable summary of a GGUF file for `kvcache inspect`: version, sizes, every metadata
 * key (long arrays shortened: a tokenizer's 150k tokens become a count and the first few), and
 * the tensor table. Only the header is read; it is fully validated first (readGgufHeader), so a
 * corrupt file fails with the same FormatError a load would give.
 */
import { readGgufHeader, type GgufFile } from './gguf.js';
import { GgufValueType, type GgufValue } from './gguf-format.js';
import { humanBytes, shortBytes } from './human-bytes.js';

/** Tensors listed by default; the rest are counted. */
export const GGUF_INSPECT_TENSORS = 20;
/** Array elements shown before "... N more". */
const ARRAY_PREVIEW = 6;

/** ggml type names (ggml.h) for the table; unknown ones print as their number. */
const GGML_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 6: 'Q5_0', 7: 'Q5_1', 8: 'Q8_0', 9: 'Q8_1', 10: 'Q2_K', 11: 'Q3_K', 12: 'Q4_K',
  13: 'Q5_K', 14: 'Q6_K', 15: 'Q8_K', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 30: 'BF16',
};

function scalarText(v: string | number | bigint | boolean): string {
  return typeof v === 'string' ? JSON.stringify(v.length > 80 ? v.slice(0, 77) + '...' : v) : String(v);
}

function valueText(v: GgufValue): string {
  if (v.type !== GgufValueType.ARRAY) return scalarText(v.value);
  const head = v.value.slice(0, ARRAY_PREVIEW).map(scalarText).join(', ');
  const more = v.value.length > ARRAY_PREVIEW ? `, ... ${v.value.length - ARRAY_PREVIEW} more` : '';
  return `[${v.value.length} x ${GgufValueType[v.elemType]}] [${head}${more}]`;
}

function tensorLines(f: GgufFile, maxTensors: number): string[] {
  const shown = f.tensors.slice(0, maxTensors);
  const nameW = shown.reduce((w, t) => Math.max(w, t.name.length), 4);
  const shapes = shown.map((t) => `[${t.shape.join(', ')}]`);
  const shapeW = shapes.reduce((w, s) => Math.max(w, s.length), 5);
  const lines = [`  ${'name'.padEnd(nameW)}  type   ${'shape'.padEnd(shapeW)}  ${'offset'.padStart(12)}  ${'size'.padStart(12)}`];
  shown.forEach((t, i) => {
    const type = GGML_TYPE_NAMES[t.ggmlType] ?? String(t.ggmlType);
    lines.push(`  ${t.name.padEnd(nameW)}  ${type.padEnd(5)}  ${shapes[i]!.padEnd(shapeW)}  ${String(t.offsetBytes).padStart(12)}  ${String(t.sizeBytes ?? '?').padStart(12)}`);
  });
  if (f.tensors.length > shown.length) lines.push(`  ... ${f.tensors.length - shown.length} more`);
  return lines;
}

/** A multi-line report of one GGUF file. */
export function describeGguf(path: string, maxTensors = GGUF_INSPECT_TENSORS): string {
  const f = readGgufHeader(path);
  const byType = new Map<string, { n: number; bytes: number }>();
  for (const t of f.tensors) {
    const k = GGML_TYPE_NAMES[t.ggmlType] ?? String(t.ggmlType);
    const e = byType.get(k) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += t.sizeBytes ?? 0;
    byType.set(k, e);
  }
  const params = f.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  const keyW = [...f.metadata.keys()].reduce((w, k) => Math.max(w, k.length), 0);
  return [
    `file:     ${path}`,
    `format:   GGUF version ${f.version}`,
    `size:     ${humanBytes(f.fileSizeBytes)}`,
    `header:   data at offset ${f.dataOffset}, alignment ${f.alignment}`,
    `tensors:  ${f.tensors.length}, ${params.toLocaleString('en-US')} elements; ${[...byType].map(([k, e]) => `${k} x ${e.n} (${shortBytes(e.bytes)})`).join(', ')}`,
    `metadata: ${f.metadata.size} keys`,
    ...[...f.metadata].map(([k, v]) => `  ${k.padEnd(keyW)}  ${valueText(v)}`),
    `tensor table:`,
    ...tensorLines(f, maxTensors),
  ].join('\n');
}
