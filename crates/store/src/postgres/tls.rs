//! TLS to PostgreSQL with libpq's settings: `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
//! `verify-full`) and `sslrootcert` (a PEM file of CAs, or `system`) in the database URL. `tokio-postgres` knows
//! only the first three modes and no `sslrootcert`, so both are taken out of the URL here and the driver is told
//! `disable`, `prefer` or `require`; what is checked of the server's certificate is decided by the rustls
//! configuration handed to it (`crate::tls`).
//!
//! As in libpq: the default is `prefer` (TLS when the server offers it, checked no further than `require`);
//! `require` and `prefer` check the chain like `verify-ca` when a CA file is named (or `~/.postgresql/root.crt`
//! exists); `verify-ca` and `verify-full` without any CA file are refused; `sslrootcert=system` makes the
//! default `verify-full` and allows nothing weaker.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::tls::{client_config, Roots, ServerCheck};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, String> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            // libpq's `allow` tries without TLS first, which a server that insists on TLS then refuses; it buys
            // nothing over `prefer`, and the driver has no such mode.
            other => {
                return Err(format!(
                "sslmode={other} is not supported; use disable, prefer, require, verify-ca or verify-full"
            ))
            }
        })
    }

    /// What `tokio-postgres` is told: whether to ask for TLS and whether to insist on it.
    fn driver(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => "require",
        }
    }
}

/// The TLS settings of a database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: SslMode,
    /// `sslrootcert` as written (a path, or `system`).
    pub root_cert: Option<String>,
}

/// A URL split into what the driver reads (with `sslmode` rewritten to one it knows and `sslrootcert` taken
/// out) and the TLS settings. A `key=value` string the split cannot read is passed on whole, for the driver's
/// own error.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), String> {
    let (rest, params) = if let Some(scheme) = url.find("://") {
        split_query(url, scheme)
    } else {
        match split_key_values(url) {
            Some(split) => split,
            None => return Ok((url.to_string(), TlsSettings::default_for(None, None)?)),
        }
    };
    let mut mode = None;
    let mut root_cert = None;
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            _ => root_cert = Some(value),
        }
    }
    let settings = TlsSettings::default_for(mode, root_cert)?;
    let sep = if !url.contains("://") {
        " "
    } else if rest.contains('?') {
        "&"
    } else {
        "?"
    };
    let driver = format!("{rest}{sep}sslmode={}", settings.mode.driver());
    Ok((driver.trim_start().to_string(), settings))
}

impl TlsSettings {
    fn default_for(
        mode: Option<SslMode>,
        root_cert: Option<String>,
    ) -> Result<TlsSettings, String> {
        let system = root_cert.as_deref() == Some("system");
        let mode = mode.unwrap_or(if system {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        });
        if system && mode != SslMode::VerifyFull {
            return Err(
                "sslrootcert=system may only be used with sslmode=verify-full: trusting every public CA without \
                 checking the host name would accept anyone's certificate"
                    .into(),
            );
        }
        Ok(TlsSettings { mode, root_cert })
    }

    /// The CA file in force: the one named, else libpq's default if it exists.
    fn root_file(&self) -> Option<PathBuf> {
        match &self.root_cert {
            Some(path) => Some(PathBuf::from(path)),
            None => std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
                .filter(|p| p.is_file()),
        }
    }

    /// What is checked of the server's certificate, or `None` for no TLS at all.
    pub fn check(&self) -> Result<Option<ServerCheck>, String> {
        if self.root_cert.as_deref() == Some("system") {
            return Ok(Some(ServerCheck::Full(Roots::System)));
        }
        let file = self.root_file();
        Ok(Some(match (self.mode, file) {
            (SslMode::Disable, _) => return Ok(None),
            (SslMode::Prefer | SslMode::Require, None) => ServerCheck::EncryptOnly,
            (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(f)) => ServerCheck::Chain(f),
            (SslMode::VerifyFull, Some(f)) => ServerCheck::Full(Roots::File(f)),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(format!(
                    "sslmode={} needs the CA that signed the server's certificate: add sslrootcert=<PEM file> to \
                     the URL (or sslrootcert=system for the operating system's trusted CAs)",
                    if self.mode == SslMode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ))
            }
        }))
    }

    /// The rustls configuration for these settings, or `None` for no TLS.
    pub fn connector(&self) -> Result<Option<MakeRustls>, String> {
        match self.check()? {
            None => Ok(None),
            Some(check) => client_config(&check)
                .map(|c| Some(MakeRustls(c)))
                .map_err(|e| format!("{e} (sslrootcert)")),
        }
    }
}

