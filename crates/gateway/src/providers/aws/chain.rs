//! Where the credentials come from: the first of AWS's standard places that is configured, in the order of the
//! SDKs' default chain (docs.aws.amazon.com/sdkref/latest/guide/standardized-credentials.html; the order of the
//! Java v2, Python (botocore `credentials.py`) and PHP SDKs):
//!
//! 1. the environment's keys (`credentials.rs`);
//! 2. web identity, `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN` (EKS IRSA; `web_identity.rs`);
//! 3. the shared credentials file's profile (`credentials.rs`): `AWS_PROFILE`'s, which must then be there, else
//!    `default`'s when the file has one;
//! 4. container credentials, `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI` (ECS task roles, EKS Pod
//!    Identity; `container.rs`);
//! 5. EC2 instance metadata (`imds.rs`), unless `AWS_EC2_METADATA_DISABLED=true`: last, and only looked at when
//!    nothing else is configured, so that start-up away from EC2 costs nothing (the first signing finds out).
//!
//! (aws-sdk-rust looks at the shared files before web identity; a machine rarely has both.) A profile named in
//! the configuration (`aws_profile`) is read from the file whatever the environment holds. The choice is made
//! once, at start, from the environment alone: no network call is made to choose. Sources 2, 4 and 5 hand out
//! temporary credentials, kept fresh by `refresh.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use super::container::Container;
use super::credentials::{read_profile, shared_file, Credentials, CredentialsError, RECHECK};
use super::imds::InstanceMetadata;
use super::refresh::{system_clock, Clock, Fetch, Refreshing};
use super::web_identity::WebIdentity;

/// Where the credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Environment,
    SharedFile { path: PathBuf, profile: String },
    WebIdentity { role_arn: String },
    Container { url: String },
    InstanceMetadata { endpoint: String },
}

/// The credentials in force, and where to read them again.
pub struct CredentialChain {
    source: Source,
    held: Held,
}

enum Held {
    /// The environment's or the file's (read again when the file changes).
    Static(Mutex<Loaded>),
    /// Fetched over HTTP, kept fresh.
    Remote(Arc<Refreshing>),
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
        CredentialChain::loaded(Source::Environment, credentials, None)
    }

    fn loaded(
        source: Source,
        credentials: Credentials,
        modified: Option<SystemTime>,
    ) -> CredentialChain {
        CredentialChain {
            source,
            held: Held::Static(Mutex::new(Loaded {
                credentials: Arc::new(credentials),
                modified,
                checked: Instant::now(),
            })),
        }
    }

    /// Temporary credentials from `fetch`, fetched when first needed and kept fresh on `clock`.
    pub fn remote(source: Source, fetch: Box<dyn Fetch>, clock: Clock) -> CredentialChain {
        CredentialChain {
            source,
            held: Held::Remote(Refreshing::new(fetch, clock)),
        }
    }

    /// Finds where credentials are, in the standard order; `profile` is the configuration's `aws_profile`,
    /// `region` the provider's (STS is called there), and `env` reads an environment variable (`std::env::var`
    /// outside tests).
    pub fn resolve(
        profile: Option<&str>,
        region: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CredentialChain, CredentialsError> {
        CredentialChain::resolve_on(profile, region, env, system_clock())
    }

    /// [`CredentialChain::resolve`] on `clock`.
    pub fn resolve_on(
        profile: Option<&str>,
        region: &str,
        env: &dyn Fn(&str) -> Option<String>,
        clock: Clock,
    ) -> Result<CredentialChain, CredentialsError> {
        let path = shared_file(env);
        let file = path.display().to_string();
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        if let Some(profile) = profile {
            return CredentialChain::from_file(path, profile.to_string());
        }
        // 1. The environment's keys; half a pair is a mistake worth naming, not a reason to look elsewhere.
        match (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => {
                let token = env("AWS_SESSION_TOKEN");
                return Ok(CredentialChain::fixed(Credentials::new(id, secret, token)));
            }
            (Some(_), None) => return Err(CredentialsError::HalfSet { file }),
            _ => {}
        }
        // 2. Web identity.
        if let Some(w) = WebIdentity::from_env(env, region)? {
            let source = Source::WebIdentity {
                role_arn: w.role_arn().to_string(),
            };
            return Ok(CredentialChain::remote(source, Box::new(w), clock));
        }
        // 3. The shared file: the profile the environment names must be there; `default` may be absent.
        if let Some(named) = set("AWS_PROFILE") {
            return CredentialChain::from_file(path, named);
        }
        match CredentialChain::from_file(path, "default".to_string()) {
            Err(CredentialsError::NotFound { .. }) => {}
            found => return found,
        }
        // 4. Container credentials.
        if let Some(c) = Container::from_env(env)? {
            let source = Source::Container { url: c.shown_url() };
            return Ok(CredentialChain::remote(source, Box::new(c), clock));
        }
        // 5. EC2 instance metadata.
        if let Some(m) = InstanceMetadata::from_env(env)? {
            let source = Source::InstanceMetadata {
                endpoint: m.endpoint().to_string(),
            };
            return Ok(CredentialChain::remote(source, Box::new(m), clock));
        }
        Err(CredentialsError::NotFound {
            profile: "default".to_string(),
            file,
        })
    }

    fn from_file(path: PathBuf, profile: String) -> Result<CredentialChain, CredentialsError> {
        let (credentials, modified) = read_profile(&path, &profile)?;
        Ok(CredentialChain::loaded(
            Source::SharedFile { path, profile },
            credentials,
            modified,
        ))
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Starts fetching temporary credentials in the background, so that the first request finds them in hand
    /// (nothing to do for static ones, or outside a tokio runtime). A failure is logged and tried again by the
    /// first request.
    pub fn prime(&self) {
        if let (Held::Remote(r), Ok(runtime)) = (&self.held, tokio::runtime::Handle::try_current())
        {
            let r = Arc::clone(r);
            runtime.spawn(async move {
                let _ = r.current().await;
            });
        }
    }

    /// The credentials to sign with now: for the shared file, those of the file as it is now when it changed
    /// since it was last read (a file that became unreadable keeps the last credentials, with a warning); for
    /// temporary ones, fresh ones (see `refresh.rs`).
    pub async fn current(&self) -> Result<Arc<Credentials>, CredentialsError> {
        match &self.held {
            Held::Remote(r) => r.current().await,
            Held::Static(loaded) => Ok(self.current_static(loaded)),
        }
    }

    fn current_static(&self, loaded: &Mutex<Loaded>) -> Arc<Credentials> {
        let mut loaded = loaded.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Fetches temporary credentials now, as a refresh would (tests drive refreshes through this).
    #[cfg(test)]
    pub(crate) async fn refresh(&self) -> Result<Arc<Credentials>, CredentialsError> {
        match &self.held {
            Held::Remote(r) => r.refresh().await,
            Held::Static(loaded) => Ok(self.current_static(loaded)),
        }
    }

    /// Waits for a background refresh to end (tests).
    #[cfg(test)]
    pub(crate) async fn settle(&self) {
        if let Held::Remote(r) = &self.held {
            r.settle().await;
        }
    }

    /// Makes the next look at the shared file due now (tests).
    #[cfg(test)]
    pub(crate) fn recheck_now(&self) {
        if let Held::Static(loaded) = &self.held {
            let mut l = loaded.lock().unwrap_or_else(|p| p.into_inner());
            l.checked = Instant::now() - RECHECK;
        }
    }
}

#[cfg(test)]
mod tests;
