//! Provider implementations, one per file.

pub mod anthropic;
pub mod aws;
pub mod bedrock;
pub mod gemini;
mod h1;
pub mod http;
pub mod mock;
pub mod openai;
mod tls;

pub use anthropic::Anthropic;
pub use bedrock::{Bedrock, BedrockAuth};
pub use gemini::Gemini;
pub use http::HttpConfig;
pub use mock::{MockConfig, MockProvider};
pub use openai::OpenAiCompatible;
