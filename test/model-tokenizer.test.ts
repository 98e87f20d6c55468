/**
 * The tokenizer files make-model ships load with @huggingface/tokenizers and round-trip
 * text; their chat templates render with @huggingface/jinja exactly as transformers
 * renders them; streaming decode emits whole characters and concatenates to decode(ids).
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { ConfigError } from '../src/core/errors.js';
import { tokenizerFilePath } from '../src/model/make-model.js';
import { TOKENIZER_IDS } from '../src/model/presets.js';
import { TextTokenizer } from '../src/model/tokenizer.js';

let qwen: TextTokenizer;
let llama: TextTokenizer;

before(async () => {
  qwen = await TextTokenizer.load(dirname(tokenizerFilePath('qwen', 'tokenizer.json')));
  llama = await TextTokenizer.load(dirname(tokenizerFilePath('llama3', 'tokenizer.json')));
});

const TEXT = 'Hello, world! Ünïcödé 你好 🤖\n\tcode:  x = 1  ';

test('encode -> decode round trip; special tokens map to the ids in the presets', () => {
  for (const tok of [qwen, llama]) {
    const ids = tok.encode(TEXT, { addSpecialTokens: false });
    assert.ok(ids.length > 10 && ids.length < TEXT.length);
    assert.equal(tok.decode(ids), TEXT);
  }
  assert.deepEqual(qwen.encode('The quick brown fox', { addSpecialTokens: false }), [785, 3974, 13876, 38835]);
  assert.deepEqual(qwen.encode('<|im_start|>user<|im_end|>', { addSpecialTokens: false }), [151644, 872, 151645]);
  assert.equal(qwen.tokenToId('<|endoftext|>'), TOKENIZER_IDS.qwen.bos);
  assert.equal(qwen.tokenToId('<|im_end|>'), TOKENIZER_IDS.qwen.chatEos);
  assert.equal(llama.tokenToId('<|begin_of_text|>'), TOKENIZER_IDS.llama3.bos);
  assert.equal(llama.tokenToId('<|end_of_text|>'), TOKENIZER_IDS.llama3.eos);
  assert.equal(llama.tokenToId('<|eot_id|>'), TOKENIZER_IDS.llama3.chatEos);
  assert.equal(qwen.decode([9707, 151645, 9707], { skipSpecialTokens: true }), 'HelloHello');
  assert.equal(qwen.decode([9707, 151645]), 'Hello<|im_end|>');
  assert.equal(qwen.tokenToId('no-such-token-xyz'), null);
});

test('chat templates render as transformers renders them', () => {
  const messages = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
  ];
  assert.equal(qwen.applyChatTemplate(messages), '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n');
  assert.equal(qwen.applyChatTemplate(messages, false), '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n');
  assert.equal(
    llama.applyChatTemplate(messages),
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
  );
  const ids = qwen.encodeChat(messages);
  assert.equal(ids[0], 151644);
  assert.equal(qwen.decode(ids), qwen.applyChatTemplate(messages));
  const lids = llama.encodeChat(messages);
  assert.equal(lids.filter((id) => id === TOKENIZER_IDS.llama3.bos).length, 1, 'the template brings BOS; encodeChat adds no second one');
  const bare = TextTokenizer.fromJson(
    { model: { type: 'WordLevel', vocab: { a: 0 }, unk_token: 'a' }, added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null },
    {},
  );
  assert.equal(bare.decode([]), '');
  assert.equal(bare.hasChatTemplate, false);
  assert.throws(() => bare.applyChatTemplate(messages), ConfigError);
});

test('streaming decode: whole characters only, and the deltas concatenate to decode(ids)', () => {
  for (const tok of [qwen, llama]) {
    const ids = tok.encode(TEXT + ' 🤖🤖 done', { addSpecialTokens: false });
    const stream = tok.streamDecoder();
    const deltas = ids.map((id) => stream.push(id));
    deltas.push(stream.flush());
    assert.equal(deltas.join(''), tok.decode(ids));
    assert.ok(deltas.every((d) => !d.includes('\uFFFD')), 'no half characters');
  }
  // Llama 3 spells the robot emoji as three byte tokens: nothing until the last one.
  const robot = llama.encode('🤖', { addSpecialTokens: false });
  assert.equal(robot.length, 3);
  const s = llama.streamDecoder();
  assert.deepEqual(robot.map((id) => s.push(id)), ['', '', '🤖']);
  const cut = llama.streamDecoder();
  cut.push(robot[0]!);
  assert.equal(cut.flush(), '\uFFFD', 'an incomplete character at the end flushes as U+FFFD');
  const skip = qwen.streamDecoder({ skipSpecialTokens: true });
  assert.deepEqual([9707, 151645, 9707].map((id) => skip.push(id)), ['Hello', '', 'Hello']);
});
