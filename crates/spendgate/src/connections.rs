//! How long a client connection may keep the server waiting for a request.
//!
//! hyper's HTTP/1 server has one timer for this: its header read timeout, which starts when the server begins
//! waiting for a request (on a new connection, or after the previous answer on a kept-alive one) and ends when
//! the request's headers are in. So it cannot tell a client that keeps an idle connection for its next request
//! from one that started a request and stalls in the middle of its headers. Here hyper's timer is given a clock
//! that can: the connection's reads note when the first byte of the awaited request arrived, and the sleep hyper
//! waits on ends
//!
//! - on a new connection, `header` after it was accepted (a client that connects has something to say);
//! - on a kept-alive connection, `idle` after the previous answer while nothing arrives, and `header` after the
//!   first byte of the next request once something does.
//!
//! When the sleep ends, hyper closes the connection. Requests in progress are not timed here: hyper waits for a
//! request's head only between requests.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The time limits of a connection waiting for a request.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// From a new connection's start, or from the first byte of a request on a kept-alive one, until the
    /// request's headers are complete.
    pub header: Duration,
    /// From the end of an answer until the first byte of the next request on a kept-alive connection.
    pub idle: Duration,
}

/// What a connection's reads tell its timer.
#[derive(Debug)]
struct Clock {
    /// Times below are nanoseconds after this, plus one (zero stands for none).
    origin: Instant,
    /// When the first byte arrived since the server began waiting for the current request.
    first_byte: AtomicU64,
    /// Whether the server has waited for a request on this connection before.
    kept_alive: AtomicBool,
}

impl Clock {
    fn first_byte(&self) -> Option<Instant> {
        match self.first_byte.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n - 1)),
        }
    }

    fn note_read(&self) {
        // Only the first read of a wait asks for the time.
        if self.first_byte.load(Ordering::Relaxed) == 0 {
            let n = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1;
            self.first_byte.store(n, Ordering::Relaxed);
        }
    }
}

/// A connection's socket (or any IO) with its reads noted for the connection's timer.
#[derive(Debug)]
pub struct Watched<I> {
    io: I,
    clock: Arc<Clock>,
}

/// hyper's timer for one connection (see the module's documentation).
#[derive(Debug, Clone)]
pub struct HeadTimer {
    clock: Arc<Clock>,
    deadlines: Deadlines,
}

/// Wraps a new connection's IO; returns it with the timer to give hyper for this connection.
pub fn watch<I>(io: I, deadlines: Deadlines) -> (Watched<I>, HeadTimer) {
    let clock = Arc::new(Clock {
        origin: Instant::now(),
        first_byte: AtomicU64::new(0),
        kept_alive: AtomicBool::new(false),
    });
    (
        Watched {
            io,
            clock: Arc::clone(&clock),
        },
        HeadTimer { clock, deadlines },
    )
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        hyper_util::rt::TokioTimer::new().sleep(duration)
    }

    /// hyper asks for this sleep when it begins waiting for a request's head (its deadline is hyper's own idea of
    /// the header timeout, replaced here by the connection's deadlines).
    fn sleep_until(&self, _deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let started = Instant::now();
        let kept_alive = self.clock.kept_alive.swap(true, Ordering::Relaxed);
        self.clock.first_byte.store(0, Ordering::Relaxed);
        let first = if kept_alive {
            self.deadlines.idle
        } else {
            self.deadlines.header
        };
        Box::pin(HeadWait {
            clock: Arc::clone(&self.clock),
            deadlines: self.deadlines,
            started,
            kept_alive,
            sleep: Box::pin(tokio::time::sleep_until((started + first).into())),
        })
    }
}

/// The wait for one request's head.
struct HeadWait {
    clock: Arc<Clock>,
    deadlines: Deadlines,
    started: Instant,
    kept_alive: bool,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl HeadWait {
    /// When the wait ends, given what has arrived so far.
    fn deadline(&self) -> Instant {
        match self.clock.first_byte() {
            Some(at) if self.kept_alive => at + self.deadlines.header,
            None if self.kept_alive => self.started + self.deadlines.idle,
            _ => self.started + self.deadlines.header,
        }
    }
}

impl Future for HeadWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this each time the connection yields without a complete head, so a first byte that moved
        // the deadline is seen here before the old deadline could end the wait.
        let deadline = tokio::time::Instant::from(self.deadline());
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for HeadWait {}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.note_read();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
