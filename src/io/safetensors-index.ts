/**
 * A checkpoint's weights as one set of named tensors, whether they sit in one
 * `model.safetensors` or in shards listed by `model.safetensors.index.json`:
 *
 *   { "metadata": { "total_size": 988097536 },
 *     "weight_map": { "model.embed_tokens.weight": "model-00001-of-00002.safetensors", ... } }
 *
 * NOTE(1): All shards are opened (headers only) at once, so every inconsistency is reported
 *   before any tensor is loaded: a mapped tensor missing from its shard, a shard tensor the
 *   map does not list (it would be silently ignored), a shard name that is not a plain file
 *   name in the same folder (no paths, so an index cannot point outside the checkpoint).
 * NOTE(2): Tensor order is the index's weight_map order (sharded) or the file's data order
 *   (single file); loaders that stream tensors read them in that order.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FormatError } from '../core/errors.js';
import { SafetensorsFile } from './safetensors.js';
import type { SafetensorsTensorInfo, WeightDType } from './safetensors-format.js';

export const SAFETENSORS_SINGLE_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX_FILE = 'model.safetensors.index.json';

export interface SafetensorsIndex {
  /** The index's free-form "metadata" object (HF writes {"total_size": bytes}), or null. */
  readonly metadata: Readonly<Record<string, unknown>> | null;
  /** tensor name -> shard file name, in the index's order. */
  readonly weightMap: ReadonlyMap<string, string>;
  /** Distinct shard file names in order of first appearance. */
  readonly shards: readonly string[];
}

function isPlainFileName(s: string): boolean {
  return s.length > 0 && s !== '.' && s !== '..' && !s.includes('/') && !s.includes('\\') && !s.includes('\0');
}

/** Parse and check an index file's text; `where` names it in errors. */
export function parseSafetensorsIndex(text: string, where: string): SafetensorsIndex {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`safetensors index ${where}`, 'valid JSON', (e as Error).message);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new FormatError(`safetensors index ${where}`, 'a JSON object', json);
  const obj = json as Record<string, unknown>;
  const meta = obj['metadata'];
  if (meta !== undefined && meta !== null && (typeof meta !== 'object' || Array.isArray(meta))) {
    throw new FormatError(`safetensors index ${where}: "metadata"`, 'an object or null', meta);
  }
  const map = obj['weight_map'];
  if (map === null || typeof map !== 'object' || Array.isArray(map)) throw new FormatError(`safetensors index ${where}: "weight_map"`, 'an object {tensor: shard file}', map);
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [name, file] of Object.entries(map)) {
    if (typeof file !== 'string' || !isPlainFileName(file)) {
      throw new FormatError(`safetensors index ${where}: shard of tensor "${name}"`, 'a file name in the same folder', file);
    }
    weightMap.set(name, file);
    if (!shards.includes(file)) shards.push(file);
  }
  if (weightMap.size === 0) throw new FormatError(`safetensors index ${where}: "weight_map"`, 'at least one tensor', 'an empty map');
  return { metadata: (meta as Record<string, unknown> | undefined) ?? null, weightMap, shards };
}

/** A tensor's header entry plus the path of the file that holds it. */
export interface CheckpointTensorInfo extends SafetensorsTensorInfo {
  readonly file: string;
}

/** One name space of tensors over one or many safetensors files (NOTE(1), NOTE(2)). */
export class SafetensorsCheckpoint {
  /** The files, in order (one for an unsharded checkpoint). */
  readonly files: readonly SafetensorsFile[];
  /** The parsed index, or null for a single file. */
  readonly index: SafetensorsIndex | null;
  private readonly byName: Map<string, SafetensorsFile>;

  private constructor(files: SafetensorsFile[], index: SafetensorsIndex | null, byName: Map<string, SafetensorsFile>) {
    this.files = files;
    this.index = index;
    this.byName = byName;
  }

