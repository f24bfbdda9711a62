//! How large a request's bill can get, read from its body before it is sent: the worst case that budgets and
//! wallets hold. Whatever the request's shape, the hold must not be smaller than what the provider can bill, or a
//! hard limit and a prepaid wallet can be overshot.
//!
//! - **Text** (messages, instructions, tool definitions) is at most one token per byte of the body: no tokenizer
//!   makes more tokens than bytes of UTF-8 text, and the JSON around the text covers the per-message overhead.
//! - **Images** are billed by their pixels, not by the bytes of their URL: each image part is held at
//!   [`IMAGE_TOKENS`], the most one image can cost on any model in the catalog (below).
//! - **Tools** add a system prompt the provider writes: [`TOOL_OVERHEAD`] once when any are given.
//! - **Input the request only points at** (a file by id or URL, a PDF document, `previous_response_id`, a stored
//!   `conversation` or `prompt`, a server-side tool such as web search that adds what it finds, MCP servers) cannot
//!   be bounded from the body: the model's context window bounds it, and without one the request is
//!   [`Extent::unbounded_input`].
//! - **Output** is `n` (or `best_of`) completions of the largest output the request allows.

use serde_json::Value;

/// The most input tokens one image part can be billed, on any model: OpenAI's gpt-4o-mini bills an image at
/// 2,833 tokens plus 5,667 per 512-px tile, and a high-detail image is scaled to at most 768 x 2,048 px (8 tiles):
/// 48,169 tokens (platform.openai.com/docs/guides/images-vision, "Calculating costs"). Other models bill far
/// less (Anthropic about 1,600 tokens for the largest image it accepts unresized, docs.anthropic.com/en/docs/
/// build-with-claude/vision; gpt-4.1-mini at most 1,536 patches x 1.62 = 2,489).
pub const IMAGE_TOKENS: u64 = 48_169;

/// The system prompt a provider adds when tools are given: Anthropic's tool-use prompt is 313-346 tokens, its
/// computer-use tools up to 735 more (docs.anthropic.com/en/docs/agents-and-tools/tool-use/overview#pricing);
/// held generously once per request.
pub const TOOL_OVERHEAD: u64 = 2_000;

/// Content part types that are images (OpenAI chat `image_url`, Responses `input_image`, Anthropic `image`).
const IMAGE_TYPES: [&str; 3] = ["image_url", "input_image", "image"];

/// Content part types whose tokens cannot be known from the body: files and documents are billed by their pages
/// (text plus an image of each page) and may be referenced by id or URL.
const OPAQUE_TYPES: [&str; 5] = [
    "file",
    "input_file",
    "document",
    "container_upload",
    "search_result",
];

/// Top-level members that bring in input the body does not contain.
const OPAQUE_MEMBERS: [&str; 5] = [
    "previous_response_id",
    "conversation",
    "web_search_options",
    "mcp_servers",
    "container",
];

/// How each of the above begins, as a JSON string (a member's name or a part's `type`): a body in which no string
/// begins so has none of them, and the usual request is not parsed twice.
const MARKERS: [&[u8]; 10] = [
    b"image",
    b"input_image",
    b"file",
    b"input_file",
    b"document",
    b"tools\"",
    b"previous_response_id",
    b"conversation",
    b"web_search_options",
    b"mcp_servers",
];

/// Whether a string of `body` begins with one of [`MARKERS`]. Only what follows a quote is looked at, and a long
/// prompt is crossed by a vectorised search for its closing quote: a search per marker read the whole body ten
/// times (about 4 instructions a byte, more than the rest of a request with a 100 KB prompt).
fn marked(body: &[u8]) -> bool {
    memchr::memchr_iter(b'"', body).any(|i| {
        let after = &body[i + 1..];
        MARKERS.iter().any(|m| after.starts_with(m))
    })
}

