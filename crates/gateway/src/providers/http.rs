//! What every HTTP provider shares: its configuration, a pooled client, the request it sends and how it reads
//! the answer. `openai.rs`, `anthropic.rs` and `gemini.rs` only say which APIs they speak and how the key is sent.

use std::borrow::Cow;
use std::time::Duration;

use futures_util::StreamExt;

use crate::provider::{ProviderError, UpstreamBody, UpstreamRequest, UpstreamResponse};

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Shown on spend logs.
    pub name: String,
    /// E.g. `https://api.openai.com/v1`. `{model}` is replaced by the upstream model name (Azure OpenAI's
    /// `.../openai/deployments/{model}`).
    pub base_url: String,
    /// The API key, read from the environment variable the configuration names. Never logged.
    pub api_key: Option<String>,
    /// Send the key as the raw value of this header (Azure OpenAI: `api-key`) instead of the provider's usual
    /// way (`Authorization: Bearer` for OpenAI-compatible APIs, `x-api-key` for Anthropic).
    pub api_key_header: Option<String>,
    /// Extra headers on every request (OpenRouter's `HTTP-Referer`, ...). Not for secrets: they are in the file.
    pub headers: Vec<(String, String)>,
    /// Extra query parameters on every request (Azure OpenAI's `api-version`).
    pub query: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// Longest wait for any read from the upstream (headers or the next chunk of a stream).
    pub read_timeout: Duration,
}

/// How a provider sends its key when the configuration does not say otherwise.
#[derive(Debug, Clone, Copy)]
pub enum KeyStyle {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The raw key in this header.
    Header(&'static str),
}

pub struct HttpUpstream {
    pub config: HttpConfig,
    client: reqwest::Client,
    /// Every call to an HTTP or HTTPS upstream when no proxy is set: see `h1/`.
    h1: Option<std::sync::Arc<super::h1::Http1Pool>>,
    /// The URL of each endpoint, parsed once, when it does not depend on the model (no `{model}` in the base
    /// URL): parsing it per request showed in profiles (URL and IDNA parsing, about 2% of the gateway's time).
    fixed_urls: Vec<(crate::provider::Endpoint, reqwest::Url)>,
}

impl std::fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The API key and the extra headers are deliberately left out.
        f.debug_struct("HttpUpstream")
            .field("name", &self.config.name)
            .field("base_url", &self.config.base_url)
            .finish()
    }
}

impl HttpUpstream {
    pub fn new(config: HttpConfig) -> Result<HttpUpstream, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        let mut upstream = HttpUpstream {
            config,
            client,
            h1: None,
            fixed_urls: Vec::new(),
        };
        // A base URL that cannot be parsed is a start-up error, not a failure of every request.
        let base = upstream.url(crate::provider::Endpoint::ChatCompletions, "model", false)?;
        let tls = if base.scheme() == "https" {
            super::tls::platform_tls()
        } else {
            None
        };
        upstream.h1 = super::h1::Http1Pool::for_url(
            &base,
            tls,
            upstream.config.connect_timeout,
            upstream.config.read_timeout,
        )
        .map(std::sync::Arc::new);
        if !upstream.config.base_url.contains("{model}") {
            use crate::provider::Endpoint;
            // Gemini's path names the model and the method (a stream's is another): built per request.
            for e in Endpoint::ALL.into_iter().filter(|e| !e.is_gemini()) {
                let url = upstream.parse_url(e, "", false)?;
                upstream.fixed_urls.push((e, url));
            }
        }
        Ok(upstream)
    }

    /// The endpoint's URL: borrowed when it was parsed at start, so that a request does not copy it.
    fn url(
        &self,
        endpoint: crate::provider::Endpoint,
        model: &str,
        stream: bool,
    ) -> Result<Cow<'_, reqwest::Url>, ProviderError> {
        match self.fixed_urls.iter().find(|(e, _)| *e == endpoint) {
            Some((_, url)) => Ok(Cow::Borrowed(url)),
            None => self.parse_url(endpoint, model, stream).map(Cow::Owned),
        }
    }

    fn parse_url(
        &self,
        endpoint: crate::provider::Endpoint,
        model: &str,
        stream: bool,
    ) -> Result<reqwest::Url, ProviderError> {
        let base = self.config.base_url.replace("{model}", model);
        let mut path = endpoint.path().replace("{model}", model);
        // Gemini streams from another method, as server-sent events only when asked (`alt=sse`; without it the
        // answer is one JSON array sent piecemeal): ai.google.dev/api/generate-content#method:-models.streamgeneratecontent.
        if endpoint.is_gemini() && stream {
            path = path.replace(":generateContent", ":streamGenerateContent?alt=sse");
        }
        let text = format!("{}{}", base.trim_end_matches('/'), path);
        let mut url = reqwest::Url::parse(&text).map_err(|e| {
            ProviderError::Config(format!(
                "provider '{}' has a base_url that is not a URL ({e})",
                self.config.name
            ))
        })?;
        if !self.config.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.config.query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Posts the request and reads the answer: a stream when one was asked for and the upstream sends one with a
    /// success status, the whole body otherwise.
    pub async fn post(
        &self,
        req: UpstreamRequest,
        key_style: KeyStyle,
        fixed_headers: &[(&'static str, &'static str)],
    ) -> Result<UpstreamResponse, ProviderError> {
        let url = self.url(req.endpoint, &req.model, req.stream)?;
        // Every header the upstream gets, and whether it is a secret (kept out of debug output and never
        // indexed by HTTP/2 header compression).
        let bearer: String;
        let mut headers: Vec<(&str, &str, bool)> = Vec::with_capacity(8);
        headers.push(("content-type", "application/json", false));
        for (k, v) in fixed_headers {
            // The client's own value (a newer `anthropic-version`, say) wins over the default.
            if !req.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                headers.push((k, v, false));
            }
        }
        for (k, v) in &req.headers {
            headers.push((k, v, false));
        }
        for (k, v) in &self.config.headers {
            headers.push((k, v, false));
        }
        if let Some(key) = &self.config.api_key {
            match (&self.config.api_key_header, key_style) {
                (Some(h), _) => headers.push((h, key, true)),
                (None, KeyStyle::Bearer) => {
                    bearer = format!("Bearer {key}");
                    headers.push(("authorization", &bearer, true));
                }
                (None, KeyStyle::Header(h)) => headers.push((h, key, true)),
            }
        }
        self.exchange(&url, &headers, req.body, req.stream).await
    }

    /// Posts `body` to `url` (on this provider's host) with exactly `headers` (name, value, whether it is a
    /// secret), over the gateway's own connections (`h1/`) unless a proxy is set: a stream when `stream` was
    /// asked for and the upstream sends one with a success status, the whole body otherwise.
    pub async fn exchange(
        &self,
        url: &reqwest::Url,
        headers: &[(&str, &str, bool)],
        body: bytes::Bytes,
        stream: bool,
    ) -> Result<UpstreamResponse, ProviderError> {
        if let Some(h1) = &self.h1 {
            let path: Cow<'_, str> = match url.query() {
                Some(q) => Cow::Owned(format!("{}?{q}", url.path())),
                None => Cow::Borrowed(url.path()),
            };
            let answer = h1.post(&path, headers, body, stream).await?;
            return Ok(UpstreamResponse {
                status: answer.status,
                content_type: answer.content_type,
                body: answer.body,
            });
        }
        let mut builder = self.client.post(url.clone());
        for (k, v, secret) in headers {
            builder = builder.header(*k, header_value(k, v, *secret)?);
        }
        let res = builder.body(body).send().await.map_err(map_err)?;
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = if answers_as_stream(stream, content_type.as_deref(), status) {
            UpstreamBody::Stream(res.bytes_stream().map(|r| r.map_err(map_err)).boxed())
        } else {
            UpstreamBody::Full(res.bytes().await.map_err(map_err)?)
        };
        Ok(UpstreamResponse {
            status,
            content_type,
            body,
        })
    }
}

