//! Slow and hostile clients must not take the server off the air: slowloris heads and silent
//! connections are closed at their deadlines, a full connection table evicts waiting
//! connections so health checks still get in, a trickled body gets 408, an export nobody
//! reads is cut at the write deadline, and a low open-file limit never starves `accept`.
//! Timings are printed (the closing figures of the hardening issue), and only the configured
//! deadlines are asserted, with generous slack.

use std::time::{Duration, Instant};
use tests::{Api, Server, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const HEADER_MS: u64 = 1000;
const KEEP_ALIVE_MS: u64 = 1500;
/// Slack on top of a deadline before a test calls it missed (a loaded CI machine).
const SLACK: Duration = Duration::from_secs(4);

fn start(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> Server {
    let header = HEADER_MS.to_string();
    let keep_alive = KEEP_ALIVE_MS.to_string();
    let mut env = vec![
        ("HTTP__HEADER_READ_TIMEOUT_MS", header.as_str()),
        ("HTTP__KEEP_ALIVE_TIMEOUT_MS", keep_alive.as_str()),
    ];
    env.extend_from_slice(extra);
    Server::start(&dir.path().join("data"), &env)
}

/// `GET /healthz` on a fresh connection (from `from`, or any loopback address): its latency
/// if answered 200 within 5 s.
async fn probe(addr: &str, from: Option<&str>) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut s = connect_from(addr, from.unwrap_or("127.0.0.1")).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await.ok()?;
        reply.starts_with(b"HTTP/1.1 200").then_some(())
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .map(|()| started.elapsed())
}

/// Probes `/healthz` every 50 ms until `stop` resolves; returns every latency (None: failed).
async fn probe_until(
    addr: String,
    from: Option<&'static str>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Vec<Option<Duration>> {
    let mut latencies = vec![];
    tokio::pin!(stop);
    loop {
        latencies.push(probe(&addr, from).await);
        tokio::select! {
            _ = &mut stop => return latencies,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

fn summary(latencies: &[Option<Duration>]) -> (usize, usize, Duration, Duration) {
    let mut ok: Vec<Duration> = latencies.iter().flatten().copied().collect();
    ok.sort();
    let p50 = ok.get(ok.len() / 2).copied().unwrap_or_default();
    let max = ok.last().copied().unwrap_or_default();
    (latencies.len(), latencies.len() - ok.len(), p50, max)
}

/// Reads until the server closes (EOF or reset); when, or `None` after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// A slowloris client: the start of a request head, then a header line every 300 ms,
/// never the blank line that ends it. Returns when the server closed it, with the time
/// from its first byte, or `None` if still open after `limit`.
async fn slowloris(addr: String, limit: Duration) -> Option<Duration> {
    let stream = TcpStream::connect(&addr).await.ok()?;
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    write
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .ok()?;
    let dribble = tokio::spawn(async move {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if write
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    dribble.abort();
    closed
}

#[tokio::test]
async fn slow_heads_and_silent_connections_are_closed_at_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let probes = tokio::spawn(probe_until(server.addr.clone(), None, stop_rx));

    // A WebSocket connection opened with the silent ones: never closed by the HTTP deadlines.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/ws", server.addr))
        .await
        .unwrap();
    let slow: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(slowloris(
                server.addr.clone(),
                Duration::from_millis(HEADER_MS) + SLACK,
            ))
        })
        .collect();
    let mut silent = vec![];
    for _ in 0..20 {
        silent.push((
            TcpStream::connect(&server.addr).await.unwrap(),
            Instant::now(),
        ));
    }
    // A keep-alive connection after one answered request: idle from the end of the answer.
    let mut kept = TcpStream::connect(&server.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let kept_idle_from = Instant::now();

    for handle in slow {
        let closed = handle
            .await
            .unwrap()
            .expect("slowloris connection still open");
        assert!(
            closed >= Duration::from_millis(HEADER_MS * 9 / 10),
            "slow head closed before its deadline: {closed:?}"
        );
    }
    let keep_alive = Duration::from_millis(KEEP_ALIVE_MS);
    for (mut s, opened) in silent {
        let at = closed_within(&mut s, keep_alive + SLACK)
            .await
            .expect("silent connection still open");
        assert!(
            at - opened >= keep_alive * 9 / 10,
            "silent connection closed early"
        );
    }
    let at = closed_within(&mut kept, keep_alive + SLACK)
        .await
        .expect("idle keep-alive connection still open");
    assert!(at - kept_idle_from >= keep_alive * 9 / 10);

    // Past every deadline, the WebSocket still answers.
    use futures::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"type":"ping"}"#,
    ))
    .await
    .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("no pong")
        .expect("WebSocket closed")
        .unwrap();
    assert!(pong.to_text().unwrap().contains("pong"), "{pong:?}");

    let _ = stop_tx.send(());
    let latencies = probes.await.unwrap();
    let (n, failed, p50, max) = summary(&latencies);
    println!("healthz during slow clients: {n} probes, {failed} failed, p50 {p50:?}, max {max:?}");
    assert_eq!(
        failed, 0,
        "health checks failed while slow clients were connected"
    );
    for reason in ["header", "idle"] {
        let closed = api
            .metric(&format!(
                "regengine_http_connections_closed_total{{reason=\"{reason}\"}}"
            ))
            .await
            .unwrap_or(0.0);
        assert!(closed >= 20.0, "{reason}: {closed}");
    }
}

#[tokio::test]
async fn a_full_table_evicts_waiting_connections_and_health_checks_get_in() {
    let dir = tempfile::tempdir().unwrap();
    // Long deadlines: only eviction can make room during the attack.
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("HTTP__CONNECTIONS_MAX", "64"),
            ("HTTP__CONNECTIONS_PER_IP_MAX", "0"),
            ("HTTP__HEADER_READ_TIMEOUT_MS", "60000"),
            ("HTTP__KEEP_ALIVE_TIMEOUT_MS", "60000"),
        ],
    );
    let api = Api::new(&server);
    api.wait_ready().await;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    // The health checker (a load balancer) has its own address; the attacker fills the
    // table from another.
    let probes = tokio::spawn(probe_until(server.addr.clone(), Some("127.0.0.2"), stop_rx));
    // 500 slow heads, five times the table; each reconnects when cut, for 3 seconds.
    let until = Instant::now() + Duration::from_secs(3);
    let attackers: Vec<_> = (0..500)
        .map(|_| {
            let addr = server.addr.clone();
            tokio::spawn(async move {
                let mut connections = 0u32;
                while Instant::now() < until {
                    connections += 1;
                    let left = until.saturating_duration_since(Instant::now());
                    let _ = slowloris(addr.clone(), left).await;
                }
                connections
            })
        })
        .collect();
    let mut opened = 0;
    for a in attackers {
        opened += a.await.unwrap();
    }
    let _ = stop_tx.send(());
    let latencies = probes.await.unwrap();
    let (n, failed, p50, max) = summary(&latencies);
    let evicted = api
        .metric("regengine_http_connections_closed_total{reason=\"evicted\"}")
        .await
        .unwrap_or(0.0);
    println!(
        "full table (64): {opened} slow connections opened; {evicted} evicted; healthz: {n} probes, {failed} failed, p50 {p50:?}, max {max:?}"
    );
    assert_eq!(failed, 0, "health checks failed while the table was full");
    assert!(evicted >= 400.0, "evicted {evicted}");
    assert_eq!(api.metric("regengine_http_accept_errors_total").await, None);
}

