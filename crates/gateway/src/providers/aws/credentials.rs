//! AWS credentials, what goes wrong finding them, and the static places they are kept (the order in which every
//! place is looked at is `chain.rs`'s):
//!
//! - the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary credentials,
//!   `AWS_SESSION_TOKEN` (docs.aws.amazon.com/sdkref/latest/guide/feature-static-credentials.html);
//! - the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`): an INI file whose
//!   section `[name]` holds `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token`
//!   (docs.aws.amazon.com/sdkref/latest/guide/file-format.html).
//!
//! Temporary credentials in the file are rewritten by the tools that renew them, so the file is read again when
//! its modification time changes (looked at no more than every [`RECHECK`]). Secrets never reach a log or an
//! error: errors name the variable, file and profile, never a value.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How often the shared credentials file's modification time is looked at.
pub const RECHECK: Duration = Duration::from_secs(30);

/// An access key, its secret and, for temporary credentials, the session token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Nothing of the key is shown: an access key id names an account's user.
        f.debug_struct("Credentials")
            .field("session", &self.session_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Credentials {
        Credentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token: session_token.filter(|t| !t.is_empty()),
        }
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

/// Why no credentials could be found. The messages name places, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for \
         temporary credentials), add a [{profile}] profile to {file}, or run where a role's credentials are given \
         (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, or \
         EC2 instance metadata, which AWS_EC2_METADATA_DISABLED turns off)"
    )]
    NotFound { profile: String, file: String },
    #[error("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both, or neither to use {file}")]
    HalfSet { file: String },
    #[error("the AWS credentials file {file} could not be read ({why})")]
    Unreadable { file: String, why: String },
    #[error("the profile [{profile}] in {file} has no {missing}")]
    Incomplete {
        profile: String,
        file: String,
        missing: &'static str,
    },
    /// A source that answers over HTTP (or reads a token file for it) failed; `why` names what, never a value.
    #[error("AWS credentials from {origin}: {why}")]
    Remote { origin: &'static str, why: String },
}

/// The shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else `.aws/credentials` in the home directory.
pub(super) fn shared_file(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = env("AWS_SHARED_CREDENTIALS_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = env("HOME")
        .or_else(|| env("USERPROFILE"))
        .unwrap_or_default();
    PathBuf::from(home).join(".aws").join("credentials")
}

/// A profile's credentials from the shared file, with the file's modification time.
pub(super) fn read_profile(
    path: &std::path::Path,
    profile: &str,
) -> Result<(Credentials, Option<SystemTime>), CredentialsError> {
    let file = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CredentialsError::NotFound {
                profile: profile.to_string(),
                file,
            })
        }
        Err(e) => {
            return Err(CredentialsError::Unreadable {
                file,
                why: e.kind().to_string(),
            })
        }
    };
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let Some(section) = profile_section(&text, profile) else {
        return Err(CredentialsError::NotFound {
            profile: profile.to_string(),
            file,
        });
    };
    let get = |key: &str| {
        section
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.to_string())
    };
    let missing = |what| CredentialsError::Incomplete {
        profile: profile.to_string(),
        file: file.clone(),
        missing: what,
    };
    let id = get("aws_access_key_id").ok_or_else(|| missing("aws_access_key_id"))?;
    let secret = get("aws_secret_access_key").ok_or_else(|| missing("aws_secret_access_key"))?;
    Ok((
        Credentials::new(id, secret, get("aws_session_token")),
        modified,
    ))
}

/// The `key = value` lines of section `[name]` of an INI text (`#` and `;` start comments; names and values
/// trimmed). `None` when the section is absent.
fn profile_section<'t>(text: &'t str, name: &str) -> Option<Vec<(&'t str, &'t str)>> {
    let mut found = None;
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            if inside {
                found.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                if let Some(pairs) = found.as_mut() {
                    pairs.push((k.trim(), v.trim()));
                }
            }
        }
    }
    found
}
