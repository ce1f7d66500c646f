//! Connections: the accept loop and what bounds each connection, so that no client — slow,
//! sloppy or hostile — can take the server off the air.
//!
//! - Admission (`tracker`): at most `connections_max` open and `connections_per_ip_max` per
//!   address; a full table evicts the connection that has waited longest for a request
//!   (never one serving a request or a WebSocket), so a health check always gets in.
//! - Deadlines on the socket (`io`): idle keep-alive, request head, and stalled writes.
//! - The file-descriptor budget: the bound is checked against `RLIMIT_NOFILE` at start-up
//!   (the soft limit is raised to what is needed, up to the hard limit), so the process never
//!   runs out of descriptors and `accept` keeps working under any number of clients.
//!
//! The body deadline (408) is the HTTP layer's (`http::body`): it is a property of a
//! request, answered with a problem document, not a socket matter.

mod io;
mod tracker;

pub use io::Deadlines;
pub use tracker::{Bounds, Refusal};

use crate::log_throttle::LogThrottle;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracker::{SlotGuard, Tracker};

/// Descriptors the process needs besides client connections: the store keeps up to 900
/// table files open (fjall's descriptor cache) plus its journals and keyspaces, and there are
/// the listener, the outbox file, Redis, logs and the runtime's own.
pub const FDS_RESERVED: u64 = 1024;

/// Fewest connections the server runs with (a lower open-file limit stops start-up).
pub const CONNECTIONS_MIN: usize = 16;

/// Connection settings, from `[http]`.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Admission bounds.
    pub bounds: Bounds,
    /// Socket deadlines.
    pub deadlines: Deadlines,
    /// Largest request head (hyper's read buffer; a larger head is answered 431).
    pub header_bytes_max: usize,
    /// `Retry-After` of the 503 a refused connection is sent.
    pub retry_after_secs: u32,
}

/// Raises the soft `RLIMIT_NOFILE` so that `connections` connections (with the eviction room
/// of the tracker) and [`FDS_RESERVED`] fit, up to the hard limit; returns the connections
/// that fit under the resulting limit (the configured number when it fits).
pub fn fit_descriptor_limit(connections: usize) -> usize {
    let closing_room = connections / 16 + 16;
    let needed = (connections + closing_room) as u64 + FDS_RESERVED;
    let limit = raise_nofile(needed);
    if limit >= needed {
        return connections;
    }
    // (fit + fit/16 + 16) + reserved <= limit
    let fit = limit.saturating_sub(FDS_RESERVED + 16) * 16 / 17;
    fit as usize
}

#[cfg(unix)]
fn raise_nofile(needed: u64) -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return current;
    }
    let target = limit.maximum.map_or(needed, |max| needed.min(max));
    let raised = rustix::process::Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => target,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            current
        }
    }
}

#[cfg(not(unix))]
fn raise_nofile(_needed: u64) -> u64 {
    u64::MAX
}

/// Serves each listener's router (the API, and the admin listener when configured) until
/// `shutdown` turns true; then stops accepting, lets every connection finish its requests
/// (idle ones close at once), and returns when all connection tasks ended. The caller bounds
/// that wait with its grace period. The listeners share one connection table: its bound is the
/// process's descriptor budget, and its eviction lets a health check in on either.
pub async fn serve(
    listeners: Vec<(TcpListener, Router)>,
    settings: Settings,
    shutdown: watch::Receiver<bool>,
) {
    let tracker = Tracker::new(settings.bounds);
    metrics::gauge!("regengine_http_connections_max").set(settings.bounds.connections_max as f64);
    let (alive_tx, alive_rx) = watch::channel(());
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|(listener, router)| {
            tokio::spawn(accept_loop(
                listener,
                router,
                tracker.clone(),
                settings,
                shutdown.clone(),
                alive_rx.clone(),
            ))
        })
        .collect();
    drop(alive_rx);
    for accepting in loops {
        if let Err(e) = accepting.await {
            tracing::error!(error = %e, "an accept loop failed");
        }
    }
    // Every connection task holds a receiver: this resolves when the last one ended.
    alive_tx.closed().await;
}

/// Accepts connections on one listener until shutdown; each connection task holds a clone of
/// `alive` until it ends.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tracker: Arc<Tracker>,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
    alive_rx: watch::Receiver<()>,
) {
    let refusals = LogThrottle::default();
    let refusal_reply = refusal_reply(settings.retry_after_secs);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(e, &refusals).await;
                continue;
            }
        };
        let place = match tracker.admit(peer.ip()).await {
            Ok((place, evicted)) => {
                if evicted {
                    metrics::counter!("regengine_http_connections_closed_total", "reason" => "evicted")
                        .increment(1);
                }
                place
            }
            Err(refusal) => {
                // Best effort, never waiting: an HTTP/1 client reads why before the close.
                let _ = tcp.try_write(&refusal_reply);
                refused(refusal, peer, &refusals);
                continue;
            }
        };
        metrics::gauge!("regengine_http_connections_open").set(tracker.open() as f64);
        // No Nagle: answers are small and already batched per write (a WebSocket
        // connection's queued frames go out in one write); with Nagle, a small write behind
        // an unacknowledged one waits for the peer's delayed ACK (tens of milliseconds).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let connection = connection(
            tcp,
            peer,
            Arc::new(place),
            router.clone(),
            settings,
            shutdown.clone(),
        );
        let alive = alive_rx.clone();
        tokio::spawn(async move {
            connection.await;
            drop(alive);
        });
    }
}

