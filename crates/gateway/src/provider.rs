//! The provider seam: one trait, one implementation per file under `providers/`.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

/// The API route a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// The OpenAI Responses API.
    Responses,
    /// The Anthropic Messages API.
    Messages,
    /// OpenAI's legacy text completions (`prompt` in, `choices[].text` out), metered like chat.
    Completions,
    /// Anthropic's token counting: free, passed through unmetered.
    CountTokens,
    /// OpenAI's moderation: free, passed through unmetered.
    Moderations,
    /// Google's Gemini API (`models/{model}:generateContent`, and `:streamGenerateContent?alt=sse` for a stream):
    /// the model is named in the URL, not in the body.
    GenerateContent,
    /// Amazon Bedrock's Converse API (`/model/{modelId}/converse`, and `/converse-stream` for a stream in AWS's
    /// binary event stream), reached only by translation from the two client APIs (`translate::converse`).
    Converse,
}

impl Endpoint {
    /// Every endpoint the gateway forwards, for the tables built per endpoint at start.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::ChatCompletions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::Completions,
        Endpoint::CountTokens,
        Endpoint::Moderations,
        Endpoint::GenerateContent,
        Endpoint::Converse,
    ];

    /// Whether the endpoint belongs to Anthropic's API (its errors, headers and providers).
    pub fn is_anthropic(self) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::CountTokens)
    }

    /// Whether the endpoint belongs to OpenAI's API (what OpenAI-compatible providers speak).
    pub fn is_openai(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Embeddings
                | Endpoint::Responses
                | Endpoint::Completions
                | Endpoint::Moderations
        )
    }

    /// Whether the endpoint is Google's Gemini API.
    pub fn is_gemini(self) -> bool {
        self == Endpoint::GenerateContent
    }

    /// Whether the request body names the model (`"model"`); Gemini's and Converse's name it in the URL instead.
    pub fn model_in_body(self) -> bool {
        !matches!(self, Endpoint::GenerateContent | Endpoint::Converse)
    }

    /// Whether calls are billed by the provider, and so held, metered and recorded. Free helper endpoints are
    /// passed through: recording them would add requests that cost nothing and were never at risk.
    pub fn is_metered(self) -> bool {
        !matches!(self, Endpoint::CountTokens | Endpoint::Moderations)
    }
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::Completions => "completions",
            Endpoint::CountTokens => "messages.count_tokens",
            Endpoint::Moderations => "moderations",
            Endpoint::GenerateContent => "generate_content",
            Endpoint::Converse => "converse",
        }
    }

    /// The path below a provider's base URL (`https://api.openai.com/v1`, `https://api.anthropic.com/v1`,
    /// `https://generativelanguage.googleapis.com/v1beta`); Gemini's names the model (`{model}`) and, for a
    /// stream, another method (`providers/http.rs` builds it). Bedrock puts the model in the path
    /// (`/model/{modelId}/converse`): `providers/bedrock.rs` builds it.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/messages",
            Endpoint::Completions => "/completions",
            Endpoint::CountTokens => "/messages/count_tokens",
            Endpoint::Moderations => "/moderations",
            Endpoint::GenerateContent => "/models/{model}:generateContent",
            Endpoint::Converse => "/converse",
        }
    }

    /// Whether the answer can be a stream.
    pub fn can_stream(self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions
                | Endpoint::Responses
                | Endpoint::Messages
                | Endpoint::Completions
                | Endpoint::GenerateContent
                | Endpoint::Converse
        )
    }
}

/// A request as the gateway forwards it.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub endpoint: Endpoint,
    /// The model name the upstream knows the model by.
    pub model: String,
    pub stream: bool,
    /// The JSON body, already adjusted (stream usage requested, model renamed).
    pub body: Bytes,
    /// Protocol headers of the client's request that the upstream needs too (`anthropic-version`,
    /// `anthropic-beta`). Never credentials.
    pub headers: Vec<(&'static str, String)>,
}

pub enum UpstreamBody {
    Full(Bytes),
    Stream(BoxStream<'static, Result<Bytes, ProviderError>>),
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            UpstreamBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

#[derive(Debug)]
pub struct UpstreamResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: UpstreamBody,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("the upstream did not answer in time")]
    Timeout,
    #[error("the upstream could not be reached: {0}")]
    Connect(String),
    #[error("the upstream's answer broke off: {0}")]
    Body(String),
    #[error("the provider is not configured: {0}")]
    Config(String),
}

#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The provider's name as shown on spend logs ("openai", "anthropic", "mock", ...).
    fn name(&self) -> &str;
    /// Whether this provider speaks the API of `endpoint` (requests for others are refused before any call).
    fn speaks(&self, endpoint: Endpoint) -> bool;
    async fn send(&self, request: UpstreamRequest) -> Result<UpstreamResponse, ProviderError>;
}

impl std::fmt::Debug for dyn Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
