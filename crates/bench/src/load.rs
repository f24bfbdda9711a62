//! Figures 1, 2 and 5: added latency at fixed rates, the gateway/direct throughput ratio, and freshness.
//!
//! Two processes of the release binary: `spendgate mock-upstream` (zero delay) and `spendgate serve` routing
//! every "openai" catalog model to it, with full metering (key auth from the key cache, pricing, the spend
//! log and the minute/hour/day rollups through the batching writer). Each figure runs the same load straight
//! at the upstream and through the gateway, alternating in slices, so that machine noise hits both sides.

use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::loadgen::{self, fixed_rate, max_rate, Http, Run, Target};
use crate::procs::{self, Child};
use crate::report::Row;
use crate::stats::{milli_str, ms, ratio_milli, Samples};

pub const ADMIN_TOKEN: &str = "sgadm-bench-0123456789abcdef";
const MODEL: &str = "gpt-4o-mini";
const PROMPT: &str = "Summarize the following support ticket and classify its urgency. The customer reports that the \
invoice refund is delayed, the order shipping is late, and asks us to reset the account password please.";

/// The request body: a typical small chat completion (non-streaming or streaming with usage).
pub fn body(stream: bool, max_tokens: u64) -> Bytes {
    let mut v = json!({
        "model": MODEL,
        "messages": [
            { "role": "system", "content": "You are a concise support assistant." },
            { "role": "user", "content": PROMPT },
        ],
        "max_tokens": max_tokens,
    });
    if stream {
        v["stream"] = json!(true);
        v["stream_options"] = json!({ "include_usage": true });
    }
    Bytes::from(v.to_string())
}

/// The upstream and the gateway, with a key for the load and one for the freshness probe.
pub struct Setup {
    pub upstream: Child,
    pub gateway: Child,
    pub key: String,
    pub fresh_key: String,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("gateway", &self.gateway)
            .finish()
    }
}

impl Setup {
    pub async fn start(bin: &Path, work: &Path) -> anyhow::Result<Setup> {
        let upstream = procs::mock_upstream(bin, work).await?;
        let data_dir = procs::fresh_dir(&work.join("gateway-data"))?;
        let key = procs::create_key(bin, &data_dir, "bench-load", "bench")?;
        let fresh_key = procs::create_key(bin, &data_dir, "bench-freshness", "bench")?;
        let config = procs::write_config(work, "gateway", Some(upstream.addr))?;
        let gateway = procs::serve(bin, work, "gateway", &config, &data_dir, ADMIN_TOKEN).await?;
        controls(&gateway.addr.to_string()).await?;
        Ok(Setup {
            upstream,
            gateway,
            key,
            fresh_key,
        })
    }

    pub fn direct(&self, stream: bool) -> anyhow::Result<Target> {
        Ok(Target {
            uri: format!("http://{}/v1/chat/completions", self.upstream.addr).parse()?,
            auth: None,
            body: body(stream, 64),
        })
    }

    pub fn through_gateway(&self, stream: bool, key: &str) -> anyhow::Result<Target> {
        Ok(Target {
            uri: format!("http://{}/v1/chat/completions", self.gateway.addr).parse()?,
            auth: Some(format!("Bearer {key}")),
            body: body(stream, 64),
        })
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.upstream.check_alive()?;
        self.gateway.check_alive()
    }
}

/// A hard monthly budget and a prepaid wallet for the bench team, so that every request through the gateway is
/// checked against both (a hold on each before it is sent, a settlement after) as the "full metering"
/// asks. Both are far larger than any run spends.
async fn controls(addr: &str) -> anyhow::Result<()> {
    let client = loadgen::client();
    let api = format!("http://{addr}/api/v1");
    loadgen::post_json(
        &client,
        &format!("{api}/budgets"),
        ADMIN_TOKEN,
        &serde_json::json!({
            "scope": "team", "subject": "bench", "period": "month", "amount": "1000000", "hard_limit": true
        }),
    )
    .await?;
    loadgen::post_json(
        &client,
        &format!("{api}/wallets"),
        ADMIN_TOKEN,
        &serde_json::json!({ "scope": "team", "subject": "bench", "initial_balance": "1000000" }),
    )
    .await?;
    Ok(())
}

