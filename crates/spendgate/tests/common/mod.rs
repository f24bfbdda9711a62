//! Shared set-up for integration tests: a real spendgate on a loopback port, a real SQLite file in a temporary
//! directory (or a PostgreSQL database of its own), and the mock provider. Nothing of our own is mocked.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

pub mod reconcile;

use std::time::{Duration, Instant};

use serde_json::Value;
use spendgate::app::{start, Running};
use spendgate::config::{Config, ProviderConfig};

/// A spendgate reached over HTTP with the test admin token: a [`TestServer`] in this process, or a binary
/// started as a child process.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

pub struct TestServer {
    pub running: Running,
    pub api: Api,
    pub dir: tempfile::TempDir,
}

/// A test server is used through its HTTP API (`s.base`, `s.admin_get(...)`).
impl std::ops::Deref for TestServer {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

pub fn mock_provider(name: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        kind: "mock".into(),
        catalog: true,
        read_timeout_secs: 30,
        ..ProviderConfig::default()
    }
}

pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        gateway_name: "test-gw".into(),
        admin_token: Some("test-admin-token".into()),
        providers: vec![mock_provider("openai"), mock_provider("anthropic")],
        ..Config::default()
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(edit: impl FnOnce(&mut Config)) -> TestServer {
        install_tls();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        edit(&mut config);
        let running = start(&config).await.unwrap();
        let base = format!("http://{}", running.addr);
        TestServer {
            running,
            api: Api {
                base,
                client: reqwest::Client::new(),
            },
            dir,
        }
    }
}

