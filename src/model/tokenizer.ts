/**
 * The text side of a checkpoint: `tokenizer.json` through `@huggingface/tokenizers`, the
 * chat template of `tokenizer_config.json` through `@huggingface/jinja`, and a streaming
 * decoder that turns a growing list of ids into text deltas.
 *
 * NOTE(1): Decoding never applies `clean_up_tokenization_spaces` (it rewrites " ." to "."
 *   across token boundaries), so the concatenated deltas of StreamDecoder always equal
 *   decode(allIds); newer transformers default to the same.
 * NOTE(2): Streaming decode (as in text-generation-inference): keep a window of ids whose
 *   text was already emitted; a new id's delta is decode(window + new) minus decode(window),
 *   held back while it ends in U+FFFD (an incomplete UTF-8 sequence, e.g. the first byte
 *   token of an emoji). Work per token is bounded by the window, not the sequence.
 * NOTE(3): A chat-templated prompt already contains its special tokens (BOS included), so
 *   encodeChat tokenizes it without adding any; `--prompt-ids` bypasses the tokenizer.
 */
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { ConfigError } from '../core/errors.js';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

export interface EncodeOptions {
  /** Add what the tokenizer's post-processor adds (e.g. BOS); default true, as in transformers. */
  readonly addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (<|im_end|>, <|eot_id|>, ...); default false. */
  readonly skipSpecialTokens?: boolean;
}

type Json = Record<string, unknown>;

/** A special token of tokenizer_config.json: a string, an AddedToken object, or absent. */
function tokenString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object' && typeof (v as Json)['content'] === 'string') return (v as Json)['content'] as string;
  return null;
}

/** The template text: a string, or the "default" entry of a list of named templates. */
function chatTemplateOf(config: Json): string | null {
  const t = config['chat_template'];
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const d = t.find((x) => x !== null && typeof x === 'object' && (x as Json)['name'] === 'default');
    if (d !== undefined && typeof (d as Json)['template'] === 'string') return (d as Json)['template'] as string;
  }
  return null;
}

export class TextTokenizer {
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  private readonly tokenizer: Tokenizer;
  private readonly config: Json;
  private template: Template | null = null;

  private constructor(tokenizer: Tokenizer, config: Json) {
    this.tokenizer = tokenizer;
    this.config = config;
    this.bosToken = tokenString(config['bos_token']);
    this.eosToken = tokenString(config['eos_token']);
  }

  /** From the parsed tokenizer.json and tokenizer_config.json objects. */
  static fromJson(tokenizerJson: unknown, tokenizerConfig: unknown): TextTokenizer {
    if (tokenizerJson === null || typeof tokenizerJson !== 'object') throw new ConfigError('tokenizer.json', 'a JSON object', tokenizerJson);
    const config = tokenizerConfig === null || tokenizerConfig === undefined ? {} : tokenizerConfig;
    if (typeof config !== 'object' || Array.isArray(config)) throw new ConfigError('tokenizer_config.json', 'a JSON object', tokenizerConfig);
    return new TextTokenizer(new Tokenizer(tokenizerJson, config), config as Json);
  }

  /** Load tokenizer.json (+ tokenizer_config.json when present) from a checkpoint folder (Node). */
  static async load(dir: string): Promise<TextTokenizer> {
    const { existsSync, readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const parse = (file: string): unknown => {
      const text = readFileSync(join(dir, file), 'utf8');
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new ConfigError(join(dir, file), 'valid JSON', (e as Error).message);
      }
    };
    const configPath = join(dir, 'tokenizer_config.json');
    return TextTokenizer.fromJson(parse('tokenizer.json'), existsSync(configPath) ? parse('tokenizer_config.json') : {});
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  /** Text of `ids` (NOTE(1)). */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** The id of a token string (e.g. '<|im_end|>'), or null. */
  tokenToId(token: string): number | null {
    return this.tokenizer.token_to_id(token) ?? null;
  }

  get hasChatTemplate(): boolean {
    return chatTemplateOf(this.config) !== null;
  }

  /** Render the chat template; ConfigError when tokenizer_config.json has none. */
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt = true): string {
    if (this.template === null) {
      const text = chatTemplateOf(this.config);
      if (text === null) throw new ConfigError('tokenizer_config.json chat_template', 'a template string', this.config['chat_template']);
      this.template = new Template(text);
    }
    return this.template.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: this.bosToken ?? '',
      eos_token: this.eosToken ?? '',
      pad_token: tokenString(this.config['pad_token']) ?? '',
      unk_token: tokenString(this.config['unk_token']) ?? '',
    });
  }

  /** Ids of the rendered chat (NOTE(3)). */
  encodeChat(messages: readonly ChatMessage[], addGenerationPrompt = true): number[] {
    return this.encode(this.applyChatTemplate(messages, addGenerationPrompt), { addSpecialTokens: false });
  }

  /** A decoder of a growing id list into text deltas (NOTE(2)). */
  streamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    return new StreamDecoder(this, opts);
  }
}

/** Incremental decoding (NOTE(2)): push ids one by one, get the text each one completes. */
export class StreamDecoder {
  private readonly ids: number[] = [];
  /** Start of the window decoded for context. */
  private prefixOffset = 0;
  /** End of the ids whose text has been emitted. */
  private readOffset = 0;

  constructor(
    private readonly tokenizer: TextTokenizer,
    private readonly opts: DecodeOptions = {},
  ) {}

  /** Add one id; returns the newly completed text ('' while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.opts);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.opts);
    if (full.length <= prefix.length || full.endsWith('\uFFFD') || !full.startsWith(prefix)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return full.slice(prefix.length);
  }

  /** The text still held back (an incomplete character at the end shows as U+FFFD). */
  flush(): string {
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), this.opts);
    const full = this.tokenizer.decode(this.ids.slice(this.prefixOffset), this.opts);
    this.prefixOffset = this.readOffset = this.ids.length;
    let common = 0;
    while (common < prefix.length && common < full.length && prefix[common] === full[common]) common++;
    return full.slice(common);
  }
}