fn us_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Warms both paths: connections, the key cache, the upstream connection pool of the gateway.
pub async fn warm_up(client: &Http, s: &Setup, d: Duration) -> anyhow::Result<()> {
    for stream in [false, true] {
        let direct = fixed_rate(client, &s.direct(stream)?, 500, d, 256).await;
        let gw = fixed_rate(client, &s.through_gateway(stream, &s.key)?, 500, d, 256).await;
        anyhow::ensure!(
            direct.ok > 0 && gw.ok > 0,
            "warm-up failed: direct {} ok / {} errors, gateway {} ok / {} errors (see the logs in the work directory)",
            direct.ok,
            direct.errors,
            gw.ok,
            gw.errors
        );
    }
    Ok(())
}

/// Figure 1: added latency p50/p99 at fixed rates, non-streaming and streaming.
pub async fn added_latency(
    client: &Http,
    s: &mut Setup,
    rates: &[u64],
    per_side: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    // Two alternating slices per side.
    let slice = per_side / 2;
    for stream in [false, true] {
        let mode = if stream { "streaming" } else { "non-streaming" };
        for &rate in rates {
            let (direct_t, gw_t) = (s.direct(stream)?, s.through_gateway(stream, &s.key)?);
            let (mut direct, mut gw) = (Run::default(), Run::default());
            for _ in 0..2 {
                direct.merge(&fixed_rate(client, &direct_t, rate, slice, 1024).await);
                gw.merge(&fixed_rate(client, &gw_t, rate, slice, 1024).await);
            }
            s.check_alive()?;
            let add50 = us_i64(gw.samples.percentile(500)) - us_i64(direct.samples.percentile(500));
            let add99 = us_i64(gw.samples.percentile(990)) - us_i64(direct.samples.percentile(990));
            let label = format!("{mode} @ {rate} rps");
            let errors = gw.errors + gw.dropped + direct.errors + direct.dropped;
            let err_note = if errors > 0 {
                format!(" ({errors} errors/dropped)")
            } else {
                String::new()
            };
            rows.push(Row::new(
                "1 added latency",
                format!("{label} p50"),
                format!("{}{err_note}", ms(add50)),
            ));
            let row99 = Row::new(
                "1 added latency",
                format!("{label} p99"),
                format!(
                    "{} (direct p99 {}, gateway p99 {})",
                    ms(add99),
                    ms(us_i64(direct.samples.percentile(990))),
                    ms(us_i64(gw.samples.percentile(990)))
                ),
            );
            rows.push(if rate == 1000 {
                row99.target("<= 0.300 ms", add99 <= 300 && errors == 0)
            } else {
                row99
            });
            out.push(json!({
                "mode": mode, "rate_rps": rate,
                "added_p50_us": add50, "added_p99_us": add99,
                "direct": direct.json(), "gateway": gw.json(),
            }));
        }
    }
    Ok(Value::Array(out))
}