/// Serves one connection until it ends, is evicted, or (after shutdown began) has finished
/// its requests.
async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    place: Arc<SlotGuard>,
    router: Router,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) {
    let io = TokioIo::new(io::GuardedIo::new(tcp, place.clone(), settings.deadlines));
    let service = RequestService {
        router,
        peer,
        place: place.clone(),
    };
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().max_buf_size(settings.header_bytes_max);
    // CONNECT protocol, for WebSockets over HTTP/2 (as axum::serve enables it).
    builder.http2().enable_connect_protocol();
    let mut conn = pin!(builder.serve_connection_with_upgrades(io, service));
    let evicted = place.slot().evicted();
    let mut evicted = pin!(evicted);
    // The evictor sets the flag before it notifies: a choice made before `evicted` existed
    // is seen here.
    if place.slot().is_evicting() {
        return;
    }
    let (mut draining, mut evict_seen) = (false, false);
    loop {
        tokio::select! {
            biased;
            _ = evicted.as_mut(), if !evict_seen => {
                // Chosen while waiting, but a request may have started since: let it finish
                // (hyper closes the connection after it), never cut it.
                if !place.slot().is_busy() {
                    return;
                }
                evict_seen = true;
                if !draining {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.wait_for(|stop| *stop), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The router as a hyper service for one connection: records the peer address for the
/// handlers (rate limits), and tells the connection's place when a request starts, when its
/// response (body included) ended, and when it became a WebSocket.
#[derive(Clone)]
struct RequestService {
    router: Router,
    peer: SocketAddr,
    place: Arc<SlotGuard>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for RequestService {
    type Response = hyper::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut request: hyper::Request<Incoming>) -> Self::Future {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        // A WebSocket over HTTP/2 is an extended CONNECT answered 200, not a 101.
        let tunnel = request.method() == axum::http::Method::CONNECT;
        self.place.slot().request_started();
        let done = RequestDone(self.place.clone());
        let mut router = self.router.clone();
        Box::pin(async move {
            let response = tower::Service::call(&mut router, request)
                .await
                .unwrap_or_else(|never| match never {});
            let status = response.status();
            if status == axum::http::StatusCode::SWITCHING_PROTOCOLS
                || tunnel && status.is_success()
            {
                done.0.slot().upgraded();
            }
            Ok(response.map(|body| {
                Body::new(TrackedBody {
                    inner: body,
                    _done: done,
                })
            }))
        })
    }
}

/// Ends the request on the connection's place when dropped: with the response body (hyper
/// drops it once written, or when the connection dies), or with the request future if it
/// never produced a response.
struct RequestDone(Arc<SlotGuard>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.slot().request_ended(self.0.now_ms());
    }
}

/// A response body that ends its request when dropped.
struct TrackedBody {
    inner: Body,
    _done: RequestDone,
}

impl http_body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// What a refused connection is told: 503, retry later, closing.
fn refusal_reply(retry_after_secs: u32) -> Vec<u8> {
    use crate::http::error::ApiError;
    let body = serde_json::to_vec(&ApiError::Overloaded.problem()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: {}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        retry_after_secs,
        body.len()
    );
    [head.into_bytes(), body].concat()
}

/// Logs a refused connection, at most once per [`LogThrottle::PERIOD_MS`] with the number
/// refused meanwhile; every refusal is counted in `http_connections_refused_total`.
fn refused(refusal: Refusal, peer: SocketAddr, throttle: &LogThrottle) {
    metrics::counter!("regengine_http_connections_refused_total", "reason" => refusal.label())
        .increment(1);
    if let Some(suppressed) = throttle.admit() {
        tracing::warn!(
            reason = refusal.label(),
            %peer,
            refused_since_last_line = suppressed,
            "connection refused: too many open connections"
        );
    }
}

/// An `accept` that failed. Out of descriptors (which the budget should prevent: something
/// else used them) or memory: wait a moment so the loop does not spin, and log rarely.
async fn accept_failed(e: std::io::Error, throttle: &LogThrottle) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    metrics::counter!("regengine_http_accept_errors_total").increment(1);
    if let Some(suppressed) = throttle.admit() {
        tracing::error!(error = %e, failed_since_last_line = suppressed, "accept failed");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}
