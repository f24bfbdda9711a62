// Drives a running spendgate with the Vercel AI SDK (`ai` with `@ai-sdk/openai` and `@ai-sdk/anthropic`); prints one
// JSON line per case (see harness.mjs). The request id comes from the `response.headers` each result exposes.
import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import { APICallError, embed, generateObject, generateText, streamText, tool } from 'ai';
import { z } from 'zod';

import { BAD_KEY, BASE, KEY, LONG, REQUEST_ID, TIMEOUT_MS, expect, expectRefused, recorded, run, usage } from './harness.mjs';

const C = 'vercel-ai';
const openai = createOpenAI({ baseURL: `${BASE}/v1`, apiKey: KEY });
const anthropic = createAnthropic({ baseURL: `${BASE}/v1`, apiKey: KEY });
// The SDK retries by default; a test wants each call to be exactly one request, and none to hang.
const once = { maxRetries: 0, timeout: TIMEOUT_MS };

/** The SDK's usage: `inputTokens` is the whole prompt, its details split cache reads and writes out of it. */
const sdkUsage = (u) =>
  usage(u.inputTokens, u.outputTokens, u.inputTokenDetails?.cacheReadTokens ?? 0, u.inputTokenDetails?.cacheWriteTokens ?? 0);

const call = (endpoint, stream, u, response) =>
  recorded(endpoint, stream, sdkUsage(u), { requestId: response?.headers?.[REQUEST_ID] });

await run(C, 'chat', async () => {
  const r = await generateText({ ...once, model: openai.chat('gpt-4o-mini'), prompt: LONG });
  expect(r.text, 'no text');
  expect(r.usage.inputTokenDetails.cacheReadTokens > 0, 'a long prompt reports cache reads');
  return call('chat.completions', false, r.usage, r.response);
});

/** Streams a call to its end the ordinary way (`textStream`); the usage and headers arrive after the text. */
async function streamed(endpoint, options) {
  const r = streamText({ ...once, ...options });
  let text = '';
  for await (const delta of r.textStream) text += delta;
  expect(text, 'no text');
  return call(endpoint, true, await r.usage, await r.response);
}

// The AI SDK always asks OpenAI chat streams for usage (stream_options.include_usage).
await run(C, 'chat-stream-usage', () =>
  streamed('chat.completions', { model: openai.chat('gpt-4o-mini'), prompt: 'Hello' }));

await run(C, 'tools', async () => {
  const r = await generateText({
    ...once,
    model: openai.chat('gpt-4o-mini'),
    prompt: 'Weather in Oslo?',
    tools: { get_weather: tool({ description: 'The weather in a city.', inputSchema: z.object({ city: z.string() }) }) },
    toolChoice: 'required',
  });
  expect(r.toolCalls.length === 1, `toolChoice=required, but ${r.toolCalls.length} tool calls came back`);
  expect(r.toolCalls[0].toolName === 'get_weather', `called ${r.toolCalls[0].toolName}`);
  return call('chat.completions', false, r.usage, r.response);
});

await run(C, 'structured', async () => {
  const r = await generateObject({
    ...once,
    model: openai.chat('gpt-4o-mini'),
    schema: z.object({ ticket: z.string(), amount_cents: z.number().int() }),
    prompt: 'Extract the refund: ticket T-1, $12.50',
  });
  expect(typeof r.object.ticket === 'string', `not an object: ${JSON.stringify(r.object)}`);
  return call('chat.completions', false, r.usage, r.response);
});

await run(C, 'embed-float', async () => {
  // The OpenAI provider asks for float embeddings (encoding_format "float").
  const r = await embed({ ...once, model: openai.embeddingModel('text-embedding-3-small'), value: 'refund policy' });
  expect(r.embedding.length > 0, 'an empty embedding');
  return recorded('embeddings', false, usage(r.usage.tokens, 0), { requestId: r.response?.headers?.[REQUEST_ID] });
});

await run(C, 'responses', async () => {
  const r = await generateText({ ...once, model: openai.responses('gpt-4.1-mini'), prompt: LONG, maxOutputTokens: 40 });
  expect(r.text, 'no text');
  return call('responses', false, r.usage, r.response);
});

await run(C, 'responses-stream', () =>
  streamed('responses', { model: openai.responses('gpt-4.1-mini'), prompt: 'Say hello' }));

// A cached system prompt: the mock reports cache reads and writes for it.
const cachedSystem = [
  { role: 'system', content: LONG, providerOptions: { anthropic: { cacheControl: { type: 'ephemeral' } } } },
];

await run(C, 'messages', async () => {
  const r = await generateText({
    ...once,
    model: anthropic('claude-haiku-4-5'),
    maxOutputTokens: 100,
    messages: [...cachedSystem, { role: 'user', content: 'Which refunds are overdue?' }],
  });
  expect(r.text, 'no text');
  expect(r.usage.inputTokenDetails.cacheReadTokens > 0 && r.usage.inputTokenDetails.cacheWriteTokens > 0,
    JSON.stringify(r.usage));
  return call('messages', false, r.usage, r.response);
});

await run(C, 'messages-stream', () =>
  streamed('messages', {
    model: anthropic('claude-haiku-4-5'),
    maxOutputTokens: 100,
    messages: [...cachedSystem, { role: 'user', content: 'And which are on time?' }],
  }));

/** The AI SDK's typed error for a refused call is APICallError, with the HTTP status as `statusCode`. */
await run(C, 'unknown-model', () =>
  expectRefused(() => generateText({ ...once, model: openai.chat('no-such-model'), prompt: 'x' }), APICallError, 404));

await run(C, 'bad-key', () => {
  const bad = createOpenAI({ baseURL: `${BASE}/v1`, apiKey: BAD_KEY });
  return expectRefused(() => generateText({ ...once, model: bad.chat('gpt-4o-mini'), prompt: 'x' }), APICallError, 401);
});