/// Whether an answer is read as a stream: a stream was asked for, and the upstream sends events (server-sent
/// events, or AWS's binary event stream) with a success status (an error comes whole, whatever was asked).
pub(super) fn answers_as_stream(asked: bool, content_type: Option<&str>, status: u16) -> bool {
    asked
        && status < 400
        && content_type.is_some_and(|c| {
            c.starts_with("text/event-stream")
                || c.starts_with("application/vnd.amazon.eventstream")
        })
}

/// A header's value for the upstream, marked sensitive when it is a secret.
pub(super) fn header_value(
    name: &str,
    value: &str,
    secret: bool,
) -> Result<reqwest::header::HeaderValue, ProviderError> {
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        ProviderError::Config(format!(
            "the value of the upstream header '{name}' is not valid in HTTP"
        ))
    })?;
    v.set_sensitive(secret);
    Ok(v)
}

fn map_err(e: reqwest::Error) -> ProviderError {
    // reqwest's messages name the URL (and so any query parameters); keep ours to the cause.
    let mut cause = String::new();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        if !cause.is_empty() {
            cause.push_str(": ");
        }
        cause.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_connect() {
        ProviderError::Connect(cause)
    } else {
        ProviderError::Body(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(base_url: &str) -> HttpUpstream {
        // reqwest's client needs the process's TLS stack, which the binary installs at start.
        let _ = rustls::crypto::ring::default_provider().install_default();
        HttpUpstream::new(HttpConfig {
            name: "openai".into(),
            base_url: base_url.into(),
            api_key: Some("sk-test".into()),
            api_key_header: None,
            headers: Vec::new(),
            query: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
        })
        .unwrap()
    }

    #[test]
    fn https_upstreams_take_the_gateways_own_connections_like_plain_ones() {
        let proxied = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some());
        if proxied || super::super::tls::platform_tls().is_none() {
            eprintln!("skipped: a proxy is set, or this machine has no trusted roots to read");
            return;
        }
        assert!(upstream("https://api.openai.com/v1").h1.is_some());
        assert!(upstream("http://127.0.0.1:9/v1").h1.is_some());
    }

    #[test]
    fn gemini_urls_name_the_model_and_a_stream_asks_for_server_sent_events() {
        use crate::provider::Endpoint;
        let u = upstream("https://generativelanguage.googleapis.com/v1beta/");
        let url = |stream| {
            u.url(Endpoint::GenerateContent, "gemini-2.5-flash", stream)
                .unwrap()
                .to_string()
        };
        assert_eq!(
            url(false),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            url(true),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
    }
}
