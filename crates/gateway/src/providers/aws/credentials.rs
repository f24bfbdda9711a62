//! AWS credentials from the standard places, in the order AWS's SDKs look (docs.aws.amazon.com/sdkref/latest/
//! guide/standardized-credentials.html, .../file-format.html, .../feature-static-credentials.html):
//!
//! 1. the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and, for temporary credentials,
//!    `AWS_SESSION_TOKEN`;
//! 2. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`): an INI file whose
//!    section `[name]` holds `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token`; the profile is
//!    the configuration's `aws_profile`, else `AWS_PROFILE`, else `default`. A profile named in the configuration
//!    is read from the file even when the environment has keys.
//!
//! Temporary credentials in the file are rewritten by the tools that renew them, so the file is read again when
//! its modification time changes (looked at no more than every [`RECHECK`]). Secrets never reach a log or an
//! error: errors name the variable, file and profile, never a value.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
         temporary credentials), or add a [{profile}] profile to {file}"
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
}

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Environment,
    SharedFile { path: PathBuf, profile: String },
}

/// The credentials in force, and where to read them again.
pub struct CredentialChain {
    source: Source,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    credentials: Arc<Credentials>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl std::fmt::Debug for CredentialChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChain")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CredentialChain {
    /// Credentials that never change (tests, and callers that found them elsewhere).
    pub fn fixed(credentials: Credentials) -> CredentialChain {
        CredentialChain {
            source: Source::Environment,
            loaded: Mutex::new(Loaded {
                credentials: Arc::new(credentials),
                modified: None,
                checked: Instant::now(),
            }),
        }
    }

    /// Finds credentials in the standard places; `profile` is the configuration's `aws_profile`, and `env` reads
    /// an environment variable (`std::env::var` outside tests).
    pub fn resolve(
        profile: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CredentialChain, CredentialsError> {
        let path = shared_file(env);
        let file = path.display().to_string();
        let id = env("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
        let secret = env("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty());
        if profile.is_none() {
            match (id, secret) {
                (Some(id), Some(secret)) => {
                    let token = env("AWS_SESSION_TOKEN");
                    return Ok(CredentialChain::fixed(Credentials::new(id, secret, token)));
                }
                (Some(_), None) => return Err(CredentialsError::HalfSet { file }),
                _ => {}
            }
        }
        let profile = profile
            .map(str::to_string)
            .or_else(|| env("AWS_PROFILE").filter(|p| !p.is_empty()))
            .unwrap_or_else(|| "default".to_string());
        let (credentials, modified) = read_profile(&path, &profile)?;
        Ok(CredentialChain {
            source: Source::SharedFile { path, profile },
            loaded: Mutex::new(Loaded {
                credentials: Arc::new(credentials),
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The credentials to sign with now: those of the shared file as it is now, when it changed since it was
    /// last read (a file that became unreadable keeps the last credentials, with a warning).
    pub fn current(&self) -> Arc<Credentials> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Source::SharedFile { path, profile } = &self.source {
            if loaded.checked.elapsed() >= RECHECK {
                loaded.checked = Instant::now();
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if modified != loaded.modified {
                    match read_profile(path, profile) {
                        Ok((c, m)) => {
                            loaded.credentials = Arc::new(c);
                            loaded.modified = m;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "The AWS credentials file changed and could not be read again; the credentials read before are used.");
                        }
                    }
                }
            }
        }
        Arc::clone(&loaded.credentials)
    }
}

/// The shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else `.aws/credentials` in the home directory.
fn shared_file(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = env("AWS_SHARED_CREDENTIALS_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = env("HOME")
        .or_else(|| env("USERPROFILE"))
        .unwrap_or_default();
    PathBuf::from(home).join(".aws").join("credentials")
}

/// A profile's credentials from the shared file, with the file's modification time.
fn read_profile(
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_environment_comes_first_with_its_session_token() {
        let c = CredentialChain::resolve(
            None,
            &env(&[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "secretenv"),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials"),
            ]),
        )
        .unwrap();
        let now = c.current();
        assert_eq!(
            (
                now.access_key_id(),
                now.secret_access_key(),
                now.session_token()
            ),
            ("AKIDENV", "secretenv", Some("tok"))
        );
        assert_eq!(c.source(), &Source::Environment);
        // Half a pair is a mistake worth naming, not a reason to look elsewhere.
        let e =
            CredentialChain::resolve(None, &env(&[("AWS_ACCESS_KEY_ID", "AKIDENV")])).unwrap_err();
        assert!(matches!(e, CredentialsError::HalfSet { .. }), "{e}");
    }

    #[test]
    fn the_shared_file_gives_the_named_profile_and_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "# a comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             [work]\naws_access_key_id=AKIDWORK\naws_secret_access_key= s2 \naws_session_token = t2\n",
        )
        .unwrap();
        let file = path.display().to_string();
        let default =
            CredentialChain::resolve(None, &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)]))
                .unwrap();
        assert_eq!(default.current().access_key_id(), "AKIDDEFAULT");
        assert_eq!(default.current().session_token(), None);
        let by_env = CredentialChain::resolve(
            None,
            &env(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
                ("AWS_PROFILE", "work"),
            ]),
        )
        .unwrap();
        let c = by_env.current();
        assert_eq!(
            (c.access_key_id(), c.secret_access_key(), c.session_token()),
            ("AKIDWORK", "s2", Some("t2"))
        );
        // A profile the configuration names wins over keys in the environment.
        let named = CredentialChain::resolve(
            Some("work"),
            &env(&[
                ("AWS_SHARED_CREDENTIALS_FILE", &file),
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "secretenv"),
            ]),
        )
        .unwrap();
        assert_eq!(named.current().access_key_id(), "AKIDWORK");

        // Renewed temporary credentials are picked up once the file's time changed and the recheck is due.
        std::fs::write(
            &path,
            "[work]\naws_access_key_id=AKIDNEW\naws_secret_access_key=s3\n",
        )
        .unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        named.loaded.lock().unwrap().checked = Instant::now() - RECHECK;
        assert_eq!(named.current().access_key_id(), "AKIDNEW");
        assert_eq!(named.current().session_token(), None);
    }

    #[test]
    fn mistakes_name_the_place_and_never_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[default]\naws_access_key_id = AKIDONLY\n").unwrap();
        let file = path.display().to_string();
        let e = CredentialChain::resolve(None, &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("aws_secret_access_key") && e.contains(&file),
            "{e}"
        );
        assert!(!e.contains("AKIDONLY"), "{e}");
        let e = CredentialChain::resolve(
            Some("missing"),
            &env(&[("AWS_SHARED_CREDENTIALS_FILE", &file)]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("[missing]") && e.contains("AWS_ACCESS_KEY_ID"),
            "{e}"
        );
        let e = CredentialChain::resolve(None, &env(&[("HOME", "/nonexistent-home")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent-home/.aws/credentials"), "{e}");
        let c = Credentials::new("AKIDSECRETLOOKING", "topsecret", Some("tok".into()));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("AKID") && !shown.contains("topsecret") && !shown.contains("tok\""),
            "{shown}"
        );
    }
}
