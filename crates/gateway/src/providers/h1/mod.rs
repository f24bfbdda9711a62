//! Plain-HTTP upstream exchanges on HTTP/1.1 connections that the asking task drives itself.
//!
//! reqwest (hyper's pooled client) runs every connection as a task of its own: a request is handed to that
//! task and its answer handed back through channels, so an answer, and every chunk of a stream, wakes two
//! tasks, the connection's and then the request's, and pays reqwest's layers on top. Here the request's own
//! task polls the connection while it waits for the answer, and a stream polls it as it is read, so what
//! arrives wakes only that task, and chunks that arrived together are handed on together. On the benchmark's
//! plain-HTTP upstream this took the gateway's CPU time per request from 62-75 us to 48-53 us, and per stream
//! from 338-435 us to 100-113 us (docs/BENCHMARKS-HISTORY.md, seventh session).
//!
//! Used for every call to an `http://` or `https://` upstream when no proxy is set in the environment: real
//! providers are HTTPS, so the fast path has to speak TLS too (rustls, with the platform's trusted roots, as
//! reqwest was set up). Calls through a proxy go through reqwest as before.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::{handshake, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::tls::{Io, Tls};
use crate::provider::{ProviderError, UpstreamBody};

/// As many idle connections as reqwest kept per host (`pool_max_idle_per_host`).
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused, as reqwest's pool did (its default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The proxy variables reqwest honours for `http://` URLs: with any of them set, requests keep going through
/// reqwest so that they keep going through the proxy.
const PROXY_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];
/// The same for `https://` URLs.
const TLS_PROXY_VARS: [&str; 4] = ["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"];

/// An answer: read whole, or a stream of server-sent events still arriving.
pub(crate) struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: UpstreamBody,
}

struct Conn {
    sender: SendRequest<Full<Bytes>>,
    conn: Connection<TokioIo<Io>, Full<Bytes>>,
    /// The connection ended (the upstream closed it, or said it would): it is not put back.
    closed: bool,
    idle_since: Instant,
}

/// Why an exchange failed, and whether the request left at all: a request that never reached the upstream is
/// safe to send again, on another connection.
enum Failure {
    NotSent(ProviderError),
    Failed(ProviderError),
}

