//! The OpenAPI 3.1 document at `/api/openapi.json`, built from the same operation table that builds the router.
//!
//! Every JSON and admin route is added through [`ApiRouter::op`], which registers the handler and records its
//! [`Op`] (method, path, summary, who may call it, query parameters, body fields) in one step, so a route cannot
//! exist without being documented. The proxy routes live in the gateway crate; they are described by
//! [`PROXY_OPS`], and `tests/interfaces.rs` checks that every route literal in the source is in the document and
//! that every documented operation answers with the access it claims.

use std::sync::Arc;

use axum::routing::MethodRouter;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::AppState;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health checks).
    Public,
    /// The admin token, or a team viewer token (answers confined to its team).
    Reader,
    /// The admin token only.
    Admin,
    /// A virtual key (the proxy routes).
    VirtualKey,
    /// The admin token outside `demo`; anyone in `demo`.
    AdminOutsideDemo,
}

/// What a parameter or a body field accepts, as the document states it. The handlers accept exactly this (no
/// more, no less), so a client that builds requests from the document alone (a generated client, schemathesis)
/// never sends one that is refused for its shape, and never gets a shape the document forbids accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// Any text: names used as filters (a name nothing carries matches nothing).
    Text,
    /// A name as names are kept (`spendgate_core::validate_name`, after trimming white space): 1 to 128
    /// characters, no control character, not starting with `@`. The names of the No team and no-workflow buckets
    /// are refused with a message, beyond what a schema says.
    Name,
    /// A [`Ty::Name`], or only white space (or nothing) for none.
    NameOrBlank,
    /// One of these words.
    Word(&'static [&'static str]),
    /// An RFC 3339 time such as `2026-11-28T12:00:00Z`.
    Time,
    /// An integer from the first bound to the second.
    Int(i64, i64),
    Bool,
    /// US dollars as a decimal string (`Money::parse_usd`'s digits, without sign or spaces), see [`USD_PATTERN`].
    Usd,
    /// A list of integers, each from the first bound to the second; at least one.
    Ints(i64, i64),
    /// A spend log id: a UUID.
    Uuid,
    /// Text matching a regular expression.
    Pattern(&'static str),
    /// Some of these words, separated by commas (white space around each, and empty items, are ignored).
    List(&'static [&'static str]),
}

/// White space as Rust trims it (`char::is_whitespace`), for a regular expression's class. Spelled out because
/// `\\s` differs between engines (Python's takes U+001C to U+001F, control characters that Rust does not trim).
const WS_CHARS: &str =
    r"\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Control characters (`char::is_control`), for a regular expression's class.
const CONTROLS: &str = r"\u0000-\u001f\u007f-\u009f";

/// The pattern of a name that is kept trimmed: white space around it, then 1 to 128 characters: a first that is
/// neither white space, a control character nor `@`, any but controls, and a last that is not white space. With
/// `blank_ok`, white space alone (or nothing) matches too.
fn name_pattern(blank_ok: bool) -> String {
    let name = format!("[^{WS_CHARS}{CONTROLS}@]([^{CONTROLS}]{{0,126}}[^{WS_CHARS}{CONTROLS}])?");
    let name = if blank_ok { format!("({name})?") } else { name };
    format!("^[{WS_CHARS}]*{name}[{WS_CHARS}]*$")
}

/// US dollars for [`Ty::Usd`]: digits, at most twelve decimals, and at most 9,000,000 whole dollars, since every
/// amount is kept in a signed 64-bit count of picodollars (about 9.2 million dollars).
const USD_PATTERN: &str = r"^(9000000|[1-8][0-9]{6}|[0-9]{1,6})(\.[0-9]{1,12})?$";

