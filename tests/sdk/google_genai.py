"""Drives a running spendgate with Google's `google-genai` Python SDK on the gateway's own Gemini route
(`/v1beta/models/{model}:generateContent` and `:streamGenerateContent?alt=sse`), the virtual key given as the SDK's API
key (sent in `x-goog-api-key`). The calls are passed through to the mock speaking Gemini's API and metered from its
`usageMetadata` (issue 27).

Run by crates/spendgate/tests/sdk_clients.rs with SG_BASE and SG_KEY; prints one JSON line per case (see harness.py).
The request id is read from the response the SDK keeps (`sdk_http_response.headers`); where it is missing the call's
own workflow finds its spend log.
"""

from google import genai
from google.genai import errors, types

from harness import BAD_KEY, BASE, KEY, LONG, REQUEST_ID, TIMEOUT, case, expect, expect_refused, recorded, tag, usage, \
    workflow_of

GG = "google-genai-python"
# A thinking model: its thoughts are billed as output (ai.google.dev/gemini-api/docs/pricing).
MODEL = "gemini-3-flash-preview"


def client(key, feature):
    options = types.HttpOptions(base_url=BASE, api_version="v1beta", timeout=TIMEOUT * 1000,
                                headers=tag(GG, feature), retry_options=types.HttpRetryOptions(attempts=1))
    return genai.Client(api_key=key, http_options=options)


def gemini_usage(u):
    """Gemini's prompt includes the cache reads; its thoughts are output."""
    return usage(u.prompt_token_count, (u.candidates_token_count or 0) + (u.thoughts_token_count or 0),
                 u.cached_content_token_count or 0)


def generate_call(response, feature, stream, usage_seen):
    headers = response.sdk_http_response.headers if response.sdk_http_response else {}
    request_id = (headers or {}).get(REQUEST_ID)
    workflow = None if request_id else workflow_of(GG, feature)
    return recorded("generate_content", stream, usage_seen, request_id=request_id, workflow=workflow)


@case(GG, "generate")
def _():
    c = client(KEY, "generate")  # kept: a client closes its connections when it is collected
    r = c.models.generate_content(
        model=MODEL, contents=LONG,
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=80, temperature=0.2))
    expect(r.text, f"no text: {r}")
    expect(r.candidates[0].finish_reason == types.FinishReason.STOP, f"finish_reason {r.candidates[0].finish_reason}")
    u = r.usage_metadata
    expect(u.cached_content_token_count and u.thoughts_token_count, f"cache reads and thoughts: {u}")
    return generate_call(r, "generate", False, gemini_usage(u))


@case(GG, "generate-stream")
def _():
    c = client(KEY, "generate-stream")
    chunks = list(c.models.generate_content_stream(model=MODEL, contents="Say hello"))
    text = "".join(c.text or "" for c in chunks)
    expect(text, "no text")
    last = chunks[-1]
    expect(last.candidates[0].finish_reason == types.FinishReason.STOP, f"the last chunk ends it: {last}")
    return generate_call(last, "generate-stream", True, gemini_usage(last.usage_metadata))


WEATHER = types.FunctionDeclaration(
    name="get_weather", description="The weather in a city.",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


@case(GG, "tools")
def _():
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="ANY")),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    c = client(KEY, "tools")
    r = c.models.generate_content(model=MODEL, contents="Weather in Oslo?", config=config)
    calls = r.function_calls
    expect(calls and calls[0].name == "get_weather" and "city" in calls[0].args, f"no call: {r}")
    return generate_call(r, "tools", False, gemini_usage(r.usage_metadata))


@case(GG, "unknown-model")
def _():
    c = client(KEY, "unknown-model")
    expect_refused(lambda: c.models.generate_content(model="no-such-model", contents="hi"), errors.ClientError, 404)


@case(GG, "bad-key")
def _():
    c = client(BAD_KEY, "bad-key")
    expect_refused(lambda: c.models.generate_content(model=MODEL, contents="hi"), errors.ClientError, 401)
