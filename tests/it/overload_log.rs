//! An overload must not flood the log: every request shed with 503 and every 429 is counted
//! in the metrics, while the log says at most once per period that requests are being
//! refused (and nothing for 429s, the client's own doing).

use std::time::{Duration, Instant};
use tests::{Api, Server, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn log_lines(dir: &tempfile::TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.path().join("data.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A login whose body never completes: it holds a place of the concurrency bound until the
/// body deadline answers it 408.
async fn hold_the_place(addr: &str) -> TcpStream {
    let mut holder = TcpStream::connect(addr).await.unwrap();
    holder
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    holder
}

#[tokio::test]
async fn shed_and_rate_limited_requests_are_counted_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            // One request at a time: while one is in flight, every other is shed.
            ("HTTP__CONCURRENCY_MAX", "1"),
            ("HTTP__BODY_READ_TIMEOUT_MS", "6000"),
            ("RATE_LIMIT__ENABLED", "true"),
            ("RATE_LIMIT__READS_PER_IP", "{ per_sec = 0.01, burst = 20 }"),
        ],
    );
    let server_started = Instant::now();
    let api = Api::new(&server);
    api.wait_ready().await;
    let before = log_lines(&dir).len();

    // A request whose body never completes holds the only place until the body deadline. The
    // holder races the reads below for the one place: one that arrives while a read has it is
    // shed itself (and answered), so it is sent again until a read is shed instead.
    let holder = tokio::sync::Mutex::new(hold_the_place(&server.addr).await);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let in_flight = wait_for(Duration::from_secs(10), || async {
        let status = api.get("/api/v1/events").await.status;
        *seen.lock().unwrap().entry(status).or_default() += 1;
        if status == 503 {
            return Some(());
        }
        let mut holder = holder.lock().await;
        if holder.try_read(&mut [0u8; 1]).is_ok() {
            *holder = hold_the_place(&server.addr).await;
        }
        None
    })
    .await;
    assert!(
        in_flight.is_some(),
        "the holder never took the place: reads answered {:?}",
        seen.lock().unwrap()
    );
    let mut holder = holder.into_inner();
    let mut shed = 0;
    let started = Instant::now();
    while shed < 500 && started.elapsed() < Duration::from_millis(2500) {
        if api.get("/api/v1/events").await.status == 503 {
            shed += 1;
        }
    }
    assert!(shed >= 100, "only {shed} requests shed");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), holder.read_to_end(&mut reply)).await;
    assert!(reply.starts_with(b"HTTP/1.1 408"));

    // Now the place is free: the address's read budget (20) runs out and the rest get 429.
    let mut limited = 0;
    for _ in 0..300 {
        if api.get("/api/v1/events").await.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 250, "only {limited} requests rate-limited");

    let shed_total = api
        .metric("regengine_http_requests_shed_total")
        .await
        .unwrap_or(0.0);
    assert!(shed_total >= shed as f64, "{shed_total} < {shed}");
    let limited_total = api
        .metric("regengine_rate_limited_total{budget=\"reads_per_ip\"}")
        .await
        .unwrap_or(0.0);
    assert!(
        limited_total >= limited as f64,
        "{limited_total} < {limited}"
    );

    // The log says that requests are being refused at most once per 10 s (the first line may
    // come from `/readyz` answering 503 while the server recovered), and nothing per request.
    let lines = log_lines(&dir);
    let refusals = lines
        .iter()
        .filter(|l| l.contains("refused with 503"))
        .count();
    let periods = 1 + server_started.elapsed().as_secs() as usize / 10;
    println!(
        "{shed} shed, {limited} rate-limited: {} log lines since the flood, {refusals} about refusals",
        lines.len() - before
    );
    assert!(
        (1..=periods).contains(&refusals),
        "{refusals} lines about refusals in {periods} periods: {lines:#?}"
    );
    let new = &lines[before..];
    assert!(
        !new.iter().any(|l| l.contains("ERROR")),
        "a refusal was logged as an error: {new:#?}"
    );
    assert!(new.len() <= 3, "{new:#?}");
}
