// Drives a running spendgate with the official `openai` Node SDK; prints one JSON line per case (see harness.mjs).
// The request id comes from the SDK's raw-response API (`.withResponse()`).
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';

import {
  BAD_KEY, BASE, HELLO, KEY, LONG, REQUEST_ID, TIMEOUT_MS, chatUsage, expect, expectRefused, recorded, responsesUsage, run, tag,
  usage, workflowOf,
} from './harness.mjs';

const C = 'openai-node';
const oai = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: KEY, maxRetries: 0, timeout: TIMEOUT_MS });
const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The weather in a city.',
    parameters: {
      type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false,
    },
    strict: true,
  },
};

const chatCall = (response, stream, seen) =>
  recorded('chat.completions', stream, seen, { requestId: response.headers.get(REQUEST_ID) });

await run(C, 'chat', async () => {
  const { data, response } = await oai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: LONG }] })
    .withResponse();
  expect(data.choices[0].message.content, `no text: ${JSON.stringify(data)}`);
  expect(data.usage.prompt_tokens_details.cached_tokens > 0, 'a long prompt reports cache reads');
  return chatCall(response, false, chatUsage(data.usage));
});

await run(C, 'dated-alias', async () => {
  const { data, response } = await oai.chat.completions
    .create({ model: 'gpt-4o-mini-2024-07-18', messages: HELLO })
    .withResponse();
  expect(data.choices[0].message.content, 'no text');
  return chatCall(response, false, chatUsage(data.usage));
});

await run(C, 'chat-stream-usage', async () => {
  const { data: stream, response } = await oai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: HELLO, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  // OpenAI's documented shape: the usage arrives alone in a last chunk whose choices are empty.
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  const last = chunks.at(-1);
  expect(text, 'no text');
  expect(last.usage && last.choices.length === 0, 'the last chunk carries the usage alone');
  return chatCall(response, true, chatUsage(last.usage));
});

await run(C, 'chat-stream', async () => {
  // The ordinary loop of code that never asked for usage: every chunk has a first choice.
  const { data: stream, response } = await oai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: HELLO, stream: true, max_tokens: 5 })
    .withResponse();
  let text = '';
  for await (const chunk of stream) {
    text += chunk.choices[0].delta.content ?? '';
    expect(!chunk.usage, 'a usage chunk arrived that was not asked for');
  }
  expect(text, 'no text');
  return chatCall(response, true, null);
});

await run(C, 'tools', async () => {
  const { data, response } = await oai.chat.completions
    .create({
      model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Weather in Oslo?' }], tools: [WEATHER_TOOL],
      tool_choice: 'required',
    })
    .withResponse();
  const calls = data.choices[0].message.tool_calls;
  expect(calls?.length, `tool_choice=required, but no tool call came back: ${JSON.stringify(data.choices[0])}`);
  expect(calls[0].function.name === 'get_weather', `called ${calls[0].function.name}`);
  JSON.parse(calls[0].function.arguments);
  expect(data.choices[0].finish_reason === 'tool_calls', `finish_reason ${data.choices[0].finish_reason}`);
  return chatCall(response, false, chatUsage(data.usage));
});

await run(C, 'structured', async () => {
  const Refund = z.object({ ticket: z.string(), amount_cents: z.number().int() });
  const { data, response } = await oai.chat.completions
    .parse({
      model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Extract the refund: ticket T-1, $12.50' }],
      response_format: zodResponseFormat(Refund, 'refund'),
    })
    .withResponse();
  const parsed = data.choices[0].message.parsed;
  expect(parsed && typeof parsed.ticket === 'string', `not parsed: ${JSON.stringify(data.choices[0].message)}`);
  return chatCall(response, false, chatUsage(data.usage));
});

await run(C, 'n2', async () => {
  const { data, response } = await oai.chat.completions
    .create({ model: 'gpt-4o-mini', messages: HELLO, n: 2 })
    .withResponse();
  const indexes = data.choices.map((c) => c.index);
  expect(indexes.join() === '0,1', `n=2 asks for two choices, got ${indexes.length}`);
  expect(data.choices.every((c) => c.message.content), 'a choice without text');
  return chatCall(response, false, chatUsage(data.usage));
});

async function embed(encodingFormat, check) {
  const { data, response } = await oai.embeddings
    .create({ model: 'text-embedding-3-small', input: ['refund policy', 'shipping delays'], encoding_format: encodingFormat })
    .withResponse();
  data.data.forEach((d) => check(d.embedding));
  expect(data.data.map((d) => d.index).join() === '0,1', `two inputs, two embeddings; got ${data.data.length}`);
  return recorded('embeddings', false, usage(data.usage.prompt_tokens, 0), { requestId: response.headers.get(REQUEST_ID) });
}

await run(C, 'embed-float', () =>
  embed('float', (e) => expect(Array.isArray(e) && e.length > 0, 'float embeddings are arrays')));

await run(C, 'embed-base64', () =>
  embed('base64', (e) => {
    // Asked for base64, the SDK hands the string through: little-endian float32s, base64-encoded.
    expect(typeof e === 'string', `base64 was asked for, got ${typeof e}`);
    expect(Buffer.from(e, 'base64').length % 4 === 0, 'not a whole number of float32s');
  }));

