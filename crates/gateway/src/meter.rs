//! Metering: turns what happened to a request into one priced [`SpendEvent`] and hands it to the writer.
//!
//! For streams, [`MeteredStream`] passes the upstream's bytes to the client unchanged while reading usage
//! from them. If the client goes away mid-stream, the rest of the upstream stream is still read (in a
//! background task, bounded by the stream time limit) so the request is billed with the usage the provider
//! reports, which is what the provider charges: closing the upstream early would leave us guessing.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{Future, Stream, StreamExt};
use spendgate_core::pricing::{ModelPrice, PriceConfidence};
use spendgate_core::usage::estimate_tokens;
use spendgate_core::{Attribution, FailedAttempt, RequestStatus, SpendEvent, Usage, UsageSource};
use spendgate_store::{Ack, SpendWriter};
use uuid::Uuid;

use crate::provider::{Endpoint, ProviderError};
use crate::routes::Target;
use crate::sse::UsageScanner;
use crate::stats::GatewayStats;

/// Everything known about a request before its answer: enough to price and record it however it ends.
pub struct Meter {
    pub id: Uuid,
    pub writer: SpendWriter,
    pub stats: Arc<GatewayStats>,
    pub gateway: Arc<str>,
    pub provider: Arc<str>,
    pub model: String,
    /// The API the client called (the spend log's `endpoint`).
    pub endpoint: Endpoint,
    /// The API the provider is reached through when the gateway translates the request (`translate`): the
    /// usage is read in its wire format, from the upstream's own bytes.
    pub upstream_api: Option<Endpoint>,
    pub stream: bool,
    pub attribution: Attribution,
    pub price: Arc<ModelPrice>,
    pub confidence: PriceConfidence,
    pub started_at_ms: i64,
    pub started: Instant,
    pub request_bytes: usize,
    /// The request's fingerprint (a hash of endpoint and body) for the retry-loop detector.
    pub fingerprint: Option<u64>,
    /// What budgets and the wallet hold for this request; settled to the exact cost in `finish`.
    pub hold: crate::controls::Hold,
    /// What rate limits counted for this request; corrected to the tokens it used in `finish`.
    pub rate: crate::controls::RateHold,
    /// Upstream calls that failed before the current one (fallbacks and retries).
    pub failed_attempts: Vec<FailedAttempt>,
    /// The cache's ticket for this request: gets the answer and decides the cache outcome.
    pub cache: crate::cache::Ticket,
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter")
            .field("id", &self.id)
            .field("model", &self.model)
            .finish()
    }
}

/// How a request ended, as far as billing is concerned.
#[derive(Debug)]
pub struct Outcome {
    pub status: RequestStatus,
    pub http_status: u16,
    /// Usage the upstream reported, if any.
    pub reported: Option<Usage>,
    /// Output tokens counted from the answer, used when nothing was reported.
    pub counted_output_tokens: u64,
    pub error: Option<String>,
}

impl Meter {
    /// The API whose wire format the upstream's answer is in.
    pub fn wire_endpoint(&self) -> Endpoint {
        self.upstream_api.unwrap_or(self.endpoint)
    }

    /// Points the meter at the target about to be called: its provider and price are the spend log's.
    pub fn aim(&mut self, target: &Target) {
        self.provider = Arc::clone(&target.provider_name);
        self.price = Arc::clone(&target.price);
        self.confidence = target.confidence;
    }

    /// Notes that the call to the current target failed and another one follows.
    pub fn failed_attempt(&mut self, upstream_model: &str, http_status: u16, error: String) {
        self.failed_attempts.push(FailedAttempt {
            provider: self.provider.to_string(),
            model: upstream_model.to_string(),
            http_status,
            error,
        });
    }