impl Ty {
    /// The JSON schema of this type.
    pub fn schema(self) -> Value {
        match self {
            Ty::Text => json!({ "type": "string" }),
            Ty::Name => json!({ "type": "string", "pattern": name_pattern(false) }),
            Ty::NameOrBlank => json!({ "type": "string", "pattern": name_pattern(true) }),
            Ty::Word(words) => json!({ "type": "string", "enum": words }),
            Ty::Time => json!({ "type": "string", "format": "date-time" }),
            Ty::Int(min, max) => json!({ "type": "integer", "minimum": min, "maximum": max }),
            Ty::Bool => json!({ "type": "boolean" }),
            Ty::Usd => json!({ "type": "string", "pattern": USD_PATTERN }),
            Ty::Ints(min, max) => json!({
                "type": "array", "minItems": 1,
                "items": { "type": "integer", "minimum": min, "maximum": max },
            }),
            Ty::Uuid => json!({ "type": "string", "format": "uuid" }),
            Ty::Pattern(pattern) => json!({ "type": "string", "pattern": pattern }),
            Ty::List(words) => {
                let item = format!("[{WS_CHARS}]*({})?[{WS_CHARS}]*", words.join("|"));
                json!({ "type": "string", "pattern": format!("^{item}(,{item})*$") })
            }
        }
    }

    /// The schema of a query parameter of this type: an empty value is the same as leaving the parameter out
    /// (HTML forms submit every field), so the empty string is valid too.
    fn query_schema(self) -> Value {
        match self {
            Ty::Text => self.schema(),
            Ty::Word(words) => {
                let mut all = vec![""];
                all.extend_from_slice(words);
                json!({ "type": "string", "enum": all })
            }
            other => json!({ "anyOf": [other.schema(), { "type": "string", "maxLength": 0 }] }),
        }
    }
}

/// A parameter: in the query string, or a `{name}` segment of the path.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    pub ty: Ty,
}

/// A field of a JSON request body.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    pub description: &'static str,
}

/// One documented operation.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Query parameters, in up to three groups (shared lists such as [`FILTERS`] combine without copying).
    pub query: [&'static [Param]; 3],
    pub body: &'static [Field],
    /// Alternatives of the body, each adding its fields to `body`'s, for a field whose values depend on another
    /// (a scope and the subject it needs): the document gives the body as `oneOf` them.
    pub variants: &'static [&'static [Field]],
    /// What the path's `{id}` segment is.
    pub id: Ty,
    /// The media types of a successful answer; the first is the one given without a `format`.
    pub produces: &'static [&'static str],
    /// The statuses it answers beside 200 and the errors every operation may give (400, 401, 405, 503, and 403
    /// for the admin's): 201 for a creation, 404 for a missing resource, 409 for a conflict.
    pub statuses: &'static [u16],
    /// The shape of its error answers: a schema of `components` (`Error`, the OpenAI shape most routes answer
    /// in; `GoogleError` for Google's route).
    pub errors: &'static str,
}

/// The type of a resource id in a path: a positive integer that fits in 64 bits.
pub const ID: Ty = Ty::Int(1, i64::MAX);

impl Op {
    pub const fn get(path: &'static str, summary: &'static str, access: Access) -> Op {
        Op {
            method: "get",
            path,
            summary,
            access,
            query: [&[], &[], &[]],
            body: &[],
            variants: &[],
            id: ID,
            produces: &["application/json"],
            statuses: &[],
            errors: "Error",
        }
    }

    pub const fn post(path: &'static str, summary: &'static str, access: Access) -> Op {
        Op {
            method: "post",
            ..Op::get(path, summary, access)
        }
    }

    pub const fn delete(path: &'static str, summary: &'static str, access: Access) -> Op {
        Op {
            method: "delete",
            ..Op::get(path, summary, access)
        }
    }

    pub const fn query(self, query: &'static [Param]) -> Op {
        Op {
            query: [query, &[], &[]],
            ..self
        }
    }

    /// Adds a further group of query parameters (at most three groups in all; the operations are constants, so
    /// a fourth is a compile-time error rather than a silently dropped group).
    pub const fn also(self, more: &'static [Param]) -> Op {
        let q = self.query;
        assert!(
            q[2].is_empty(),
            "an operation takes at most three groups of query parameters"
        );
        let query = if q[1].is_empty() {
            [q[0], more, &[]]
        } else {
            [q[0], q[1], more]
        };
        Op { query, ..self }
    }

    pub const fn body(self, body: &'static [Field]) -> Op {
        Op { body, ..self }
    }

