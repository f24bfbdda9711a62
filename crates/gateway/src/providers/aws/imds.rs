//! EC2 instance metadata (IMDSv2): the credentials of the instance profile's role.
//!
//! From AWS's documentation (docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html,
//! .../instance-metadata-security-credentials.html) and docs.aws.amazon.com/sdkref/latest/guide/feature-imds-credentials.html:
//!
//! 1. `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (up to 21600) answers a session token;
//! 2. `GET /latest/meta-data/iam/security-credentials/` with the token in `X-aws-ec2-metadata-token` answers the
//!    role's name (one per line; an instance profile has one role);
//! 3. `GET /latest/meta-data/iam/security-credentials/{role}` answers JSON with `Code` (`Success`),
//!    `AccessKeyId`, `SecretAccessKey`, `Token` and `Expiration`.
//!
//! The endpoint is `http://169.254.169.254` unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` names another, and
//! `AWS_EC2_METADATA_DISABLED=true` turns the source off. The SDKs wait one second for the service; so does this,
//! so that a gateway away from EC2 is not held up for long by the last source of the chain. Only IMDSv2 is spoken:
//! AWS recommends requiring it, and it is the default on new instance types.

use std::time::Duration;

use async_trait::async_trait;

use super::credentials::CredentialsError;
use super::refresh::Fetch;
use super::remote::{self, Expiring};

const NAME: &str = "EC2 instance metadata";
const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";
const TOKEN_PATH: &str = "/latest/api/token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";
/// How long a session token lives, in seconds: it is fetched again at each fetch of credentials (about hourly).
const TOKEN_TTL: &str = "21600";

pub struct InstanceMetadata {
    endpoint: String,
    client: reqwest::Client,
}

impl std::fmt::Debug for InstanceMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceMetadata")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl InstanceMetadata {
    /// The instance metadata source the environment allows: `None` when `AWS_EC2_METADATA_DISABLED` is `true`.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<InstanceMetadata>, CredentialsError> {
        if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        if reqwest::Url::parse(&endpoint).is_err() {
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: "AWS_EC2_METADATA_SERVICE_ENDPOINT is not a URL".to_string(),
            });
        }
        let client = remote::client(NAME, Duration::from_secs(1), Duration::from_secs(2), true)?;
        Ok(Some(InstanceMetadata { endpoint, client }))
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn refused(&self, what: &str, status: u16) -> CredentialsError {
        CredentialsError::Remote {
            origin: NAME,
            why: format!("{} answered {what} with status {status}", self.endpoint),
        }
    }
}

#[async_trait]
impl Fetch for InstanceMetadata {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn fetch(&self) -> Result<Expiring, CredentialsError> {
        let put = self
            .client
            .put(format!("{}{TOKEN_PATH}", self.endpoint))
            .header("x-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL);
        // The first call is where a machine away from EC2 finds out; the error says what to do about it.
        let answer = remote::send(NAME, put).await.map_err(|e| match e {
            CredentialsError::Remote { origin, why } => CredentialsError::Remote {
                origin,
                why: format!(
                    "{why}; away from EC2, give credentials another way (AWS_ACCESS_KEY_ID and \
                     AWS_SECRET_ACCESS_KEY, a profile, a role) or set AWS_EC2_METADATA_DISABLED=true"
                ),
            },
            other => other,
        })?;
        if answer.status != 200 {
            return Err(self.refused("the request for a session token", answer.status));
        }
        let mut token =
            reqwest::header::HeaderValue::from_str(answer.body.trim()).map_err(|_| {
                CredentialsError::Remote {
                    origin: NAME,
                    why: "the session token is not a valid header value".to_string(),
                }
            })?;
        token.set_sensitive(true);
        let get = |path: String| {
            self.client
                .get(format!("{}{path}", self.endpoint))
                .header("x-aws-ec2-metadata-token", token.clone())
        };
        let answer = remote::send(NAME, get(CREDENTIALS_PATH.to_string())).await?;
        if answer.status == 404 {
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: "the instance has no IAM role (no instance profile is attached)".to_string(),
            });
        }
        if answer.status != 200 {
            return Err(self.refused("the request for the role's name", answer.status));
        }
        let Some(role) = answer.body.lines().map(str::trim).find(|l| !l.is_empty()) else {
            return Err(CredentialsError::Remote {
                origin: NAME,
                why: "the instance has no IAM role (no instance profile is attached)".to_string(),
            });
        };
        // Role names take letters, digits and `+=,.@_-` only: safe in a path as they are.
        let answer = remote::send(NAME, get(format!("{CREDENTIALS_PATH}{role}"))).await?;
        if answer.status != 200 {
            return Err(self.refused("the request for the role's credentials", answer.status));
        }
        remote::parse_json(NAME, &answer.body)
    }
}
