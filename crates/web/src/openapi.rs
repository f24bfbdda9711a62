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

/// A parameter: in the query string, or a `{name}` segment of the path.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    pub name: &'static str,
    pub description: &'static str,
    /// `string`, `integer` or `boolean`.
    pub ty: &'static str,
}

/// A field of a JSON request body.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    /// `string`, `integer`, `boolean`, `integer[]` or `object`.
    pub ty: &'static str,
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
    /// The media type of a successful answer.
    pub produces: &'static str,
}

impl Op {
    pub const fn get(path: &'static str, summary: &'static str, access: Access) -> Op {
        Op {
            method: "get",
            path,
            summary,
            access,
            query: [&[], &[], &[]],
            body: &[],
            produces: "application/json",
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

    pub const fn produces(self, produces: &'static str) -> Op {
        Op { produces, ..self }
    }
}

const fn p(name: &'static str, description: &'static str) -> Param {
    Param {
        name,
        description,
        ty: "string",
    }
}

/// Shorthand for a body field.
pub const fn f(
    name: &'static str,
    ty: &'static str,
    required: bool,
    description: &'static str,
) -> Field {
    Field {
        name,
        ty,
        required,
        description,
    }
}

/// The filters every usage query takes (`crate::params::FilterParams`).
pub const FILTERS: &[Param] = &[
    p(
        "window",
        "1h, 24h, 7d, 30d or mtd (default 24h); ignored when from/to are given.",
    ),
    p("from", "Start of a custom window, RFC 3339."),
    p("to", "End of a custom window, RFC 3339."),
    p("team", "A team name, or @none for the No team bucket."),
    p("user", "A user name."),
    p("provider", "A provider name."),
    p("model", "A model name."),
    p("gateway", "A gateway (replica) name."),
    p("workflow", "A workflow name (x-spendgate-workflow header)."),
    p("cache_outcome", "hit, miss, bypass or not_cacheable."),
    p("key", "A virtual key id."),
];

/// Filters plus grouping and sort, for the explorer.
pub const EXPLORER_QUERY: &[Param] = &[
    p(
        "group_by",
        "team, user, key, provider, model, gateway, workflow or cache_outcome (default team).",
    ),
    p(
        "sort",
        "cost, requests or tokens (default cost): the order and what the share column measures.",
    ),
];

/// `format` for exports.
pub const FORMAT: &[Param] = &[p("format", "csv or json (default json).")];

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
    ),
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

fn field_schema(ty: &str) -> Value {
    match ty {
        "integer[]" => json!({ "type": "array", "items": { "type": "integer" } }),
        other => json!({ "type": other }),
    }
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = op
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
        })
        .collect();
    params.extend(op.query.iter().flat_map(|g| g.iter()).map(|q| {
        json!({
            "name": q.name, "in": "query", "required": false,
            "description": q.description, "schema": { "type": q.ty },
        })
    }));
    let mut o = json!({
        "summary": op.summary,
        "description": access_note(op.access),
        "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '-', '.'], "_")),
        "security": security(op.access),
        "parameters": params,
        "responses": {
            "200": { "description": "Success.", "content": { op.produces: { "schema": if op.produces == "application/json" { json!({ "type": "object" }) } else { json!({ "type": "string" }) } } } },
            "400": { "$ref": "#/components/responses/Error" },
            "401": { "$ref": "#/components/responses/Error" },
        },
    });
    if matches!(op.access, Access::Admin | Access::AdminOutsideDemo) {
        o["responses"]["403"] = json!({ "$ref": "#/components/responses/Error" });
    }
    if !op.body.is_empty() {
        let props: Map<String, Value> = op
            .body
            .iter()
            .map(|b| {
                let mut s = field_schema(b.ty);
                s["description"] = json!(b.description);
                (b.name.to_string(), s)
            })
            .collect();
        let required: Vec<&str> = op
            .body
            .iter()
            .filter(|b| b.required)
            .map(|b| b.name)
            .collect();
        o["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object", "additionalProperties": false,
                "properties": props, "required": required,
            } } },
        });
    }
    o
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
                            decimal string of US dollars (exact; never a float); times are RFC 3339.",
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
            },
            "responses": {
                "Error": {
                    "description": "An error in the OpenAI error shape.",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
                },
            },
        },
    })
}
