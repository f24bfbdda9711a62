//! Web identity: a role assumed with an OpenID Connect token from a file (EKS IAM roles for service accounts).
//!
//! From AWS's references (docs.aws.amazon.com/sdkref/latest/guide/feature-assume-role-credentials.html, and STS's
//! API reference, API_AssumeRoleWithWebIdentity.html):
//!
//! - `AWS_WEB_IDENTITY_TOKEN_FILE` names the token's file (read at every fetch: EKS rewrites it before the
//!   token expires), `AWS_ROLE_ARN` the role, `AWS_ROLE_SESSION_NAME` the session (one is made up without it);
//! - the call is STS's `AssumeRoleWithWebIdentity` (version `2011-06-15`) in the query protocol, sent unsigned
//!   (the token is the proof) as a form-encoded `POST` to the regional endpoint `https://sts.{region}.amazonaws.com`
//!   (`AWS_ENDPOINT_URL_STS` names another, as in the SDKs' service-specific endpoint setting); a `POST` keeps the
//!   token out of any URL a proxy might log;
//! - the answer is XML: `AssumeRoleWithWebIdentityResponse/AssumeRoleWithWebIdentityResult/Credentials` holds
//!   `AccessKeyId`, `SecretAccessKey`, `SessionToken` and `Expiration`; an error is `ErrorResponse/Error` with
//!   `Code` and `Message`.
//!
//! The XML is a handful of flat elements, so it is read by looking for them rather than with an XML crate.

use std::time::Duration;

use async_trait::async_trait;

use super::credentials::{Credentials, CredentialsError};
use super::refresh::Fetch;
use super::remote::{self, Expiring};
use super::sigv4::uri_encode;

const NAME: &str = "web identity (STS AssumeRoleWithWebIdentity)";

pub struct WebIdentity {
    token_file: String,
    role_arn: String,
    session_name: String,
    endpoint: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentity")
            .field("role_arn", &self.role_arn)
            .field("token_file", &self.token_file)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl WebIdentity {
    /// The web identity source the environment configures, for STS in `region`: `None` without
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`; an error when the token file is named without a role.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        region: &str,
    ) -> Result<Option<WebIdentity>, CredentialsError> {
        let set = |k: &str| {
            env(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(token_file) = set("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Ok(None);
        };
        let Some(role_arn) = set("AWS_ROLE_ARN") else {
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set both"
                    .to_string(),
            });
        };
        let session_name = set("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| {
            format!(
                "spendgate-{}",
                spendgate_core::time::now_ms().div_euclid(1000)
            )
        });
        let region = set("AWS_REGION")
            .or_else(|| set("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| region.to_string());
        let endpoint = set("AWS_ENDPOINT_URL_STS")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
        let client = remote::client(NAME, Duration::from_secs(5), Duration::from_secs(10), false)?;
        Ok(Some(WebIdentity {
            token_file,
            role_arn,
            session_name,
            endpoint,
            client,
        }))
    }

    pub fn role_arn(&self) -> &str {
        &self.role_arn
    }
}

#[async_trait]
impl Fetch for WebIdentity {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let token = remote::read_token_file(NAME, "AWS_WEB_IDENTITY_TOKEN_FILE", &self.token_file)?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", self.role_arn.as_str()),
            ("RoleSessionName", self.session_name.as_str()),
            ("WebIdentityToken", token.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", uri_encode(v.as_bytes(), false)))
        .collect::<Vec<_>>()
        .join("&");
        let request = self
            .client
            .post(format!("{}/", self.endpoint))
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(form);
        let answer = remote::send(NAME, request).await?;
        if answer.status != 200 {
            // STS's code and message name the problem (InvalidIdentityToken, AccessDenied...) and hold no secret.
            let code = element(&answer.body, "Code").unwrap_or_default();
            let message = element(&answer.body, "Message").unwrap_or_default();
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: format!(
                    "STS answered with status {} {code}{}{message} for role {}",
                    answer.status,
                    if message.is_empty() { "" } else { ": " },
                    self.role_arn
                ),
            });
        }
        parse_credentials(&answer.body)
    }
}

/// The credentials in an `AssumeRoleWithWebIdentity` answer.
fn parse_credentials(xml: &str) -> Result<Expiring, CredentialsError> {
    let bad = |why: String| CredentialsError::Remote { origin: NAME, why };
    let Some(block) = element(xml, "Credentials") else {
        return Err(bad("STS's answer has no Credentials".to_string()));
    };
    let field = |name: &'static str| {
        element(&block, name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("STS's answer has no {name}")))
    };
    let id = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = field("SessionToken")?;
    let expires_at = remote::parse_expiration(NAME, &field("Expiration")?)?;
    Ok(Expiring {
        credentials: Credentials::new(id, secret, Some(token)),
        expires_at: Some(expires_at),
    })
}

/// The text inside the first `<name>...</name>` of `xml` (an element with attributes included), its entities
/// decoded; `None` when there is none.
fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut from = 0;
    while let Some(i) = xml[from..].find(&open) {
        let start = from + i + open.len();
        // `<Credentials>` must not match `<CredentialsX>`: the name ends at `>` or at whitespace.
        match xml[start..].chars().next() {
            Some('>') => {
                let body = start + 1;
                let end = xml[body..].find(&close)? + body;
                return Some(unescape(xml[body..end].trim()));
            }
            Some(c) if c.is_whitespace() => {
                let body = start + xml[start..].find('>')? + 1;
                let end = xml[body..].find(&close)? + body;
                return Some(unescape(xml[body..end].trim()));
            }
            _ => from = start,
        }
    }
    None
}

/// XML's five predefined entities and numeric character references decoded.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let Some(end) = after.find(';') else {
            out.push_str(after);
            return out;
        };
        let entity = &after[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_found_by_whole_name_and_decoded() {
        let xml = "<R xmlns=\"x\"><CredentialsX>no</CredentialsX><Credentials a=\"1\">\n <SessionToken>a&amp;b&#x2F;c&#61;</SessionToken></Credentials></R>";
        let block = element(xml, "Credentials").unwrap();
        assert_eq!(element(&block, "SessionToken").unwrap(), "a&b/c=");
        assert_eq!(element(xml, "Missing"), None);
        assert_eq!(unescape("&bogus; &amp"), "&bogus; &amp");
    }
}