    pub const fn variants(self, variants: &'static [&'static [Field]]) -> Op {
        Op { variants, ..self }
    }

    pub const fn id(self, id: Ty) -> Op {
        Op { id, ..self }
    }

    pub const fn produces(self, produces: &'static [&'static str]) -> Op {
        Op { produces, ..self }
    }

    pub const fn statuses(self, statuses: &'static [u16]) -> Op {
        Op { statuses, ..self }
    }

    pub const fn errors(self, errors: &'static str) -> Op {
        Op { errors, ..self }
    }
}

/// Shorthand for a query parameter.
pub const fn p(name: &'static str, ty: Ty, description: &'static str) -> Param {
    Param {
        name,
        description,
        ty,
    }
}

/// Shorthand for a body field.
pub const fn f(name: &'static str, ty: Ty, required: bool, description: &'static str) -> Field {
    Field {
        name,
        ty,
        required,
        description,
    }
}

/// The presets of `window` (`crate::params::WINDOWS`).
pub const WINDOW_WORDS: &[&str] = &["1h", "24h", "7d", "30d", "mtd"];
/// The groupings (`GroupBy::ALL`).
pub const GROUP_WORDS: &[&str] = &[
    "team",
    "user",
    "key",
    "provider",
    "model",
    "gateway",
    "workflow",
    "cache_outcome",
];
/// Cache outcomes (`CacheOutcome::ALL`).
const CACHE_WORDS: &[&str] = &["hit", "miss", "bypass", "not_cacheable"];

/// The filters every usage query takes (`crate::params::FilterParams`). A name nothing carries matches nothing.
pub const FILTERS: &[Param] = &[
    p(
        "window",
        Ty::Word(WINDOW_WORDS),
        "1h, 24h, 7d, 30d or mtd, counted back from to (default 24h); ignored when from is given.",
    ),
    p(
        "from",
        Ty::Time,
        "Start of a custom window (default: window before to). A window that does not start before it ends \
         selects nothing.",
    ),
    p("to", Ty::Time, "End of a custom window (default: now)."),
    p(
        "team",
        Ty::Text,
        "A team name, or @none for the No team bucket.",
    ),
    p("user", Ty::Text, "A user name."),
    p("provider", Ty::Text, "A provider name."),
    p("model", Ty::Text, "A model name."),
    p("gateway", Ty::Text, "A gateway (replica) name."),
    p(
        "workflow",
        Ty::Text,
        "A workflow name (x-spendgate-workflow header); (other) for the labels past limits.max_workflows.",
    ),
    p("cache_outcome", Ty::Word(CACHE_WORDS), "A cache outcome."),
    p("key", ID, "A virtual key id."),
];

/// Filters plus grouping and sort, for the explorer.
pub const EXPLORER_QUERY: &[Param] = &[
    p(
        "group_by",
        Ty::Word(GROUP_WORDS),
        "The dimension to group by (default team).",
    ),
    p(
        "sort",
        Ty::Word(&["cost", "requests", "tokens"]),
        "The order and what the share column measures (default cost).",
    ),
];

/// `format` for exports.
pub const FORMAT: &[Param] = &[p(
    "format",
    Ty::Word(&["json", "csv"]),
    "The file's format (default json).",
)];

/// A router that documents every route it is given.
pub struct ApiRouter {
    router: Router<Arc<AppState>>,
    ops: Vec<&'static Op>,
}

impl Default for ApiRouter {
    fn default() -> Self {
        ApiRouter {
            router: Router::new(),
            ops: Vec::new(),
        }
    }
}

impl ApiRouter {
    /// Adds `handler` at `op.path` and records `op`.
    pub fn op(mut self, op: &'static Op, handler: MethodRouter<Arc<AppState>>) -> ApiRouter {
        self.router = self.router.route(op.path, handler);
        self.ops.push(op);
        self
    }

    pub fn merge(mut self, other: ApiRouter) -> ApiRouter {
        self.router = self.router.merge(other.router);
        self.ops.extend(other.ops);
        self
    }

    /// Applies `f` to the routes added so far (a `route_layer` such as authentication).
    pub fn map(
        mut self,
        f: impl FnOnce(Router<Arc<AppState>>) -> Router<Arc<AppState>>,
    ) -> ApiRouter {
        self.router = f(self.router);
        self
    }

