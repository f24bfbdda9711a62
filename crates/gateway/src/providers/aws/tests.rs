//! The remote credential sources against a real HTTP server on 127.0.0.1 that each test starts and scripts:
//! STS's web identity answer, container credentials, the IMDSv2 token-then-role flow, and the refresh of
//! expiring credentials driven through a hand-moved clock.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use super::chain::{CredentialChain, Source};
use super::refresh::Clock;

/// One request the server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Seen {
    /// The method and the path with its query.
    fn asked(&self) -> (&str, &str) {
        (self.method.as_str(), self.path.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The server's record of requests and the answers it still has to give, in order.
#[derive(Clone, Default)]
struct Server {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<(u16, String)>>>,
}

impl Server {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn then(&self, status: u16, body: &str) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, body.to_string()));
    }
}

/// A server answering every request with the next scripted answer (500 when the script is spent); its base URL.
async fn server() -> (String, Server) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::default();
    let s = server.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            s.seen.lock().unwrap().push(Seen {
                method: parts.method.to_string(),
                path: parts.uri.to_string(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
            let (status, body) = s
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or((500, "the script is spent".to_string()));
            (axum::http::StatusCode::from_u16(status).unwrap(), body)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, server)
}

/// An environment of `vars` only, the shared file absent and instance metadata off unless `vars` say otherwise.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut map: HashMap<String, String> = [
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in vars {
        map.insert(k.to_string(), v.to_string());
    }
    move |k| map.get(k).cloned()
}

/// A token file holding `content`, in a directory that lives as long as the first value; its path.
fn token_file(content: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, content).unwrap();
    let shown = path.display().to_string();
    (dir, shown)
}

/// The chain `vars` configure, on a clock that stays at [`T0`].
fn chain_at_t0(vars: &dyn Fn(&str) -> Option<String>, region: &str) -> CredentialChain {
    let (_, clock) = hand_clock();
    CredentialChain::resolve_on(None, region, vars, clock).unwrap()
}

/// The chain's credentials now: key id, secret and session token.
async fn held(chain: &CredentialChain) -> (String, String, Option<String>) {
    let c = chain.current().await.unwrap();
    (
        c.access_key_id().to_string(),
        c.secret_access_key().to_string(),
        c.session_token().map(str::to_string),
    )
}

const T0: i64 = 1_800_000_000;

/// A clock standing where the test puts it.
fn hand_clock() -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(T0));
    let n = Arc::clone(&now);
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// The JSON the container endpoint and instance metadata answer with.
fn json_credentials(id: &str, expires: i64) -> String {
    serde_json::json!({
        "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": id, "SecretAccessKey": format!("secret-of-{id}"),
        "Token": format!("token-of-{id}"), "Expiration": rfc3339(expires),
    })
    .to_string()
}

