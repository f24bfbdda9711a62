//! The response cache over real HTTP: hits replay the first answer's bytes for free and record what they
//! avoided, scope and bypass separate what may be shared, failures are never stored, memory stays bounded,
//! wallets and budgets are untouched by hits, and /usage shows the savings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::Duration;

use common::{chat_body, picos, TestServer};
use serde_json::{json, Value};

const MODEL: &str = "gpt-4o-mini";

async fn cached_server(edit: impl FnOnce(&mut spendgate::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.cache.enabled = true;
        c.open_pages = true;
        edit(c);
    })
    .await
}

/// One answer: status, `x-spendgate-cache`, request id and the body's exact bytes.
struct Answer {
    status: u16,
    cache: String,
    id: String,
    body: Vec<u8>,
}

async fn send(s: &TestServer, key: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
    send_to(s, "/v1/chat/completions", key, body, headers).await
}

async fn send_to(
    s: &TestServer,
    path: &str,
    key: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = s
        .client
        .post(format!("{}{path}", s.base))
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, cache, id) = (
        r.status().as_u16(),
        header("x-spendgate-cache"),
        header("x-spendgate-request-id"),
    );
    Answer {
        status,
        cache,
        id,
        body: r.bytes().await.unwrap().to_vec(),
    }
}

fn body(text: &str, stream: bool) -> Value {
    let mut b = chat_body(MODEL, text, stream);
    b["max_tokens"] = json!(12);
    b
}

