//! The gateway's own connections against local servers: reuse, bodies whole and in chunks, closed and silent
//! upstreams, streams and their stalls, which URLs take this path, and TLS (trusted and not).

use super::super::tls::offering_http1;
use super::*;
use spendgate_store::tls::{Roots, ServerCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";

/// Reads one request (head, then a body of its content-length) from `tcp`.
async fn read_request(tcp: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the client closed before its request was whole");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Accepts a connection, reads its request and answers with the head of an event stream and its first
/// event; the rest is the caller's.
async fn first_event(listener: &TcpListener) -> TcpStream {
    let (mut tcp, _) = listener.accept().await.unwrap();
    read_request(&mut tcp).await;
    tcp.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
          d\r\ndata: first\n\n\r\n",
    )
    .await
    .unwrap();
    tcp
}

fn pool(addr: std::net::SocketAddr, read_timeout: Duration) -> Arc<Http1Pool> {
    let url = reqwest::Url::parse(&format!("http://{addr}/v1")).unwrap();
    Arc::new(Http1Pool::for_url(&url, None, Duration::from_secs(5), read_timeout).unwrap())
}

async fn post_as(p: &Arc<Http1Pool>, stream: bool) -> Result<Answer, ProviderError> {
    p.post(
        "/v1/chat/completions?api-version=1",
        &[
            ("content-type", "application/json", false),
            ("authorization", "Bearer sk-test", true),
        ],
        Bytes::from_static(b"{\"model\":\"m\"}"),
        stream,
    )
    .await
}

async fn post(p: &Arc<Http1Pool>) -> Result<Answer, ProviderError> {
    post_as(p, false).await
}

fn whole(a: &Answer) -> &[u8] {
    match &a.body {
        UpstreamBody::Full(b) => b,
        UpstreamBody::Stream(_) => panic!("a whole body was expected, not a stream"),
    }
}

#[tokio::test]
async fn sequential_requests_share_one_connection_and_send_what_they_were_given() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(read_request(&mut tcp).await);
            tcp.write_all(OK).await.unwrap();
        }
        seen
    });
    let p = pool(addr, Duration::from_secs(5));
    for _ in 0..3 {
        // A second connection would never be answered: the guard turns that hang into a failure.
        let a = tokio::time::timeout(Duration::from_secs(30), post(&p))
            .await
            .expect("a request was not answered: it did not reuse the pooled connection")
            .unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(whole(&a), b"{\"ok\":true}");
    }
    // The server accepted one connection only, and answered all three on it.
    let seen = server.await.unwrap();
    assert!(seen[0].starts_with("POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n"));
    assert!(seen[0].contains(&format!("host: {addr}\r\n")));
    assert!(seen[0].contains("authorization: Bearer sk-test\r\n"));
    assert!(seen[0].ends_with("{\"model\":\"m\"}"));
}

#[tokio::test]
async fn a_body_in_several_chunks_is_read_whole_and_one_in_a_single_chunk_as_it_came() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_request(&mut tcp).await;
        tcp.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n\
              5\r\n{\"ok\"\r\n1\r\n:\r\n5\r\ntrue}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
        read_request(&mut tcp).await;
        tcp.write_all(OK).await.unwrap();
    });
    let p = pool(addr, Duration::from_secs(5));
    assert_eq!(whole(&post(&p).await.unwrap()), b"{\"ok\":true}");
    assert_eq!(whole(&post(&p).await.unwrap()), b"{\"ok\":true}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_without_failing_the_request() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(async move {
        // The first connection answers once and is then closed by the upstream while it waits in the pool,
        // as an idle keep-alive connection is after the upstream's idle timeout.
        let (mut first, _) = listener.accept().await.unwrap();
        read_request(&mut first).await;
        first.write_all(OK).await.unwrap();
        close_rx.await.unwrap();
        drop(first);
        closed_tx.send(()).unwrap();
        let (mut second, _) = listener.accept().await.unwrap();
        read_request(&mut second).await;
        second.write_all(OK).await.unwrap();
    });
    let p = pool(addr, Duration::from_secs(5));
    assert_eq!(post(&p).await.unwrap().status, 200);
    assert_eq!(
        p.idle.lock().unwrap().len(),
        1,
        "the connection went back to the pool"
    );
    close_tx.send(()).unwrap();
    closed_rx.await.unwrap();
    // The pooled connection is closed: the request goes out on a new one instead of failing.
    assert_eq!(post(&p).await.unwrap().status, 200);
    server.await.unwrap();
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_times_out_and_one_that_refuses_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        read_request(&mut tcp).await;
        // Holds the connection open without answering until the client gave up.
        let _ = done_rx.await;
    });
    let p = pool(addr, Duration::from_millis(200));
    assert!(matches!(post(&p).await, Err(ProviderError::Timeout)));
    done_tx.send(()).unwrap();
    server.await.unwrap();

    let refused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = refused.local_addr().unwrap();
    drop(refused);
    let p = pool(addr, Duration::from_secs(5));
    assert!(matches!(post(&p).await, Err(ProviderError::Connect(_))));
}