/// A connection from `127.0.0.2` (loopback too, but another client address).
async fn connect_from_other_address(addr: &str) -> TcpStream {
    connect_from(addr, "127.0.0.2").await.unwrap()
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(addr: &str, from: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{from}:0").parse().map_err(std::io::Error::other)?)?;
    socket
        .connect(addr.parse().map_err(std::io::Error::other)?)
        .await
}

#[tokio::test]
async fn connections_over_the_per_address_bound_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[("HTTP__CONNECTIONS_PER_IP_MAX", "20")]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let mut held = vec![];
    for _ in 0..20 {
        held.push(connect_from_other_address(&server.addr).await);
    }
    // The 21st from that address is accepted by the kernel, told 503 (best effort: the reply
    // may be lost to a reset if the request arrives after the close) and closed at once;
    // other addresses are served.
    let mut extra = connect_from_other_address(&server.addr).await;
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut reply = Vec::new();
    let read = tokio::time::timeout(SLACK, extra.read_to_end(&mut reply)).await;
    assert!(
        read.is_ok(),
        "a connection over the per-address bound stayed open"
    );
    assert!(
        reply.is_empty() || reply.starts_with(b"HTTP/1.1 503"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        probe(&server.addr, None).await.is_some(),
        "another address was refused"
    );
    drop(held);
    let back = wait_for(Duration::from_secs(10), || {
        probe(&server.addr, Some("127.0.0.2"))
    })
    .await;
    assert!(
        back.is_some(),
        "the address was not served after its connections closed"
    );
    let refused = api
        .metric("regengine_http_connections_refused_total{reason=\"per_address\"}")
        .await;
    assert!(refused >= Some(1.0), "{refused:?}");
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_the_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[("HTTP__BODY_READ_TIMEOUT_MS", "1000")]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let mut s = TcpStream::connect(&server.addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let (mut read, mut write) = s.into_split();
    let dribble = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut reply)).await;
    let elapsed = started.elapsed();
    dribble.abort();
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(text.contains("body_timeout"), "{text}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "408 before the deadline: {elapsed:?}"
    );
    println!("trickled body answered 408 after {elapsed:?}");
}