/// A connection error's text with what to do about a TLS failure added (the driver's own words say what
/// happened, not which setting to change).
pub fn explain(reason: &str) -> String {
    let hint = if reason.contains("not valid for name") {
        "the server's certificate does not name the URL's host: connect to a name it lists, or use \
         sslmode=verify-ca to check only who signed it"
    } else if reason.contains("invalid peer certificate") {
        "the server's certificate was not accepted: check that sslrootcert names the CA that signed it, or use \
         sslmode=require to encrypt without checking the certificate"
    } else if reason.contains("server does not support TLS") {
        "the server does not offer TLS: turn on ssl in its postgresql.conf, or use sslmode=prefer or sslmode=disable"
    } else if reason.contains("no encryption") {
        "the server accepts this connection only over TLS: remove sslmode=disable"
    } else {
        return reason.to_string();
    };
    format!("{reason} ({hint})")
}

/// The `sslmode` and `sslrootcert` parameters of a URL's query (percent-decoded), and the URL without them.
fn split_query(url: &str, scheme: usize) -> (String, Vec<(String, String)>) {
    let Some(q) = url[scheme..].find('?').map(|i| scheme + i) else {
        return (url.to_string(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in url[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if key == "sslmode" || key == "sslrootcert" {
            taken.push((key, percent_decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        url[..q].to_string()
    } else {
        format!("{}?{}", &url[..q], kept.join("&"))
    };
    (rest, taken)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits are below 256.
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The same for a `key=value` connection string (values bare or single-quoted, with backslash escapes, as
/// libpq reads them); `None` when it cannot be read.
fn split_key_values(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let b = s.as_bytes();
    let mut kept = String::new();
    let mut taken = Vec::new();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        i = skip_space(i);
        if i >= b.len() {
            break;
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        i = skip_space(i);
        if b.get(i) != Some(&b'=') || key.is_empty() {
            return None;
        }
        i = skip_space(i + 1);
        let mut value = Vec::new();
        let quoted = b.get(i) == Some(&b'\'');
        if quoted {
            i += 1;
        }
        loop {
            match b.get(i) {
                None if quoted => return None,
                None => break,
                Some(b'\'') if quoted => {
                    i += 1;
                    break;
                }
                Some(c) if !quoted && c.is_ascii_whitespace() => break,
                Some(b'\\') if i + 1 < b.len() => {
                    value.push(b[i + 1]);
                    i += 2;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        if key == "sslmode" || key == "sslrootcert" {
            taken.push((
                key.to_string(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        } else {
            kept.push(' ');
            kept.push_str(&s[start..i]);
        }
    }
    Some((kept, taken))
}

/// Opens TLS sessions for `tokio-postgres` over rustls, one configuration for every connection of a pool.
#[derive(Clone)]
pub struct MakeRustls(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, Self::Error> {
        Ok(RustlsConnect {
            config: Arc::clone(&self.0),
            name: ServerName::try_from(domain.to_string())?,
        })
    }
}

/// One TLS handshake with the named host.
pub struct RustlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(tls))
        })
    }
}

/// A TLS session to the server.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929): the hash of the server's certificate, which SCRAM-SHA-256-PLUS signs
    /// into the authentication, so that a machine in the middle holding another certificate cannot relay it.
    /// Without one (an algorithm whose hash the RFC does not define), SCRAM goes without channel binding, as
    /// `channel_binding=prefer` (the default) allows.
    fn channel_binding(&self) -> ChannelBinding {
        let cert = self
            .0
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first());
        match cert.and_then(|c| server_end_point(c.as_ref())) {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Signature algorithms (their OIDs' DER bytes) and the hash `tls-server-end-point` takes for each: RSA with
/// MD5, SHA-1, SHA-224, SHA-256, SHA-384, SHA-512 (1.2.840.113549.1.1.{4,5,14,11,12,13}), ECDSA with SHA-1,
/// SHA-224, SHA-256, SHA-384, SHA-512 (1.2.840.10045.4.1 and 1.2.840.10045.4.3.{1,2,3,4}).
const SIGNATURE_HASHES: [(&[u8], u16); 11] = [
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 4], 256),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 5], 256),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 14], 224),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 11], 256),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 12], 384),
    (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 13], 512),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 1], 256),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 1], 224),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2], 256),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 3], 384),
    (&[0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 4], 512),
];