#[tokio::test]
async fn web_identity_assumes_the_role_at_sts_with_the_token_from_its_file() {
    let (base, server) = server().await;
    let (_dir, file) = token_file("eyJhbGciOi.jwt+token/x=\n");
    let vars = env(&[
        ("AWS_WEB_IDENTITY_TOKEN_FILE", &file),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/gateway"),
        ("AWS_ROLE_SESSION_NAME", "gw-1"),
        ("AWS_ENDPOINT_URL_STS", &base),
    ]);
    let chain = chain_at_t0(&vars, "eu-west-3");
    assert_eq!(
        chain.source(),
        &Source::WebIdentity {
            role_arn: "arn:aws:iam::123456789012:role/gateway".into()
        }
    );
    server.then(
        200,
        &format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n\
             <AssumeRoleWithWebIdentityResult>\n<SubjectFromWebIdentityToken>system:sa</SubjectFromWebIdentityToken>\n\
             <Credentials>\n<SessionToken>FwoG&amp;token</SessionToken>\n<SecretAccessKey>sts/secret</SecretAccessKey>\n\
             <Expiration>{}</Expiration>\n<AccessKeyId>ASIASTS</AccessKeyId>\n</Credentials>\n\
             </AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            rfc3339(T0 + 3600)
        ),
    );
    assert_eq!(
        held(&chain).await,
        (
            "ASIASTS".into(),
            "sts/secret".into(),
            Some("FwoG&token".into())
        )
    );
    let seen = server.seen();
    assert_eq!(seen[0].asked(), ("POST", "/"));
    assert!(seen[0]
        .header("content-type")
        .unwrap()
        .starts_with("application/x-www-form-urlencoded"));
    // The call is unsigned: the token is the proof.
    assert_eq!(seen[0].header("authorization"), None);
    let form: HashMap<String, String> = seen[0]
        .body
        .split('&')
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            let v = String::from_utf8(super::sigv4::percent_decode(v)).unwrap();
            (k.to_string(), v)
        })
        .collect();
    assert_eq!(form["Action"], "AssumeRoleWithWebIdentity");
    assert_eq!(form["Version"], "2011-06-15");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/gateway");
    assert_eq!(form["RoleSessionName"], "gw-1");
    assert_eq!(form["WebIdentityToken"], "eyJhbGciOi.jwt+token/x=");

    // STS's refusal is named with its code and the role, never with the token.
    let chain = chain_at_t0(&vars, "eu-west-3");
    server.then(
        400,
        "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>\
         <Message>Token expired</Message></Error></ErrorResponse>",
    );
    let e = chain.current().await.unwrap_err().to_string();
    assert!(
        e.contains("web identity")
            && e.contains("InvalidIdentityToken")
            && e.contains("role/gateway"),
        "{e}"
    );
    assert!(!e.contains("eyJhbGciOi"), "{e}");
    // A token file that went away is named, with the variable that names it.
    std::fs::remove_file(&file).unwrap();
    let chain = chain_at_t0(&vars, "eu-west-3");
    let e = chain.current().await.unwrap_err().to_string();
    assert!(
        e.contains("AWS_WEB_IDENTITY_TOKEN_FILE") && e.contains(&file),
        "{e}"
    );
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn container_credentials_come_with_the_authorization_token_from_its_file() {
    let (base, server) = server().await;
    let (_dir, token_path) = token_file("pod-identity-token\n");
    let full = format!("{base}/v2/credentials/task-1");
    let vars = env(&[
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path),
        // The file wins over the variable.
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "static-token"),
    ]);
    let chain = chain_at_t0(&vars, "us-east-1");
    assert_eq!(chain.source(), &Source::Container { url: full.clone() });
    server.then(200, &json_credentials("ASIATASK", T0 + 3600));
    let (id, _, token) = held(&chain).await;
    assert_eq!(
        (id.as_str(), token.as_deref()),
        ("ASIATASK", Some("token-of-ASIATASK"))
    );
    let seen = server.seen();
    assert_eq!(seen[0].asked(), ("GET", "/v2/credentials/task-1"));
    assert_eq!(seen[0].header("authorization"), Some("pod-identity-token"));

    // A refusal names the source and the status; the token appears nowhere.
    let chain = chain_at_t0(&vars, "us-east-1");
    server.then(403, "{\"code\":\"AccessDeniedException\"}");
    let e = chain.current().await.unwrap_err().to_string();
    assert!(
        e.contains("container credentials") && e.contains("403"),
        "{e}"
    );
    assert!(
        !e.contains("pod-identity-token") && !e.contains("static-token"),
        "{e}"
    );

    // Over plain HTTP only loopback and the agents' addresses may be asked; the relative URI goes to ECS's agent.
    let e = CredentialChain::resolve(
        None,
        "us-east-1",
        &env(&[(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://example.com/creds",
        )]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("example.com") && e.contains("loopback"), "{e}");
    for allowed in [
        "https://example.com/creds",
        "http://169.254.170.23/v1/credentials",
        "http://[fd00:ec2::23]/v1/credentials",
        "http://localhost:8080/creds",
    ] {
        let vars = env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", allowed)]);
        let chain = CredentialChain::resolve(None, "us-east-1", &vars);
        assert!(chain.is_ok(), "{allowed}");
    }
    let relative = CredentialChain::resolve(
        None,
        "us-east-1",
        &env(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/abc",
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://example.com/creds",
            ),
        ]),
    )
    .unwrap();
    assert_eq!(
        relative.source(),
        &Source::Container {
            url: "http://169.254.170.2/v2/credentials/abc".into()
        }
    );
}

