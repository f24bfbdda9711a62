//! The pages in a real browser: headless Chromium, driven over WebDriver (chromedriver) against a real
//! spendgate. The WebDriver protocol is plain JSON over HTTP, so it is spoken here with reqwest directly.
//!
//! When Chromium or chromedriver is not installed the test prints "skipped: chromium not installed" and
//! returns; CI installs both (`apt-get install -y chromium chromium-driver`).
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const HOSTILE: &str = "<script>alert(1)</script>";

/// A chromedriver process with one browser session. Dropping it ends the session (which quits Chromium) with a
/// blocking request, so no browser outlives the test even when the test fails, then kills chromedriver.
struct Browser {
    child: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `DELETE /session/<id>` over a plain socket: Drop cannot await, and this must run on panics too.
        if let Some(rest) = self.session.strip_prefix("http://") {
            if let Some((host, path)) = rest.split_once('/') {
                if let Ok(addr) = host.parse::<std::net::SocketAddr>() {
                    if let Ok(mut stream) =
                        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                    {
                        use std::io::{Read, Write};
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
                        let _ = write!(
                            stream,
                            "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        );
                        let mut sink = Vec::new();
                        let _ = stream.read_to_end(&mut sink);
                    }
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns `None` (after saying so) when they are missing.
    async fn start() -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
            println!(
                "skipped: chromium not installed ({CHROMIUM} and {CHROMEDRIVER} are needed; \
                 apt-get install -y chromium chromium-driver)"
            );
            return None;
        }
        // reqwest is built without a default TLS provider; the binary installs ring, and so does this test.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            child,
            http,
            session: String::new(),
            _profile: tempfile::tempdir().unwrap(),
        };
        // Wait for chromedriver to listen and say it is ready.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = browser.http.get(format!("{base}/status")).send().await {
                let v: Value = res.json().await.unwrap_or(Value::Null);
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = browser._profile.path().display().to_string();
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1400,1000",
                        format!("--user-data-dir={profile}"),
                    ],
                },
            }},
        });
        let res = browser
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap();
        let v: Value = res.json().await.unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {v}"));
        browser.session = format!("{base}/session/{id}");
        Some(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        let v = self
            .call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
        assert!(v.is_null(), "navigation failed: {v}");
    }

    async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    async fn text(&self, css: &str) -> String {
        match self.find(css).await {
            Some(id) => self
                .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
                .as_str()
                .unwrap_or_default()
                .to_string(),
            None => String::new(),
        }
    }

    async fn click(&self, css: &str) {
        let id = self
            .find(css)
            .await
            .unwrap_or_else(|| panic!("no element {css}"));
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/element/{id}/click"),
                Some(json!({})),
            )
            .await;
        assert!(v.is_null(), "click on {css} failed: {v}");
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
        .await
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether an alert dialog is open (a script injected through a name would open one).
    async fn alert_open(&self) -> bool {
        let v = self.call(reqwest::Method::GET, "/alert/text", None).await;
        v.get("error").is_none()
    }

    /// Polls the text of `css` until `cond` holds; fails with the last text after `limit`.
    async fn wait_text(&self, css: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text(css).await;
            if cond(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{what}: '{css}' shows {t:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ends the session; Drop then only stops chromedriver.
    async fn quit(mut self) {
        let _ = self.call(reqwest::Method::DELETE, "", None).await;
        self.session.clear();
    }
}

async fn send(s: &TestServer, key: &str, model: &str) {
    let (path, body) = common::chat_request(model, "hello there", false);
    let res = s
        .client
        .post(format!("{}{path}", s.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = res.bytes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_pages_show_spend_follow_filters_update_live_and_escape_names() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let (_, support) = s.create_key("alice", Some("support")).await;
    let (_, search) = s.create_key("carol", Some("search")).await;
    let (_, none) = s.create_key("batch-integration", None).await;
    let (_, hostile) = s.create_key("mallory", Some(HOSTILE)).await;
    send(&s, &support, "gpt-4o-mini").await;
    send(&s, &support, "gpt-4o-mini").await;
    send(&s, &search, "claude-haiku-4-5").await;
    send(&s, &none, "gpt-4o-mini").await;
    send(&s, &hostile, "gpt-4o-mini").await;
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| {
        v["requests"].as_u64() == Some(5)
    })
    .await;

    // The overview shows spend and this gateway's status.
    browser.goto(&format!("{}/overview", s.base)).await;
    let cards = browser.text(".cards").await;
    assert!(
        cards.to_lowercase().contains("spend, month to date"),
        "{cards}"
    );
    assert!(cards.contains('$'), "{cards}");
    let gateways = browser.text("#gateways").await;
    assert!(
        gateways.contains("test-gw") && gateways.contains("now"),
        "{gateways}"
    );

    // Usage grouped by team: the teams, the No team row, and the hostile name as plain text.
    browser
        .goto(&format!("{}/usage?group_by=team&window=1h", s.base))
        .await;
    let table = browser.text("#explorer-table").await;
    for team in ["support", "search", "No team", HOSTILE] {
        assert!(table.contains(team), "{team} missing from {table}");
    }
    assert!(!browser.alert_open().await, "a name ran as script");
    let inline = browser
        .script("return document.querySelectorAll('script:not([src])').length")
        .await;
    assert_eq!(inline, json!(0));

    // Changing the grouping changes the table.
    browser.click("#explorer a[data-group=\"model\"]").await;
    browser
        .wait_text("#explorer-table", "grouped by model", |t| {
            t.contains("gpt-4o-mini") && t.contains("claude-haiku-4-5") && !t.contains("No team")
        })
        .await;

    // Choosing a team in the filter bar narrows it (the list applies itself on change).
    browser
        .click("select[name=\"team\"] option[value=\"search\"]")
        .await;
    browser
        .wait_text("#explorer-table", "filtered to team search", |t| {
            t.contains("claude-haiku-4-5") && !t.contains("gpt-4o-mini")
        })
        .await;
    let url = browser.url().await;
    assert!(
        url.contains("team=search") && url.contains("group_by=model"),
        "{url}"
    );

    // A new request appears without a reload: a marker set on the page survives the update.
    browser
        .script("window.__spendgateMarker = 'kept'; return null")
        .await;
    let before = browser
        .script("return document.getElementById('updated').dataset.ms")
        .await;
    let (_, live_key) = s.create_key("live-user", Some("search")).await;
    send(&s, &live_key, "gpt-4.1-mini").await;
    browser
        .wait_text("#logs", "the new request listed", |t| {
            t.contains("live-user")
        })
        .await;
    browser
        .wait_text("#explorer-table", "the new model in the table", |t| {
            t.contains("gpt-4.1-mini")
        })
        .await;
    let marker = browser.script("return window.__spendgateMarker").await;
    assert_eq!(
        marker,
        json!("kept"),
        "the page was reloaded instead of updated"
    );
    let after = browser
        .script("return document.getElementById('updated').dataset.ms")
        .await;
    assert_ne!(before, after, "'Updated' moved on");

    browser.quit().await;
    s.running.stop().await.unwrap();
}

/// A name with no place to break, as teams and users sometimes are.
const LONG: &str = "data-platform-ingestion-and-evaluation-pipelines-team-eu-west-1";

impl Browser {
    /// Sets the window so that the viewport is `width` x `height` CSS pixels (headless: the window is the
    /// viewport).
    async fn size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }
}

/// Every page at a desktop width (1,440 x 900) and a phone's (390 x 844) has no horizontal overflow of the
/// document: wide tables scroll inside their own container and long names wrap. The store holds what makes
/// pages wide: long unbroken names, cache hits and fills, admin changes, budgets and an alert, a wallet, a rate
/// limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_the_window_at_desktop_and_phone_widths() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = TestServer::start_with(|c| {
        c.open_pages = true;
        c.cache.enabled = true;
    })
    .await;
    let (_, support) = s.create_key("alice", Some("support")).await;
    let (_, long) = s.create_key(LONG, Some(LONG)).await;
    for (key, model) in [
        (&support, "gpt-4o-mini"),
        (&support, "gpt-4o-mini"),
        (&long, "claude-haiku-4-5"),
        (&long, "gpt-4o-mini"),
    ] {
        send(&s, key, model).await;
    }
    let (_, b) = s
        .admin_post(
            "/api/v1/budgets",
            json!({ "scope": "team", "subject": LONG, "period": "day", "amount": "0.000001" }),
        )
        .await;
    let (_, w) = s
        .admin_post(
            "/api/v1/wallets",
            json!({ "scope": "team", "subject": "support", "initial_balance": "5", "name": LONG }),
        )
        .await;
    // A rate limit with a long team name, for the panel under the budgets.
    let (_, r) = s
        .admin_post(
            "/api/v1/rate-limits",
            json!({ "scope": "team", "subject": LONG, "rpm": 1_000_000, "tpm": 999_999_999 }),
        )
        .await;
    assert!(r["id"].is_i64(), "{r}");
    send(&s, &long, "gpt-4o").await;
    // A refused request, so that the pages show their refusal panels and signals with a row.
    let refused = s
        .chat(
            &format!("{LONG}-not-a-key"),
            common::chat_body("gpt-4o-mini", "hi", false),
        )
        .await;
    assert_eq!(refused.status(), 401);
    s.wait_for_summary("window=1h", Duration::from_secs(10), |v| {
        v["requests"].as_u64() == Some(5) && v["refused"]["total"].as_u64() == Some(1)
    })
    .await;
    let logs = s.all_spend_logs("window=1h").await;
    let hit = logs.iter().find(|l| l["cache_outcome"] == "hit").unwrap();
    let miss = logs.iter().find(|l| l["cache_outcome"] != "hit").unwrap();
    assert!(b["id"].is_i64() && w["id"].is_i64(), "{b} {w}");
    let pages = [
        "/overview".to_string(),
        "/usage".into(),
        "/usage?group_by=team&window=1h".into(),
        "/usage?group_by=user&window=1h".into(),
        "/usage?group_by=cache_outcome&window=1h".into(),
        format!("/requests/{}", hit["id"].as_str().unwrap()),
        format!("/requests/{}", miss["id"].as_str().unwrap()),
        "/explain".into(),
        format!("/explain?group_by=team&subject={LONG}"),
        "/history?view=activity".into(),
        "/budgets".into(),
        "/wallets".into(),
        format!("/wallets/{}", w["id"]),
        "/notifications".into(),
    ];
    let mut too_wide = Vec::new();
    for (width, height) in [(1440, 900), (390, 844)] {
        browser.size(width, height).await;
        for page in &pages {
            browser.goto(&format!("{}{page}", s.base)).await;
            let v = browser
                .script(
                    "return [document.documentElement.scrollWidth, window.innerWidth, \
                     document.querySelector('main') !== null]",
                )
                .await;
            let (scroll, inner) = (v[0].as_i64().unwrap(), v[1].as_i64().unwrap());
            assert_eq!(v[2], true, "{page} rendered a page");
            assert!(
                (inner - i64::from(width)).abs() <= 20,
                "the viewport is {inner} px wide, asked for {width}"
            );
            if scroll > inner {
                too_wide.push(format!("{page} at {width}px: {scroll} px wide in {inner}"));
            }
        }
    }
    assert!(
        too_wide.is_empty(),
        "pages wider than the window:\n{}",
        too_wide.join("\n")
    );
    browser.quit().await;
    s.running.stop().await.unwrap();
}

