"""What the Python SDK scripts share: the gateway to talk to, the cases' output, and usage normalised to spendgate's shape.

Each case runs alone: a failure is printed as that case's line (with the SDK's error: its type, status and body) and
the script goes on, so one run shows the whole matrix. Every line is one JSON object:

  {"client", "feature", "ok": true, "request_id" | "workflow", "endpoint", "stream", "usage"}   a recorded call
  {"client", "feature", "ok": true}                                                          a refused call (no log)
  {"client", "feature", "ok": false, "error"}                                                a failure

`request_id` is the `x-spendgate-request-id` response header, read through the SDK's raw-response API. A client
that exposes no response headers (LangChain; the Responses stream helper) tags its request with a workflow of its
own (`x-spendgate-workflow`) instead, and the Rust test finds the one spend log of that workflow. `usage` is what the
SDK itself reported, with the prompt counting cached and cache-write tokens; it is null when the SDK saw none (a
stream that did not ask for usage), and then only the log's cost is checked.
"""

import json
import os

BASE = os.environ["SG_BASE"]
KEY = os.environ["SG_KEY"]
BAD_KEY = "sk-sg-not-a-key"

# Long enough (over 1,024 tokens) that the mock reports cache reads (and, on Messages with cache_control, writes).
LONG = "Summarise the ticket history and list every promised refund with its date. " * 80
REQUEST_ID = "x-spendgate-request-id"
# Seconds a call may take: a call that hangs fails its case instead of holding up the test.
TIMEOUT = 30


def workflow_of(client, feature):
    return f"sdk-{client}-{feature}"


def tag(client, feature):
    """Headers that give the request a workflow of its own, for clients that cannot show response headers."""
    return {"x-spendgate-workflow": workflow_of(client, feature)}


def recorded(endpoint, stream, usage, request_id=None, workflow=None):
    """A call the gateway should have recorded, identified by its request id or else its workflow."""
    expect(request_id or workflow, "the call has neither a request id nor a workflow")
    found = {"request_id": request_id} if request_id else {"workflow": workflow}
    return {**found, "endpoint": endpoint, "stream": stream, "usage": usage}


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def describe(err):
    """The SDK's error as a person reading the matrix needs it: its type, HTTP status and body when it has them."""
    text = f"{type(err).__name__}: {err}"
    status = getattr(err, "status_code", None)
    if status is not None and str(status) not in text:
        text += f" (status {status})"
    return text[:1500]


def case(client, feature):
    """Runs the decorated function at once as one case and prints its line."""

    def run(fn):
        try:
            line = {"client": client, "feature": feature, "ok": True, **(fn() or {})}
        except Exception as err:  # noqa: BLE001 - every failure becomes the case's line.
            line = {"client": client, "feature": feature, "ok": False, "error": describe(err)}
        print(json.dumps(line), flush=True)
        return fn

    return run


def expect_refused(call, error_type, status):
    """The call must fail with the SDK's own typed error for `status`."""
    try:
        call()
    except error_type as err:
        # openai and anthropic carry the status as `status_code`, google-genai as `code` (its `status` is a name).
        numeric = getattr(err, "code", None)
        code = getattr(err, "status_code", None) or (numeric if isinstance(numeric, int) else None) or getattr(
            err, "status", None)
        expect(code == status, f"{type(err).__name__} carried status {code}, not {status}")
        return
    except Exception as err:  # noqa: BLE001
        raise AssertionError(f"expected {error_type.__name__} ({status}), got {describe(err)}") from err
    raise AssertionError(f"expected {error_type.__name__} ({status}), but the call succeeded")


def usage(input_tokens, output_tokens, cached=0, written=0):
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "cached_input_tokens": cached,
            "cache_write_tokens": written}


def chat_usage(u):
    details = getattr(u, "prompt_tokens_details", None)
    return usage(u.prompt_tokens, u.completion_tokens, (details.cached_tokens or 0) if details else 0)


def responses_usage(u):
    details = getattr(u, "input_tokens_details", None)
    return usage(u.input_tokens, u.output_tokens, (details.cached_tokens or 0) if details else 0)


def anthropic_usage(u):
    """Anthropic counts cache reads and writes apart from `input_tokens`; spendgate's prompt includes them."""
    read = u.cache_read_input_tokens or 0
    written = u.cache_creation_input_tokens or 0
    return usage(u.input_tokens + read + written, u.output_tokens, read, written)