/// Figure 2: maximum rps through the gateway over maximum rps straight to the upstream (closed loop).
pub async fn throughput(
    client: &Http,
    s: &mut Setup,
    concurrency: usize,
    per_side: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let mut out = Vec::new();
    let slice = per_side / 2;
    for stream in [false, true] {
        let mode = if stream { "streaming" } else { "non-streaming" };
        let (direct_t, gw_t) = (s.direct(stream)?, s.through_gateway(stream, &s.key)?);
        let (mut direct, mut gw) = (Run::default(), Run::default());
        // The gateway's CPU time in its slices: what a request costs it, whatever the machine's other tenants
        // took meanwhile (the rates count that too).
        let mut gw_cpu_ms = 0;
        // And its disk writes, from before its first slice until its writer has stored the last one's requests.
        let written_before = procs::write_bytes(s.gateway.pid())?;
        for _ in 0..2 {
            direct.merge(&max_rate(client, &direct_t, concurrency, slice).await);
            let cpu = procs::cpu_ms(s.gateway.pid())?;
            gw.merge(&max_rate(client, &gw_t, concurrency, slice).await);
            gw_cpu_ms += procs::cpu_ms(s.gateway.pid())?.saturating_sub(cpu);
        }
        s.check_alive()?;
        drained(client, &format!("http://{}", s.gateway.addr)).await?;
        let written = procs::write_bytes(s.gateway.pid())?.saturating_sub(written_before);
        let written_per_request = written.checked_div(gw.ok).unwrap_or(0);
        let ratio = ratio_milli(gw.rps(), direct.rps());
        let cpu_us_per_request = (gw_cpu_ms * 1000).checked_div(gw.ok).unwrap_or(0);
        let row = Row::new(
            "2 throughput",
            format!("{mode} gateway/direct max rps"),
            format!(
                "{} ({} / {} rps, {concurrency} connections; {cpu_us_per_request} us of gateway CPU and {} KB of \
                 disk writes per request)",
                milli_str(ratio),
                gw.rps(),
                direct.rps(),
                milli_str(written_per_request)
            ),
        );
        rows.push(if stream {
            row
        } else {
            row.target(">= 0.500", ratio >= 500 && gw.errors == 0)
        });
        out.push(json!({
            "mode": mode, "concurrency": concurrency, "ratio_milli": ratio,
            "gateway_rps": gw.rps(), "direct_rps": direct.rps(),
            "gateway_cpu_ms": gw_cpu_ms, "gateway_cpu_us_per_request": cpu_us_per_request,
            "gateway_write_bytes": written, "gateway_write_bytes_per_request": written_per_request,
            "direct": direct.json(), "gateway": gw.json(),
        }));
    }
    Ok(Value::Array(out))
}

