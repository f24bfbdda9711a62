//! The byte stream under the gateway's own HTTP/1.1 connections (`h1/`): plain TCP, or TLS over it, and the TLS
//! client settings of HTTPS upstreams.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use spendgate_store::tls::{client_config, Roots, ServerCheck};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The TLS client settings of every HTTPS upstream: rustls with ring, the platform's trusted roots (on Linux the
/// system store, or `SSL_CERT_FILE`/`SSL_CERT_DIR` when set, as reqwest reads them), and HTTP/1.1 offered by
/// ALPN, since this path speaks nothing else. One for the process, so that every pool shares its session cache
/// and a reconnection resumes its session instead of a full handshake. `None` when the platform's roots cannot
/// be read; such upstreams then stay on reqwest, which reports why on each call.
pub(crate) fn platform_tls() -> Option<Arc<rustls::ClientConfig>> {
    static TLS: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> = std::sync::OnceLock::new();
    TLS.get_or_init(|| {
        // The same verification as every other connection that names its host (store::tls).
        client_config(&ServerCheck::Full(Roots::System))
            .ok()
            .map(offering_http1)
    })
    .clone()
}

/// `config` offering HTTP/1.1 alone by ALPN: a server that prefers HTTP/2 must not pick it for this path.
pub(crate) fn offering_http1(config: Arc<rustls::ClientConfig>) -> Arc<rustls::ClientConfig> {
    let mut config = Arc::unwrap_or_clone(config);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What a connection to an HTTPS upstream needs: the client settings and the name its certificate must carry.
pub(crate) struct Tls {
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

/// The byte stream under HTTP: plain TCP, or TLS over it. An enum rather than a boxed trait object, so that a
/// plain connection's reads and writes stay direct calls.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
