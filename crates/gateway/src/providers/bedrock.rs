//! Amazon Bedrock's Converse API over HTTPS, signed with AWS Signature Version 4 (`aws/sigv4.rs`).
//!
//! From Bedrock's API reference (API_runtime_Converse.html, API_runtime_ConverseStream.html): a request is `POST
//! https://bedrock-runtime.{region}.amazonaws.com/model/{modelId}/converse` (or `/converse-stream` for an answer in
//! AWS's binary event stream) with a JSON body; the model id goes in the path percent-encoded (its `:` as `%3A`,
//! an inference profile's or a model's ARN with its `/` as `%2F`), and the request is signed for the service
//! `bedrock` in the provider's region. The signature covers `host`, `content-type`, `x-amz-date` and, with
//! temporary credentials, `x-amz-security-token`; Bedrock does not ask for `x-amz-content-sha256`.
//!
//! A Bedrock API key (docs.aws.amazon.com/bedrock/latest/userguide/api-keys-use.html) replaces the signature: it
//! goes as `Authorization: Bearer <key>`. Where it comes from, and that it wins over AWS credentials as in AWS's
//! SDKs, is the configuration's business (`spendgate::app`).

use async_trait::async_trait;

use super::aws::sigv4::{self, Scope, SigningTime};
use super::aws::CredentialChain;
use super::http::{HttpConfig, HttpUpstream};
use crate::provider::{Endpoint, Provider, ProviderError, UpstreamRequest, UpstreamResponse};

/// The service name Bedrock's runtime is signed for.
pub const SERVICE: &str = "bedrock";

/// The base URL of Bedrock's runtime in `region`.
pub fn base_url(region: &str) -> String {
    format!("https://bedrock-runtime.{region}.amazonaws.com")
}

/// How Bedrock's requests are authenticated.
pub enum BedrockAuth {
    /// Signed with AWS credentials (SigV4).
    SigV4(CredentialChain),
    /// A Bedrock API key, sent as a bearer token. Never shown.
    ApiKey(String),
}

impl std::fmt::Debug for BedrockAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BedrockAuth::SigV4(chain) => f.debug_tuple("SigV4").field(chain).finish(),
            BedrockAuth::ApiKey(_) => f.write_str("ApiKey(..)"),
        }
    }
}

#[derive(Debug)]
pub struct Bedrock {
    http: HttpUpstream,
    region: String,
    auth: BedrockAuth,
    /// The base URL's origin (`https://host[:port]`) and path prefix, for each request's URL.
    origin: String,
    prefix: String,
    /// The `host` header as it is sent (with the port only when the URL names one), which is what is signed.
    host: String,
}

impl Bedrock {
    /// A Bedrock provider at `config.base_url` (normally [`base_url`] of `region`) authenticated by `auth`.
    pub fn new(
        config: HttpConfig,
        region: impl Into<String>,
        auth: BedrockAuth,
    ) -> Result<Bedrock, ProviderError> {
        let url = reqwest::Url::parse(&config.base_url).map_err(|e| {
            ProviderError::Config(format!(
                "provider '{}' has a base_url that is not a URL ({e})",
                config.name
            ))
        })?;
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => {
                return Err(ProviderError::Config(format!(
                    "provider '{}' has a base_url without a host",
                    config.name
                )))
            }
        };
        let origin = format!("{}://{host}", url.scheme());
        let prefix = url.path().trim_end_matches('/').to_string();
        Ok(Bedrock {
            http: HttpUpstream::new(config)?,
            region: region.into(),
            auth,
            origin,
            prefix,
            host,
        })
    }

    /// The path of a call of `model`: `/model/{modelId}/converse[-stream]`, the id percent-encoded.
    pub fn path(&self, model: &str, stream: bool) -> String {
        let action = if stream {
            "converse-stream"
        } else {
            "converse"
        };
        format!(
            "{}/model/{}/{action}",
            self.prefix,
            sigv4::uri_encode(model.as_bytes(), false)
        )
    }
}

#[async_trait]
impl Provider for Bedrock {
    fn name(&self) -> &str {
        &self.http.config.name
    }

    fn speaks(&self, endpoint: Endpoint) -> bool {
        endpoint == Endpoint::Converse
    }

