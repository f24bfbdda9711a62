//! A minimal Redis client: RESP2 commands over a few pooled connections (TCP, or TLS for `rediss://`). Only what
//! the cache needs (`GET`, `SET ... PX`, `PING`, and `AUTH` and `SELECT` as a connection opens), so no client
//! crate is pulled in for it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::target::RedisTarget;

#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("Redis could not be reached or the connection broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis answered an error: {0}")]
    Server(String),
    #[error("Redis sent something this client does not read: {0}")]
    Protocol(String),
    #[error(
        "the TLS handshake with Redis failed: {0}; check that cache.redis_ca_file names the CA that signed the \
         server's certificate and that the URL's host is a name the certificate lists"
    )]
    Tls(std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufStream<Box<dyn Io>>;

/// A reply, as far as the cache cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
}

/// The longest bulk reply read (a cached answer is far smaller): a corrupt length cannot make us allocate more.
const MAX_BULK: usize = 256 << 20;

/// Writes one command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_reply<R: AsyncBufReadExt + Unpin>(r: &mut R) -> Result<Reply, RespError> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).await?;
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(RespError::Protocol(
            "a reply line did not end in CRLF".into(),
        ));
    };
    let (kind, rest) = line
        .split_first()
        .ok_or_else(|| RespError::Protocol("an empty reply".into()))?;
    let text = String::from_utf8_lossy(rest).into_owned();
    let number = || {
        text.parse::<i64>()
            .map_err(|_| RespError::Protocol(format!("'{text}' is not a number")))
    };
    match kind {
        b'+' => Ok(Reply::Status(text)),
        b'-' => Err(RespError::Server(text)),
        b':' => Ok(Reply::Integer(number()?)),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n > MAX_BULK {
                return Err(RespError::Protocol(format!(
                    "a {n}-byte reply is too large"
                )));
            }
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).await?;
            buf.truncate(n);
            Ok(Reply::Bulk(Some(buf)))
        }
        other => Err(RespError::Protocol(format!(
            "reply type '{}' is not used by the cache",
            char::from(*other)
        ))),
    }
}

/// A few connections to one Redis, each used by one command at a time and reopened after any failure.
pub struct RespClient {
    target: RedisTarget,
    timeout: Duration,
    conns: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for RespClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RespClient")
            .field("target", &self.target)
            .finish()
    }
}

/// Sends one command on an open connection and reads its reply.
async fn exchange(conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, RespError> {
    conn.write_all(&encode(args)).await?;
    conn.flush().await?;
    read_reply(conn).await
}

impl RespClient {
    pub fn new(target: RedisTarget, connections: usize, timeout: Duration) -> RespClient {
        RespClient {
            target,
            timeout,
            conns: (0..connections.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sends one command and reads its reply, within the timeout.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, RespError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let mut slot = self.conns[i].lock().await;
        let run = async {
            if slot.is_none() {
                *slot = Some(self.open().await?);
            }
            let Some(conn) = slot.as_mut() else {
                return Err(RespError::Protocol("no connection".into()));
            };
            exchange(conn, args).await
        };
        let result = match tokio::time::timeout(self.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(RespError::Timeout(self.timeout)),
        };
        // A connection that failed mid-command may hold half a reply: never reuse it. A server error reply was
        // read whole, so its connection is fine (unless it came from `AUTH` or `SELECT`, whose connection was
        // never kept).
        if matches!(result, Err(ref e) if !matches!(e, RespError::Server(_))) {
            *slot = None;
        }
        result
    }

    /// A new connection: TCP, the TLS handshake for `rediss://`, then `AUTH` and `SELECT` when the URL has them.
    async fn open(&self) -> Result<Conn, RespError> {
        let tcp = TcpStream::connect(&self.target.addr).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.target.tls {
            None => Box::new(tcp),
            Some((config, name)) => Box::new(
                tokio_rustls::TlsConnector::from(std::sync::Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(RespError::Tls)?,
            ),
        };
        let mut conn = BufStream::new(io);
        if let Some((user, password)) = &self.target.auth {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            args.extend(user.as_deref().map(str::as_bytes));
            args.push(password.as_bytes());
            exchange(&mut conn, &args).await?;
        }
        if let Some(db) = self.target.db {
            exchange(&mut conn, &[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            encode(&[b"SET", b"k", b"v\r\n"]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn replies_are_read_by_type() {
        let cases: [(&[u8], Result<Reply, &str>); 6] = [
            (b"+OK\r\n", Ok(Reply::Status("OK".into()))),
            (b":42\r\n", Ok(Reply::Integer(42))),
            (b"$-1\r\n", Ok(Reply::Bulk(None))),
            (
                b"$5\r\na\r\nbc\r\n",
                Ok(Reply::Bulk(Some(b"a\r\nbc".to_vec()))),
            ),
            (b"-ERR wrong\r\n", Err("Redis answered an error: ERR wrong")),
            (b"*1\r\n", Err("reply type '*'")),
        ];
        for (wire, want) in cases {
            let mut r = tokio::io::BufReader::new(wire);
            let got = read_reply(&mut r).await.map_err(|e| e.to_string());
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w),
                (Err(g), Err(w)) => assert!(g.contains(w), "{g}"),
                (g, w) => panic!("{g:?} vs {w:?}"),
            }
        }
    }
}