/// The certificate's hash for `tls-server-end-point`: by the hash of its signature algorithm, SHA-256 for MD5
/// and SHA-1 (RFC 5929, 4.1).
fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    const SEQUENCE: u8 = 0x30;
    let (SEQUENCE, body, _) = der(cert)? else {
        return None;
    };
    // tbsCertificate, then signatureAlgorithm: SEQUENCE { algorithm OID, parameters }.
    let (SEQUENCE, _, rest) = der(body)? else {
        return None;
    };
    let (SEQUENCE, algorithm, _) = der(rest)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    let bits = SIGNATURE_HASHES
        .iter()
        .find(|(known, _)| *known == oid)
        .map(|(_, bits)| *bits)?;
    Some(match bits {
        224 => sha2::Sha224::digest(cert).to_vec(),
        256 => sha2::Sha256::digest(cert).to_vec(),
        384 => sha2::Sha384::digest(cert).to_vec(),
        _ => sha2::Sha512::digest(cert).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (String, SslMode, Option<String>) {
        let (driver, s) = split_url(url).unwrap_or_else(|e| unreachable!("{url}: {e}"));
        (driver, s.mode, s.root_cert)
    }

    #[test]
    fn libpq_settings_are_taken_out_of_urls() {
        assert_eq!(
            split("postgres://u:p@db:5432/spend"),
            (
                "postgres://u:p@db:5432/spend?sslmode=prefer".into(),
                SslMode::Prefer,
                None
            )
        );
        assert_eq!(
            split("postgresql://db/spend?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3"),
            (
                "postgresql://db/spend?connect_timeout=3&sslmode=require".into(),
                SslMode::VerifyFull,
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            split("postgres://db/x?sslmode=disable").0,
            "postgres://db/x?sslmode=disable"
        );
        assert_eq!(
            split("host=db sslmode = 'verify-ca' sslrootcert='/a b/c\\'s.pem' user=app"),
            (
                "host=db user=app sslmode=require".into(),
                SslMode::VerifyCa,
                Some("/a b/c's.pem".into())
            )
        );
        assert_eq!(
            split("postgres://db/x?sslrootcert=system"),
            (
                "postgres://db/x?sslmode=require".into(),
                SslMode::VerifyFull,
                Some("system".into())
            )
        );
    }

    #[test]
    fn settings_that_cannot_protect_anything_are_refused() {
        let err = |url: &str| split_url(url).and_then(|(_, s)| s.check().map(|_| ()));
        assert!(err("postgres://db/x?sslmode=allow").is_err_and(|e| e.contains("verify-full")));
        assert!(err("postgres://db/x?sslmode=require&sslrootcert=system")
            .is_err_and(|e| e.contains("only be used with sslmode=verify-full")));
        // Unless a default CA file exists, which this test cannot rule out on a developer's machine.
        if std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".postgresql/root.crt"))
            .is_none_or(|p| !p.exists())
        {
            assert!(err("postgres://db/x?sslmode=verify-full")
                .is_err_and(|e| e.contains("add sslrootcert=")));
        }
    }
}
