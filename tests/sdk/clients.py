"""Drives a running spendgate with the official `openai` and `anthropic` Python SDKs.

Run by crates/spendgate/tests/sdk_clients.rs with SG_BASE (the gateway's base URL) and SG_KEY (a virtual key); prints
one JSON line per case (see harness.py). The request id comes from each SDK's raw-response API (`with_raw_response`,
or the Anthropic stream's `response`).
"""

import base64
import json

import anthropic
import openai
import pydantic

from harness import (BAD_KEY, BASE, KEY, LONG, REQUEST_ID, TIMEOUT, anthropic_usage, case, chat_usage, expect, expect_refused,
                     recorded, responses_usage, tag, usage, workflow_of)

OAI = "openai-python"
ANT = "anthropic-python"
oai = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT)
ant = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=TIMEOUT)
HELLO = [{"role": "user", "content": "Hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False},
        "strict": True,
    },
}


class Refund(pydantic.BaseModel):
    ticket: str
    amount_cents: int


def chat_call(raw, stream=False, usage_seen=None):
    return recorded("chat.completions", stream, usage_seen, request_id=raw.headers.get(REQUEST_ID))


@case(OAI, "chat")
def _():
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": LONG}])
    r = raw.parse()
    expect(r.choices[0].message.content, f"no text: {r}")
    expect(r.usage.prompt_tokens_details.cached_tokens > 0, f"a long prompt reports cache reads: {r.usage}")
    return chat_call(raw, usage_seen=chat_usage(r.usage))


@case(OAI, "dated-alias")
def _():
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini-2024-07-18", messages=HELLO)
    r = raw.parse()
    expect(r.choices[0].message.content, f"no text: {r}")
    return chat_call(raw, usage_seen=chat_usage(r.usage))


@case(OAI, "chat-stream-usage")
def _():
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, stream=True,
                                                        stream_options={"include_usage": True})
    chunks = list(raw.parse())
    # OpenAI's documented shape: the usage arrives alone in a last chunk whose choices are empty.
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect(text, "no text")
    expect(chunks[-1].usage is not None and not chunks[-1].choices, "the last chunk carries the usage alone")
    return chat_call(raw, True, chat_usage(chunks[-1].usage))


@case(OAI, "chat-stream")
def _():
    # The ordinary loop of code that never asked for usage: every chunk has a first choice.
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, stream=True, max_tokens=5)
    text = ""
    for chunk in raw.parse():
        text += chunk.choices[0].delta.content or ""
        expect(chunk.usage is None, "a usage chunk arrived that was not asked for")
    expect(text, "no text")
    return chat_call(raw, True, None)


@case(OAI, "tools")
def _():
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=[WEATHER_TOOL],
        tool_choice="required")
    r = raw.parse()
    calls = r.choices[0].message.tool_calls
    expect(calls, f"tool_choice=required, but no tool call came back: {r.choices[0].message}")
    expect(calls[0].function.name == "get_weather", f"called {calls[0].function.name}")
    json.loads(calls[0].function.arguments)
    expect(r.choices[0].finish_reason == "tool_calls", f"finish_reason {r.choices[0].finish_reason}")
    return chat_call(raw, usage_seen=chat_usage(r.usage))


@case(OAI, "structured")
def _():
    raw = oai.chat.completions.with_raw_response.parse(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Extract the refund: ticket T-1, $12.50"}],
        response_format=Refund)
    r = raw.parse()
    expect(isinstance(r.choices[0].message.parsed, Refund), f"not parsed: {r.choices[0].message}")
    return chat_call(raw, usage_seen=chat_usage(r.usage))


@case(OAI, "n2")
def _():
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=HELLO, n=2)
    r = raw.parse()
    expect([c.index for c in r.choices] == [0, 1], f"n=2 asks for two choices, got {len(r.choices)}")
    expect(all(c.message.content for c in r.choices), "a choice without text")
    return chat_call(raw, usage_seen=chat_usage(r.usage))


def embed(encoding_format, check):
    """Embeds two inputs; each embedding must pass `check`, and there must be one per input."""
    raw = oai.embeddings.with_raw_response.create(model="text-embedding-3-small",
                                                  input=["refund policy", "shipping delays"],
                                                  encoding_format=encoding_format)
    e = raw.parse()
    for d in e.data:
        check(d.embedding)
    expect([d.index for d in e.data] == [0, 1], f"two inputs, two embeddings; got {len(e.data)}")
    return recorded("embeddings", False, usage(e.usage.prompt_tokens, 0), request_id=raw.headers.get(REQUEST_ID))


def base64_floats(embedding):
    # Asked for base64, the SDK hands the string through: little-endian float32s, base64-encoded.
    expect(isinstance(embedding, str), f"base64 was asked for, got {type(embedding).__name__}")
    expect(len(base64.b64decode(embedding)) % 4 == 0, "not a whole number of float32s")