    pub fn into_parts(self) -> (Router<Arc<AppState>>, Vec<&'static Op>) {
        (self.router, self.ops)
    }
}

/// The client-facing proxy routes (`spendgate_gateway::router`), for the document.
pub const PROXY_OPS: &[Op] = &[
    Op::post(
        "/v1/chat/completions",
        "OpenAI Chat Completions, streaming or not, forwarded to the model's provider and metered.",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/embeddings",
        "OpenAI Embeddings, forwarded and metered.",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/responses",
        "OpenAI Responses, streaming or not, forwarded and metered.",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/messages",
        "Anthropic Messages, streaming or not, forwarded and metered (virtual key as x-api-key or bearer).",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/completions",
        "OpenAI legacy Completions, streaming or not, forwarded and metered like chat.",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/messages/count_tokens",
        "Anthropic token counting: free, passed through to the model's provider unmetered (no spend log).",
        Access::VirtualKey,
    ),
    Op::post(
        "/v1/moderations",
        "OpenAI moderation: free, passed through unmetered (no spend log).",
        Access::VirtualKey,
    ),
    Op::get(
        "/v1/models",
        "The models this client can call: OpenAI's list shape, or Anthropic's (paged by limit, after_id, before_id) \
         for clients that send anthropic-version or x-api-key.",
        Access::VirtualKey,
    ),
    Op::get(
        "/v1/models/{id}",
        "One model this client can call, in its API's shape; any name the gateway routes (aliases, provider/model: \
         the id may contain '/').",
        Access::VirtualKey,
    )
    .id(Ty::Text),
    Op::post(
        "/v1beta/models/{target}",
        "Google's Gemini API for Google's SDKs: '{model}:generateContent', or ':streamGenerateContent' with \
         alt=sse, forwarded to a provider speaking Gemini and metered (virtual key as x-goog-api-key, ?key= or \
         bearer). Errors in Google's shape.",
        Access::VirtualKey,
    )
    .id(Ty::Text)
    .statuses(&[404])
    .errors("GoogleError"),
];

fn security(access: Access) -> Value {
    match access {
        Access::Public => json!([]),
        Access::Reader => json!([{ "adminToken": [] }, { "viewerToken": [] }]),
        Access::Admin | Access::AdminOutsideDemo => json!([{ "adminToken": [] }]),
        Access::VirtualKey => json!([{ "virtualKey": [] }]),
    }
}

fn access_note(access: Access) -> &'static str {
    match access {
        Access::Public => "No authentication.",
        Access::Reader => "Admin token, or a team viewer token (answers confined to its team).",
        Access::Admin => "Admin token only.",
        Access::AdminOutsideDemo => "Admin token; open in `spendgate demo`.",
        Access::VirtualKey => "A virtual key (`Authorization: Bearer sk-sg-...`).",
    }
}

/// The properties and required names of a body made of `fields`.
fn object_schema<'a>(fields: impl Iterator<Item = &'a Field>) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for b in fields {
        // An optional field may be null, which is the same as leaving it out (serde reads both as `None`).
        let mut s = if b.required {
            b.ty.schema()
        } else {
            json!({ "anyOf": [b.ty.schema(), { "type": "null" }] })
        };
        s["description"] = json!(b.description);
        props.insert(b.name.to_string(), s);
        if b.required {
            required.push(b.name);
        }
    }
    json!({ "type": "object", "additionalProperties": false, "properties": props, "required": required })
}

