//! Container credentials: ECS task roles and EKS Pod Identity.
//!
//! From AWS's reference (docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html, and the
//! rules aws-sdk-rust's `ecs.rs` and botocore's `ContainerProvider` apply):
//!
//! - `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` is a path on `http://169.254.170.2` (ECS); it wins when both are set;
//! - `AWS_CONTAINER_CREDENTIALS_FULL_URI` is a whole URL: any `https://` one, or an `http://` one only to a
//!   loopback address or to the ECS and EKS Pod Identity agents (`169.254.170.2`, `169.254.170.23`,
//!   `fd00:ec2::23`), so that a variable an attacker could set cannot send the token to a host of their choice;
//! - `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at every fetch, as EKS rotates it), else
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN`, goes as the `Authorization` header's whole value;
//! - the answer is JSON with `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration`.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

use super::credentials::CredentialsError;
use super::refresh::Fetch;
use super::remote::{self, Expiring};

const NAME: &str = "container credentials";
/// The ECS agent's address, before a relative URI.
const ECS_HOST: &str = "http://169.254.170.2";

/// Where the container's credentials are, and how to ask.
pub struct Container {
    url: reqwest::Url,
    token: Option<String>,
    token_file: Option<String>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is left out; the URL is shown without its query.
        f.debug_struct("Container")
            .field("url", &shown(&self.url))
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// A URL as it may be shown: scheme, host, port and path.
fn shown(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

impl Container {
    /// The container source the environment configures: `None` when neither URI variable is set; an error when
    /// one is set wrongly.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Container>, CredentialsError> {
        let set = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let bad = |why: String| CredentialsError::Remote { origin: NAME, why };
        let url = if let Some(relative) = set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            let joined = format!("{ECS_HOST}{}", relative.trim());
            reqwest::Url::parse(&joined).map_err(|_| {
                bad("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a path".to_string())
            })?
        } else if let Some(full) = set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            let url = reqwest::Url::parse(full.trim())
                .map_err(|_| bad("AWS_CONTAINER_CREDENTIALS_FULL_URI is not a URL".to_string()))?;
            if !allowed(&url) {
                return Err(bad(format!(
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI names {}, but over plain HTTP only a loopback address or \
                     the ECS or EKS Pod Identity agent (169.254.170.2, 169.254.170.23, fd00:ec2::23) is allowed",
                    url.host_str().unwrap_or("no host")
                )));
            }
            url
        } else {
            return Ok(None);
        };
        let client = remote::client(
            NAME,
            Duration::from_secs(2),
            Duration::from_secs(5),
            url.scheme() == "http",
        )?;
        Ok(Some(Container {
            url,
            token: set("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            token_file: set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
            client,
        }))
    }

    /// The endpoint, as it may be shown.
    pub fn shown_url(&self) -> String {
        shown(&self.url)
    }
}

/// Whether credentials may be fetched from `url`: over HTTPS from anywhere, over HTTP from a loopback address
/// (`localhost` included) or one of the agents' link-local addresses.
fn allowed(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        // An IPv6 address comes bracketed in a URL.
        "http" => {
            host.eq_ignore_ascii_case("localhost")
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(allowed_ip)
        }
        _ => false,
    }
}

fn allowed_ip(ip: IpAddr) -> bool {
    const AGENTS: [&str; 3] = ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"];
    ip.is_loopback()
        || AGENTS
            .iter()
            .any(|a| a.parse::<IpAddr>().is_ok_and(|a| a == ip))
}

#[async_trait]
impl Fetch for Container {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let token = match &self.token_file {
            Some(path) => Some(remote::read_token_file(
                NAME,
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                path,
            )?),
            None => self.token.clone(),
        };
        let mut request = self
            .client
            .get(self.url.clone())
            .header("accept", "application/json");
        if let Some(token) = token {
            // A line break would end the header early; the SDKs refuse such a token too.
            let mut value = reqwest::header::HeaderValue::from_str(&token).map_err(|_| {
                CredentialsError::Remote {
                    origin: NAME,
                    why: "the authorization token is not a valid header value".to_string(),
                }
            })?;
            value.set_sensitive(true);
            request = request.header("authorization", value);
        }
        let answer = remote::send(NAME, request).await?;
        if answer.status != 200 {
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: format!(
                    "{} answered with status {}",
                    self.shown_url(),
                    answer.status
                ),
            });
        }
        remote::parse_json(NAME, &answer.body)
    }
}
