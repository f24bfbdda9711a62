"""Drives a running spendgate with LangChain's chat models (`langchain-openai`, `langchain-anthropic`).

Run by crates/spendgate/tests/sdk_clients.rs like clients.py; prints one JSON line per case (see harness.py).
LangChain shows no response headers for every call, so each request carries a workflow of its own
(`default_headers`), and the usage compared is LangChain's `usage_metadata` (its prompt includes cache reads and
writes, as spendgate's does).
"""

import anthropic
import openai
import pydantic
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings

from harness import BAD_KEY, BASE, KEY, LONG, TIMEOUT, case, expect, expect_refused, recorded, tag, usage, workflow_of

LC = "langchain-openai"
LA = "langchain-anthropic"


def chat_openai(feature, key=KEY, **kw):
    return ChatOpenAI(model=kw.pop("model", "gpt-4o-mini"), base_url=f"{BASE}/v1", api_key=key, max_retries=0,
                      timeout=TIMEOUT, default_headers=tag(LC, feature), **kw)


def chat_anthropic(feature, key=KEY, **kw):
    return ChatAnthropic(model=kw.pop("model", "claude-haiku-4-5"), base_url=BASE, api_key=key, max_retries=0,
                         timeout=TIMEOUT, max_tokens=100, default_headers=tag(LA, feature), **kw)


def lc_usage(m):
    """LangChain's usage_metadata: `input_tokens` is the whole prompt; its details count cache reads and writes."""
    u = m.usage_metadata
    expect(u is not None, f"no usage_metadata on {m!r}")
    details = u.get("input_token_details") or {}
    # When Anthropic splits its cache writes by lifetime (`usage.cache_creation`), langchain-anthropic reports them
    # as `ephemeral_5m_input_tokens` and `ephemeral_1h_input_tokens` and sets `cache_creation` to 0.
    written = sum(details.get(k, 0) or 0 for k in
                  ("cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"))
    return usage(u["input_tokens"], u["output_tokens"], details.get("cache_read", 0) or 0, written)


def logged(client, feature, endpoint, stream, seen):
    return recorded(endpoint, stream, seen, workflow=workflow_of(client, feature))


def streamed(model, prompt):
    """Streams `prompt` the ordinary way and returns the text and the chunks added up (LangChain's own `+`)."""
    total = None
    for chunk in model.stream(prompt):
        total = chunk if total is None else total + chunk
    expect(total is not None and total.text, "no text")
    return total


@case(LC, "chat")
def _():
    m = chat_openai("chat").invoke(LONG)
    expect(m.text, "no text")
    return logged(LC, "chat", "chat.completions", False, lc_usage(m))


@case(LC, "chat-stream-usage")
def _():
    total = streamed(chat_openai("chat-stream-usage", stream_usage=True), "Hello")
    return logged(LC, "chat-stream-usage", "chat.completions", True, lc_usage(total))


@case(LC, "chat-stream")
def _():
    # Usage not asked for: LangChain must see none, and the stream must still read to its end.
    total = streamed(chat_openai("chat-stream", stream_usage=False, max_tokens=5), "Hi again")
    expect(total.usage_metadata is None, f"usage arrived that was not asked for: {total.usage_metadata}")
    return logged(LC, "chat-stream", "chat.completions", True, None)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@case(LC, "tools")
def _():
    m = chat_openai("tools").bind_tools([get_weather], tool_choice="required").invoke("Weather in Oslo?")
    expect(m.tool_calls and m.tool_calls[0]["name"] == "get_weather", f"no get_weather call: {m!r}")
    return logged(LC, "tools", "chat.completions", False, lc_usage(m))


class Refund(pydantic.BaseModel):
    ticket: str
    amount_cents: int


@case(LC, "structured")
def _():
    out = chat_openai("structured").with_structured_output(Refund, include_raw=True).invoke(
        "Extract the refund: ticket T-1, $12.50")
    expect(isinstance(out["parsed"], Refund), f"not parsed: {out.get('parsing_error')!r} from {out['raw']!r}")
    return logged(LC, "structured", "chat.completions", False, lc_usage(out["raw"]))


@case(LC, "n2")
def _():
    result = chat_openai("n2", n=2).generate([[HumanMessage("Hello")]])
    generations = result.generations[0]
    expect(len(generations) == 2, f"n=2 asks for two choices, got {len(generations)}")
    return logged(LC, "n2", "chat.completions", False, lc_usage(generations[0].message))


@case(LC, "embed-float")
def _():
    # LangChain's embeddings show no usage: only the spend log's cost is checked.
    emb = OpenAIEmbeddings(model="text-embedding-3-small", base_url=f"{BASE}/v1", api_key=KEY, max_retries=0,
                           timeout=TIMEOUT, check_embedding_ctx_length=False, default_headers=tag(LC, "embed-float"))
    vectors = emb.embed_documents(["refund policy", "shipping delays"])
    expect(len(vectors) == 2 and all(vectors), f"two inputs, two embeddings; got {len(vectors)}")
    return logged(LC, "embed-float", "embeddings", False, None)


@case(LC, "responses")
def _():
    m = chat_openai("responses", model="gpt-4.1-mini", use_responses_api=True, max_tokens=40).invoke(LONG)
    expect(m.text, "no text")
    return logged(LC, "responses", "responses", False, lc_usage(m))


@case(LC, "responses-stream")
def _():
    total = streamed(chat_openai("responses-stream", model="gpt-4.1-mini", use_responses_api=True), "Say hello")
    return logged(LC, "responses-stream", "responses", True, lc_usage(total))


@case(LC, "unknown-model")
def _():
    expect_refused(lambda: chat_openai("unknown-model", model="no-such-model").invoke("x"), openai.NotFoundError, 404)


@case(LC, "bad-key")
def _():
    expect_refused(lambda: chat_openai("bad-key", key=BAD_KEY).invoke("x"), openai.AuthenticationError, 401)


# --- Anthropic Messages with a cached system prompt.
SYSTEM = SystemMessage([{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}])


@case(LA, "messages")
def _():
    m = chat_anthropic("messages").invoke([SYSTEM, HumanMessage("Which refunds are overdue?")])
    expect(m.text, "no text")
    return logged(LA, "messages", "messages", False, lc_usage(m))


@case(LA, "messages-stream")
def _():
    total = streamed(chat_anthropic("messages-stream"), [SYSTEM, HumanMessage("And which are on time?")])
    return logged(LA, "messages-stream", "messages", True, lc_usage(total))


@case(LA, "unknown-model")
def _():
    expect_refused(lambda: chat_anthropic("unknown-model", model="claude-nonexistent").invoke("x"),
                   anthropic.NotFoundError, 404)


@case(LA, "bad-key")
def _():
    expect_refused(lambda: chat_anthropic("bad-key", key=BAD_KEY).invoke("x"), anthropic.AuthenticationError, 401)