#[tokio::test]
async fn a_repeated_request_is_a_free_hit_with_the_same_bytes_plain_and_streamed() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    let mut avoided_expected = 0i128;
    for stream in [false, true] {
        let b = body("what is a cache?", stream);
        let first = send(&s, &key, &b, &[]).await;
        assert_eq!((first.status, first.cache.as_str()), (200, "miss"));
        let second = send(&s, &key, &b, &[]).await;
        assert_eq!(
            (second.status, second.cache.as_str()),
            (200, "hit"),
            "stream={stream}"
        );
        assert_eq!(
            second.body, first.body,
            "a hit replays the stored bytes exactly"
        );
        if stream {
            let text = std::str::from_utf8(&second.body).unwrap();
            assert!(text.starts_with("data: ") && text.trim_end().ends_with("data: [DONE]"));
        }
        let miss = s.wait_for_log(&first.id).await;
        let hit = s.wait_for_log(&second.id).await;
        assert_eq!(miss["cache_outcome"], "miss");
        assert_eq!(hit["cache_outcome"], "hit");
        assert_eq!(hit["stream"], stream);
        assert!(picos(&miss["cost"]) > 0);
        assert_eq!(picos(&miss["avoided_cost"]), 0);
        assert_eq!(picos(&hit["cost"]), 0, "a hit costs nothing");
        assert_eq!(
            picos(&hit["avoided_cost"]),
            picos(&miss["cost"]),
            "a hit avoided exactly what its answer cost"
        );
        assert_eq!(
            (hit["input_tokens"].as_u64(), hit["output_tokens"].as_u64()),
            (Some(0), Some(0))
        );
        avoided_expected += picos(&miss["cost"]);
    }
    // The summary (rollups) sums avoided cost exactly as the spend logs do.
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 4)
        .await;
    let (_, summary) = s.admin_get("/api/v1/usage/summary?window=1h").await;
    let logs = s.all_spend_logs("window=1h").await;
    let from_logs: i128 = logs.iter().map(|l| picos(&l["avoided_cost"])).sum();
    assert_eq!(from_logs, avoided_expected);
    assert_eq!(picos(&summary["avoided_cost"]), from_logs);
    let cost_logs: i128 = logs.iter().map(|l| picos(&l["cost"])).sum();
    assert_eq!(picos(&summary["cost"]), cost_logs);
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn answers_are_shared_within_a_team_only_and_bypass_skips_the_cache() {
    let s = cached_server(|_| {}).await;
    let (_, a) = s.create_key("ana", Some("search")).await;
    let (_, a2) = s.create_key("abe", Some("search")).await;
    let (_, b) = s.create_key("bo", Some("billing")).await;
    let q = body("share me", false);
    assert_eq!(send(&s, &a, &q, &[]).await.cache, "miss");
    assert_eq!(
        send(&s, &b, &q, &[]).await.cache,
        "miss",
        "another team has its own answers"
    );
    assert_eq!(
        send(&s, &a2, &q, &[]).await.cache,
        "hit",
        "a teammate shares them"
    );
    // A bad key never sees a cached answer.
    let bad = send(&s, "sk-sg-not-a-key", &q, &[]).await;
    assert_eq!(bad.status, 401);
    assert_ne!(bad.cache, "hit");
    for header in [
        ("x-spendgate-cache", "bypass"),
        ("cache-control", "no-cache"),
    ] {
        let r = send(&s, &a, &q, &[header]).await;
        assert_eq!((r.status, r.cache.as_str()), (200, "bypass"), "{header:?}");
        let log = s.wait_for_log(&r.id).await;
        assert_eq!(log["cache_outcome"], "bypass");
        assert!(
            picos(&log["cost"]) > 0,
            "a bypass goes to the provider and is billed"
        );
    }
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn failed_cut_and_usage_less_answers_are_never_cached() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    for (fault, stream) in [("status500", false), ("truncate", true), ("nousage", false)] {
        let q = body(&format!("please fail [mock:fault={fault}]"), stream);
        for _ in 0..2 {
            let r = send(&s, &key, &q, &[]).await;
            assert_ne!(r.cache, "hit", "{fault}: never answered from the cache");
            let log = s.wait_for_log(&r.id).await;
            assert_eq!(log["cache_outcome"], "not_cacheable", "{fault}: {log}");
        }
    }
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_hit_is_priced_as_the_fallback_target_that_answered() {
    // The route's first target always fails and would price the model a hundred times higher.
    let extra = spendgate::config::Config::parse(
        r#"
[[providers]]
name = "primary"
kind = "mock"
fault = "status500"
prices = [{ model = "gpt-4o-mini", input_per_mtok = "100", output_per_mtok = "100" }]

[[routes]]
model = "gpt-4o-mini"
targets = [{ provider = "primary" }, { provider = "openai" }]
"#,
    )
    .unwrap();
    let s = cached_server(|c| {
        c.providers.extend(extra.providers);
        c.routes = extra.routes;
    })
    .await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    let q = body("fall back, then remember", false);
    let miss = send(&s, &key, &q, &[]).await;
    let hit = send(&s, &key, &q, &[]).await;
    assert_eq!((miss.cache.as_str(), hit.cache.as_str()), ("miss", "hit"));
    let (miss, hit) = (
        s.wait_for_log(&miss.id).await,
        s.wait_for_log(&hit.id).await,
    );
    assert_eq!(
        (miss["provider"].as_str(), miss["attempts"].as_u64()),
        (Some("openai"), Some(2))
    );
    assert_eq!(
        (hit["provider"].as_str(), hit["attempts"].as_u64()),
        (Some("openai"), Some(0))
    );
    assert_eq!(picos(&hit["avoided_cost"]), picos(&miss["cost"]));
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn routes_the_cache_does_not_know_pass_through_as_not_cacheable() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    let q = json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 12,
        "messages": [{ "role": "user", "content": "not for the cache" }],
    });
    for _ in 0..2 {
        let r = send_to(&s, "/v1/messages", &key, &q, &[]).await;
        assert_eq!((r.status, r.cache.as_str()), (200, ""));
        let log = s.wait_for_log(&r.id).await;
        assert_eq!(log["cache_outcome"], "not_cacheable");
        assert!(picos(&log["cost"]) > 0);
    }
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn the_memory_bound_evicts_the_least_recently_used() {
    const MAX: usize = 4_000;
    let s = cached_server(|c| {
        c.cache.max_bytes = MAX;
        c.cache.max_entry_bytes = MAX;
    })
    .await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    let prompts: Vec<String> = (0..10).map(|i| format!("question number {i:02}")).collect();
    let mut sizes = Vec::new();
    for p in &prompts {
        let r = send(&s, &key, &body(p, false), &[]).await;
        assert_eq!(r.cache, "miss");
        sizes.push(r.body.len());
    }
    let smallest = sizes.iter().min().copied().unwrap();
    let fits = MAX / (smallest + spendgate_gateway::cache::ENTRY_OVERHEAD);
    assert!(
        (1..10).contains(&fits),
        "the test needs a bound that holds some but not all answers ({sizes:?})"
    );
    // Newest first: the entries still held answer, the evicted ones are misses (which refill and evict again).
    let mut hits = 0;
    for p in prompts.iter().rev() {
        if send(&s, &key, &body(p, false), &[]).await.cache == "hit" {
            hits += 1;
        }
    }
    assert!(hits >= 1, "the newest answer is still held");
    assert!(
        hits <= fits,
        "{hits} answers held, at most {fits} fit in {MAX} bytes"
    );
    let first_again = send(&s, &key, &body(&prompts[0], false), &[]).await;
    assert_eq!(
        first_again.cache, "hit",
        "the refilled oldest answer is held again"
    );
    s.running.stop().await.unwrap();
}

/// The team's wallet balance, its budget's spend and what the budget holds right now.
async fn figures(s: &TestServer) -> (i128, i128, Value) {
    let (_, wl) = s.admin_get("/api/v1/wallets").await;
    let (_, bl) = s.admin_get("/api/v1/budgets").await;
    (
        picos(&wl["wallets"][0]["balance"]),
        picos(&bl["budgets"][0]["spent"]),
        bl["budgets"][0]["reserved"].clone(),
    )
}

