"""Drives the mock provider with the official SDKs' helpers (openai-python's `chat.completions.parse`, `.stream`,
`responses.stream`, `responses.parse`; anthropic's `messages.stream`), to prove its shapes parse as the real APIs'.

Run by crates/spendgate/tests/sdk_clients.rs through the gateway (SG_BASE, SG_KEY), or by hand against
`spendgate mock-upstream --listen 127.0.0.1:PORT` (SG_BASE=http://127.0.0.1:PORT, no key needed).
Each check raises on failure; the last line printed is JSON with the number of requests made.
"""

import base64
import json
import os
import struct
import sys
from typing import List, Optional

import anthropic
import openai
from pydantic import BaseModel

try:  # The pinned SDKs are built on httpx2; older ones on httpx.
    import httpx2 as httpx
except ImportError:
    import httpx

BASE = os.environ["SG_BASE"]
KEY = os.environ.get("SG_KEY", "mock")
REQUESTS = 0


def count(_request):
    global REQUESTS
    REQUESTS += 1


oai = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0,
                    http_client=httpx.Client(event_hooks={"request": [count]}))
ant = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0,
                          http_client=httpx.Client(event_hooks={"request": [count]}))


class Address(BaseModel):
    street: str
    zip_code: int


class Person(BaseModel):
    name: str
    age: int
    score: float
    active: bool
    tags: List[str]
    address: Address
    nickname: Optional[str]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                           "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "unit"],
        },
    },
}
MSGS = [{"role": "user", "content": "What is the weather in Paris?"}]

# Chat: structured output through the parse helper (pydantic model -> strict json_schema with $defs).
r = oai.chat.completions.parse(model="gpt-4o-mini", messages=MSGS, response_format=Person)
p = r.choices[0].message.parsed
assert isinstance(p, Person) and isinstance(p.address, Address), r
print("chat.parse", p, file=sys.stderr)

# Chat: n choices with tools; each choice a tool call with JSON arguments; usage billed for all of them.
r = oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS, n=2, tools=[WEATHER])
assert [c.index for c in r.choices] == [0, 1], r
for c in r.choices:
    assert c.finish_reason == "tool_calls" and c.message.content is None, c
    call = c.message.tool_calls[0]
    args = json.loads(call.function.arguments)
    assert call.id.startswith("call_") and call.function.name == "get_weather" and args["unit"] in ("c", "f"), call
print("chat n=2 tools", r.usage, file=sys.stderr)

# Chat: the parse helper with a strict function tool (pydantic_function_tool) parses the arguments.
r = oai.chat.completions.parse(model="gpt-4o-mini", messages=MSGS, tools=[openai.pydantic_function_tool(Person)])
assert isinstance(r.choices[0].message.tool_calls[0].function.parsed_arguments, Person), r
print("chat.parse tool", r.choices[0].message.tool_calls[0].function.parsed_arguments, file=sys.stderr)