  /**
   * Open a checkpoint: a folder (its index if present, else model.safetensors), an index
   * file, or one .safetensors file. FormatError when the folder has neither.
   */
  static open(path: string): SafetensorsCheckpoint {
    if (statSync(path).isDirectory()) {
      const indexPath = join(path, SAFETENSORS_INDEX_FILE);
      if (existsSync(indexPath)) return SafetensorsCheckpoint.openIndex(indexPath);
      const single = join(path, SAFETENSORS_SINGLE_FILE);
      if (existsSync(single)) return SafetensorsCheckpoint.openFile(single);
      const found = readdirSync(path).filter((f) => f.endsWith('.safetensors') || f.endsWith('.json'));
      throw new FormatError(`checkpoint folder ${path}`, `${SAFETENSORS_SINGLE_FILE} or ${SAFETENSORS_INDEX_FILE}`, found.length === 0 ? 'neither (no .safetensors or .json files)' : found.join(', '));
    }
    return path.endsWith('.json') ? SafetensorsCheckpoint.openIndex(path) : SafetensorsCheckpoint.openFile(path);
  }

  /** One unsharded file. */
  static openFile(path: string): SafetensorsCheckpoint {
    const f = SafetensorsFile.open(path);
    return new SafetensorsCheckpoint([f], null, new Map(f.tensors.map((t) => [t.name, f])));
  }

  /** A sharded checkpoint from its index file; shards are resolved next to it. */
  static openIndex(indexPath: string): SafetensorsCheckpoint {
    const index = parseSafetensorsIndex(readFileSync(indexPath, 'utf8'), indexPath);
    const dir = dirname(indexPath);
    const files: SafetensorsFile[] = [];
    try {
      for (const shard of index.shards) files.push(SafetensorsFile.open(join(dir, shard)));
      const byFile = new Map(index.shards.map((s, i) => [s, files[i]!]));
      const byName = new Map<string, SafetensorsFile>();
      for (const [name, shard] of index.weightMap) {
        const f = byFile.get(shard)!;
        if (!f.has(name)) throw new FormatError(`safetensors index ${indexPath}: tensor "${name}"`, `present in its shard ${shard}`, `absent from it (${f.tensors.length} tensors there)`);
        byName.set(name, f);
      }
      for (const f of files) {
        for (const t of f.tensors) {
          if (byName.get(t.name) !== f) {
            const mapped = index.weightMap.get(t.name);
            const why = mapped === undefined ? 'not in the weight_map' : `mapped to ${mapped}`;
            throw new FormatError(`safetensors index ${indexPath}: tensor "${t.name}" of shard ${basename(f.path)}`, 'listed in the weight_map for this shard', why);
          }
        }
      }
      return new SafetensorsCheckpoint(files, index, byName);
    } catch (e) {
      for (const f of files) f.dispose();
      throw e;
    }
  }

  /** Tensor names in load order (NOTE(2)). */
  tensorNames(): string[] {
    return this.index !== null ? [...this.index.weightMap.keys()] : this.files[0]!.tensors.map((t) => t.name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** The file holding `name`; FormatError naming the checkpoint when there is none. */
  fileOf(name: string): SafetensorsFile {
    const f = this.byName.get(name);
    if (f === undefined) {
      const where = this.index !== null ? `sharded checkpoint ${dirname(this.files[0]!.path)}` : `safetensors ${this.files[0]!.path}`;
      throw new FormatError(`${where}: tensor "${name}"`, `one of its ${this.byName.size} tensors`, 'a name it does not have');
    }
    return f;
  }

  info(name: string): CheckpointTensorInfo {
    const f = this.fileOf(name);
    return { ...f.info(name), file: f.path };
  }

  weightDType(name: string): WeightDType {
    return this.fileOf(name).weightDType(name);
  }

  readInto(name: string, dst: Uint8Array, dstOffset = 0): void {
    this.fileOf(name).readInto(name, dst, dstOffset);
  }

  readBytes(name: string): Uint8Array {
    return this.fileOf(name).readBytes(name);
  }

  readF32(name: string): Float32Array {
    return this.fileOf(name).readF32(name);
  }

  readF32Range(name: string, elemStart: number, out: Float32Array): void {
    this.fileOf(name).readF32Range(name, elemStart, out);
  }

  /** Sum of all tensors' bytes. */
  get totalSizeBytes(): number {
    return this.files.reduce((s, f) => s + f.header.dataSizeBytes, 0);
  }

  dispose(): void {
    for (const f of this.files) f.dispose();
  }
}