#[tokio::test]
async fn a_hit_debits_no_wallet_and_spends_no_budget() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ana", Some("labs")).await;
    let (status, w) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "labs", "initial_balance": "1" }),
        )
        .await;
    assert_eq!(status, 201, "{w}");
    let (status, b) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": "labs", "period": "day", "amount": "5", "hard_limit": true }),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let q = body("pay once", false);
    let first = send(&s, &key, &q, &[]).await;
    assert_eq!(first.cache, "miss");
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 1)
        .await;
    let before = figures(&s).await;
    let cost = picos(&s.wait_for_log(&first.id).await["cost"]);
    assert_eq!(before.0, picos(&json!("1")) - cost, "the miss was paid");
    for _ in 0..5 {
        assert_eq!(send(&s, &key, &q, &[]).await.cache, "hit");
    }
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 6)
        .await;
    assert_eq!(
        figures(&s).await,
        before,
        "hits leave the wallet and the budget as they were"
    );
    let (_, ledger) = s
        .admin_get(&format!("/api/v1/wallets/{}/ledger?limit=100", w["id"]))
        .await;
    let settles = ledger["entries"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["kind"] == "settle").count());
    assert_eq!(settles, Some(1), "one charge: the miss ({ledger})");
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn the_usage_page_shows_cache_savings() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ana", Some("search")).await;
    let q = body("save me", false);
    let first = send(&s, &key, &q, &[]).await;
    let hit = send(&s, &key, &q, &[]).await;
    assert_eq!(hit.cache, "hit");
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 2)
        .await;
    let cost = s.wait_for_log(&first.id).await["cost"]
        .as_str()
        .unwrap()
        .to_string();
    let page = s.page("/usage?window=1h", "").await;
    let panel = page
        .split("Cache savings")
        .nth(1)
        .expect("the /usage page has a Cache savings panel");
    assert!(panel.contains("search"), "savings by team");
    assert!(panel.contains(MODEL), "savings by model");
    assert!(panel.contains(&cost), "avoided cost ${cost} shown");
    let detail = s.page(&format!("/requests/{}", hit.id), "").await;
    assert!(detail.contains("hit"), "the request page shows the outcome");
    assert!(detail.contains(&cost), "and the avoided cost");
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn answers_kept_in_redis_are_hits_too() {
    const REDIS: &str = "127.0.0.1:6379";
    if tokio::net::TcpStream::connect(REDIS).await.is_err() {
        println!("skipped: Redis at {REDIS} is not reachable");
        return;
    }
    let s = cached_server(|c| c.cache.redis_addr = Some(REDIS.into())).await;
    hits_come_from_redis(&s).await;
    s.running.stop().await.unwrap();
}

/// A plain and a streamed answer each filled once, then answered from Redis: the same bytes, billed at zero
/// with the fill's cost as avoided.
async fn hits_come_from_redis(s: &TestServer) {
    // A team of its own: Redis outlives the test, so an earlier run's answers must not be found.
    let team = format!(
        "redis-{}-{}",
        std::process::id(),
        spendgate_core::time::now_ms()
    );
    let (_, key) = s.create_key("ana", Some(&team)).await;
    for stream in [false, true] {
        let q = body("kept elsewhere", stream);
        let mut fill = send(s, &key, &q, &[]).await;
        assert_eq!(fill.cache, "miss");
        // The write to Redis is queued after the answer; poll until it is there. A request that comes too early
        // is another miss and fill, whose answer is then the one stored.
        let t0 = std::time::Instant::now();
        let hit = loop {
            let r = send(s, &key, &q, &[]).await;
            if r.cache == "hit" {
                break r;
            }
            fill = r;
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the answer never reached Redis"
            );
        };
        assert_eq!(hit.body, fill.body);
        let (miss_log, hit_log) = (
            s.wait_for_log(&fill.id).await,
            s.wait_for_log(&hit.id).await,
        );
        assert_eq!(picos(&hit_log["avoided_cost"]), picos(&miss_log["cost"]));
        assert_eq!(picos(&hit_log["cost"]), 0);
    }
}

/// A `redis-server` of this test's own serving TLS only (`--port 0`), with a password and the certificate of
/// `tests/fixtures/tls` (for `localhost` and `127.0.0.1`); stopped when dropped.
struct TlsRedis {
    server: std::process::Child,
    port: u16,
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

const REDIS_PASSWORD: &str = "redis-tls-s3cret";

fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/tls")
        .join(name)
}

