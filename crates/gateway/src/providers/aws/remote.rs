//! What the credential sources that answer over HTTP share (`web_identity.rs`, `container.rs`, `imds.rs`): a
//! small client with short timeouts, answers read whole and bounded, the JSON shape that the container endpoint
//! and the instance metadata service both answer with, and the time of expiry.
//!
//! These calls go through reqwest rather than the gateway's own HTTP/1.1 connections (`h1/`): they are a few
//! an hour, need `GET` and `PUT` besides `POST`, and the link-local endpoints must never go through a proxy while
//! STS, on the internet, must honour one.

use std::time::Duration;

use super::credentials::{Credentials, CredentialsError};

/// The most of an answer that is read: credentials are a few kilobytes at most.
const MAX_ANSWER: usize = 64 * 1024;

/// Credentials and when they stop working (unix seconds), when they do.
#[derive(Debug, Clone)]
pub struct Expiring {
    pub credentials: Credentials,
    pub expires_at: Option<i64>,
}

/// One answer, read whole.
pub(super) struct Answer {
    pub status: u16,
    pub body: String,
}

/// A client for one source: `direct` ones (the link-local and loopback endpoints) never take a proxy.
pub(super) fn client(
    source: &'static str,
    connect: Duration,
    total: Duration,
    direct: bool,
) -> Result<reqwest::Client, CredentialsError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect)
        .timeout(total)
        .redirect(reqwest::redirect::Policy::none());
    if direct {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| CredentialsError::Remote {
        origin: source,
        why: format!("no HTTP client could be made ({})", cause(&e)),
    })
}

/// Sends `request` and reads the answer, failures named after `source` and never with a URL's query.
pub(super) async fn send(
    source: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Answer, CredentialsError> {
    let fail = |e: reqwest::Error| CredentialsError::Remote {
        origin: source,
        why: if e.is_timeout() {
            "the endpoint did not answer in time".to_string()
        } else if e.is_connect() {
            format!("the endpoint could not be reached ({})", cause(&e))
        } else {
            format!("the request failed ({})", cause(&e))
        },
    };
    let mut res = request.send().await.map_err(fail)?;
    let status = res.status().as_u16();
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(fail)? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(CredentialsError::Remote {
                origin: source,
                why: format!("the answer is longer than {MAX_ANSWER} bytes"),
            });
        }
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The causes of a reqwest error, without the URL its own message names.
fn cause(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        src = s.source();
    }
    if out.is_empty() {
        out = "no cause given".to_string();
    }
    out
}

/// The JSON that the container endpoint and the instance metadata service answer with: `AccessKeyId`,
/// `SecretAccessKey`, `Token` and `Expiration` (docs.aws.amazon.com/AmazonECS/latest/developerguide/
/// task-iam-roles.html; docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html). The
/// instance metadata service adds `"Code": "Success"`, and says otherwise when it has no credentials.
pub(super) fn parse_json(source: &'static str, body: &str) -> Result<Expiring, CredentialsError> {
    let bad = |why: String| CredentialsError::Remote {
        origin: source,
        why,
    };
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|_| bad("the answer is not the JSON of credentials".to_string()))?;
    if let Some(code) = v.get("Code").and_then(|c| c.as_str()) {
        if code != "Success" {
            return Err(bad(format!("the endpoint answered with code {code}")));
        }
    }
    let field = |name: &'static str| {
        v.get(name)
            .and_then(|f| f.as_str())
            .filter(|f| !f.is_empty())
            .ok_or_else(|| bad(format!("the answer has no {name}")))
    };
    let id = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = v.get("Token").and_then(|t| t.as_str()).map(str::to_string);
    let expires_at = match v.get("Expiration").and_then(|e| e.as_str()) {
        Some(e) => Some(parse_expiration(source, e)?),
        None => None,
    };
    Ok(Expiring {
        credentials: Credentials::new(id, secret, token),
        expires_at,
    })
}

/// An expiry in RFC 3339 (`2026-12-07T18:00:00Z`), as unix seconds.
pub(super) fn parse_expiration(source: &'static str, text: &str) -> Result<i64, CredentialsError> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| CredentialsError::Remote {
            origin: source,
            why: format!("the expiration \"{}\" is not an RFC 3339 time", text.trim()),
        })
}

/// A token read from a file (a web identity token, a container authorization token), trimmed; the error names
/// the file and the variable that named it, never the content.
pub(super) fn read_token_file(
    source: &'static str,
    variable: &'static str,
    path: &str,
) -> Result<String, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|e| CredentialsError::Remote {
        origin: source,
        why: format!(
            "the file {path} named by {variable} could not be read ({})",
            e.kind()
        ),
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(CredentialsError::Remote {
            origin: source,
            why: format!("the file {path} named by {variable} is empty"),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_credentials_read_with_their_expiry_and_refusals_name_the_field() {
        let e = parse_json(
            "test",
            r#"{"Code":"Success","AccessKeyId":"ASIAX","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-07T18:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(e.credentials.access_key_id(), "ASIAX");
        assert_eq!(e.credentials.session_token(), Some("t"));
        assert_eq!(e.expires_at, Some(1_796_666_400));
        let err = parse_json("test", r#"{"AccessKeyId":"ASIAX","Token":"t"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SecretAccessKey") && !err.contains("ASIAX"),
            "{err}"
        );
        let err = parse_json("test", r#"{"Code":"AssumeRoleUnauthorizedAccess"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AssumeRoleUnauthorizedAccess"), "{err}");
    }
}