/// What a request's body says about the size of its bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extent {
    /// Image parts, each held at [`IMAGE_TOKENS`].
    pub images: u64,
    /// Whether tools are defined (adds [`TOOL_OVERHEAD`]).
    pub tools: bool,
    /// Input that the body only points at: bounded by the model's context window alone.
    pub unbounded_input: Option<&'static str>,
}

impl Extent {
    /// Reads the extent of a JSON request body (`Extent::default()` for a plain text request).
    pub fn of(body: &[u8], prompt_is_stored: bool) -> Extent {
        if !prompt_is_stored && !marked(body) {
            return Extent::default();
        }
        let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(body) else {
            return Extent::default();
        };
        let mut extent = Extent::default();
        for name in OPAQUE_MEMBERS {
            if top.get(name).is_some_and(|v| !v.is_null()) {
                extent.unbounded_input = Some(name);
            }
        }
        // The Responses API's `prompt` is a stored prompt template ({"id": ...}); chat's legacy `prompt` is text.
        if prompt_is_stored && top.get("prompt").is_some_and(Value::is_object) {
            extent.unbounded_input = Some("prompt");
        }
        if let Some(Value::Array(tools)) = top.get("tools") {
            extent.tools = !tools.is_empty();
            if let Some(t) = tools.iter().find_map(server_tool) {
                extent.unbounded_input = Some(t);
            }
        }
        for (name, v) in &top {
            if name != "tools" {
                walk(v, &mut extent);
            }
        }
        extent
    }

    /// The input tokens the request can be billed for at most, with `text_tokens` for its text, or `None` when
    /// nothing bounds it. A model's context window bounds every prompt.
    pub fn input_tokens(&self, text_tokens: u64, context_window: Option<u64>) -> Option<u64> {
        let own = match self.unbounded_input {
            Some(_) => None,
            None => Some(
                text_tokens
                    .saturating_add(self.images.saturating_mul(IMAGE_TOKENS))
                    .saturating_add(if self.tools { TOOL_OVERHEAD } else { 0 }),
            ),
        };
        match (own, context_window.filter(|c| *c > 0)) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        }
    }
}

/// A tool the provider runs itself and whose results it adds to the prompt: `None` for function tools.
fn server_tool(tool: &Value) -> Option<&'static str> {
    let kind = tool.get("type").and_then(Value::as_str)?;
    // OpenAI: `function` and `custom` are the caller's; Anthropic: a custom tool has an `input_schema` (its type
    // is absent or `custom`), and `bash`, `text_editor` and `computer` run on the caller's side.
    let callers = ["function", "custom"];
    let client_side = ["bash_", "text_editor_", "computer_"];
    if callers.contains(&kind)
        || tool.get("input_schema").is_some()
        || client_side.iter().any(|p| kind.starts_with(p))
    {
        None
    } else {
        Some("a server-side tool")
    }
}