@case(OAI, "embed-float")
def _():
    return embed("float", lambda v: expect(isinstance(v, list) and v, "float embeddings are lists"))


@case(OAI, "embed-base64")
def _():
    return embed("base64", base64_floats)


@case(OAI, "responses")
def _():
    raw = oai.responses.with_raw_response.create(model="gpt-4.1-mini", input=LONG, max_output_tokens=40)
    r = raw.parse()
    expect(r.output_text, f"no text: {r}")
    expect(r.usage.input_tokens_details.cached_tokens > 0, f"a long prompt reports cache reads: {r.usage}")
    return recorded("responses", False, responses_usage(r.usage), request_id=raw.headers.get(REQUEST_ID))


@case(OAI, "responses-stream")
def _():
    # The stream helper shows no response headers, so this request carries a workflow of its own.
    with oai.responses.stream(model="gpt-4.1-mini", input="Say hello",
                              extra_headers=tag(OAI, "responses-stream")) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    expect(text and text == final.output_text, f"streamed {text!r}, final {final.output_text!r}")
    return recorded("responses", True, responses_usage(final.usage), workflow=workflow_of(OAI, "responses-stream"))


@case(OAI, "unknown-model")
def _():
    expect_refused(lambda: oai.chat.completions.create(model="no-such-model", messages=HELLO), openai.NotFoundError,
                   404)


@case(OAI, "bad-key")
def _():
    bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key=BAD_KEY, max_retries=0, timeout=TIMEOUT)
    expect_refused(lambda: bad.chat.completions.create(model="gpt-4o-mini", messages=HELLO),
                   openai.AuthenticationError, 401)


# --- A Claude model through the OpenAI API: the gateway translates to Anthropic's Messages API and back (issue 27).
CLAUDE = "claude-haiku-4-5"
# Anthropic does not enforce a schema strictly, so a strict tool is refused for Claude: this one is not strict.
LOOSE_WEATHER_TOOL = {"type": "function", "function": {k: v for k, v in WEATHER_TOOL["function"].items() if k != "strict"}}


def translated_call(raw, endpoint, upstream, stream, usage_seen):
    return {**recorded(endpoint, stream, usage_seen, request_id=raw.headers.get(REQUEST_ID)), "upstream_api": upstream}


def chat_through(model, upstream, messages, max_tokens, check=lambda r: None):
    """A chat completion of `model`, whose provider is reached through `upstream`'s API."""
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=messages, max_tokens=max_tokens)
    r = raw.parse()
    expect(r.choices[0].message.content, f"no text: {r}")
    expect(r.choices[0].finish_reason == "stop", f"finish_reason {r.choices[0].finish_reason}")
    check(r)
    return translated_call(raw, "chat.completions", upstream, False, chat_usage(r.usage))


def chat_stream_through(model, upstream):
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=HELLO, stream=True,
                                                        stream_options={"include_usage": True})
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    expect(text, "no text")
    expect(chunks[-1].usage is not None and not chunks[-1].choices, "the last chunk carries the usage alone")
    return translated_call(raw, "chat.completions", upstream, True, chat_usage(chunks[-1].usage))


def tools_through(model, upstream, answer_result=False):
    """A required call of the weather tool; with `answer_result`, its result sent back is answered in words."""
    ask = {"role": "user", "content": "Weather in Oslo?"}
    raw = oai.chat.completions.with_raw_response.create(model=model, messages=[ask], tools=[LOOSE_WEATHER_TOOL],
                                                        tool_choice="required")
    r = raw.parse()
    calls = r.choices[0].message.tool_calls
    expect(calls and calls[0].function.name == "get_weather", f"no tool call: {r.choices[0].message}")
    expect("city" in json.loads(calls[0].function.arguments), f"arguments {calls[0].function.arguments}")
    expect(r.choices[0].finish_reason == "tool_calls", f"finish_reason {r.choices[0].finish_reason}")
    if answer_result:
        result = {"role": "tool", "tool_call_id": calls[0].id, "content": "2C and snow"}
        follow = oai.chat.completions.create(model=model, tools=[LOOSE_WEATHER_TOOL],
                                             messages=[ask, r.choices[0].message.model_dump(exclude_none=True), result])
        expect(follow.choices[0].message.content, f"the result is answered in words: {follow}")
    return translated_call(raw, "chat.completions", upstream, False, chat_usage(r.usage))


@case(OAI, "claude-chat")
def _():
    return chat_through(CLAUDE, "messages", [{"role": "system", "content": "Be brief."}, *HELLO], 50)


@case(OAI, "claude-chat-stream")
def _():
    return chat_stream_through(CLAUDE, "messages")


@case(OAI, "claude-tools")
def _():
    return tools_through(CLAUDE, "messages")


