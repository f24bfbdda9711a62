//! What calling AWS takes: request signing (Signature Version 4, `sigv4.rs`) and credentials from the standard
//! places, in the SDKs' order (`chain.rs`): the environment and the shared file (`credentials.rs`), web identity
//! (`web_identity.rs`), container credentials (`container.rs`) and EC2 instance metadata (`imds.rs`), the last
//! three fetched over HTTP (`remote.rs`) and kept fresh (`refresh.rs`). Used by the Bedrock provider
//! (`providers/bedrock.rs`).

pub mod chain;
pub mod container;
pub mod credentials;
pub mod imds;
pub mod refresh;
pub mod remote;
pub mod sigv4;
pub mod web_identity;

pub use chain::{CredentialChain, Source};
pub use credentials::{Credentials, CredentialsError};

#[cfg(test)]
mod tests;