#[tokio::test]
async fn instance_metadata_takes_a_session_token_then_the_roles_name_then_its_credentials() {
    let (base, server) = server().await;
    let vars = env(&[
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &base),
    ]);
    let chain = chain_at_t0(&vars, "us-east-1");
    assert_eq!(
        chain.source(),
        &Source::InstanceMetadata {
            endpoint: base.clone()
        }
    );
    server.then(200, "imds-session-token");
    server.then(200, "gateway-role\n");
    server.then(200, &json_credentials("ASIAEC2", T0 + 6 * 3600));
    let c = chain.current().await.unwrap();
    assert_eq!(
        (c.access_key_id(), c.session_token()),
        ("ASIAEC2", Some("token-of-ASIAEC2"))
    );
    let seen = server.seen();
    let asked: Vec<(&str, &str)> = seen.iter().map(Seen::asked).collect();
    assert_eq!(
        asked,
        [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/meta-data/iam/security-credentials/"),
            (
                "GET",
                "/latest/meta-data/iam/security-credentials/gateway-role"
            ),
        ]
    );
    assert_eq!(
        seen[0].header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    for get in &seen[1..] {
        assert_eq!(
            get.header("x-aws-ec2-metadata-token"),
            Some("imds-session-token")
        );
    }
    // An instance without a role says so.
    let chain = chain_at_t0(&vars, "us-east-1");
    server.then(200, "another-token");
    server.then(404, "");
    let e = chain.current().await.unwrap_err().to_string();
    assert!(
        e.contains("EC2 instance metadata") && e.contains("no IAM role"),
        "{e}"
    );
    assert!(!e.contains("another-token"), "{e}");
    // Away from EC2 (nothing listens), the error says how to give credentials instead.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let vars = env(&[
        ("AWS_EC2_METADATA_DISABLED", "false"),
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed),
    ]);
    let e = chain_at_t0(&vars, "us-east-1")
        .current()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("could not be reached") && e.contains("AWS_EC2_METADATA_DISABLED=true"),
        "{e}"
    );
}

/// Credentials are fetched once for a burst of first requests, used as they are until 5 minutes before expiry,
/// then fetched again in the background while the old ones keep signing; a failed fetch keeps them until they
/// expire, and after expiry the failure reaches the caller, naming the source.
// On two worker threads, so that the burst of first requests really runs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_credentials_are_refreshed_once_and_a_failure_keeps_the_old_until_expiry() {
    let (base, server) = server().await;
    let full = format!("{base}/creds");
    let vars = env(&[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &full)]);
    let (now, clock) = hand_clock();
    let chain = Arc::new(CredentialChain::resolve_on(None, "us-east-1", &vars, clock).unwrap());
    server.then(200, &json_credentials("ASIAONE", T0 + 3600));
    server.then(200, &json_credentials("ASIATWO", T0 + 7200));
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let chain = Arc::clone(&chain);
            tokio::spawn(async move { chain.current().await.unwrap().access_key_id().to_string() })
        })
        .collect();
    for b in burst {
        assert_eq!(b.await.unwrap(), "ASIAONE");
    }
    assert_eq!(server.seen().len(), 1, "one fetch for the burst");

    now.store(T0 + 3600 - 301, Ordering::SeqCst);
    assert_eq!(chain.current().await.unwrap().access_key_id(), "ASIAONE");
    assert_eq!(
        server.seen().len(),
        1,
        "fresh credentials are not fetched again"
    );

    // Within 5 minutes of expiry: the request signs with what is in hand, and one refresh runs (the background
    // one, or the test's own: the gate lets one fetch and the other find the new credentials), and the background
    // task is waited for before the clock moves on.
    now.store(T0 + 3600 - 299, Ordering::SeqCst);
    assert_eq!(chain.current().await.unwrap().access_key_id(), "ASIAONE");
    assert_eq!(chain.refresh().await.unwrap().access_key_id(), "ASIATWO");
    chain.settle().await;
    assert_eq!(server.seen().len(), 2);
    assert_eq!(chain.current().await.unwrap().access_key_id(), "ASIATWO");

    // The endpoint fails: the credentials in hand keep signing until they expire.
    server.then(500, "down");
    now.store(T0 + 7200 - 100, Ordering::SeqCst);
    assert_eq!(chain.current().await.unwrap().access_key_id(), "ASIATWO");
    assert_eq!(chain.refresh().await.unwrap().access_key_id(), "ASIATWO");
    chain.settle().await;
    assert_eq!(server.seen().len(), 3, "a failure is not retried at once");

    server.then(500, "down");
    now.store(T0 + 7200, Ordering::SeqCst);
    let e = chain.current().await.unwrap_err().to_string();
    assert!(
        e.contains("container credentials") && e.contains("500"),
        "{e}"
    );
    assert!(!e.contains("ASIATWO") && !e.contains("secret-of"), "{e}");
    assert_eq!(server.seen().len(), 4);
}