/// Waits (at most 30 s) until the gateway's writer holds no pending event: its last batch is stored.
async fn drained(client: &Http, base: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let (_, v) =
            loadgen::get_json(client, &format!("{base}/api/v1/status"), ADMIN_TOKEN).await?;
        if v["queue"]["pending"].as_u64() == Some(0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the gateway's writer did not drain within 30 s")
}

async fn summary_requests(client: &Http, base: &str) -> anyhow::Result<u64> {
    user_requests(client, base, "bench-freshness").await
}

/// The requests of `user` in the last hour, from the summary API.
async fn user_requests(client: &Http, base: &str, user: &str) -> anyhow::Result<u64> {
    let (_, v) = loadgen::get_json(
        client,
        &format!("{base}/api/v1/usage/summary?window=1h&user={user}"),
        ADMIN_TOKEN,
    )
    .await?;
    v["requests"]
        .as_u64()
        .context("the summary has no 'requests'")
}

/// Figure 5: delay from the end of a response to its appearance in the summary API, p99, while a background
/// load of `background_rps` runs through the gateway with another key.
pub async fn freshness(
    client: &Http,
    s: &mut Setup,
    samples: usize,
    background_rps: u64,
    budget: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let base = format!("http://{}", s.gateway.addr);
    let probe = s.through_gateway(false, &s.fresh_key)?;
    let bg_target = s.through_gateway(false, &s.key)?;
    let bg_client = client.clone();
    // The gateway's disk writes over this phase, per request it answered: the store's write amplification at a
    // steady rate, a count that the machine's noise does not move.
    let written_before = procs::write_bytes(s.gateway.pid())?;
    let background = tokio::spawn(async move {
        fixed_rate(&bg_client, &bg_target, background_rps, budget, 1024).await
    });
    let started = Instant::now();
    let mut seen = summary_requests(client, &base).await?;
    let mut delays = Samples::default();
    let mut timeouts = 0u64;
    let mut failed = 0u64;
    let mut poll_latency = Samples::default();
    for _ in 0..samples {
        if started.elapsed() > budget {
            break;
        }
        let o = loadgen::send(client, &probe).await;
        let end = Instant::now();
        if !o.ok {
            failed += 1;
            continue;
        }
        let expected = seen + 1;
        loop {
            let t = Instant::now();
            let n = summary_requests(client, &base).await?;
            poll_latency.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
            if n >= expected {
                delays.push(u64::try_from(end.elapsed().as_micros()).unwrap_or(u64::MAX));
                seen = n;
                break;
            }
            if end.elapsed() > Duration::from_secs(5) {
                timeouts += 1;
                seen = n;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut bg = background.await.context("the background load failed")?;
    s.check_alive()?;
    let written = procs::write_bytes(s.gateway.pid())?.saturating_sub(written_before);
    let answered = bg.ok + delays.len() as u64 + timeouts;
    let per_request = written.checked_div(answered).unwrap_or(0);
    rows.push(Row::new(
        "5 freshness",
        format!("gateway disk writes per request ({answered} requests)"),
        format!("{} KB", milli_str(per_request)),
    ));
    let p99 = delays.percentile(990);
    rows.push(Row::new(
        "5 freshness",
        "response end -> summary API p50",
        ms(us_i64(delays.percentile(500))),
    ));
    rows.push(
        Row::new(
            "5 freshness",
            format!(
                "response end -> summary API p99 ({} samples, {background_rps} rps background)",
                delays.len()
            ),
            format!(
                "{}{}",
                ms(us_i64(p99)),
                if timeouts > 0 {
                    format!(" ({timeouts} not seen within 5 s)")
                } else {
                    String::new()
                }
            ),
        )
        .target(
            "<= 1 s",
            p99 <= 1_000_000 && timeouts == 0 && delays.len() > 0,
        ),
    );
    Ok(json!({
        "delay": delays.summary(),
        "timeouts": timeouts,
        "failed_requests": failed,
        "summary_poll_latency": poll_latency.summary(),
        "gateway_write_bytes": written,
        "gateway_write_bytes_per_request": per_request,
        "background": bg.json(),
        "background_rps": background_rps,
    }))
}

/// Figure 5's disk writes, per request, at each fixed rate in turn while nobody reads: no page is open and no API
/// call is made, so the writer may hold its batches for its quiet interval. After each rate, one summary read:
/// how long it took (it has the writer commit what waits) and how many of the rate's requests it counted.
pub async fn disk(
    client: &Http,
    s: &mut Setup,
    rates: &[u64],
    per_rate: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    let base = format!("http://{}", s.gateway.addr);
    let target = s.through_gateway(false, &s.key)?;
    // The warm-up's requests, counted once so that each rate's are told apart.
    drained(client, &base).await?;
    let mut counted = user_requests(client, &base, "bench-load").await?;
    let mut out = Vec::new();
    for &rps in rates {
        let before = procs::write_bytes(s.gateway.pid())?;
        let run = fixed_rate(client, &target, rps, per_rate, 1024).await;
        s.check_alive()?;
        let written = procs::write_bytes(s.gateway.pid())?.saturating_sub(before);
        let per_request = written.checked_div(run.ok).unwrap_or(0);
        let t = Instant::now();
        let now_counted = user_requests(client, &base, "bench-load").await?;
        let read_us = u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        let seen = now_counted.saturating_sub(counted);
        counted = now_counted;
        rows.push(
            Row::new(
                "5 disk",
                format!(
                    "disk writes per request at {rps} rps, nobody reading ({} requests)",
                    run.ok
                ),
                format!("{} KB", milli_str(per_request)),
            )
            .target("<= 2 KB", per_request <= 2048),
        );
        rows.push(Row::new(
            "5 disk",
            format!("the first read after {rps} rps: requests counted / sent, its time"),
            format!("{seen} / {}, {}", run.ok, ms(us_i64(read_us))),
        ));
        out.push(json!({
            "rps": rps,
            "requests": run.ok,
            "errors": run.errors,
            "gateway_write_bytes": written,
            "gateway_write_bytes_per_request": per_request,
            "first_read_counted": seen,
            "first_read_us": read_us,
        }));
    }
    Ok(Value::Array(out))
}

/// Figure 6: gateway RSS while 1,000 streams are open through it. The upstream is an in-process mock whose
/// streams send one chunk every `chunk_delay`, so each stream stays open for `hold`.
pub async fn rss(
    bin: &Path,
    work: &Path,
    streams: usize,
    hold: Duration,
    rows: &mut Vec<Row>,
) -> anyhow::Result<Value> {
    use spendgate_gateway::provider::Endpoint;
    use spendgate_gateway::providers::{mock::mock_usage, MockConfig, MockProvider};

    let stream_body = body(true, 16);
    let usage = mock_usage(Endpoint::ChatCompletions, &stream_body, Some(16), 1);
    // Role chunk, one per output token, the stop chunk, the usage chunk, [DONE]; the mock waits before each.
    let chunks = u32::try_from(usage.output_tokens + 4).unwrap_or(20);
    let chunk_delay = hold / chunks;
    let mock = MockProvider::new(MockConfig {
        name: "openai".into(),
        latency: Duration::ZERO,
        chunk_delay,
        fault: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = listener.local_addr()?;
    let router = spendgate_gateway::mock_upstream_router(Arc::new(mock));
    let upstream = tokio::spawn(async move { axum::serve(listener, router).await });

    let data_dir = procs::fresh_dir(&work.join("rss-data"))?;
    let key = procs::create_key(bin, &data_dir, "bench-rss", "bench")?;
    let config = procs::write_config(work, "rss-gateway", Some(up_addr))?;
    let mut gw = procs::serve(bin, work, "rss-gateway", &config, &data_dir, ADMIN_TOKEN).await?;
    let target = Target {
        uri: format!("http://{}/v1/chat/completions", gw.addr).parse()?,
        auth: Some(format!("Bearer {key}")),
        body: stream_body,
    };
    let client = loadgen::client();
    // Warm up: a few streams, so the baseline includes a started runtime, pools and the key cache.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (c, t) = (client.clone(), target.clone());
        warm.spawn(async move { loadgen::send(&c, &t).await });
    }
    while warm.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gw.pid();
    let idle_kb = procs::proc_status_kb(pid, "VmRSS")?;

    let open = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..streams {
        let (c, t, open) = (client.clone(), target.clone(), Arc::clone(&open));
        set.spawn(async move { loadgen::send_tracked(&c, &t, &open).await });
        // Ramp up in steps of 50 so that connection set-up is not one burst of 1,000 SYNs.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut peak_kb = 0u64;
    let mut peak_open = 0usize;
    let mut kb_at_peak_open = 0u64;
    let deadline = Instant::now() + hold * 3 + Duration::from_secs(30);
    while !set.is_empty() && Instant::now() < deadline {
        let now_open = open.load(std::sync::atomic::Ordering::Relaxed);
        if let Ok(kb) = procs::proc_status_kb(pid, "VmRSS") {
            peak_kb = peak_kb.max(kb);
            if now_open >= peak_open {
                peak_open = now_open;
                kb_at_peak_open = kb;
            }
        }
        while set.try_join_next().is_some() {}
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut run = Run::default();
    while let Some(r) = set.try_join_next() {
        if let Ok(o) = r {
            if o.ok {
                run.ok += 1;
            } else {
                run.errors += 1;
            }
        }
    }
    run.errors += set.len() as u64;
    set.abort_all();
    let hwm_kb = procs::proc_status_kb(pid, "VmHWM").unwrap_or(0);
    gw.check_alive()?;
    drop(gw);
    upstream.abort();
    let mb = |kb: u64| format!("{}.{} MB", kb / 1024, kb % 1024 * 10 / 1024);
    rows.push(Row::new(
        "6 memory",
        "gateway RSS idle (after warm-up)",
        mb(idle_kb),
    ));
    rows.push(
        Row::new(
            "6 memory",
            format!("gateway RSS peak with {peak_open} streams open at once (of {streams})"),
            mb(peak_kb),
        )
        .target("<= 64 MB", peak_kb <= 64 * 1024 && peak_open >= streams),
    );
    Ok(json!({
        "streams": streams,
        "peak_open_streams": peak_open,
        "hold_ms": u64::try_from(hold.as_millis()).unwrap_or(0),
        "chunk_delay_ms": u64::try_from(chunk_delay.as_millis()).unwrap_or(0),
        "idle_rss_kb": idle_kb,
        "peak_rss_kb": peak_kb,
        "rss_kb_at_peak_open": kb_at_peak_open,
        "vm_hwm_kb": hwm_kb,
        "completed_ok": run.ok,
        "errors": run.errors,
        "elapsed_ms": u64::try_from(start.elapsed().as_millis()).unwrap_or(0),
    }))
}