impl TlsRedis {
    /// Starts it and waits until it accepts connections, or says why it cannot (the test is then skipped).
    async fn start() -> Result<TlsRedis, String> {
        let port = common::free_port();
        let server = std::process::Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(tls_fixture("server.crt"))
            .arg("--tls-key-file")
            .arg(tls_fixture("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(tls_fixture("ca.crt"))
            .args(["--tls-auth-clients", "no", "--requirepass", REDIS_PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("redis-server could not be started ({e})"))?;
        let mut redis = TlsRedis { server, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            // A build without TLS exits at once, naming the option it does not know.
            if let Some(status) = redis.server.try_wait().unwrap() {
                let mut out = String::new();
                if let Some(mut o) = redis.server.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut o, &mut out);
                }
                return Err(format!(
                    "redis-server --tls-port exited ({status}): it lacks TLS support? {}",
                    out.lines().last().unwrap_or_default()
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(redis);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server never listened on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, host: &str, password: &str) -> String {
        format!("rediss://:{password}@{host}:{}", self.port)
    }
}

/// `rediss://` end to end: hits come from a TLS-only Redis that wants a password; a certificate from another
/// CA, a host the certificate does not name and a wrong password are each refused at start, saying what to
/// check, and never showing the password.
#[tokio::test]
async fn answers_kept_in_redis_over_tls_are_hits_too() {
    let redis = match TlsRedis::start().await {
        Ok(r) => r,
        Err(reason) => {
            println!("skipped: {reason}");
            return;
        }
    };
    let (ca, other) = (tls_fixture("ca.crt"), tls_fixture("other-ca.crt"));
    let s = cached_server(|c| {
        c.cache.redis_addr = Some(redis.url("localhost", REDIS_PASSWORD));
        c.cache.redis_ca_file = Some(ca.clone());
    })
    .await;
    hits_come_from_redis(&s).await;
    s.running.stop().await.unwrap();

    let refused = |url: String, ca_file: std::path::PathBuf| async move {
        let mut config = spendgate::config::Config::default();
        config.cache.enabled = true;
        config.cache.redis_addr = Some(url);
        config.cache.redis_ca_file = Some(ca_file);
        let e = format!("{:#}", config.response_cache().await.unwrap_err());
        assert!(!e.contains(REDIS_PASSWORD), "the password shows: {e}");
        e
    };
    let e = refused(redis.url("127.0.0.1", REDIS_PASSWORD), other).await;
    assert!(e.contains("TLS handshake with Redis failed"), "{e}");
    assert!(e.contains("cache.redis_ca_file names the CA"), "{e}");
    assert!(e.contains("rediss://:***@127.0.0.1"), "{e}");
    let e = refused(redis.url("127.0.0.2", REDIS_PASSWORD), ca.clone()).await;
    assert!(e.contains("not valid for name"), "{e}");
    let e = refused(
        format!("rediss://:{REDIS_PASSWORD}@localhost:port"),
        ca.clone(),
    )
    .await;
    assert!(e.contains("the port must be a number"), "{e}");
    assert!(
        !e.contains("does not answer"),
        "a setting that cannot work is not blamed on Redis: {e}"
    );
    let e = refused(redis.url("127.0.0.1", "wrong-password"), ca).await;
    assert!(e.contains("WRONGPASS"), "{e}");
    assert!(!e.contains("wrong-password"), "{e}");
}

/// A cache hit says so wherever it is shown: the request page names it "served from cache" with its tokens
/// served at $0 and the cost it avoided (not "reported by the provider"), the request list marks it, and net
/// savings below zero say why (the fills cost more than the hits saved so far).
#[tokio::test]
async fn cache_hits_are_marked_and_negative_savings_explained() {
    let s = cached_server(|_| {}).await;
    let (_, key) = s.create_key("ada", Some("labs")).await;
    let (a, b) = (
        body("what is a cache?", false),
        body("something else", false),
    );
    assert_eq!(send(&s, &key, &a, &[]).await.cache, "miss");
    let hit = send(&s, &key, &a, &[]).await;
    assert_eq!(hit.cache, "hit");
    assert_eq!(send(&s, &key, &b, &[]).await.cache, "miss");
    let log = s.wait_for_log(&hit.id).await;
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| v["requests"] == 3)
        .await;

    let page = s.page(&format!("/requests/{}", hit.id), "").await;
    assert!(page.contains("id=\"served-from-cache\""), "{page}");
    assert!(page.contains("served from cache at $0"), "{page}");
    assert!(
        page.contains(&format!("${}", log["avoided_cost"].as_str().unwrap())),
        "the avoided cost is named: {page}"
    );
    assert!(!page.contains("as reported by the provider"), "{page}");

    let usage = s.page("/usage?window=1h", "").await;
    assert_eq!(
        usage.matches("badge served-from-cache").count(),
        1,
        "the one hit is marked in the list"
    );
    assert!(usage.contains("negative-net"), "{usage}");
    assert!(usage.contains("more than the"), "{usage}");
    s.running.stop().await.unwrap();
}