    /// Prices the outcome and queues the spend event. The returned [`Ack`] resolves once the event is in the
    /// journal; the response's last byte waits for it.
    pub fn finish(self, outcome: Outcome) -> Ack {
        let (usage, source) = match outcome.reported {
            Some(u) => (u, UsageSource::Reported),
            // A failed upstream call that delivered nothing costs nothing (providers do not bill errors); a
            // success without usage, or a stream that broke off after delivering some of its answer, is counted.
            None if outcome.status == RequestStatus::UpstreamError
                && outcome.counted_output_tokens == 0 =>
            {
                (Usage::default(), UsageSource::Estimated)
            }
            None => (
                Usage {
                    input_tokens: estimate_tokens(self.request_bytes),
                    output_tokens: outcome.counted_output_tokens,
                    cached_input_tokens: 0,
                    cache_write_tokens: 0,
                    ..Usage::default()
                },
                UsageSource::Estimated,
            ),
        };
        let priced = self.price.price(&usage);
        let wallet_id = self.hold.wallet_id();
        let leases = self.hold.lease_ids();
        self.hold.settle(priced.cost);
        self.rate
            .settle(usage.input_tokens.saturating_add(usage.output_tokens));
        let finished_at_ms = spendgate_core::time::now_ms();
        let latency = self.started.elapsed();
        self.stats.observe(latency, outcome.status.is_error());
        self.stats.usage.record(
            self.attribution.team.as_deref(),
            &self.provider,
            &self.model,
            &usage,
            crate::usage_stats::Amounts {
                cost: priced.cost,
                avoided_cost: spendgate_core::Money::ZERO,
                error: outcome.status.is_error(),
            },
        );
        let event = SpendEvent {
            id: self.id,
            started_at_ms: self.started_at_ms,
            finished_at_ms,
            latency_ms: u32::try_from(latency.as_millis()).unwrap_or(u32::MAX),
            gateway: self.gateway.to_string(),
            provider: self.provider.to_string(),
            model: self.model,
            endpoint: self.endpoint.as_str().to_string(),
            stream: self.stream,
            attribution: self.attribution,
            cache_outcome: self.cache.settle(
                outcome.status,
                outcome.http_status,
                outcome.reported,
                &self.provider,
            ),
            status: outcome.status,
            http_status: outcome.http_status,
            usage,
            usage_source: source,
            cost: priced.cost,
            price_confidence: self.confidence.with_usage(source),
            price_lines: priced.billed_lines(),
            error: outcome.error,
            wallet_id,
            fingerprint: self.fingerprint,
            leases,
            attempts: u32::try_from(self.failed_attempts.len() + 1).unwrap_or(u32::MAX),
            failed_attempts: self.failed_attempts,
            avoided_cost: spendgate_core::Money::ZERO,
            upstream_api: self.upstream_api.map(|e| e.as_str().to_string()),
        };
        self.writer.record(event)
    }
}

/// The client-facing body of a streamed answer.
pub struct MeteredStream {
    inner: Option<BoxStream<'static, Result<Bytes, ProviderError>>>,
    scanner: UsageScanner,
    meter: Option<Meter>,
    max_duration: Duration,
    ack: Option<Ack>,
    /// The stream is cut when this fires (`limits.max_stream_seconds`).
    deadline: Pin<Box<tokio::time::Sleep>>,
    _slot: Option<crate::limits::StreamSlot>,
    /// Set when the gateway asked for usage the client did not: takes it out of what the client receives.
    strip: Option<crate::strip::UsageStripper>,
    /// Set when the client speaks another API than the upstream: rebuilds each event in the client's API.
    translate: Option<crate::translate::stream::Translator>,
    /// What the stripper or the translator still held when the upstream ended, sent before the end.
    tail: Option<Bytes>,
}

impl MeteredStream {
    pub fn new(
        inner: BoxStream<'static, Result<Bytes, ProviderError>>,
        meter: Meter,
        max_duration: Duration,
        slot: Option<crate::limits::StreamSlot>,
        strip_usage: bool,
    ) -> Self {
        MeteredStream {
            strip: strip_usage.then(crate::strip::UsageStripper::new),
            translate: None,
            tail: None,
            inner: Some(inner),
            scanner: UsageScanner::for_format(crate::protocol::format_of(meter.wire_endpoint())),
            meter: Some(meter),
            max_duration,
            ack: None,
            deadline: Box::pin(tokio::time::sleep(max_duration)),
            _slot: slot,
        }
    }

    /// Passes the stream to the client through `translator` (after its usage was read from the upstream's bytes).
    pub fn translated(mut self, translator: Option<crate::translate::stream::Translator>) -> Self {
        self.translate = translator;
        self
    }

    /// The upstream's bytes as the client gets them: without the usage it did not ask for, or translated.
    fn for_client(&mut self, bytes: Bytes) -> Bytes {
        if let Some(s) = self.strip.as_mut() {
            return s.feed(bytes);
        }
        match self.translate.as_mut() {
            Some(t) => t.feed(&bytes),
            None => bytes,
        }
    }