/// What a status means, for the statuses an operation lists beside the ones every operation has.
fn status_description(status: u16) -> &'static str {
    match status {
        201 => "Created.",
        404 => "Not found: the id names nothing (the message says where to list what exists).",
        409 => "Conflict: the resource is not in a state that allows this (the message says why).",
        _ => "See the message.",
    }
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": op.id.schema() }))
        .collect();
    params.extend(op.query.iter().flat_map(|g| g.iter()).map(|q| {
        json!({
            "name": q.name, "in": "query", "required": false,
            "description": q.description, "schema": q.ty.query_schema(),
        })
    }));
    let content: Map<String, Value> = op
        .produces
        .iter()
        .map(|m| {
            let schema = match *m {
                "application/json" => json!({ "type": ["object", "array"] }),
                _ => json!({ "type": "string" }),
            };
            (m.to_string(), json!({ "schema": schema }))
        })
        .collect();
    let error = json!({ "$ref": format!("#/components/responses/{}", op.errors) });
    let mut responses = json!({
        "200": { "description": "Success.", "content": content },
        "400": error,
        "401": error,
        "405": error,
        "503": error,
    });
    if matches!(op.access, Access::Admin | Access::AdminOutsideDemo) {
        responses["403"] = error.clone();
    }
    if !op.body.is_empty() || !op.variants.is_empty() {
        responses["413"] = error.clone();
    }
    for status in op.statuses {
        responses[status.to_string()] = match status {
            200..=299 => {
                json!({ "description": status_description(*status), "content": responses["200"]["content"] })
            }
            _ => {
                json!({ "description": status_description(*status), "content": error_content(op.errors) })
            }
        };
    }
    let mut o = json!({
        "summary": op.summary,
        "description": access_note(op.access),
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '-', '.'], "_")),
        "security": security(op.access),
        "parameters": params,
        "responses": responses,
    });
    let schema = if op.variants.is_empty() {
        (!op.body.is_empty()).then(|| object_schema(op.body.iter()))
    } else {
        let each: Vec<Value> = op
            .variants
            .iter()
            .map(|v| object_schema(op.body.iter().chain(v.iter())))
            .collect();
        Some(json!({ "oneOf": each }))
    };
    if let Some(schema) = schema {
        o["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": schema } } });
    }
    o
}

/// The content of an error answer in the shape of the schema `errors`.
fn error_content(errors: &str) -> Value {
    json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{errors}") } } })
}

/// The whole document.
pub fn document(ops: &[&Op], version: &str) -> Value {
    let mut paths = Map::new();
    for op in ops.iter().copied().chain(PROXY_OPS.iter()) {
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "spendgate",
            "version": version,
            "description": "The JSON and admin API of spendgate, and its OpenAI-compatible proxy routes. Money is a \
                            decimal string of US dollars (exact; never a float); times are RFC 3339. An empty query parameter is \
                            the same as leaving it out.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminToken": { "type": "http", "scheme": "bearer", "description": "The admin token (<data-dir>/admin-token or SPENDGATE_ADMIN_TOKEN)." },
                "viewerToken": { "type": "http", "scheme": "bearer", "description": "A team viewer token (POST /api/v1/viewer-tokens)." },
                "virtualKey": { "type": "http", "scheme": "bearer", "description": "A virtual key (spendgate keys create)." },
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["message", "type"],
                        "properties": {
                            "message": { "type": "string", "description": "What went wrong and what to do." },
                            "type": { "type": "string" },
                            "code": { "type": ["string", "null"] },
                        },
                    } },
                },
                // cloud.google.com/apis/design/errors: the HTTP status as `code`, the gRPC status name.
                "GoogleError": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message", "status"],
                        "properties": {
                            "code": { "type": "integer" },
                            "message": { "type": "string", "description": "What went wrong and what to do." },
                            "status": { "type": "string" },
                        },
                    } },
                },
            },
            "responses": {
                "Error": { "description": "An error in the OpenAI error shape.", "content": error_content("Error") },
                "GoogleError": { "description": "An error in Google's error shape.", "content": error_content("GoogleError") },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendgate_core::query::GroupBy;
    use spendgate_core::CacheOutcome;

    #[test]
    fn the_documented_words_are_the_ones_the_handlers_read() {
        let groups: Vec<&str> = GroupBy::ALL.iter().map(|g| g.as_str()).collect();
        assert_eq!(GROUP_WORDS, groups.as_slice());
        let outcomes: Vec<&str> = CacheOutcome::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(CACHE_WORDS, outcomes.as_slice());
        // A query parameter of words also takes the empty string (the same as leaving it out).
        assert_eq!(
            Ty::Word(&["a"]).query_schema(),
            json!({ "type": "string", "enum": ["", "a"] })
        );
    }
}
