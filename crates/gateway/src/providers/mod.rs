//! Provider implementations, one per file.

pub mod mock;
pub mod openai;

pub use mock::{MockConfig, MockProvider};
pub use openai::{OpenAiCompatible, OpenAiConfig};