#[tokio::test]
async fn a_stream_is_read_as_it_arrives_and_its_connection_then_carries_the_next_request() {
    use futures_util::StreamExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (more_tx, more_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let mut tcp = first_event(&listener).await;
        // The rest is sent only once the client has read the first event: it arrives as it is sent.
        more_rx.await.unwrap();
        tcp.write_all(b"e\r\ndata: second\n\n\r\n0\r\n\r\n")
            .await
            .unwrap();
        read_request(&mut tcp).await;
        tcp.write_all(OK).await.unwrap();
    });
    let p = pool(addr, Duration::from_secs(5));
    let a = post_as(&p, true).await.unwrap();
    assert_eq!(a.content_type.as_deref(), Some("text/event-stream"));
    let UpstreamBody::Stream(mut events) = a.body else {
        panic!("an event stream was expected");
    };
    assert_eq!(
        &events.next().await.unwrap().unwrap()[..],
        b"data: first\n\n"
    );
    more_tx.send(()).unwrap();
    assert_eq!(
        &events.next().await.unwrap().unwrap()[..],
        b"data: second\n\n"
    );
    assert!(events.next().await.is_none());
    assert_eq!(
        p.idle.lock().unwrap().len(),
        1,
        "the stream's end gave the connection back"
    );
    // The server accepts one connection only: the next request must go out on the same one.
    let a = tokio::time::timeout(Duration::from_secs(30), post(&p))
        .await
        .expect("the next request did not reuse the stream's connection")
        .unwrap();
    assert_eq!(whole(&a), b"{\"ok\":true}");
    server.await.unwrap();
}

#[tokio::test]
async fn a_stream_that_stalls_ends_with_a_timeout() {
    use futures_util::StreamExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // Held open, without another byte, until the client gave up.
        let _held = first_event(&listener).await;
        let _ = done_rx.await;
    });
    let p = pool(addr, Duration::from_millis(200));
    let UpstreamBody::Stream(mut events) = post_as(&p, true).await.unwrap().body else {
        panic!("an event stream was expected");
    };
    assert!(events.next().await.unwrap().is_ok());
    // The guard turns a stream that never gives up into a failure rather than a hung test.
    let next = tokio::time::timeout(Duration::from_secs(30), events.next())
        .await
        .expect("the stalled stream did not time out");
    assert!(matches!(next, Some(Err(ProviderError::Timeout))));
    assert!(events.next().await.is_none());
    drop(events);
    assert_eq!(
        p.idle.lock().unwrap().len(),
        0,
        "a stalled connection is not reused"
    );
    done_tx.send(()).unwrap();
    server.await.unwrap();
}