fn walk(v: &Value, extent: &mut Extent) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| walk(i, extent)),
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some(t) if IMAGE_TYPES.contains(&t) => extent.images += 1,
                Some(t) if OPAQUE_TYPES.contains(&t) => {
                    extent.unbounded_input = Some("a file or document")
                }
                _ => {}
            }
            o.values().for_each(|i| walk(i, extent));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: serde_json::Value) -> Extent {
        Extent::of(v.to_string().as_bytes(), true)
    }

    #[test]
    fn plain_text_has_no_extent_and_is_not_parsed() {
        assert_eq!(Extent::of(b"not json at all", false), Extent::default());
        let e = of(
            serde_json::json!({"model":"m","messages":[{"role":"user","content":"an image of a file"}]}),
        );
        assert_eq!(e, Extent::default(), "words in text are not parts");
    }

    /// The prefilter never hides what the parse finds: every body with images, tools, files or members pointing
    /// elsewhere reads the same with it as parsed in full, and a prompt that merely names them is not parsed.
    #[test]
    fn the_prefilter_hides_nothing_the_parse_finds() {
        let bodies = [
            serde_json::json!({"messages":[{"role":"user","content":[
                {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}),
            serde_json::json!({"input":[{"role":"user","content":[{"type":"input_image","image_url":"u"}]}]}),
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}),
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]}),
            serde_json::json!({"input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}),
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}),
            serde_json::json!({"tools":[{"type":"function","function":{"name":"f"}}],"messages":[]}),
            serde_json::json!({"previous_response_id":"resp_1","input":"go on"}),
            serde_json::json!({"conversation":"conv_1","input":"go on"}),
            serde_json::json!({"web_search_options":{},"messages":[]}),
            serde_json::json!({"mcp_servers":[{"url":"u"}],"messages":[]}),
        ];
        for v in bodies {
            let b = v.to_string();
            assert!(marked(b.as_bytes()), "{v}");
            assert_ne!(Extent::of(b.as_bytes(), false), Extent::default(), "{v}");
            assert_eq!(
                Extent::of(b.as_bytes(), false),
                Extent::of(b.as_bytes(), true),
                "{v}"
            );
        }
        let text =
            "Describe the image, the file, the document and the tools of this conversation. "
                .repeat(100);
        let plain = serde_json::json!({"model":"m","messages":[{"role":"user","content":text}]})
            .to_string();
        assert!(!marked(plain.as_bytes()));
    }

    #[test]
    fn images_of_every_api_are_counted() {
        let e = of(serde_json::json!({"messages":[{"role":"user","content":[
            {"type":"text","text":"what is this"},
            {"type":"image_url","image_url":{"url":"https://x/a.png"}},
            {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}));
        assert_eq!(e.images, 2);
        let e = of(
            serde_json::json!({"input":[{"role":"user","content":[{"type":"input_image","image_url":"u"}]}]}),
        );
        assert_eq!(e.images, 1);
        let e = of(serde_json::json!({"messages":[{"role":"user","content":[
            {"type":"image","source":{"type":"url","url":"u"}}]}]}));
        assert_eq!(e.images, 1);
        assert_eq!(e.input_tokens(10, None), Some(10 + IMAGE_TOKENS));
        assert_eq!(
            e.input_tokens(10, Some(1_000)),
            Some(1_000),
            "the context window bounds it"
        );
    }

    #[test]
    fn what_the_body_only_points_at_is_unbounded_but_for_the_context_window() {
        for v in [
            serde_json::json!({"previous_response_id":"resp_1","input":"go on"}),
            serde_json::json!({"conversation":"conv_1","input":"go on"}),
            serde_json::json!({"prompt":{"id":"pmpt_1"}}),
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]}),
            serde_json::json!({"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}),
            serde_json::json!({"tools":[{"type":"web_search"}],"input":"news"}),
            serde_json::json!({"tools":[{"type":"web_search_20250305","name":"web_search"}]}),
            serde_json::json!({"web_search_options":{},"messages":[]}),
        ] {
            let e = of(v.clone());
            assert!(e.unbounded_input.is_some(), "{v}");
            assert_eq!(e.input_tokens(10, None), None, "{v}");
            assert_eq!(e.input_tokens(10, Some(128_000)), Some(128_000), "{v}");
        }
        // The legacy completions `prompt` is text, and null members point at nothing.
        assert_eq!(
            Extent::of(br#"{"prompt":"say hi","previous_response_id":null}"#, false)
                .unbounded_input,
            None
        );
    }

    #[test]
    fn function_tools_add_their_overhead_once() {
        let e = of(serde_json::json!({"tools":[
            {"type":"function","function":{"name":"a","parameters":{"type":"object"}}},
            {"name":"b","input_schema":{"type":"object"}},
            {"type":"bash_20250124","name":"bash"}]}));
        assert!(e.tools);
        assert_eq!(e.unbounded_input, None);
        assert_eq!(e.input_tokens(5, None), Some(5 + TOOL_OVERHEAD));
    }
}