impl Browser {
    /// Loads `url` again and again until the text of `css` satisfies `cond` (for what arrives without a
    /// commit to push it, such as an alert recorded by the dispatcher); fails with the last text after `limit`.
    async fn wait_page(&self, url: &str, css: &str, cond: impl Fn(&str) -> bool) -> String {
        self.wait_page_until(url, css, Instant::now() + Duration::from_secs(15), cond)
            .await
    }

    /// [`Browser::wait_page`] with a deadline of the caller's (a whole scenario's, shared by its steps).
    async fn wait_page_until(
        &self,
        url: &str,
        css: &str,
        deadline: Instant,
        cond: impl Fn(&str) -> bool,
    ) -> String {
        loop {
            self.goto(url).await;
            let t = self.text(css).await;
            if cond(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{url}: '{css}' shows {t:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A request refused by a full hard budget shows on `/usage` with its reason in words and who was refused, the
/// budget's "refusing" alert is shown beside it, and `/overview` signals the refusals: a blocked team is told
/// by the dashboard, not by its users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_shows_on_usage_with_its_reason_and_the_blocking_alert() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let (_, sam) = s.create_key("sam", Some("support")).await;
    s.full_hard_budget("support", "support daily").await;
    let (path, body) = common::chat_request("gpt-4o-mini", "hello there", false);
    for _ in 0..2 {
        let res = s
            .client
            .post(format!("{}{path}", s.base))
            .bearer_auth(&sam)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
    }

    let usage = format!("{}/usage?window=1h", s.base);
    let list = browser
        .wait_page(&usage, "#refusals", |t| {
            t.matches("budget full").count() == 2
        })
        .await;
    assert!(
        list.contains("budget 'support daily' is hard and full"),
        "{list}"
    );
    assert!(list.contains("sam · support"), "{list}");
    assert!(list.contains("429"), "{list}");
    let card = browser.text("#refused-card").await;
    assert!(card.contains('2') && card.contains("budget full"), "{card}");
    let alerts = browser
        .wait_page(&usage, "#budget-alerts", |t| t.contains("is refusing"))
        .await;
    assert!(
        alerts.contains("support daily budget of team support is refusing team support's requests"),
        "{alerts}"
    );

    let overview = format!("{}/overview", s.base);
    let signals = browser
        .wait_page(&overview, "#refused-hour", |t| t.contains('2'))
        .await;
    assert!(signals.to_lowercase().contains("refused"), "{signals}");
    let class = browser
        .script("return document.getElementById('refused-hour').className")
        .await;
    assert_eq!(class, json!("bad"), "a budget refusing is a blocked team");
    let latest = browser.text("#budget-alerts").await;
    assert!(latest.contains("is refusing"), "{latest}");

    browser.quit().await;
    s.running.stop().await.unwrap();
}

/// Dollars as the pages print them ("$1,234.56", "+$0.0012", "−$3.00"), in picodollars; `None` for other text.
fn usd(text: &str) -> Option<i128> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('−').or_else(|| t.strip_prefix('-')) {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let picos = spendgate_core::Money::parse_usd(&t.strip_prefix('$')?.replace(',', ""))
        .ok()?
        .picos();
    Some(if negative { -picos } else { picos })
}

/// A period card of `/overview` read from the cards' text (title, figure, then "▲ 12.3% vs $X <span>" a line
/// each): the period's spend, the baseline's, and whether the comparison reads "new" (nothing to compare with).
fn period_card(cards: &str, title: &str, span: &str) -> Option<(i128, i128, bool)> {
    let lines: Vec<&str> = cards.lines().map(str::trim).collect();
    let at = lines.iter().position(|l| l.eq_ignore_ascii_case(title))?;
    let spend = usd(lines.get(at + 1)?)?;
    let sub = lines.get(at + 2)?;
    let baseline = usd(sub.split(" vs ").nth(1)?.strip_suffix(span)?)?;
    let new = sub.split_whitespace().any(|w| w == "new");
    Some((spend, baseline, new))
}

/// The spend cards of `/overview` (title, span compared with) whose period began at least an hour ago (UTC).
/// In a period's first minutes the same span before it is as short and may hold no request at all, so its
/// card cannot be expected to show a non-zero baseline.
fn settled_cards(now_ms: i64) -> Vec<(&'static str, &'static str)> {
    use spendgate_core::time::{DAY_MS, HOUR_MS};
    let into_day = now_ms.rem_euclid(DAY_MS);
    let day_of_month = time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000))
        .unwrap()
        .day();
    let mut cards = Vec::new();
    if day_of_month > 1 || into_day >= HOUR_MS {
        cards.push(("Spend, month to date", "same span last month"));
    }
    if into_day >= HOUR_MS {
        cards.push(("Spend today (UTC)", "yesterday by this time"));
    }
    cards
}

/// Whether each of `cards` on `/overview` shows spend against a real, non-zero baseline.
fn overview_compares(text: &str, cards: &[(&str, &str)]) -> bool {
    cards.iter().all(|(title, span)| {
        period_card(text, title, span)
            .is_some_and(|(spend, baseline, new)| spend > 0 && baseline > 0 && !new)
    })
}

/// A row of the explain page's factors table: its baseline, current and change cells as shown.
async fn factor(browser: &Browser, row: usize) -> (String, String, String) {
    let text = browser
        .text(&format!(
            "section.cards + section.panel tbody tr:nth-child({row})"
        ))
        .await;
    let cells: Vec<&str> = text.split_whitespace().rev().take(3).collect();
    assert_eq!(cells.len(), 3, "factor row {row}: {text:?}");
    (cells[2].into(), cells[1].into(), cells[0].into())
}

/// The demo as `spendgate demo` runs it: its history written into an empty data directory before it serves,
/// then its live traffic on top. Within a minute of that start, `/overview` compares this month and today with
/// real, non-zero spans before them, and `/explain`, reached from `/usage` by team and set to 7 days against
/// the same time last week by its own links, shows the volume effect behind support's rise, the intensity effect
/// (bigger prompts) behind growth's and the price/mix effect behind search's, each against a non-zero baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_baselines_and_all_three_effects_within_a_minute_of_start() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = spendgate::demo::demo_config(
        "127.0.0.1:0".into(),
        dir.path().to_path_buf(),
        "demo-gateway".into(),
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let history = spendgate::demo::write_history(&config, |_| {})
        .await
        .unwrap();
    let running = spendgate::app::start(&config).await.unwrap();
    let base = format!("http://{}", running.addr);
    let traffic = tokio::spawn(spendgate::demo::run_traffic(
        std::sync::Arc::clone(&running.store),
        base.clone(),
        running.shutdown_signal(),
        spendgate::demo::Traffic {
            keys: history.map(|h| h.keys).unwrap_or_default(),
            ..spendgate::demo::Traffic::default()
        },
    ));
    println!(
        "the demo serves {:.1} s after its start",
        started.elapsed().as_secs_f64()
    );

    let settled = settled_cards(spendgate_core::time::now_ms());
    if settled.len() < 2 {
        println!(
            "only {settled:?} checked on /overview: the others' periods began less than an hour ago"
        );
    }
    let cards = browser
        .wait_page_until(&format!("{base}/overview"), ".cards", deadline, |t| {
            overview_compares(t, &settled)
        })
        .await;
    println!("/overview: {cards:?}");

    for (team, effect, driven, factor_row) in [
        ("support", "volume", "volume-driven", 1),
        ("growth", "intensity", "intensity-driven", 2),
        ("search", "price_mix", "price/mix-driven", 3),
    ] {
        // From the team's row on /usage to its explanation, as a person follows the link. The row is in the
        // live region, which the traffic's commits swap under a click, so the link is read and followed.
        let link =
            format!("#explorer-table a[title=\"Why did this change?\"][href*=\"subject={team}\"]");
        browser
            .wait_page_until(
                &format!("{base}/usage?group_by=team"),
                "#explorer-table",
                deadline,
                |t| t.contains(team),
            )
            .await;
        let href = browser
            .script(&format!(
                "return document.querySelector('{}').getAttribute('href')",
                link.replace('\'', "\\'")
            ))
            .await;
        let href = href
            .as_str()
            .unwrap_or_else(|| panic!("no Explain link for team {team}: {href}"));
        browser.goto(&format!("{base}{href}")).await;
        // The explain page's own choices: the last 7 days, against the same time last week.
        browser
            .click("nav[aria-label=\"Window\"] a[href*=\"window=7d\"]")
            .await;
        browser
            .click("#compare a[href*=\"compare=last_week\"]")
            .await;
        let url = browser.url().await;
        assert!(
            url.contains("window=7d") && url.contains("compare=last_week"),
            "{url}"
        );
        let sentence = browser
            .wait_page_until(&url, "#explain-sentence", deadline, |t| t.contains(driven))
            .await;
        assert!(sentence.contains("a week earlier"), "{sentence}");
        assert!(
            !sentence.contains("no requests in the baseline"),
            "{sentence}"
        );
        let mut effects = Vec::new();
        for e in ["volume", "intensity", "price_mix"] {
            let shown = browser
                .text(&format!(".cards .card[data-effect=\"{e}\"] .big"))
                .await;
            effects.push((e, shown));
        }
        let (_, shown) = effects.iter().find(|(e, _)| *e == effect).unwrap();
        assert!(
            usd(shown).is_some_and(|m| m > 0),
            "team {team}: the {effect} effect shows {shown:?} ({effects:?})"
        );
        // The change in cost card reads "$baseline → $current".
        let change = browser.text(".cards .card:first-child .sub").await;
        let baseline_cost = change.split(" → ").next().and_then(usd);
        assert!(
            baseline_cost.is_some_and(|m| m > 0),
            "team {team}: the baseline costs {change:?}"
        );
        let (base_requests, _, _) = factor(&browser, 1).await;
        assert!(
            base_requests.replace(',', "").parse::<u64>().unwrap_or(0) > 0,
            "team {team}: {base_requests} requests in the baseline"
        );
        // The factor behind the effect grew: requests, tokens per request or cost per token.
        let (before, now, growth) = factor(&browser, factor_row).await;
        assert!(
            growth.starts_with('+') && growth != "+0.0%",
            "team {team}: factor {factor_row} went from {before} to {now} ({growth})"
        );
        println!(
            "{team}: {sentence} | {effects:?} | {change} | factor {before} -> {now} ({growth})"
        );
    }
    println!(
        "all shown {:.1} s after the demo's start",
        started.elapsed().as_secs_f64()
    );
    assert!(
        Instant::now() < deadline,
        "the demo's pages showed all of this only after a minute"
    );

    browser.quit().await;
    running.stop().await.unwrap();
    let _ = traffic.await;
}
