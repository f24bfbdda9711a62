"""Drives a running spendgate with the official `openai` and `anthropic` Python SDKs.

Run by crates/spendgate/tests/sdk_clients.rs with SG_BASE (the gateway's base URL) and SG_KEY (a virtual key).
Each case tags its request with its own workflow (x-spendgate-workflow) and prints one JSON line: the case, its
workflow, endpoint, whether it streamed, and the usage the SDK itself saw, normalised to spendgate's shape (the
prompt includes cached and cache-write tokens). The Rust test then finds each spend log by its workflow and checks
its tokens against these and its cost against the catalog, exactly. Any failure raises, so the exit code is not 0.
"""

import json
import os

import anthropic
import openai

BASE = os.environ["SG_BASE"]
KEY = os.environ["SG_KEY"]

# Long enough (over 1,024 tokens) that the mock reports cache reads (and, on Messages with cache_control, writes).
LONG = "Summarise the ticket history and list every promised refund with its date. " * 80

oai = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
ant = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0)


def emit(case, endpoint, stream, usage):
    print(json.dumps({"case": case, "workflow": f"sdk-{case}", "endpoint": endpoint, "stream": stream,
                      "usage": usage}), flush=True)


def tag(case):
    return {"x-spendgate-workflow": f"sdk-{case}"}


def chat_usage(u):
    details = getattr(u, "prompt_tokens_details", None)
    cached = (details.cached_tokens or 0) if details else 0
    return {"input_tokens": u.prompt_tokens, "output_tokens": u.completion_tokens,
            "cached_input_tokens": cached, "cache_write_tokens": 0}


def anthropic_usage(u):
    read = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    return {"input_tokens": u.input_tokens + read + written, "output_tokens": u.output_tokens,
            "cached_input_tokens": read, "cache_write_tokens": written}


def responses_usage(u):
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cached_input_tokens": u.input_tokens_details.cached_tokens, "cache_write_tokens": 0}


# --- OpenAI: chat completions, not streamed.
r = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}],
                                extra_headers=tag("chat"))
assert r.choices[0].message.content, r
assert r.usage.prompt_tokens_details.cached_tokens > 0, r.usage
emit("chat", "chat.completions", False, chat_usage(r.usage))

# --- OpenAI: chat completions, streamed, usage asked for.
usage, text = None, ""
for chunk in oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}],
                                         stream=True, stream_options={"include_usage": True},
                                         extra_headers=tag("chat-stream")):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text and usage is not None
emit("chat-stream", "chat.completions", True, chat_usage(usage))

# --- OpenAI: chat completions, streamed without asking for usage: the gateway asks on the client's behalf.
usage, text = None, ""
for chunk in oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi again"}],
                                         stream=True, max_tokens=5, extra_headers=tag("chat-stream-unasked")):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text and usage is not None and usage.completion_tokens <= 5
emit("chat-stream-unasked", "chat.completions", True, chat_usage(usage))

# --- OpenAI: embeddings.
e = oai.embeddings.create(model="text-embedding-3-small", input=["refund policy", "shipping delays"],
                          extra_headers=tag("embeddings"))
assert len(e.data) >= 1 and e.data[0].embedding
emit("embeddings", "embeddings", False,
     {"input_tokens": e.usage.prompt_tokens, "output_tokens": 0, "cached_input_tokens": 0, "cache_write_tokens": 0})

# --- OpenAI: Responses, not streamed and streamed.
resp = oai.responses.create(model="gpt-4.1-mini", input=LONG, max_output_tokens=40, extra_headers=tag("responses"))
assert resp.output_text, resp
assert resp.usage.input_tokens_details.cached_tokens > 0
emit("responses", "responses", False, responses_usage(resp.usage))

usage, text = None, ""
for event in oai.responses.create(model="gpt-4.1-mini", input="Say hello", stream=True,
                                  extra_headers=tag("responses-stream")):
    if event.type == "response.output_text.delta":
        text += event.delta
    elif event.type == "response.completed":
        usage = event.response.usage
assert text and usage is not None
emit("responses-stream", "responses", True, responses_usage(usage))

# --- Anthropic: Messages with a cached system prompt, not streamed.
system = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]
m = ant.messages.create(model="claude-haiku-4-5", max_tokens=100, system=system,
                        messages=[{"role": "user", "content": "Which refunds are overdue?"}],
                        extra_headers=tag("messages"))
assert m.content[0].text, m
assert m.usage.cache_read_input_tokens > 0 and m.usage.cache_creation_input_tokens > 0, m.usage
emit("messages", "messages", False, anthropic_usage(m.usage))

# --- Anthropic: Messages streamed; the SDK's own stream helper accumulates message_start and message_delta.
with ant.messages.stream(model="claude-haiku-4-5", max_tokens=100, system=system,
                         messages=[{"role": "user", "content": "And which are on time?"}],
                         extra_headers=tag("messages-stream")) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text and final.usage.output_tokens > 1, final.usage
emit("messages-stream", "messages", True, anthropic_usage(final.usage))

# --- Errors arrive as each SDK's own typed exceptions (nothing is recorded for them).
try:
    ant.messages.create(model="claude-nonexistent", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must fail")
except anthropic.NotFoundError as err:
    assert "not_found_error" in str(err), err
try:
    anthropic.Anthropic(base_url=BASE, api_key="sk-sg-not-a-key", max_retries=0).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a bad key must fail")
except anthropic.AuthenticationError:
    pass
try:
    oai.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model must fail")
except openai.NotFoundError:
    pass
print(json.dumps({"case": "errors", "ok": True}), flush=True)