impl Api {
    pub async fn admin_get(&self, path_and_query: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{}", self.base, path_and_query))
            .bearer_auth("test-admin-token")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{}", self.base, path))
            .bearer_auth("test-admin-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The login form at `/login{query}`: its CSRF cookie (as `name=value`), its CSRF field and its HTML.
    pub async fn login_form(&self, query: &str) -> (String, String, String) {
        let form = self
            .client
            .get(format!("{}/login{query}", self.base))
            .send()
            .await
            .unwrap();
        let cookie = form
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ");
        let html = form.text().await.unwrap();
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string();
        (cookie, csrf, html)
    }

    /// Posts the login form with `token` (CSRF cookie and field included) and returns the answer, unfollowed.
    pub async fn try_login(&self, token: &str) -> reqwest::Response {
        let (cookie, csrf, _) = self.login_form("").await;
        no_redirects()
            .post(format!("{}/login", self.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&csrf={csrf}&next=%2Foverview"))
            .send()
            .await
            .unwrap()
    }

    /// Logs in to the pages with `token` through the login form (CSRF cookie and field included); returns the
    /// session cookie as `name=value`.
    pub async fn login(&self, token: &str) -> String {
        let r = self.try_login(token).await;
        assert_eq!(r.status(), 303, "the token logs in");
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    /// Creates a key through the admin API and returns (id, secret).
    pub async fn create_key(&self, user: &str, team: Option<&str>) -> (i64, String) {
        let res = self
            .client
            .post(format!("{}/api/v1/keys", self.base))
            .bearer_auth("test-admin-token")
            .json(&serde_json::json!({ "user": user, "team": team }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
        let v: Value = res.json().await.unwrap();
        (
            v["id"].as_i64().unwrap(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    /// Creates a viewer token for `team` through the admin API and returns its secret.
    pub async fn create_viewer(&self, team: &str) -> String {
        let (st, v) = self
            .admin_post("/api/v1/viewer-tokens", serde_json::json!({ "team": team }))
            .await;
        assert_eq!(st, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// Gives `team` a hard daily budget named `name` too small for any request, so every request of the team is
    /// refused (429); returns the budget's id.
    pub async fn full_hard_budget(&self, team: &str, name: &str) -> i64 {
        let (st, b) = self
            .admin_post(
                "/api/v1/budgets",
                serde_json::json!({ "name": name, "scope": "team", "subject": team, "period": "day",
                                    "amount": "0.000001", "hard_limit": true }),
            )
            .await;
        assert_eq!(st, 201, "{b}");
        b["id"].as_i64().unwrap()
    }

    pub async fn chat(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Sends an Anthropic Messages request as Anthropic's SDKs do (`x-api-key`, `anthropic-version`).
    pub async fn messages(&self, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}/v1/messages", self.base))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Polls `cond` on the summary until it holds or `limit` passes; returns how long it took.
    pub async fn wait_for_summary(
        &self,
        query: &str,
        limit: Duration,
        cond: impl Fn(&Value) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        loop {
            let (_, v) = self
                .admin_get(&format!("/api/v1/usage/summary?{query}"))
                .await;
            if cond(&v) {
                return t0.elapsed();
            }
            assert!(
                t0.elapsed() < limit,
                "the summary never reached the expected state: {v}"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A page's HTML, with a session cookie from [`TestServer::login`].
    pub async fn page(&self, path: &str, cookie: &str) -> String {
        text_of(
            self.client
                .get(format!("{}{}", self.base, path))
                .header("cookie", cookie),
        )
        .await
    }

    /// The spend log of one request (its `x-spendgate-request-id`), polled until it is written.
    pub async fn wait_for_log(&self, id: &str) -> Value {
        let t0 = Instant::now();
        loop {
            let (status, v) = self.admin_get(&format!("/api/v1/spend-logs/{id}")).await;
            if status == 200 {
                return v;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "request {id} was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Every spend log matching `query`, following cursors.
    pub async fn all_spend_logs(&self, query: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, v) = self
                .admin_get(&format!(
                    "/api/v1/spend-logs?limit=1000&{query}&cursor={cursor}"
                ))
                .await;
            assert_eq!(status, 200, "{v}");
            out.extend(v["items"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }
}

/// The id of the spend log of a proxied request (its `x-spendgate-request-id` header).
pub fn request_id(res: &reqwest::Response) -> String {
    res.headers()["x-spendgate-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Sends a request and reads its whole answer as text.
pub async fn text_of(req: reqwest::RequestBuilder) -> String {
    req.send().await.unwrap().text().await.unwrap()
}

/// Installs the TLS provider that reqwest's clients need (it is process-wide; a second call does nothing).
fn install_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A plain client, for tests that start the binary themselves: one of them may be the first in its test binary
/// to build a client, before any `TestServer` installed the TLS provider.
pub fn client() -> reqwest::Client {
    install_tls();
    reqwest::Client::new()
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    install_tls();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn chat_body(model: &str, text: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "messages": [{ "role": "user", "content": text }],
    })
}

/// The route and body a client of `model`'s provider sends: Anthropic's Messages for Claude, OpenAI's chat
/// completions otherwise (the mock, like the providers it stands for, serves each model on its provider's API).
pub fn chat_request(model: &str, text: &str, stream: bool) -> (&'static str, Value) {
    if model.starts_with("claude") {
        let body = serde_json::json!({
            "model": model,
            "stream": stream,
            "max_tokens": 256,
            "messages": [{ "role": "user", "content": text }],
        });
        ("/v1/messages", body)
    } else {
        ("/v1/chat/completions", chat_body(model, text, stream))
    }
}

/// Sums a money field (decimal string) exactly, in picodollars.
pub fn picos(v: &Value) -> i128 {
    spendgate_core::Money::parse_usd(v.as_str().unwrap())
        .unwrap()
        .picos()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `/healthz` of a server started as a separate process until it answers.
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let t0 = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The exact cost of a spend log in picodollars, recomputed here from its token counts (and, for 1-hour cache
/// writes, the count its lines give) and the shipped catalog's prices, independently of the gateway's pricing code: a price in microdollars per million tokens is a price in
/// picodollars per token, so each kind of token costs `tokens x price` exactly.
pub fn catalog_cost(log: &Value) -> i128 {
    let catalog = spendgate_core::pricing::Catalog::with_overrides(
        Vec::new(),
        spendgate_core::pricing::UnknownModelPolicy::Refuse,
    )
    .unwrap();
    let p = catalog.get(log["model"].as_str().unwrap()).unwrap();
    let t = |k: &str| i128::from(log[k].as_u64().unwrap());
    let price = |v: spendgate_core::PricePerMtok| i128::from(v.micros());
    let (input, cached, written, output) = (
        t("input_tokens"),
        t("cached_input_tokens"),
        t("cache_write_tokens"),
        t("output_tokens"),
    );
    // Of the writes, those that live an hour are billed at their own price; the log's lines say how many.
    let written_1h: i128 = log["price_lines"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .filter(|l| l["kind"] == "cache_write_1h")
                .map(|l| i128::from(l["tokens"].as_u64().unwrap()))
                .sum()
        })
        .unwrap_or(0);
    let write = p.cache_write_per_mtok.unwrap_or(p.input_per_mtok);
    (input - cached - written) * price(p.input_per_mtok)
        + cached * price(p.cached_input_per_mtok.unwrap_or(p.input_per_mtok))
        + (written - written_1h) * price(write)
        + written_1h * price(p.cache_write_1h_per_mtok.unwrap_or(write))
        + output * price(p.output_per_mtok)
}

/// What an upstream received: one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path_and_query: String,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    /// The body's bytes as they arrived (what a signature covers).
    pub raw: Vec<u8>,
}

impl Seen {
    /// The record of a request from its head and body.
    pub fn of(parts: &axum::http::request::Parts, body: &[u8]) -> Seen {
        Seen {
            path_and_query: parts
                .uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers: parts.headers.clone(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            raw: body.to_vec(),
        }
    }

    /// The `Authorization` header a Bedrock request, as it arrived, signs to with `credentials` in `region`
    /// (SigV4 recomputed from the path, `host`, `content-type`, `x-amz-date` and body received).
    pub fn sigv4_authorization(
        &self,
        credentials: &spendgate_gateway::providers::aws::Credentials,
        region: &str,
    ) -> String {
        use spendgate_gateway::providers::aws::sigv4;
        let h = |n: &str| self.headers[n].to_str().unwrap().to_string();
        let secs = time::PrimitiveDateTime::parse(
            &h("x-amz-date"),
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
        )
        .unwrap()
        .assume_utc()
        .unix_timestamp();
        let signed = sigv4::sign(
            &sigv4::Request {
                method: "POST",
                path: &self.path_and_query,
                headers: &[("host", &h("host")), ("content-type", &h("content-type"))],
                body: &self.raw,
            },
            credentials,
            sigv4::Scope {
                region,
                service: "bedrock",
            },
            &sigv4::SigningTime::at(secs),
            sigv4::Options::default(),
        );
        signed.headers.last().unwrap().1.clone()
    }
}

/// The mock provider served over real HTTP on a loopback port (OpenAI and Anthropic routes under `/v1`), recording
/// every request it receives. Returns its base URL (`http://127.0.0.1:port/v1`) and the requests seen.
pub async fn recording_upstream() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Seen>>>) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let mock =
        spendgate_gateway::providers::MockProvider::new(spendgate_gateway::providers::MockConfig {
            name: "mock".into(),
            ..Default::default()
        });
    let record = Arc::clone(&seen);
    let app =
        spendgate_gateway::mock_upstream_router(Arc::new(mock)).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let record = Arc::clone(&record);
                async move {
                    let (parts, body) = req.into_parts();
                    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    record.lock().unwrap().push(Seen::of(&parts, &bytes));
                    next.run(axum::extract::Request::from_parts(
                        parts,
                        axum::body::Body::from(bytes),
                    ))
                    .await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

/// A scratch PostgreSQL database, or `None` (with the reason printed) when no server answers.
pub async fn scratch_pg() -> Option<spendgate_store::postgres::scratch::ScratchDatabase> {
    use spendgate_store::postgres::scratch::ScratchDatabase;
    match ScratchDatabase::from_env("SPENDGATE_TEST_PG").await {
        (_, Ok(db)) => Some(db),
        (url, Err(e @ spendgate_store::StoreError::Connect { .. })) => {
            eprintln!("skipped: PostgreSQL not reachable at {url} ({e})");
            None
        }
        (url, Err(e)) => panic!("PostgreSQL at {url} answered but refused a test database: {e}"),
    }
}

/// Starts a replica named `name` whose store is set by `store` (the same for every replica of a test), with
/// leases on, short leases and a quick heartbeat, so that a test sees renewals and the other replicas soon.
pub async fn replica(name: &str, store: &(dyn Fn(&mut Config) + Sync)) -> TestServer {
    let name = name.to_string();
    TestServer::start_with(move |c| {
        c.gateway_name = name;
        c.replicas.leases = Some(true);
        c.replicas.lease_ttl_secs = 6;
        c.replicas.heartbeat_secs = 1;
        // The journal is per replica and off here (replicas share the data directory in the SQLite variants).
        c.journal.enabled = false;
        // 200 requests at once, half of them streams, on one key: above the default per-key stream limit.
        c.limits.max_streams_per_key = 1_000;
        store(c);
    })
    .await
}

/// Waits until `gateway` has beaten into the shared store (a replica that has not yet announced itself cannot
/// be waited for).
pub async fn until_listed(r: &TestServer, gateway: &str) {
    let t0 = Instant::now();
    while !r
        .running
        .store
        .list_gateways()
        .await
        .unwrap()
        .iter()
        .any(|b| b.name == gateway)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{gateway} never beat"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
