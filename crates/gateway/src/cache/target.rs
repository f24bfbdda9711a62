//! Where the cache's Redis is and how to reach it, from `cache.redis_addr`: `host:port`, or a URL
//! `redis://[[user]:password@]host[:port][/db]` (`rediss://` for TLS, the server's certificate checked against
//! `cache.redis_ca_file` or the operating system's trusted CAs, and its name against the host).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use spendgate_store::tls::{client_config, Roots, ServerCheck};

use super::resp::RespError;

/// A Redis to connect to. Its password is never shown: `Debug` and [`RedisTarget::shown`] leave it out.
#[derive(Clone)]
pub struct RedisTarget {
    /// `host:port`, as `TcpStream::connect` takes it.
    pub addr: String,
    /// The TLS configuration and the name the certificate must carry, for `rediss://`.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// `AUTH [username] password` once a connection opens.
    pub auth: Option<(Option<String>, String)>,
    /// `SELECT db` once a connection opens (and after `AUTH`).
    pub db: Option<u32>,
    shown: String,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &self.shown)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl RedisTarget {
    /// Reads `cache.redis_addr`; `ca_file` is `cache.redis_ca_file` (only for `rediss://`).
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<RedisTarget, RespError> {
        // A bare `host:port` is read as a `redis://` URL, so that a password in it is hidden as well.
        let shown = if url.contains("://") {
            spendgate_store::redact_url(url)
        } else {
            spendgate_store::redact_url(&format!("redis://{url}"))
        };
        let bad = |why: &str| RespError::Config(format!("cache.redis_addr '{shown}': {why}"));
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("redis://").unwrap_or(url))
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        // A lone name before the `@` is a user without a password (as redis-rs and redis-py read it): nothing
        // to send.
        let auth = userinfo
            .and_then(|u| u.split_once(':'))
            .map(|(user, password)| {
                (
                    Some(percent_decode(user)).filter(|u| !u.is_empty()),
                    percent_decode(password),
                )
            })
            .filter(|(_, password)| !password.is_empty());
        let db = match path.trim_end_matches('/') {
            "" => None,
            n => Some(n.parse::<u32>().map_err(|_| {
                bad("the path must be a database number, as in redis://host:6379/2")
            })?),
        };
        // `[::1]:6379`, `host:6379` or `host`.
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| bad("the port must be a number"))?,
            ),
            _ => (hostport, 6379),
        };
        if host.is_empty() {
            return Err(bad("no host; write host:port or rediss://host:port"));
        }
        let tls = if tls {
            let roots = ca_file.map_or(Roots::System, |p| Roots::File(p.to_path_buf()));
            let config = client_config(&ServerCheck::Full(roots))
                .map_err(|e| RespError::Config(format!("{e} (cache.redis_ca_file)")))?;
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(name.to_string())
                .map_err(|_| bad("the host is not a name or address a certificate can carry"))?;
            Some((config, name))
        } else {
            if ca_file.is_some() {
                return Err(bad(
                    "cache.redis_ca_file is set but the URL does not start with rediss://; use rediss:// for TLS",
                ));
            }
            None
        };
        Ok(RedisTarget {
            addr: format!("{host}:{port}"),
            tls,
            auth,
            db,
            shown,
        })
    }

    /// The URL without its password, for messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let mut ahead = bytes.clone();
            let hex = |c: Option<u8>| c.and_then(|c| char::from(c).to_digit(16));
            if let (Some(h), Some(l)) = (hex(ahead.next()), hex(ahead.next())) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                bytes = ahead;
                continue;
            }
        }
        out.push(b);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_the_host_credentials_database_and_tls() {
        let t = RedisTarget::parse("127.0.0.1:6379", None).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            (t.addr.as_str(), t.tls.is_some(), &t.auth, t.db),
            ("127.0.0.1:6379", false, &None, None)
        );
        let t = RedisTarget::parse("redis://:s%40cret@cache.internal/3", None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(t.addr, "cache.internal:6379");
        assert_eq!(t.auth, Some((None, "s@cret".to_string())));
        assert_eq!(t.db, Some(3));
        assert_eq!(t.shown(), "redis://:***@cache.internal/3");
        assert!(!format!("{t:?}").contains("cret"), "{t:?}");
        let t = RedisTarget::parse("rediss://app:pw@[::1]:6380", None)
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(t.addr, "[::1]:6380");
        assert_eq!(t.auth, Some((Some("app".to_string()), "pw".to_string())));
        assert!(t.tls.is_some());
    }

    #[test]
    fn bad_urls_say_what_to_write_and_never_show_the_password() {
        for (url, want) in [
            ("redis://:hunter2@h:port", "the port must be a number"),
            ("redis://:hunter2@h/x", "database number"),
            ("rediss://:hunter2@", "no host"),
        ] {
            let e = RedisTarget::parse(url, None)
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = RedisTarget::parse("redis://h", Some(Path::new("/ca.pem")))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("use rediss://"), "{e}");
    }
}
