//! What calling AWS takes: request signing (Signature Version 4, `sigv4.rs`) and credentials from the standard
//! places (`credentials.rs`). Used by the Bedrock provider (`providers/bedrock.rs`).

pub mod credentials;
pub mod sigv4;

pub use credentials::{CredentialChain, Credentials, CredentialsError};
