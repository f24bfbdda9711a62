// Drives a running spendgate with the official `@anthropic-ai/sdk` Node SDK; prints one JSON line per case (see
// harness.mjs). The request id comes from the SDK's raw-response API (`.withResponse()`, on the stream helper too).
import Anthropic from '@anthropic-ai/sdk';

import { BAD_KEY, BASE, HELLO, KEY, LONG, REQUEST_ID, TIMEOUT_MS, anthropicUsage, expect, expectRefused, recorded, run } from './harness.mjs';

const C = 'anthropic-node';
const ant = new Anthropic({ baseURL: BASE, apiKey: KEY, maxRetries: 0, timeout: TIMEOUT_MS });
// A cached system prompt: the mock reports cache reads and writes for it.
const system = [{ type: 'text', text: LONG, cache_control: { type: 'ephemeral' } }];

await run(C, 'messages', async () => {
  const { data, response } = await ant.messages
    .create({
      model: 'claude-haiku-4-5', max_tokens: 100, system,
      messages: [{ role: 'user', content: 'Which refunds are overdue?' }],
    })
    .withResponse();
  expect(data.content[0].text, 'no text');
  expect(data.usage.cache_read_input_tokens > 0 && data.usage.cache_creation_input_tokens > 0, JSON.stringify(data.usage));
  return recorded('messages', false, anthropicUsage(data.usage), { requestId: response.headers.get(REQUEST_ID) });
});

await run(C, 'messages-stream', async () => {
  // The SDK's stream helper accumulates message_start and message_delta into the final usage.
  const stream = ant.messages.stream({
    model: 'claude-haiku-4-5', max_tokens: 100, system,
    messages: [{ role: 'user', content: 'And which are on time?' }],
  });
  let text = '';
  stream.on('text', (delta) => {
    text += delta;
  });
  const { response } = await stream.withResponse();
  const final = await stream.finalMessage();
  expect(text && final.usage.output_tokens > 1, JSON.stringify(final.usage));
  return recorded('messages', true, anthropicUsage(final.usage), { requestId: response.headers.get(REQUEST_ID) });
});

await run(C, 'unknown-model', () =>
  expectRefused(
    () => ant.messages.create({ model: 'claude-nonexistent', max_tokens: 10, messages: HELLO }),
    Anthropic.NotFoundError,
    404,
  ));

await run(C, 'bad-key', () => {
  const bad = new Anthropic({ baseURL: BASE, apiKey: BAD_KEY, maxRetries: 0, timeout: TIMEOUT_MS });
  return expectRefused(
    () => bad.messages.create({ model: 'claude-haiku-4-5', max_tokens: 10, messages: HELLO }),
    Anthropic.AuthenticationError,
    401,
  );
});