    async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, ProviderError> {
        if req.endpoint != Endpoint::Converse {
            return Err(ProviderError::Config(format!(
                "provider '{}' (Bedrock) speaks the Converse API only",
                self.name()
            )));
        }
        let path = self.path(&req.model, req.stream);
        let url = reqwest::Url::parse(&format!("{}{path}", self.origin))
            .map_err(|e| ProviderError::Config(format!("the Bedrock URL is not valid ({e})")))?;
        let accept = if req.stream {
            "application/vnd.amazon.eventstream"
        } else {
            "application/json"
        };
        // `host` is set by the connection from the same URL; the rest goes as signed, secrets marked.
        let mut headers: Vec<(&str, &str, bool)> = vec![
            ("content-type", "application/json", false),
            ("accept", accept, false),
        ];
        let bearer: String;
        let signed: sigv4::Signed;
        match &self.auth {
            BedrockAuth::ApiKey(key) => {
                bearer = format!("Bearer {key}");
                headers.push(("authorization", &bearer, true));
            }
            BedrockAuth::SigV4(chain) => {
                // Without credentials no call can be made: reported as an upstream that cannot be reached, so
                // that a route's fallback is tried. Why is logged for the operator; the client is told only that
                // credentials are missing, since the reason names internal endpoints (instance metadata, the
                // container's credential URL).
                let credentials = chain.current().await.map_err(|e| {
                    tracing::warn!(provider = %self.name(), error = %e, "No AWS credentials for a Bedrock request.");
                    ProviderError::Connect(format!(
                        "provider '{}' (Bedrock) has no AWS credentials; the gateway's log says why",
                        self.name()
                    ))
                })?;
                signed = sigv4::sign(
                    &sigv4::Request {
                        method: "POST",
                        path: &path,
                        headers: &[
                            ("host", self.host.as_str()),
                            ("content-type", "application/json"),
                        ],
                        body: &req.body,
                    },
                    &credentials,
                    Scope {
                        region: &self.region,
                        service: SERVICE,
                    },
                    &SigningTime::now(),
                    sigv4::Options::default(),
                );
                for (k, v) in &signed.headers {
                    let secret = matches!(*k, "authorization" | "x-amz-security-token");
                    headers.push((k, v, secret));
                }
            }
        }
        for (k, v) in &self.http.config.headers {
            headers.push((k, v, false));
        }
        self.http
            .exchange(&url, &headers, req.body, req.stream)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::aws::Credentials;

    fn bedrock(base: &str) -> Bedrock {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Bedrock::new(
            HttpConfig {
                name: "bedrock".into(),
                base_url: base.into(),
                api_key: None,
                api_key_header: None,
                headers: Vec::new(),
                query: Vec::new(),
                connect_timeout: std::time::Duration::from_secs(1),
                read_timeout: std::time::Duration::from_secs(1),
            },
            "eu-west-3",
            BedrockAuth::SigV4(CredentialChain::fixed(Credentials::new(
                "AKID", "secret", None,
            ))),
        )
        .unwrap()
    }

    #[test]
    fn the_model_id_is_one_path_segment_whatever_it_holds() {
        let b = bedrock(&base_url("eu-west-3"));
        assert_eq!(b.host, "bedrock-runtime.eu-west-3.amazonaws.com");
        assert_eq!(
            b.path("eu.anthropic.claude-sonnet-4-20250514-v1:0", false),
            "/model/eu.anthropic.claude-sonnet-4-20250514-v1%3A0/converse"
        );
        assert_eq!(
            b.path(
                "arn:aws:bedrock:eu-west-3:123456789012:inference-profile/eu.amazon.nova-pro-v1:0",
                true
            ),
            "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile%2Feu.amazon.nova-pro-v1%3A0/converse-stream"
        );
        let local = bedrock("http://127.0.0.1:8080/bedrock/");
        assert_eq!(local.host, "127.0.0.1:8080");
        assert_eq!(local.path("m", false), "/bedrock/model/m/converse");
        assert!(!local.speaks(Endpoint::Messages) && local.speaks(Endpoint::Converse));
    }

    /// What the mock upstream received: the path, headers and body of each request.
    type Seen =
        std::sync::Arc<std::sync::Mutex<Vec<(String, axum::http::HeaderMap, bytes::Bytes)>>>;

    /// The mock upstream on a loopback port, recording what it receives; its base URL.
    async fn upstream(seen: Seen) -> String {
        let mock = crate::providers::MockProvider::new(crate::providers::MockConfig {
            name: "bedrock".into(),
            ..Default::default()
        });
        let app = crate::mock_upstream_router(std::sync::Arc::new(mock)).layer(
            axum::middleware::from_fn(
                move |req: axum::extract::Request, next: axum::middleware::Next| {
                    let seen = std::sync::Arc::clone(&seen);
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                        let path = parts.uri.path().to_string();
                        seen.lock()
                            .unwrap()
                            .push((path, parts.headers.clone(), bytes.clone()));
                        next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                            .await
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    /// A call through the gateway's own connections reaches the mock's Converse routes signed, and the signature
    /// the upstream receives is the one the same request, as received, signs to: the host, path and headers the
    /// signer saw are what went on the wire. The answers read back with their usage, the stream from its frames.
    #[tokio::test]
    async fn calls_are_signed_as_they_arrive_and_answered_whole_or_streamed() {
        use crate::protocol::format_of;
        use crate::provider::UpstreamBody;
        use futures_util::StreamExt;
        let seen = Seen::default();
        let base = upstream(std::sync::Arc::clone(&seen)).await;
        let mut b = bedrock(&base);
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token".into()),
        );
        b.auth = BedrockAuth::SigV4(CredentialChain::fixed(credentials.clone()));
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":5}}"#;
        for stream in [false, true] {
            let up = b
                .send(UpstreamRequest {
                    endpoint: Endpoint::Converse,
                    model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
                    stream,
                    body: bytes::Bytes::from_static(body),
                    headers: Vec::new(),
                })
                .await
                .unwrap();
            assert_eq!(up.status, 200, "stream={stream}");
            let usage = match up.body {
                UpstreamBody::Full(bytes) => {
                    format_of(Endpoint::Converse).body_usage(&bytes).unwrap()
                }
                UpstreamBody::Stream(s) => {
                    let mut scanner =
                        crate::sse::UsageScanner::for_format(format_of(Endpoint::Converse));
                    for chunk in s.collect::<Vec<_>>().await {
                        scanner.feed(&chunk.unwrap());
                    }
                    assert!(scanner.saw_done());
                    scanner.reported()
                }
            };
            assert_eq!(usage.map(|u| u.output_tokens), Some(5), "stream={stream}");
        }
        // An unsigned call is refused as Bedrock refuses it.
        let unsigned = reqwest::Client::new()
            .post(format!("{base}/model/m/converse"))
            .header("x-amz-date", "20150830T123600Z")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 403);
        assert!(unsigned
            .text()
            .await
            .unwrap()
            .contains("Missing Authentication Token"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        let seen = &seen[..2];
        for (path, headers, body) in seen {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let stamp = h("x-amz-date");
            let secs = time::PrimitiveDateTime::parse(
                &stamp,
                time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"),
            )
            .unwrap()
            .assume_utc()
            .unix_timestamp();
            let host = h("host");
            let resigned = sigv4::sign(
                &sigv4::Request {
                    method: "POST",
                    // axum gives the path as it arrived, still percent-encoded.
                    path,
                    headers: &[("host", &host), ("content-type", &h("content-type"))],
                    body,
                },
                &credentials,
                Scope {
                    region: "eu-west-3",
                    service: SERVICE,
                },
                &SigningTime::at(secs),
                sigv4::Options::default(),
            );
            assert!(path.contains("%3A0/converse"), "{path}");
            assert_eq!(h("x-amz-security-token"), "session-token");
            let sent = h("authorization");
            assert!(
                sent.ends_with(&format!("Signature={}", resigned.signature)),
                "{sent}\n{}",
                resigned.canonical_request
            );
            assert!(
                sent.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-security-token"),
                "{sent}"
            );
        }
    }

    /// A Bedrock API key goes as a bearer token instead of a signature: no `x-amz-date`, no security token.
    #[tokio::test]
    async fn an_api_key_is_sent_as_a_bearer_token_instead_of_a_signature() {
        let seen = Seen::default();
        let base = upstream(std::sync::Arc::clone(&seen)).await;
        let mut b = bedrock(&base);
        b.auth = BedrockAuth::ApiKey("bedrock-api-key-123".into());
        let up = b
            .send(UpstreamRequest {
                endpoint: Endpoint::Converse,
                model: "amazon.nova-lite-v1:0".into(),
                stream: false,
                body: bytes::Bytes::from_static(
                    br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
                ),
                headers: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(up.status, 200);
        let seen = seen.lock().unwrap().clone();
        let headers = &seen[0].1;
        assert_eq!(
            headers.get("authorization").unwrap(),
            "Bearer bedrock-api-key-123"
        );
        assert!(
            headers.get("x-amz-date").is_none() && headers.get("x-amz-security-token").is_none()
        );
        assert!(!format!("{b:?}").contains("bedrock-api-key-123"));
    }
}
