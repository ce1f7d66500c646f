//! The socket of one connection, with its deadlines enforced where the bytes move:
//! - waiting for a request with no byte of it yet (just accepted, or between keep-alive
//!   requests): closed after `keep_alive`;
//! - part of a request head arrived: the rest must follow within `header` of its first byte
//!   (a slowloris client that sends a header line every few seconds is closed);
//! - a write that cannot progress (the peer stopped reading: a streamed export nobody reads,
//!   a WebSocket whose client froze) fails after `write`, which closes the connection.
//!
//! On an HTTP/2 connection (it opens with the preface) bytes between requests are frames
//! (pings, window updates), so only the idle deadline applies there.
//!
//! A read that times out or a write that stalls returns `TimedOut` to hyper, which drops the
//! connection. While requests are in flight there is no read deadline here (the body has its
//! own, answered 408, and the request its own, answered 503); an upgraded connection (a
//! WebSocket) has none either.

use super::tracker::{SlotGuard, Waiting};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// How an HTTP/2 connection starts (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The three deadlines.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// Waiting for the first byte of a request.
    pub keep_alive: Duration,
    /// From a request's first byte to the end of its head.
    pub header: Duration,
    /// A write that makes no progress.
    pub write: Duration,
}

/// A timer armed for an instant, reset only when the instant changes.
struct Timer {
    at: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Timer {
    /// Arms (or re-arms) the timer for `at` and polls it.
    fn poll_at(slot: &mut Option<Timer>, at: Instant, cx: &mut Context<'_>) -> Poll<()> {
        match slot {
            Some(timer) if timer.at == at => {}
            Some(timer) => {
                timer.sleep.as_mut().reset(at);
                timer.at = at;
            }
            None => {
                *slot = Some(Timer {
                    at,
                    sleep: Box::pin(tokio::time::sleep_until(at)),
                })
            }
        }
        match slot {
            Some(timer) => timer.sleep.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// The socket of an admitted connection; dropping it frees the connection's place.
pub struct GuardedIo {
    inner: TcpStream,
    place: Arc<SlotGuard>,
    deadlines: Deadlines,
    read_timer: Option<Timer>,
    /// The first bytes were looked at (for the HTTP/2 preface).
    protocol_known: bool,
    /// When the current stalled write started, and its timer.
    write_stalled: Option<Instant>,
    write_timer: Option<Timer>,
}

impl GuardedIo {
    /// Wraps an accepted socket.
    pub fn new(inner: TcpStream, place: Arc<SlotGuard>, deadlines: Deadlines) -> Self {
        Self {
            inner,
            place,
            deadlines,
            read_timer: None,
            protocol_known: false,
            write_stalled: None,
            write_timer: None,
        }
    }

    /// The read side found nothing: if the connection is waiting for a request, arm its
    /// deadline and fail the read once it passed.
    fn poll_read_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let slot = self.place.slot();
        let Some(waiting) = slot.waiting() else {
            slot.park_reader(cx.waker());
            // The request may have ended between the look and the registration.
            if slot.waiting().is_some() {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        };
        let (deadline_ms, reason) = match waiting {
            Waiting::Idle { since_ms } => (since_ms + millis(self.deadlines.keep_alive), "idle"),
            Waiting::Head { since_ms } => (since_ms + millis(self.deadlines.header), "header"),
        };
        let at = self.place.instant_at(deadline_ms);
        match Timer::poll_at(&mut self.read_timer, at, cx) {
            Poll::Ready(()) => {
                metrics::counter!("regengine_http_connections_closed_total", "reason" => reason)
                    .increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{reason} timeout"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// A write could not progress: start (or continue) the stall clock, failing it once the
    /// write deadline passed; any progress stops the clock.
    fn on_write<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.write_stalled = None;
            return result;
        }
        let since = *self.write_stalled.get_or_insert_with(Instant::now);
        match Timer::poll_at(&mut self.write_timer, since + self.deadlines.write, cx) {
            Poll::Ready(()) => {
                metrics::counter!("regengine_http_connections_closed_total", "reason" => "write")
                    .increment(1);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "write timeout: the peer stopped reading",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let place = &this.place;
                    if !this.protocol_known {
                        // The preface comes whole in the first segment in practice; a client
                        // that splits it is treated as HTTP/1 (only deadlines differ).
                        this.protocol_known = true;
                        if buf.filled()[before..].starts_with(HTTP2_PREFACE) {
                            place.slot().speaks_http2();
                        }
                    }
                    place.slot().bytes_arrived(|| place.now_ms());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.poll_read_deadline(cx),
            failed => failed,
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(result, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(result, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(result, cx)
    }
}
