//! The load generator: a small HTTP/1.1 client (hyper, keep-alive connections, TCP_NODELAY) with an open-loop
//! fixed-rate mode and a closed-loop maximum-rate mode.
//!
//! Fixed rate: request `i` is due at `start + i / rate`; the pacer wakes on tokio's timer (1 ms resolution),
//! sends every request that is due, each in its own task, without waiting for earlier answers (open loop: a slow
//! answer does not slow the offered load). Latency is measured per request from just before it is written to
//! the end of its response body (the last byte of a stream), so it is the same measure for the gateway and
//! for the upstream, and the difference of the two is what the gateway adds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::stats::{per_sec, Samples};

pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(c)
}

/// Where requests go and what they carry.
#[derive(Debug, Clone)]
pub struct Target {
    pub uri: hyper::Uri,
    pub auth: Option<String>,
    pub body: Bytes,
}

#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub latency_us: u64,
    pub ok: bool,
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn request(t: &Target) -> Option<hyper::Request<Full<Bytes>>> {
    let mut b = hyper::Request::post(t.uri.clone()).header("content-type", "application/json");
    if let Some(a) = &t.auth {
        b = b.header("authorization", a.as_str());
    }
    b.body(Full::new(t.body.clone())).ok()
}

/// Sends one request and reads its whole answer.
pub async fn send(client: &Http, t: &Target) -> Outcome {
    let Some(req) = request(t) else {
        return Outcome {
            latency_us: 0,
            ok: false,
        };
    };
    let start = Instant::now();
    let ok = match client.request(req).await {
        Ok(res) => {
            let status_ok = res.status().is_success();
            res.into_body().collect().await.is_ok() && status_ok
        }
        Err(_) => false,
    };
    Outcome {
        latency_us: elapsed_us(start),
        ok,
    }
}

/// Sends one request and calls `on_head` when its response head arrives (to count open streams).
pub async fn send_tracked(client: &Http, t: &Target, open: &AtomicUsize) -> Outcome {
    let Some(req) = request(t) else {
        return Outcome {
            latency_us: 0,
            ok: false,
        };
    };
    let start = Instant::now();
    let ok = match client.request(req).await {
        Ok(res) => {
            open.fetch_add(1, Ordering::Relaxed);
            let status_ok = res.status().is_success();
            let read = res.into_body().collect().await.is_ok();
            open.fetch_sub(1, Ordering::Relaxed);
            read && status_ok
        }
        Err(_) => false,
    };
    Outcome {
        latency_us: elapsed_us(start),
        ok,
    }
}

/// What a load run measured. Latencies are of successful requests only.
#[derive(Debug, Default, Clone)]
pub struct Run {
    pub samples: Samples,
    pub ok: u64,
    pub errors: u64,
    /// Fixed rate: requests not sent because too many were already in flight.
    pub dropped: u64,
    pub elapsed_us: u64,
}

impl Run {
    fn record(&mut self, o: Outcome) {
        if o.ok {
            self.ok += 1;
            self.samples.push(o.latency_us);
        } else {
            self.errors += 1;
        }
    }

    pub fn merge(&mut self, o: &Run) {
        self.samples.extend(&o.samples);
        self.ok += o.ok;
        self.errors += o.errors;
        self.dropped += o.dropped;
        self.elapsed_us += o.elapsed_us;
    }

    pub fn rps(&self) -> u64 {
        per_sec(self.ok, self.elapsed_us)
    }

    pub fn json(&mut self) -> Value {
        json!({
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "elapsed_us": self.elapsed_us,
            "achieved_rps": self.rps(),
            "latency": self.samples.summary(),
        })
    }
}

/// Offers `rate` requests per second for `duration`, open loop, at most `max_inflight` at once.
pub async fn fixed_rate(
    client: &Http,
    t: &Target,
    rate: u64,
    duration: Duration,
    max_inflight: usize,
) -> Run {
    let rate = rate.max(1);
    let total = u64::try_from(u128::from(rate) * duration.as_millis() / 1000)
        .unwrap_or(u64::MAX)
        .max(1);
    let interval_ns = 1_000_000_000 / rate;
    let inflight = Arc::new(AtomicUsize::new(0));
    let mut run = Run::default();
    let mut set = JoinSet::new();
    let start = Instant::now();
    let t0 = tokio::time::Instant::now();
    for i in 0..total {
        let due = t0 + Duration::from_nanos(i.saturating_mul(interval_ns));
        if tokio::time::Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
        while let Some(done) = set.try_join_next() {
            match done {
                Ok(o) => run.record(o),
                Err(_) => run.errors += 1,
            }
        }
        if inflight.load(Ordering::Relaxed) >= max_inflight {
            run.dropped += 1;
            continue;
        }
        inflight.fetch_add(1, Ordering::Relaxed);
        let (client, t, inflight) = (client.clone(), t.clone(), Arc::clone(&inflight));
        set.spawn(async move {
            let o = send(&client, &t).await;
            inflight.fetch_sub(1, Ordering::Relaxed);
            o
        });
    }
    // Bounded: whatever has not answered 30 s after the last send counts as an error.
    let drain = async {
        while let Some(done) = set.join_next().await {
            match done {
                Ok(o) => run.record(o),
                Err(_) => run.errors += 1,
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        run.errors += set.len() as u64;
        set.abort_all();
    }
    run.elapsed_us = elapsed_us(start);
    run
}

/// Closed loop: `concurrency` workers each send the next request as soon as the previous one is answered,
/// for `duration`. The number answered per second is the maximum rate at that concurrency.
pub async fn max_rate(client: &Http, t: &Target, concurrency: usize, duration: Duration) -> Run {
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, t) = (client.clone(), t.clone());
        set.spawn(async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                run.record(send(&client, &t).await);
            }
            run
        });
    }
    let mut total = Run::default();
    let drain = async {
        while let Some(done) = set.join_next().await {
            if let Ok(r) = done {
                total.merge(&r);
            }
        }
    };
    if tokio::time::timeout(duration + Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        set.abort_all();
    }
    total.elapsed_us = elapsed_us(start);
    total
}

/// GETs `uri` with a bearer token and parses the JSON answer. Returns (latency in µs, body).
pub async fn get_json(client: &Http, uri: &str, token: &str) -> anyhow::Result<(u64, Value)> {
    let req = hyper::Request::get(uri)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))?;
    send_json(client, req, "GET", uri).await
}

/// POSTs `body` as JSON to `uri` with a bearer token and parses the JSON answer.
pub async fn post_json(
    client: &Http,
    uri: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let req = hyper::Request::post(uri)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
    Ok(send_json(client, req, "POST", uri).await?.1)
}

async fn send_json(
    client: &Http,
    req: hyper::Request<Full<Bytes>>,
    method: &str,
    uri: &str,
) -> anyhow::Result<(u64, Value)> {
    let start = Instant::now();
    let res = client.request(req).await?;
    let status = res.status();
    let body = res.into_body().collect().await?.to_bytes();
    let us = elapsed_us(start);
    anyhow::ensure!(
        status.is_success(),
        "{method} {uri} answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok((us, serde_json::from_slice(&body)?))
}