    /// What the stripper or the translator still holds when the upstream ended.
    fn held_for_client(&mut self) -> Option<Bytes> {
        if let Some(s) = self.strip.as_mut() {
            return Some(s.finish());
        }
        self.translate
            .as_mut()
            .map(crate::translate::stream::Translator::finish)
    }

    fn finish(&mut self, status: RequestStatus, error: Option<String>) -> Option<Ack> {
        self.meter.take().map(|meter| {
            meter.finish(Outcome {
                status,
                http_status: 200,
                reported: self.scanner.usage(),
                counted_output_tokens: self.scanner.estimated_output_tokens(),
                error,
            })
        })
    }
}

impl Stream for MeteredStream {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(tail) = self.tail.take() {
            return Poll::Ready(Some(Ok(tail)));
        }
        // The stream has ended upstream; its end reaches the client only once the spend event is journaled.
        if let Some(ack) = self.ack.as_mut() {
            return match Pin::new(ack).poll(cx) {
                Poll::Ready(_) => {
                    self.ack = None;
                    Poll::Ready(None)
                }
                Poll::Pending => Poll::Pending,
            };
        }
        if self.inner.is_some() && self.deadline.as_mut().poll(cx).is_ready() {
            self.inner = None;
            let msg = format!(
                "the stream ran past the gateway's limit of {} s",
                self.max_duration.as_secs()
            );
            let _ = self.finish(RequestStatus::UpstreamError, Some(msg.clone()));
            return Poll::Ready(Some(Err(ProviderError::Body(msg))));
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                // Usage is read from the upstream's bytes, before anything is taken out for the client.
                self.scanner.feed(&bytes);
                let bytes = self.for_client(bytes);
                if bytes.is_empty() {
                    // All of it was held or taken out; wait for the next chunk instead of sending nothing.
                    return self.poll_next(cx);
                }
                if let Some(m) = &self.meter {
                    m.cache.feed(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.inner = None;
                // The upstream broke off: bill what it reported or what was delivered, and say so.
                self.finish(
                    RequestStatus::UpstreamError,
                    Some(format!("stream broke off: {e}")),
                );
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.inner = None;
                if let Some(tail) = self.held_for_client() {
                    if !tail.is_empty() {
                        if let Some(m) = &self.meter {
                            m.cache.feed(&tail);
                        }
                        self.tail = Some(tail);
                    }
                }
                // A stream that ends before its final usage or end marker was cut short upstream.
                let (status, error) = if !self.scanner.saw_done() {
                    (
                        RequestStatus::UpstreamError,
                        Some(
                            "the stream ended early, before its end marker or final usage"
                                .to_string(),
                        ),
                    )
                } else if self.scanner.reported().is_none() {
                    (
                        RequestStatus::Ok,
                        Some("the upstream sent no usage; tokens were counted".to_string()),
                    )
                } else {
                    (RequestStatus::Ok, None)
                };
                self.ack = self.finish(status, error);
                if self.ack.is_some() || self.tail.is_some() {
                    return self.poll_next(cx);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        let Some(meter) = self.meter.take() else {
            return;
        };
        // The client went away before the end. Keep reading the upstream to its usage, off the request path.
        let inner = self.inner.take();
        let mut scanner = std::mem::take(&mut self.scanner);
        let max = self.max_duration;
        let finish = move |scanner: &UsageScanner| {
            // Nobody is waiting for this answer any more, so nothing waits for the journal either.
            drop(meter.finish(Outcome {
                status: RequestStatus::ClientDisconnected,
                http_status: 200,
                reported: scanner.usage(),
                counted_output_tokens: scanner.estimated_output_tokens(),
                error: Some("the client disconnected before the end of the stream".into()),
            }));
        };
        match (inner, tokio::runtime::Handle::try_current()) {
            (Some(mut inner), Ok(rt)) => {
                rt.spawn(async move {
                    let drain = async {
                        while let Some(Ok(b)) = inner.next().await {
                            scanner.feed(&b);
                        }
                    };
                    let _ = tokio::time::timeout(max, drain).await;
                    finish(&scanner);
                });
            }
            _ => finish(&scanner),
        }
    }
}