# Chat: the tool's result is answered in words.
r = oai.chat.completions.create(model="gpt-4o-mini", tools=[WEATHER], messages=MSGS + [
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
                                                           "function": {"name": "get_weather", "arguments": "{}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}])
assert r.choices[0].finish_reason in ("stop", "length") and r.choices[0].message.content, r

# Chat: streamed with n=2 and tools through the stream helper, which accumulates tool call deltas per choice.
with oai.chat.completions.stream(model="gpt-4o-mini", messages=MSGS, n=2, tools=[WEATHER],
                                 stream_options={"include_usage": True}) as s:
    for _ in s:
        pass
    final = s.get_final_completion()
assert len(final.choices) == 2 and final.usage.completion_tokens > 0, final
for c in final.choices:
    assert json.loads(c.message.tool_calls[0].function.arguments)["city"], c
print("chat stream n=2 tools", final.usage, file=sys.stderr)

# Chat: streamed structured output through the stream helper.
with oai.chat.completions.stream(model="gpt-4o-mini", messages=MSGS, response_format=Person) as s:
    final = s.get_final_completion()
assert isinstance(final.choices[0].message.parsed, Person), final

# Chat: reasoning model's usage details.
r = oai.chat.completions.create(model="o4-mini", messages=MSGS)
d = r.usage.completion_tokens_details
assert d.reasoning_tokens > 0 and d.reasoning_tokens < r.usage.completion_tokens, r.usage
# Chat: streams without include_usage carry no usage.
chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=MSGS, stream=True))
finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
assert finishes == ["stop"], finishes
# (The gateway asks for usage on the client's behalf, to bill it, and takes it out of what the client gets.)
assert all(c.usage is None and c.choices for c in chunks), chunks[-1]

# Embeddings: base64 (the SDK's default when numpy is absent is base64 and it decodes it), and floats.
e = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"], dimensions=8)
assert [d.index for d in e.data] == [0, 1, 2] and len(e.data[0].embedding) == 8, e
raw = oai.embeddings.with_raw_response.create(model="text-embedding-3-small", input="a",
                                              encoding_format="base64").http_response.json()
vec = struct.unpack("<1536f", base64.b64decode(raw["data"][0]["embedding"]))
assert abs(sum(x * x for x in vec) - 1.0) < 1e-3
print("embeddings", e.usage, file=sys.stderr)

# Responses: the stream helper with a text format; every event in order.
with oai.responses.stream(model="gpt-4.1-mini", input="Describe someone", text_format=Person) as s:
    kinds = [ev.type for ev in s]
    final = s.get_final_response()
assert isinstance(final.output_parsed, Person), final
assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added"] and kinds[-1] == "response.completed", kinds
print("responses.stream", kinds[:5], "...", kinds[-4:], file=sys.stderr)

# Responses: parse, function tools streamed and not, reasoning item.
r = oai.responses.parse(model="o4-mini", input="Describe someone", text_format=Person)
assert r.output[0].type == "reasoning" and isinstance(r.output_parsed, Person), r
assert r.usage.output_tokens_details.reasoning_tokens > 0, r.usage
tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"], "strict": False}
r = oai.responses.create(model="gpt-4.1-mini", input="weather?", tools=[tool])
assert r.output[0].type == "function_call" and json.loads(r.output[0].arguments)["city"], r
with oai.responses.stream(model="gpt-4.1-mini", input="weather?", tools=[tool]) as s:
    deltas = [ev for ev in s if ev.type == "response.function_call_arguments.delta"]
    final = s.get_final_response()
assert deltas and json.loads(final.output[0].arguments)["unit"] in ("c", "f"), final
r = oai.responses.create(model="gpt-4.1-mini", tools=[tool], input=[
    {"role": "user", "content": "weather?"},
    {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "c1", "output": "sunny"}])
assert r.output_text, r
print("responses tools", final.output[0].arguments, file=sys.stderr)

# Anthropic: tools, streamed through the helper (accumulates input_json_delta), and the cache split.
atool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
m = ant.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=MSGS, tools=[atool])
assert m.stop_reason == "tool_use" and m.content[0].type == "tool_use" and m.content[0].id.startswith("toolu_"), m
assert m.content[0].input["unit"] in ("c", "f"), m
with ant.messages.stream(model="claude-haiku-4-5", max_tokens=200, messages=MSGS, tools=[atool]) as s:
    final = s.get_final_message()
assert final.stop_reason == "tool_use" and final.content[0].input["city"], final
long = "Summarise the ticket history and list every promised refund with its date. " * 80
system = [{"type": "text", "text": long, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
m = ant.messages.create(model="claude-haiku-4-5", max_tokens=200, system=system, messages=MSGS)
cc = m.usage.cache_creation
assert cc.ephemeral_1h_input_tokens == m.usage.cache_creation_input_tokens > 0 and cc.ephemeral_5m_input_tokens == 0, m.usage
print("anthropic", m.usage, file=sys.stderr)
print(json.dumps({"requests": REQUESTS}))
