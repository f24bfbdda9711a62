//! Bedrock through the real gateway with credentials that are not in the environment: a `kind = "bedrock"`
//! provider whose AWS credentials come from container credentials (as on ECS or with EKS Pod Identity), served
//! by a local HTTP endpoint this test starts, and one whose Bedrock API key is named by `api_key_env`. In a file
//! of its own because the credential chain reads the process's environment, and `bedrock.rs` puts keys there,
//! which come first in the chain.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::sync::{Arc, Mutex};

use common::{recording_upstream, TestServer};
use serde_json::json;
use spendgate::config::ProviderConfig;
use spendgate_gateway::providers::aws::Credentials;

const UPSTREAM_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// What the container credentials endpoint received: each request's `Authorization` header.
type Asked = Arc<Mutex<Vec<Option<String>>>>;

/// A container credentials endpoint on a loopback port handing out session credentials; its URL.
async fn container_endpoint(asked: Asked) -> String {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expiration = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let app = axum::Router::new().route(
        "/v2/credentials/task",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let asked = Arc::clone(&asked);
            let expiration = expiration.clone();
            async move {
                asked.lock().unwrap().push(
                    headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_string()),
                );
                axum::Json(json!({
                    "AccessKeyId": "ASIACONTAINER", "SecretAccessKey": "container/secret+key",
                    "Token": "container-session-token", "Expiration": expiration,
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v2/credentials/task",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn bedrock_provider(name: &str, base: &str) -> ProviderConfig {
    ProviderConfig {
        name: name.into(),
        kind: "bedrock".into(),
        base_url: Some(base.trim_end_matches("/v1").to_string()),
        region: Some("eu-central-1".into()),
        model_map: [(format!("claude-{name}"), UPSTREAM_MODEL.to_string())].into(),
        prices: vec![
            serde_json::from_value(json!({ "model": format!("claude-{name}"),
            "input_per_mtok": "3", "output_per_mtok": "15" }))
            .unwrap(),
        ],
        read_timeout_secs: 30,
        ..ProviderConfig::default()
    }
}

/// The one test of this file (the environment is set once, before the gateway reads it): a request routed to
/// Bedrock is signed with the session credentials fetched from the container endpoint, with the endpoint's
/// authorization token sent and `x-amz-security-token` on the upstream request; a provider with `api_key_env`
/// sends its Bedrock API key as a bearer token instead.
#[tokio::test]
async fn bedrock_signs_with_container_credentials_or_sends_an_api_key() {
    let asked = Asked::default();
    let endpoint = container_endpoint(Arc::clone(&asked)).await;
    for var in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AWS_BEARER_TOKEN_BEDROCK",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", &endpoint);
    std::env::set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-auth-token");
    std::env::set_var("SPENDGATE_TEST_BEDROCK_KEY", "bedrock-api-key-e2e");

    let (base, seen) = recording_upstream().await;
    let s = TestServer::start_with(|c| {
        c.providers.push(bedrock_provider("signed", &base));
        let mut keyed = bedrock_provider("keyed", &base);
        keyed.api_key_env = Some("SPENDGATE_TEST_BEDROCK_KEY".into());
        c.providers.push(keyed);
    })
    .await;
    let (_, key) = s.create_key("ana", Some("apps")).await;
    let body = |model: &str| {
        json!({ "model": model, "max_tokens": 20,
            "messages": [{ "role": "user", "content": "Name a river." }] })
    };

    let res = s.messages(&key, body("claude-signed")).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let up = seen.lock().unwrap().last().cloned().unwrap();
    let h = |n: &str| up.headers[n].to_str().unwrap().to_string();
    let fetched = Credentials::new(
        "ASIACONTAINER",
        "container/secret+key",
        Some("container-session-token".into()),
    );
    assert_eq!(
        h("authorization"),
        up.sigv4_authorization(&fetched, "eu-central-1")
    );
    assert!(h("authorization").contains("Credential=ASIACONTAINER/"));
    assert_eq!(h("x-amz-security-token"), "container-session-token");
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty());
    assert!(asked
        .iter()
        .all(|a| a.as_deref() == Some("task-auth-token")));

    let res = s.messages(&key, body("claude-keyed")).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let up = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(up.headers["authorization"], "Bearer bedrock-api-key-e2e");
    assert!(up.headers.get("x-amz-security-token").is_none());
}