# --- A Gemini model through the OpenAI API: translated to Google's generateContent through Anthropic's Messages API
# (issue 27). A thinking model: its reasoning tokens reach the usage the SDK sees.
GEMINI = "gemini-3-flash-preview"


def reasoned_and_cached(r):
    expect(r.usage.completion_tokens_details.reasoning_tokens > 0, f"a thinking model's reasoning: {r.usage}")
    expect(r.usage.prompt_tokens_details.cached_tokens > 0, f"a long prompt reports cache reads: {r.usage}")


@case(OAI, "gemini-chat")
def _():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": LONG}]
    return chat_through(GEMINI, "generate_content", messages, 100, reasoned_and_cached)


@case(OAI, "gemini-chat-stream")
def _():
    return chat_stream_through(GEMINI, "generate_content")


@case(OAI, "gemini-tools")
def _():
    # The call goes back with its result; the thinking model's signature rides in its id.
    return tools_through(GEMINI, "generate_content", answer_result=True)


# --- Anthropic Messages with a cached system prompt.
SYSTEM = [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}]


@case(ANT, "messages")
def _():
    raw = ant.messages.with_raw_response.create(model="claude-haiku-4-5", max_tokens=100, system=SYSTEM,
                                                messages=[{"role": "user", "content": "Which refunds are overdue?"}])
    m = raw.parse()
    expect(m.content[0].text, f"no text: {m}")
    expect(m.usage.cache_read_input_tokens > 0 and m.usage.cache_creation_input_tokens > 0, f"{m.usage}")
    return recorded("messages", False, anthropic_usage(m.usage), request_id=raw.headers.get(REQUEST_ID))


@case(ANT, "messages-stream")
def _():
    # The SDK's stream helper accumulates message_start and message_delta into the final usage.
    with ant.messages.stream(model="claude-haiku-4-5", max_tokens=100, system=SYSTEM,
                             messages=[{"role": "user", "content": "And which are on time?"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers.get(REQUEST_ID)
    expect(text and final.usage.output_tokens > 1, f"{final.usage}")
    return recorded("messages", True, anthropic_usage(final.usage), request_id=request_id)


# --- A GPT model through Anthropic's API: translated to OpenAI's chat completions and back (issue 27).
@case(ANT, "gpt-messages")
def _():
    raw = ant.messages.with_raw_response.create(model="gpt-4o-mini", max_tokens=100, system="Be brief.",
                                                messages=HELLO)
    m = raw.parse()
    expect(m.content[0].text, f"no text: {m}")
    expect(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason}")
    return translated_call(raw, "messages", "chat.completions", False, anthropic_usage(m.usage))


def translated_messages_stream(model, upstream):
    """A Messages stream of `model`, whose provider is reached through the `upstream` API."""
    with ant.messages.stream(model=model, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers.get(REQUEST_ID)
    expect(text and final.content[0].text == text, f"streamed {text!r}, final {final.content}")
    expect(final.usage.input_tokens > 0 and final.usage.output_tokens > 0, f"{final.usage}")
    return {**recorded("messages", True, anthropic_usage(final.usage), request_id=request_id),
            "upstream_api": upstream}


@case(ANT, "gpt-messages-stream")
def _():
    return translated_messages_stream("gpt-4o-mini", "chat.completions")


# --- A Claude model on Amazon Bedrock through Anthropic's API: translated to Converse and back, the stream from
# AWS's binary event stream (issue 27). The test server's mock named "bedrock" speaks Converse only.
BEDROCK_CLAUDE = "us.anthropic.claude-haiku-4-5-20251001-v1:0"


@case(ANT, "bedrock-messages")
def _():
    raw = ant.messages.with_raw_response.create(model=BEDROCK_CLAUDE, max_tokens=100, system="Be brief.",
                                                messages=HELLO)
    m = raw.parse()
    expect(m.content[0].text, f"no text: {m}")
    expect(m.stop_reason == "end_turn", f"stop_reason {m.stop_reason}")
    expect(m.model == BEDROCK_CLAUDE, f"model {m.model}")
    return translated_call(raw, "messages", "converse", False, anthropic_usage(m.usage))


@case(ANT, "bedrock-messages-stream")
def _():
    return translated_messages_stream(BEDROCK_CLAUDE, "converse")


@case(ANT, "unknown-model")
def _():
    expect_refused(lambda: ant.messages.create(model="claude-nonexistent", max_tokens=10, messages=HELLO),
                   anthropic.NotFoundError, 404)


@case(ANT, "bad-key")
def _():
    bad = anthropic.Anthropic(base_url=BASE, api_key=BAD_KEY, max_retries=0, timeout=TIMEOUT)
    expect_refused(lambda: bad.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HELLO),
                   anthropic.AuthenticationError, 401)
