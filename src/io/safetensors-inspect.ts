/**
 * Human-readable summaries of safetensors files and sharded checkpoints for
 * `kvcache inspect`. Only headers are read; the header is fully validated first, so a
 * corrupt file fails here with the same FormatError a load would give.
 */
import { basename } from 'node:path';
import { SafetensorsFile } from './safetensors.js';
import { SafetensorsCheckpoint } from './safetensors-index.js';
import { SAFETENSORS_PREFIX_BYTES, type SafetensorsTensorInfo } from './safetensors-format.js';
import { humanBytes, shortBytes } from './human-bytes.js';

/** Tensors listed by default; the rest are counted. */
export const INSPECT_DEFAULT_TENSORS = 20;

/** "BF16 x 290 (942.4 MiB), F32 x 2 (...)": tensor count and bytes per dtype. */
function dtypeSummary(tensors: readonly SafetensorsTensorInfo[]): string {
  const by = new Map<string, { n: number; bytes: number }>();
  for (const t of tensors) {
    const e = by.get(t.dtype) ?? { n: 0, bytes: 0 };
    e.n++;
    e.bytes += t.sizeBytes;
    by.set(t.dtype, e);
  }
  return [...by].map(([d, e]) => `${d} x ${e.n} (${shortBytes(e.bytes)})`).join(', ') || '(none)';
}

function tensorTable(rows: readonly (SafetensorsTensorInfo & { file?: string })[], total: number, maxTensors: number): string[] {
  const shown = rows.slice(0, maxTensors);
  const nameW = shown.reduce((w, t) => Math.max(w, t.name.length), 4);
  const shapes = shown.map((t) => `[${t.shape.join(', ')}]`);
  const shapeW = shapes.reduce((w, s) => Math.max(w, s.length), 5);
  const withFile = shown.some((t) => t.file !== undefined);
  const lines = [`  ${'name'.padEnd(nameW)}  dtype  ${'shape'.padEnd(shapeW)}  ${'offset'.padStart(12)}  ${'size'.padStart(12)}${withFile ? '  file' : ''}`];
  shown.forEach((t, i) => {
    const file = t.file !== undefined ? `  ${basename(t.file)}` : '';
    lines.push(`  ${t.name.padEnd(nameW)}  ${t.dtype.padEnd(5)}  ${shapes[i]!.padEnd(shapeW)}  ${String(t.offsetBytes).padStart(12)}  ${String(t.sizeBytes).padStart(12)}${file}`);
  });
  if (total > shown.length) lines.push(`  ... ${total - shown.length} more`);
  return lines;
}

/** A multi-line report of one .safetensors file. */
export function describeSafetensors(path: string, maxTensors = INSPECT_DEFAULT_TENSORS): string {
  const f = SafetensorsFile.open(path);
  try {
    const h = f.header;
    const params = h.tensors.reduce((s, t) => s + t.nElements, 0);
    return [
      `file:     ${path}`,
      `format:   safetensors`,
      `size:     ${humanBytes(f.fileSizeBytes)}`,
      `header:   ${h.headerSizeBytes} B JSON, data at offset ${SAFETENSORS_PREFIX_BYTES + h.headerSizeBytes}`,
      `tensors:  ${h.tensors.length}, ${params.toLocaleString('en-US')} elements, ${humanBytes(h.dataSizeBytes)} of data`,
      `dtypes:   ${dtypeSummary(h.tensors)}`,
      `checks:   header length, JSON, dtypes, shapes vs sizes, offsets tile the data: ok`,
      `metadata: ${h.metadata === null ? '(none)' : JSON.stringify(h.metadata)}`,
      `tensors (data order):`,
      ...tensorTable(h.tensors, h.tensors.length, maxTensors),
    ].join('\n');
  } finally {
    f.dispose();
  }
}

/** A multi-line report of a sharded checkpoint, from its model.safetensors.index.json. */
export function describeSafetensorsIndex(indexPath: string, maxTensors = INSPECT_DEFAULT_TENSORS): string {
  const ck = SafetensorsCheckpoint.openIndex(indexPath);
  try {
    const names = ck.tensorNames();
    const infos = names.map((n) => ck.info(n));
    const params = infos.reduce((s, t) => s + t.nElements, 0);
    return [
      `file:     ${indexPath}`,
      `format:   safetensors index (sharded checkpoint)`,
      `shards:   ${ck.files.map((f) => `${basename(f.path)} (${f.tensors.length} tensors, ${humanBytes(f.fileSizeBytes)})`).join(', ')}`,
      `tensors:  ${names.length}, ${params.toLocaleString('en-US')} elements, ${humanBytes(ck.totalSizeBytes)} of data`,
      `dtypes:   ${dtypeSummary(infos)}`,
      `checks:   every shard header valid, weight_map and shards agree: ok`,
      `metadata: ${ck.index!.metadata === null ? '(none)' : JSON.stringify(ck.index!.metadata)}`,
      `tensors (index order):`,
      ...tensorTable(infos, infos.length, maxTensors),
    ].join('\n');
  } finally {
    ck.dispose();
  }
}