#[test]
fn http_and_https_without_a_proxy_take_this_path() {
    let (tls, _) = test_tls();
    let https = reqwest::Url::parse("https://api.openai.com/v1").unwrap();
    let http = reqwest::Url::parse("http://10.0.0.7:8000/v1").unwrap();
    let ipv6 = reqwest::Url::parse("https://[::1]:8443/v1").unwrap();
    let ftp = reqwest::Url::parse("ftp://10.0.0.7/v1").unwrap();
    // The environment may name a proxy (then reqwest keeps the request); without one this path is taken.
    let proxied = |vars: &[&str]| vars.iter().any(|v| std::env::var_os(v).is_some());
    let authority = |url: &reqwest::Url, tls: Option<Arc<rustls::ClientConfig>>| {
        Http1Pool::for_url(url, tls, Duration::ZERO, Duration::ZERO)
            .map(|p| (p.authority, p.tls.is_some()))
    };
    assert_eq!(
        authority(&http, None),
        (!proxied(&PROXY_VARS)).then(|| ("10.0.0.7:8000".to_string(), false))
    );
    assert_eq!(
        authority(&https, Some(Arc::clone(&tls))),
        (!proxied(&TLS_PROXY_VARS)).then(|| ("api.openai.com:443".to_string(), true))
    );
    assert_eq!(
        authority(&ipv6, Some(Arc::clone(&tls))),
        (!proxied(&TLS_PROXY_VARS)).then(|| ("[::1]:8443".to_string(), true))
    );
    // Without TLS settings an HTTPS upstream stays on reqwest, and other schemes always do.
    assert_eq!(authority(&https, None), None);
    assert_eq!(authority(&ftp, Some(tls)), None);
}

/// Client settings that trust only the test CA, and a server that presents the certificate it signed
/// (the repository's `tests/fixtures/tls`).
fn test_tls() -> (Arc<rustls::ClientConfig>, tokio_rustls::TlsAcceptor) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/tls/");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = offering_http1(trusting(&format!("{dir}ca.crt")));
    let certs = CertificateDer::pem_file_iter(format!("{dir}server.crt"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}server.key")).unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (client, tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Client settings that trust the CAs of this file alone, as a configured CA file would.
fn trusting(ca: &str) -> Arc<rustls::ClientConfig> {
    let check = ServerCheck::Full(Roots::File(ca.into()));
    spendgate_store::tls::client_config(&check).unwrap()
}

/// A pool for `https://localhost:{port}/v1` with `tls`, or `None` when the environment names a proxy.
fn tls_pool(port: u16, tls: Arc<rustls::ClientConfig>) -> Option<Arc<Http1Pool>> {
    let url = reqwest::Url::parse(&format!("https://localhost:{port}/v1")).unwrap();
    let pool = Http1Pool::for_url(
        &url,
        Some(tls),
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
    if pool.is_none() {
        eprintln!("skipped: a proxy variable is set, so HTTPS upstreams go through reqwest");
    }
    pool.map(Arc::new)
}

#[tokio::test]
async fn https_upstreams_are_called_over_tls_on_one_reused_connection() {
    let (client, acceptor) = test_tls();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Some(p) = tls_pool(listener.local_addr().unwrap().port(), client) else {
        return;
    };
    // One connection accepted, two requests answered on it: a second connection would never be served.
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut requests = Vec::new();
        for _ in 0..2 {
            requests.push(read_request(&mut tls).await);
            tls.write_all(OK).await.unwrap();
        }
        (alpn, requests)
    });
    for _ in 0..2 {
        let a = post(&p).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(whole(&a), b"{\"ok\":true}");
    }
    let (alpn, requests) = server.await.unwrap();
    // The server would have preferred HTTP/2; this path offers only HTTP/1.1.
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    for r in &requests {
        assert!(
            r.starts_with("POST /v1/chat/completions?api-version=1 HTTP/1.1\r\n"),
            "{r}"
        );
        assert!(r.contains(&format!("host: {}\r\n", p.authority)), "{r}");
        assert!(r.ends_with("{\"model\":\"m\"}"), "{r}");
    }
}

#[tokio::test]
async fn an_https_upstream_whose_certificate_is_not_trusted_is_refused_before_the_request_leaves() {
    let (_, acceptor) = test_tls();
    // Client settings that trust another CA: the upstream's certificate cannot be verified.
    let distrust = offering_http1(trusting(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/tls/other-ca.crt"
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let Some(p) = tls_pool(listener.local_addr().unwrap().port(), distrust) else {
        return;
    };
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // The handshake fails on the client's side, which then closes the connection.
        acceptor.accept(tcp).await.is_err()
    });
    match post(&p).await {
        Err(ProviderError::Connect(message)) => {
            assert!(message.contains("certificate"), "{message}")
        }
        Err(e) => panic!("expected a connect error naming the certificate, got {e}"),
        Ok(a) => panic!("an untrusted upstream answered {}", a.status),
    }
    assert!(
        server.await.unwrap(),
        "the server saw a completed handshake"
    );
}