/// Kernel buffers absorb the start of any response: the export must be larger than the
/// server's largest send buffer (`tcp_wmem`'s maximum) for a client that never reads to stall
/// its writes.
fn send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(4 << 20)
}

#[tokio::test]
async fn exports_nobody_reads_are_cut_at_the_write_deadline() {
    const READERS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir, &[("HTTP__WRITE_TIMEOUT_MS", "1000")]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    // Tickets of 100 seats per registration: ~300 bytes per ticket row.
    let registrations = (send_buffer_max() * 3 / 2 / (100 * 300)).max(20) as u32;
    let (event, tt) = admin.published_event(registrations * 100, 3600, 100).await;
    let confirmed = futures::stream::iter(0..registrations)
        .map(|_| {
            let admin = admin.clone();
            let (event, tt) = (event.clone(), tt.clone());
            async move {
                let held = admin.hold(&event, &tt, 100, None).await;
                assert_eq!(held.status, 201, "{held:?}");
                let id = held.str("id");
                let done = admin
                    .post(
                        &format!("/api/v1/registrations/{id}/confirm"),
                        &serde_json::json!({}),
                        None,
                    )
                    .await;
                assert_eq!(done.status, 200, "{done:?}");
            }
        })
        .buffer_unordered(16)
        .count()
        .await;
    assert_eq!(confirmed as u32, registrations);
    let path = format!("/api/v1/events/{event}/tickets.csv");
    let full = admin
        .http
        .get(admin.base.clone() + &path)
        .bearer_auth(admin.token.clone().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();

    let token = admin.token.clone().unwrap();
    let mut readers = vec![];
    for _ in 0..READERS {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut s = socket.connect(server.addr.parse().unwrap()).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        readers.push(s);
    }
    let started = Instant::now();
    // Generous: each export signs a code per ticket until its writes stall, and a debug
    // build on a loaded CI machine is slow at it.
    let cut = wait_for(Duration::from_secs(90), || async {
        let n = admin
            .metric("regengine_http_connections_closed_total{reason=\"write\"}")
            .await
            .unwrap_or(0.0);
        (n >= READERS as f64).then_some(())
    })
    .await;
    assert!(cut.is_some(), "exports nobody reads were not cut");
    println!(
        "{READERS} unread exports of {full} bytes cut after {:?}",
        started.elapsed()
    );
    // Each client got the start of its export and then the end of the connection.
    for mut s in readers {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
        assert!(
            got.len() < full,
            "a whole export arrived: {} of {full}",
            got.len()
        );
    }
    assert!(probe(&server.addr, None).await.is_some());
}

#[tokio::test]
async fn a_low_open_file_limit_never_starves_accept() {
    let dir = tempfile::tempdir().unwrap();
    // 1,300 descriptors: 1,024 are set aside for the store and the rest; the connection
    // bound (10,000 configured) is lowered to what fits, with a warning.
    let server = Server::start_with_nofile(
        &dir.path().join("data"),
        &[("HTTP__CONNECTIONS_PER_IP_MAX", "0")],
        Some(1300),
    );
    let api = Api::new(&server);
    api.wait_ready().await;
    let effective = api.metric("regengine_http_connections_max").await.unwrap();
    assert!(effective < 300.0 && effective > 100.0, "{effective}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let probes = tokio::spawn(probe_until(server.addr.clone(), None, stop_rx));
    // More silent connections than the process has descriptors.
    let mut held = Vec::with_capacity(1500);
    for _ in 0..1500 {
        if let Ok(s) = TcpStream::connect(&server.addr).await {
            held.push(s);
        }
    }
    let _ = stop_tx.send(());
    let latencies = probes.await.unwrap();
    let (n, failed, p50, max) = summary(&latencies);
    println!(
        "1,500 connections against 1,300 descriptors (bound {effective}): healthz {n} probes, {failed} failed, p50 {p50:?}, max {max:?}"
    );
    assert_eq!(failed, 0);
    assert!(probe(&server.addr, None).await.is_some());
    assert_eq!(
        api.metric("regengine_http_accept_errors_total").await,
        None,
        "accept ran out of descriptors"
    );
    let log = std::fs::read_to_string(dir.path().join("data.log")).unwrap();
    assert!(log.contains("cannot hold http.connections_max"), "{log}");
    drop(held);
}

use futures::StreamExt;
