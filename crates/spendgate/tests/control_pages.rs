//! The budgets, wallets and notifications pages and the budget-alert panel of `/usage`, over real HTTP: they
//! show what the API says (state, balance, status), alerts and webhook deliveries appear, hostile names stay
//! text, webhook secrets stay off the page, and empty states say what to do.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::time::{Duration, Instant};

use common::{chat_body, no_redirects, TestServer};
use serde_json::json;

const HOSTILE: &str = "<b>x</b>";
const HOSTILE_ESCAPED: &str = "&lt;b&gt;x&lt;/b&gt;";
/// A webhook nobody listens on, with a "secret" in its path that must never reach a page.
const WEBHOOK: &str = "http://127.0.0.1:9/hooks/s3cret-path";

async fn page(s: &TestServer, path: &str) -> (u16, String) {
    let r = s
        .client
        .get(format!("{}{}", s.base, path))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Fetches `path` until `cond` holds for its HTML or ten seconds pass; returns the last HTML.
async fn page_until(s: &TestServer, path: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, html) = page(s, path).await;
        assert_eq!(status, 200, "{path}: {html}");
        if cond(&html) {
            return html;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {what}:\n{html}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The HTML of the table row (or list item) carrying `attr`, e.g. `data-budget="3"`.
fn row<'a>(html: &'a str, attr: &str) -> Option<&'a str> {
    let start = html.find(attr)?;
    let rest = &html[start..];
    let end = rest
        .find("</tr>")
        .or_else(|| rest.find("</li>"))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

async fn send(s: &TestServer, key: &str, n: usize) {
    for i in 0..n {
        let r = s
            .chat(key, chat_body("gpt-4o-mini", &format!("hello {i}"), false))
            .await;
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_wallets_and_alerts_are_shown_as_the_api_reports_them() {
    let s = TestServer::start_with(|c| {
        c.open_pages = true;
        c.alerts.webhooks = vec![WEBHOOK.into()];
        c.alerts.attempts = 1;
    })
    .await;

    let (st, budget) = s.admin_post("/api/v1/budgets",
        json!({"scope":"team","subject":"t","period":"day","amount":"0.0001","thresholds":[50,100]}),
    )
    .await;
    assert_eq!(st, 201, "{budget}");
    let budget_id = budget["id"].as_i64().unwrap();
    let (st, hostile_budget) = s.admin_post("/api/v1/budgets",
        json!({"scope":"team","subject":HOSTILE,"period":"month","amount":"0.00001","name":HOSTILE}),
    )
    .await;
    assert_eq!(st, 201, "{hostile_budget}");
    let hostile_budget_id = hostile_budget["id"].as_i64().unwrap();
    let (st, other) = s
        .admin_post(
            "/api/v1/budgets",
            json!({"scope":"team","subject":"other","period":"week","amount":"100"}),
        )
        .await;
    assert_eq!(st, 201, "{other}");
    let other_id = other["id"].as_i64().unwrap();
    let (st, wallet) = s
        .admin_post(
            "/api/v1/wallets",
            json!({"scope":"team","subject":"t","initial_balance":"1"}),
        )
        .await;
    assert_eq!(st, 201, "{wallet}");
    let wallet_id = wallet["id"].as_i64().unwrap();
    let (st, healthy) = s.admin_post("/api/v1/wallets",
        json!({"scope":"team","subject":HOSTILE,"initial_balance":"10","low_threshold":"0.01","name":HOSTILE}),
    )
    .await;
    assert_eq!(st, 201, "{healthy}");
    let healthy_id = healthy["id"].as_i64().unwrap();

    let (_, key) = s.create_key("u", Some("t")).await;
    let (_, hostile_key) = s.create_key("h", Some(HOSTILE)).await;
    send(&s, &key, 6).await;
    send(&s, &hostile_key, 1).await;

    // Budgets: the team's budget is over (and its rows show the API's spend), the other team's is ok.
    let html = page_until(&s, "/budgets", "the budget over", |h| {
        row(h, &format!("data-budget=\"{budget_id}\""))
            .is_some_and(|r| r.contains("data-state=\"over\""))
    })
    .await;
    let (_, budgets) = s.admin_get("/api/v1/budgets").await;
    let api = budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == budget_id)
        .unwrap()
        .clone();
    assert_eq!(api["state"], "over");
    let r = row(&html, &format!("data-budget=\"{budget_id}\"")).unwrap();
    assert!(
        r.contains(&format!("title=\"${}\"", api["spent"].as_str().unwrap())),
        "{r}"
    );
    assert!(r.contains("team <a href="), "{r}");
    assert!(r.contains("class=\"budget-bar\""), "{r}");
    assert!(
        r.contains("class=\"threshold\""),
        "the 50 % threshold is marked: {r}"
    );
    assert!(r.contains("soft"), "{r}");
    assert!(row(&html, &format!("data-budget=\"{other_id}\""))
        .unwrap()
        .contains("data-state=\"ok\""));
    assert!(html.contains(HOSTILE_ESCAPED));
    assert!(
        !html.contains(HOSTILE),
        "a hostile name was rendered as markup"
    );
    assert!(html.contains("<a href=\"/budgets\" class=\"active\">Budgets</a>"));

    // Wallets: balance and status as the API reports them once the requests are settled.
    let deadline = Instant::now() + Duration::from_secs(10);
    let api_wallet = loop {
        let (_, v) = s.admin_get("/api/v1/wallets").await;
        let w = v["wallets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["id"] == wallet_id)
            .unwrap()
            .clone();
        if w["total_spent"] != "0.00" && w["reserved"] == "0.00" {
            break w;
        }
        assert!(Instant::now() < deadline, "the wallet never paid: {w}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let html = page_until(&s, "/wallets", "the wallet's balance", |h| {
        row(h, &format!("data-wallet=\"{wallet_id}\"")).is_some_and(|r| {
            r.contains(&format!(
                "title=\"${}\"",
                api_wallet["balance"].as_str().unwrap()
            ))
        })
    })
    .await;
    let r = row(&html, &format!("data-wallet=\"{wallet_id}\"")).unwrap();
    assert_eq!(api_wallet["status"], "low", "$1 is under the default $5");
    assert!(r.contains("data-status=\"low\">Low<"), "{r}");
    assert!(r.contains(&format!("href=\"/wallets/{wallet_id}\"")), "{r}");
    let r = row(&html, &format!("data-wallet=\"{healthy_id}\"")).unwrap();
    assert!(r.contains("data-status=\"healthy\">Healthy<"), "{r}");
    assert!(r.contains(HOSTILE_ESCAPED), "{r}");
    assert!(
        !html.contains(HOSTILE),
        "a hostile name was rendered as markup"
    );

    // The ledger: newest first, the requests' charges after the initial top-up.
    let (st, html) = page(&s, &format!("/wallets/{wallet_id}")).await;
    assert_eq!(st, 200, "{html}");
    let top_up = html.find("initial balance").expect("the top-up is listed");
    let charge = html.find(">request<").expect("a request charge is listed");
    assert!(charge < top_up, "the ledger lists the newest entry first");
    assert!(html.contains("href=\"/requests/"));
    let (st, _) = page(&s, "/wallets/999999").await;
    assert_eq!(st, 404);

    // Notifications: the crossing of 100 % and the failed webhook attempt, whose secret path stays hidden.
    let html = page_until(&s, "/notifications", "the alert and its delivery", |h| {
        h.contains(&format!("href=\"/budgets#budget-{budget_id}\""))
            && h.contains("data-kind=\"budget_over\"")
            && h.contains("<span class=\"status bad\">failed</span>")
            && h.contains(HOSTILE_ESCAPED)
    })
    .await;
    assert!(html.contains("crossed 100%"), "{html}");
    assert!(html.contains("http://127.0.0.1:9/…"));
    assert!(
        !html.contains("s3cret"),
        "a webhook secret reached the page"
    );
    assert!(html.contains(HOSTILE_ESCAPED));
    assert!(
        !html.contains(HOSTILE),
        "a hostile name was rendered as markup"
    );

    // /usage for team t: its budget (over) and its alerts, not the other team's budget.
    let html = page_until(&s, "/usage?team=t&window=1h", "the budget panel", |h| {
        h.contains("id=\"budget-alerts\"")
            && row(h, &format!("data-budget=\"{budget_id}\""))
                .is_some_and(|r| r.contains("data-state=\"over\""))
            && h.contains("data-kind=\"budget_over\"")
    })
    .await;
    let panel = &html[html.find("id=\"budget-alerts\"").unwrap()..];
    assert!(!panel.contains(&format!("data-budget=\"{other_id}\"")));
    assert!(!panel.contains(&format!("data-budget=\"{hostile_budget_id}\"")));
    assert!(panel.contains("href=\"/notifications\""));
    assert!(panel.contains("href=\"/budgets\""));
    // The fragment the live refresh fetches carries the panel too.
    let (_, fragment) = page(&s, "/usage?team=t&window=1h&fragment=1").await;
    assert!(fragment.contains("id=\"budget-alerts\""));

    // /usage for the hostile team: its budget and alerts, escaped.
    let url = format!("/usage?window=1h&team={}", spendgate_web_encode(HOSTILE));
    let html = page_until(&s, &url, "the hostile team's budget", |h| {
        row(h, &format!("data-budget=\"{hostile_budget_id}\"")).is_some()
            && h[h.find("id=\"budget-alerts\"").unwrap_or(0)..].contains("data-alert=")
    })
    .await;
    let panel = &html[html.find("id=\"budget-alerts\"").unwrap()..];
    assert!(panel.contains(HOSTILE_ESCAPED));
    assert!(!panel.contains(&format!("data-budget=\"{budget_id}\"")));
    assert!(
        !html.contains(HOSTILE),
        "a hostile name was rendered as markup"
    );

    // The overview's runtime signals list the latest alerts too.
    let html = page_until(&s, "/overview", "the alerts", |h| {
        h.contains("crossed 100%")
    })
    .await;
    assert!(
        !html.contains(HOSTILE),
        "a hostile name was rendered as markup"
    );
}

/// Percent-encodes a query value.
fn spendgate_web_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_pages_say_how_to_start() {
    let s = TestServer::start_with(|c| c.open_pages = true).await;
    let (st, html) = page(&s, "/budgets").await;
    assert_eq!(st, 200);
    assert!(html.contains("No budgets yet"));
    assert!(html.contains("spendgate budgets set --scope team"));
    assert!(html.contains("/api/v1/budgets"));
    let (st, html) = page(&s, "/wallets").await;
    assert_eq!(st, 200);
    assert!(html.contains("No wallets yet"));
    assert!(html.contains("spendgate wallets create"));
    let (st, html) = page(&s, "/notifications").await;
    assert_eq!(st, 200);
    assert!(html.contains("No alerts yet"));
    assert!(html.contains("No webhook deliveries"));
    let (st, html) = page(&s, "/usage?team=t").await;
    assert_eq!(st, 200);
    assert!(html.contains("No budget covers these filters"));
    for path in ["/budgets", "/wallets", "/notifications"] {
        assert!(
            html.contains(&format!("<a href=\"{path}\"")),
            "nav has {path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_pages_need_a_login() {
    let s = TestServer::start().await;
    let client = no_redirects();
    for path in ["/budgets", "/wallets", "/wallets/1", "/notifications"] {
        let r = client
            .get(format!("{}{}", s.base, path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "{path}");
        let to = r.headers()["location"].to_str().unwrap();
        assert!(to.starts_with("/login"), "{path} -> {to}");
    }
}

/// Logs in to the pages with a new viewer token for `team`; returns the session cookie.
async fn viewer_session(s: &TestServer, team: &str) -> String {
    let (st, v) = s
        .admin_post("/api/v1/viewer-tokens", json!({ "team": team }))
        .await;
    assert_eq!(st, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    s.login(&token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_viewer_sees_only_its_teams_budgets_and_alerts() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for body in [
        json!({"scope":"team","subject":"support","period":"day","amount":"0.00001"}),
        json!({"scope":"team","subject":"search","period":"day","amount":"0.00001"}),
        json!({"scope":"org","period":"month","amount":"1000"}),
    ] {
        let (st, v) = s.admin_post("/api/v1/budgets", body).await;
        assert_eq!(st, 201, "{v}");
        ids.push(v["id"].as_i64().unwrap());
    }
    let (support_budget, search_budget, org_budget) = (ids[0], ids[1], ids[2]);
    let (_, support) = s.create_key("ann", Some("support")).await;
    let (_, search) = s.create_key("ben", Some("search")).await;
    send(&s, &support, 1).await;
    send(&s, &search, 1).await;
    // Both teams' budgets are over, so both teams have alerts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = s.admin_get("/api/v1/alerts").await;
        let subjects: Vec<&str> = v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["subject"].as_str())
            .collect();
        if subjects.contains(&format!("budget:{support_budget}").as_str())
            && subjects.contains(&format!("budget:{search_budget}").as_str())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the alerts never fired: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let session = viewer_session(&s, "support").await;
    let get = |path: String| {
        no_redirects()
            .get(format!("{}{path}", s.base))
            .header("cookie", session.clone())
            .send()
    };
    let r = get("/usage?window=1h".into()).await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    let panel = &html[html.find("id=\"budget-alerts\"").unwrap()..];
    assert!(panel.contains(&format!("data-budget=\"{support_budget}\"")));
    assert!(
        !panel.contains(&format!("data-budget=\"{search_budget}\"")),
        "another team's budget is invisible"
    );
    assert!(
        !panel.contains(&format!("data-budget=\"{org_budget}\"")),
        "the org budget's spend would show other teams' traffic"
    );
    assert!(panel.contains("team support crossed"), "{panel}");
    assert!(
        !panel.contains("search"),
        "another team's alert is invisible"
    );
    for path in ["/budgets", "/wallets", "/wallets/1", "/notifications"] {
        let r = get(path.into()).await.unwrap();
        assert_eq!(r.status(), 303, "{path} is an admin page");
        assert_eq!(r.headers()["location"], "/usage", "{path}");
    }
}
