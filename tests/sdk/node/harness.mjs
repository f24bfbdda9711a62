// What the Node SDK scripts share: the gateway to talk to, the cases' output, and usage normalised to spendgate's
// shape. The lines printed are the same as tests/sdk/harness.py's (its docstring describes them): one JSON object
// per case, with the `x-spendgate-request-id` of the call (or, for a client that shows no response headers, a
// workflow of its own) and the usage the SDK itself reported. A failing case prints its error and the script goes on.

export const BASE = process.env.SG_BASE;
export const KEY = process.env.SG_KEY;
export const BAD_KEY = 'sk-sg-not-a-key';
export const REQUEST_ID = 'x-spendgate-request-id';
// Long enough (over 1,024 tokens) that the mock reports cache reads (and, on Messages with cache_control, writes).
export const LONG = 'Summarise the ticket history and list every promised refund with its date. '.repeat(80);
// Milliseconds a call may take: a call that hangs fails its case instead of holding up the test.
export const TIMEOUT_MS = 30_000;
export const HELLO = [{ role: 'user', content: 'Hello' }];

if (!BASE || !KEY) {
  throw new Error('SG_BASE and SG_KEY must name the gateway and a virtual key (the Rust test sets both)');
}

export const workflowOf = (client, feature) => `sdk-${client}-${feature}`;
export const tag = (client, feature) => ({ 'x-spendgate-workflow': workflowOf(client, feature) });

export function expect(cond, what) {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

/** A call the gateway should have recorded, identified by its request id or else its workflow. */
export function recorded(endpoint, stream, usage, { requestId, workflow }) {
  expect(requestId || workflow, 'the call has neither a request id nor a workflow');
  const found = requestId ? { request_id: requestId } : { workflow };
  return { ...found, endpoint, stream, usage };
}

/** The SDK's error as a person reading the matrix needs it: its class, HTTP status and body when it has them. */
export function describe(err) {
  let text = `${err?.constructor?.name ?? 'Error'}: ${err?.message ?? err}`;
  const status = err?.status ?? err?.statusCode;
  if (status !== undefined && !text.includes(String(status))) text += ` (status ${status})`;
  if (err?.responseBody) text += ` body: ${err.responseBody}`;
  return text.slice(0, 1500);
}

/** Runs one case and prints its line; cases run one after another so the output keeps their order. */
export async function run(client, feature, fn) {
  let line;
  try {
    line = { client, feature, ok: true, ...((await fn()) ?? {}) };
  } catch (err) {
    line = { client, feature, ok: false, error: describe(err) };
  }
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

/** The call must fail with `errorType` (the SDK's own typed error) carrying `status`. */
export async function expectRefused(call, errorType, status) {
  try {
    await call();
  } catch (err) {
    const code = err?.status ?? err?.statusCode;
    if (!(err instanceof errorType)) {
      throw new Error(`expected ${errorType.name} (${status}), got ${describe(err)}`);
    }
    expect(code === status, `${err.constructor.name} carried status ${code}, not ${status}`);
    return;
  }
  throw new Error(`expected ${errorType.name} (${status}), but the call succeeded`);
}

export const usage = (input, output, cached = 0, written = 0) => ({
  input_tokens: input,
  output_tokens: output,
  cached_input_tokens: cached,
  cache_write_tokens: written,
});

export const chatUsage = (u) => usage(u.prompt_tokens, u.completion_tokens, u.prompt_tokens_details?.cached_tokens ?? 0);

export const responsesUsage = (u) =>
  usage(u.input_tokens, u.output_tokens, u.input_tokens_details?.cached_tokens ?? 0);

/** Anthropic counts cache reads and writes apart from `input_tokens`; spendgate's prompt includes them. */
export function anthropicUsage(u) {
  const read = u.cache_read_input_tokens ?? 0;
  const written = u.cache_creation_input_tokens ?? 0;
  return usage(u.input_tokens + read + written, u.output_tokens, read, written);
}
