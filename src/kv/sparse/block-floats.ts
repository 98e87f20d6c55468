/**
 * BlockFloats: f32 values per (layer, physical block), one fixed-size record per block, each
 * layer's array allocated on first use (dense layers never touch theirs). The storage behind
 * block anchors (anchors.ts) and token importance (importance.ts).
 *
 *   layer l:  [nBlocks, blockFloats] f32
 */
import { ShapeError, checkIndex } from '../../core/errors.js';

export class BlockFloats {
  /** [nLayers] per layer [nBlocks, blockFloats], null until first use. */
  private readonly layers: (Float32Array | null)[];

  /** `what` names the data in errors; `shapeText` describes one record, e.g. "[blockLen, nqHeads] = [128, 14]". */
  constructor(
    readonly nLayers: number,
    readonly nBlocks: number,
    readonly blockFloats: number,
    private readonly what: string,
    private readonly shapeText: string,
  ) {
    this.layers = new Array<Float32Array | null>(nLayers).fill(null);
  }

  /** The layer's whole array [nBlocks, blockFloats] (allocated on first use). */
  layer(layer: number): Float32Array {
    let a = this.layers[layer];
    if (!a) {
      a = new Float32Array(this.nBlocks * this.blockFloats);
      this.layers[layer] = a;
    }
    return a;
  }

  /** A copy of one block's record. */
  get(layer: number, block: number): Float32Array {
    this.check(layer, block);
    return this.layer(layer).slice(block * this.blockFloats, (block + 1) * this.blockFloats);
  }

  /** Overwrite one block's record (ShapeError unless data has blockFloats values). */
  set(layer: number, block: number, data: ArrayLike<number>): void {
    this.check(layer, block);
    if (data.length !== this.blockFloats) throw new ShapeError(`${this.what} of one block (${this.shapeText}) length`, this.blockFloats, data.length);
    this.layer(layer).set(data, block * this.blockFloats);
  }

  /** Zero one block of one layer. */
  clearBlock(layer: number, block: number): void {
    this.layers[layer]?.fill(0, block * this.blockFloats, (block + 1) * this.blockFloats);
  }

  /** Zero every allocated layer. */
  clearAll(): void {
    for (const a of this.layers) a?.fill(0);
  }

  protected check(layer: number, block: number): void {
    checkIndex(`${this.what} layer`, layer, this.nLayers);
    checkIndex(`${this.what} block (physical id)`, block, this.nBlocks);
  }
}