await run(C, 'responses', async () => {
  const { data, response } = await oai.responses
    .create({ model: 'gpt-4.1-mini', input: LONG, max_output_tokens: 40 })
    .withResponse();
  expect(data.output_text, 'no text');
  expect(data.usage.input_tokens_details.cached_tokens > 0, 'a long prompt reports cache reads');
  return recorded('responses', false, responsesUsage(data.usage), { requestId: response.headers.get(REQUEST_ID) });
});

await run(C, 'responses-stream', async () => {
  // The stream helper shows no response headers, so this request carries a workflow of its own.
  const stream = oai.responses.stream(
    { model: 'gpt-4.1-mini', input: 'Say hello' },
    { headers: tag(C, 'responses-stream') },
  );
  let text = '';
  for await (const event of stream) {
    if (event.type === 'response.output_text.delta') text += event.delta;
  }
  const final = await stream.finalResponse();
  expect(text && text === final.output_text, `streamed ${text}, final ${final.output_text}`);
  return recorded('responses', true, responsesUsage(final.usage), { workflow: workflowOf(C, 'responses-stream') });
});

// Models of other providers through the OpenAI API: a Claude model (translated to Anthropic's Messages API and
// back) and a Gemini model (to Google's generateContent through the Messages API), issue 27.
const CLAUDE = 'claude-haiku-4-5';
const GEMINI = 'gemini-3-flash-preview';
const through = (upstream, response, stream, seen) => ({ ...chatCall(response, stream, seen), upstream_api: upstream });
// Anthropic does not enforce a schema strictly, so a strict tool is refused for Claude (and Gemini): not strict.
const { strict: _strict, ...looseWeather } = WEATHER_TOOL.function;
const LOOSE_WEATHER_TOOL = { type: 'function', function: looseWeather };

async function chatThrough(model, upstream, messages, check = () => {}) {
  const { data, response } = await oai.chat.completions.create({ model, messages, max_tokens: 100 }).withResponse();
  expect(data.choices[0].message.content, `no text: ${JSON.stringify(data)}`);
  expect(data.choices[0].finish_reason === 'stop', `finish_reason ${data.choices[0].finish_reason}`);
  check(data);
  return through(upstream, response, false, chatUsage(data.usage));
}

async function chatStreamThrough(model, upstream) {
  const { data: stream, response } = await oai.chat.completions
    .create({ model, messages: HELLO, stream: true, stream_options: { include_usage: true } })
    .withResponse();
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  const last = chunks.at(-1);
  expect(text, 'no text');
  expect(last.usage && last.choices.length === 0, 'the last chunk carries the usage alone');
  return through(upstream, response, true, chatUsage(last.usage));
}

/** A required call of the weather tool; with `answerResult`, its result sent back is answered in words. */
async function toolsThrough(model, upstream, answerResult = false) {
  const ask = { role: 'user', content: 'Weather in Oslo?' };
  const { data, response } = await oai.chat.completions
    .create({ model, messages: [ask], tools: [LOOSE_WEATHER_TOOL], tool_choice: 'required' })
    .withResponse();
  const calls = data.choices[0].message.tool_calls;
  expect(calls?.[0]?.function.name === 'get_weather', `no tool call: ${JSON.stringify(data.choices[0].message)}`);
  expect('city' in JSON.parse(calls[0].function.arguments), `arguments ${calls[0].function.arguments}`);
  expect(data.choices[0].finish_reason === 'tool_calls', `finish_reason ${data.choices[0].finish_reason}`);
  if (answerResult) {
    const result = { role: 'tool', tool_call_id: calls[0].id, content: '2C and snow' };
    const follow = await oai.chat.completions.create({
      model, tools: [LOOSE_WEATHER_TOOL], messages: [ask, data.choices[0].message, result],
    });
    expect(follow.choices[0].message.content, `the result is answered in words: ${JSON.stringify(follow)}`);
  }
  return through(upstream, response, false, chatUsage(data.usage));
}

await run(C, 'claude-chat', () => chatThrough(CLAUDE, 'messages', [{ role: 'system', content: 'Be brief.' }, ...HELLO]));
await run(C, 'claude-chat-stream', () => chatStreamThrough(CLAUDE, 'messages'));
await run(C, 'claude-tools', () => toolsThrough(CLAUDE, 'messages'));

// A thinking model: its reasoning tokens reach the usage the SDK sees.
await run(C, 'gemini-chat', () =>
  chatThrough(GEMINI, 'generate_content', [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: LONG }], (d) => {
    expect(d.usage.completion_tokens_details.reasoning_tokens > 0, "a thinking model's reasoning");
    expect(d.usage.prompt_tokens_details.cached_tokens > 0, 'a long prompt reports cache reads');
  }));
await run(C, 'gemini-chat-stream', () => chatStreamThrough(GEMINI, 'generate_content'));
// The call goes back with its result; the thinking model's signature rides in its id.
await run(C, 'gemini-tools', () => toolsThrough(GEMINI, 'generate_content', true));

await run(C, 'unknown-model', () =>
  expectRefused(() => oai.chat.completions.create({ model: 'no-such-model', messages: HELLO }), OpenAI.NotFoundError, 404));

await run(C, 'bad-key', () => {
  const bad = new OpenAI({ baseURL: `${BASE}/v1`, apiKey: BAD_KEY, maxRetries: 0, timeout: TIMEOUT_MS });
  return expectRefused(
    () => bad.chat.completions.create({ model: 'gpt-4o-mini', messages: HELLO }),
    OpenAI.AuthenticationError,
    401,
  );
});