/// The idle connections to one upstream (`host:port`, over TLS or not).
pub(crate) struct Http1Pool {
    /// `host:port`, for connecting.
    authority: String,
    /// The `Host` header: the port only when the URL names one.
    host: String,
    /// Set for an `https://` upstream.
    tls: Option<Tls>,
    connect_timeout: Duration,
    read_timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Http1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1Pool")
            .field("authority", &self.authority)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Http1Pool {
    /// A pool for `base` when its requests can take this path: `http://`, or `https://` with the TLS client
    /// settings `tls`, with a host, and no proxy for its scheme in the environment.
    pub(crate) fn for_url(
        base: &reqwest::Url,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
        read_timeout: Duration,
    ) -> Option<Http1Pool> {
        let proxied = |vars: &[&str]| vars.iter().any(|v| std::env::var_os(v).is_some());
        let host = base.host_str()?;
        let tls = match base.scheme() {
            "http" if !proxied(&PROXY_VARS) => None,
            "https" if !proxied(&TLS_PROXY_VARS) => Some(Tls {
                connector: TlsConnector::from(tls?),
                // An IPv6 host comes bracketed in a URL, and a certificate names the bare address.
                server_name: ServerName::try_from(
                    host.trim_start_matches('[')
                        .trim_end_matches(']')
                        .to_string(),
                )
                .ok()?,
            }),
            _ => return None,
        };
        let port = base.port_or_known_default()?;
        Some(Http1Pool {
            authority: format!("{host}:{port}"),
            host: match base.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.to_string(),
            },
            tls,
            connect_timeout,
            read_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Posts `body` to `path` (path and query) with `headers` (name, value, whether it is a secret). The answer
    /// is read whole, unless `stream` was asked for and the upstream sends events with a success status: then
    /// it comes as a stream that drives its connection as it is read, and gives the connection back to the pool
    /// at its end. A pooled connection that turns out to be closed before the request left is dropped and the
    /// request sent on another.
    pub(crate) async fn post(
        self: &Arc<Self>,
        path: &str,
        headers: &[(&str, &str, bool)],
        body: Bytes,
        stream: bool,
    ) -> Result<Answer, ProviderError> {
        loop {
            let (mut conn, reused) = match self.take() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            let request = self.request(path, headers, body.clone())?;
            let head = match send(&mut conn, request, self.read_timeout).await {
                Ok(head) => head,
                Err(Failure::NotSent(_)) if reused => continue,
                Err(Failure::NotSent(e) | Failure::Failed(e)) => return Err(e),
            };
            let Head {
                status,
                content_type,
                body: incoming,
            } = head;
            let body = if super::http::answers_as_stream(stream, content_type.as_deref(), status) {
                UpstreamBody::Stream(Box::pin(Events {
                    conn: Some(conn),
                    body: incoming,
                    pool: Arc::clone(self),
                    deadline: Box::pin(tokio::time::sleep(self.read_timeout)),
                }))
            } else {
                let whole = read_whole(&mut conn, incoming, self.read_timeout).await?;
                self.put_back(conn);
                UpstreamBody::Full(whole)
            };
            return Ok(Answer {
                status,
                content_type,
                body,
            });
        }
    }

    fn request(
        &self,
        path: &str,
        headers: &[(&str, &str, bool)],
        body: Bytes,
    ) -> Result<hyper::Request<Full<Bytes>>, ProviderError> {
        let mut builder = hyper::Request::post(path).header("host", self.host.as_str());
        for (k, v, secret) in headers {
            builder = builder.header(*k, super::http::header_value(k, v, *secret)?);
        }
        builder.body(Full::new(body)).map_err(|e| {
            ProviderError::Config(format!(
                "a header name or the path of the upstream request is not valid HTTP ({e})"
            ))
        })
    }

    fn take(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The most recently used first: it is the least likely to have been closed by the upstream meanwhile.
        while let Some(c) = idle.pop() {
            if c.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    fn put_back(&self, mut conn: Conn) {
        // One more look at the connection, without waiting: an upstream that answered `Connection: close` has
        // ended it by now.
        if !conn.closed
            && Pin::new(&mut conn.conn)
                .poll(&mut Context::from_waker(Waker::noop()))
                .is_ready()
        {
            conn.closed = true;
        }
        if conn.closed {
            return;
        }
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, ProviderError> {
        // The connect timeout covers the TLS handshake too, as reqwest's did.
        let connecting = async {
            let tcp = TcpStream::connect(self.authority.as_str()).await?;
            // As reqwest was set up: small requests leave at once instead of waiting for an ACK (Nagle).
            tcp.set_nodelay(true)?;
            Ok::<_, std::io::Error>(match &self.tls {
                None => Io::Plain(tcp),
                Some(tls) => Io::Tls(Box::new(
                    tls.connector.connect(tls.server_name.clone(), tcp).await?,
                )),
            })
        };
        let io = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(ProviderError::Connect(e.to_string())),
            Err(_) => {
                return Err(ProviderError::Connect(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )))
            }
        };
        let (sender, conn) = handshake(TokioIo::new(io))
            .await
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        Ok(Conn {
            sender,
            conn,
            closed: false,
            idle_since: Instant::now(),
        })
    }
}

/// Polls the connection (unless it has ended) and then `f`, so that the connection makes progress while this
/// task waits on it.
fn drive<T>(
    c: &mut Conn,
    cx: &mut Context<'_>,
    f: impl FnOnce(&mut Conn, &mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if !c.closed && Pin::new(&mut c.conn).poll(cx).is_ready() {
        c.closed = true;
    }
    f(c, cx)
}

/// The head of an answer, its body still to be read.
struct Head {
    status: u16,
    content_type: Option<String>,
    body: Incoming,
}

/// Sends `request` and waits for the answer's head.
async fn send(
    c: &mut Conn,
    request: hyper::Request<Full<Bytes>>,
    read_timeout: Duration,
) -> Result<Head, Failure> {
    // Ready to send: on a reused connection this also reads the upstream's close, if it sent one while idle.
    poll_fn(|cx| {
        drive(c, cx, |c, cx| {
            if c.closed {
                return Poll::Ready(Err(Failure::NotSent(ProviderError::Connect(
                    "the upstream closed the connection".into(),
                ))));
            }
            c.sender
                .poll_ready(cx)
                .map_err(|e| Failure::NotSent(ProviderError::Connect(e.to_string())))
        })
    })
    .await?;
    let mut answer = pin!(c.sender.send_request(request));
    let head = tokio::time::timeout(
        read_timeout,
        poll_fn(|cx| drive(c, cx, |_, cx| answer.as_mut().poll(cx))),
    )
    .await
    .map_err(|_| Failure::Failed(ProviderError::Timeout))?;
    let response = match head {
        Ok(r) => r,
        // hyper cancels a request that it never wrote (the connection ended first).
        Err(e) if e.is_canceled() => {
            return Err(Failure::NotSent(ProviderError::Connect(e.to_string())))
        }
        Err(e) => return Err(Failure::Failed(ProviderError::Body(e.to_string()))),
    };
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok(Head {
        status: response.status().as_u16(),
        content_type,
        body: response.into_body(),
    })
}

/// Reads a body to its end.
async fn read_whole(
    c: &mut Conn,
    mut body: Incoming,
    read_timeout: Duration,
) -> Result<Bytes, ProviderError> {
    // A body of one chunk, the usual case, is handed on as it came; only more chunks are joined into a copy.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    loop {
        // The read timeout bounds each wait for more of the body, as reqwest's did, not the whole body.
        let frame = tokio::time::timeout(
            read_timeout,
            poll_fn(|cx| drive(c, cx, |_, cx| Pin::new(&mut body).poll_frame(cx))),
        )
        .await
        .map_err(|_| ProviderError::Timeout)?;
        match frame {
            None => {
                return Ok(if joined.is_empty() {
                    first.unwrap_or_default()
                } else {
                    joined.freeze()
                })
            }
            Some(Ok(frame)) => match (frame.into_data(), first.take()) {
                (Ok(data), None) if joined.is_empty() => first = Some(data),
                (Ok(data), earlier) => {
                    if let Some(earlier) = earlier {
                        joined.extend_from_slice(&earlier);
                    }
                    joined.extend_from_slice(&data);
                }
                // Trailers: nothing to keep.
                (Err(_), earlier) => first = earlier,
            },
            Some(Err(e)) => return Err(ProviderError::Body(e.to_string())),
        }
    }
}

/// A streamed body that drives its connection while it is read. At its end the connection goes back to the
/// pool; dropped before its end (or after an error), the connection is closed with it.
struct Events {
    /// `None` once the stream ended.
    conn: Option<Conn>,
    body: Incoming,
    pool: Arc<Http1Pool>,
    /// The read timeout, pushed back by every chunk.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl futures_util::Stream for Events {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(c) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        if !c.closed && Pin::new(&mut c.conn).poll(cx).is_ready() {
            c.closed = true;
        }
        loop {
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => {
                        if let Some(at) =
                            tokio::time::Instant::now().checked_add(this.pool.read_timeout)
                        {
                            this.deadline.as_mut().reset(at);
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                    // Trailers, or an empty chunk: nothing to hand on.
                    _ => continue,
                },
                Poll::Ready(Some(Err(e))) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(ProviderError::Body(e.to_string()))));
                }
                Poll::Ready(None) => {
                    if let Some(c) = this.conn.take() {
                        this.pool.put_back(c);
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => break,
            }
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.conn = None;
            return Poll::Ready(Some(Err(ProviderError::Timeout)));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests;
