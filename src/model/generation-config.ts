/**
 * `generation_config.json`: the checkpoint's own defaults for generation (eos ids and the
 * sampling it was published with). Everything is optional; the file itself is optional.
 *
 * NOTE(1): transformers semantics: `do_sample: false` (its default) means greedy whatever the
 *   temperature says; with `do_sample: true` the defaults are temperature 1, top_k 50,
 *   top_p 1 (GenerationConfig's own defaults), so a file that only says `do_sample: true`
 *   samples exactly as transformers would.
 * NOTE(2): Explicit options of the caller (CLI flags, generate() options) always win over this
 *   file; this file wins over config.json for eos ids (it usually lists the chat end token too).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { Fields, type Json } from './config.js';

export interface GenerationDefaults {
  /** eos_token_id as a list; null when the file does not say. */
  readonly eosTokenIds: readonly number[] | null;
  /** Sampling options in generate()'s vocabulary (greedy = temperature 0). */
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  /** max_new_tokens, or null. */
  readonly maxNewTokens: number | null;
}

/** What generation does when the checkpoint has no generation_config.json: greedy. */
export const GREEDY_DEFAULTS: GenerationDefaults = {
  eosTokenIds: null, temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, maxNewTokens: null,
};

/** Parse a generation_config.json object (NOTE(1)). */
export function parseGenerationConfig(json: unknown, where = 'generation_config.json'): GenerationDefaults {
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(where, 'a JSON object', json);
  const f: Fields = new Fields(json as Json, where); // annotated: lets f.fail() (never) narrow types
  const eos = f.has('eos_token_id') ? f.tokenIds('eos_token_id') : null;
  const maxNewTokens = f.has('max_new_tokens') ? f.posInt('max_new_tokens') : null;
  const repetitionPenalty = f.posNumber('repetition_penalty', 1);
  if (!f.bool('do_sample', false)) return { ...GREEDY_DEFAULTS, eosTokenIds: eos, maxNewTokens, repetitionPenalty };
  const topK = f.has('top_k') ? f.obj['top_k'] : 50;
  if (typeof topK !== 'number' || !Number.isSafeInteger(topK) || topK < 0) f.fail('top_k', 'an integer >= 0', topK);
  const topP = f.posNumber('top_p', 1);
  if (topP > 1) f.fail('top_p', 'a number in (0, 1]', topP);
  const minP = f.has('min_p') ? f.obj['min_p'] : 0;
  if (typeof minP !== 'number' || !(minP >= 0 && minP < 1)) f.fail('min_p', 'a number in [0, 1)', minP);
  const temperature = f.has('temperature') ? f.obj['temperature'] : 1;
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature < 0) f.fail('temperature', 'a finite number >= 0', temperature);
  return { eosTokenIds: eos, temperature, topK, topP, minP, repetitionPenalty, maxNewTokens };
}

/** Read DIR/generation_config.json when present (GREEDY_DEFAULTS otherwise). */
export function loadGenerationConfig(dir: string): GenerationDefaults {
  const file = join(dir, 'generation_config.json');
  if (!existsSync(file)) return GREEDY_DEFAULTS;
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(file, 'valid JSON', (e as Error).message);
  }
  return parseGenerationConfig(json, file);
}
