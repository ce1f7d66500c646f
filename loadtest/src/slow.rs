//! `slow-clients`: the outside probe of the hardening issue, as a repeatable measurement.
//! Opens `slowloris` connections that send the start of a request head and then one header
//! line every `dribble_ms` (never the blank line that ends it), and `silent` connections that
//! send nothing; with `--reconnect`, each one cut reconnects at once (an attacker keeping the
//! pressure on). Meanwhile a health checker opens a fresh connection for `GET /healthz` every
//! 100 ms. Reports the most attacker connections open at once, how long the server took to
//! close them (from their first byte), the health checks' latency and failures, and the
//! server's own connection metrics. Stops by itself after `duration_s`.

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `slow-clients` settings.
#[derive(clap::Args, Clone)]
pub struct SlowArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: String,
    /// Slowloris connections.
    #[arg(long, default_value_t = 500)]
    pub slowloris: usize,
    /// Milliseconds between two header lines of a slowloris connection.
    #[arg(long, default_value_t = 10_000)]
    pub dribble_ms: u64,
    /// Connections that send nothing.
    #[arg(long, default_value_t = 0)]
    pub silent: usize,
    /// Reconnect each connection as soon as the server closes it.
    #[arg(long)]
    pub reconnect: bool,
    /// How long the attack lasts.
    #[arg(long, default_value_t = 30)]
    pub duration_s: u64,
    /// Where to write the JSON report.
    #[arg(long, default_value = "loadtest-report.json")]
    pub report: String,
}

/// What the attackers saw.
struct Attack {
    open: AtomicUsize,
    open_max: AtomicUsize,
    opened: AtomicUsize,
    connect_failed: AtomicUsize,
    /// Lifetimes (ms, from the first byte to the server's close) of the connections closed.
    closed_after_ms: std::sync::Mutex<Histogram<u64>>,
}

impl Attack {
    fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.open_max.fetch_max(now, Ordering::Relaxed);
    }

    fn closed(&self, after: Option<Duration>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(after) = after {
            let _ = self
                .closed_after_ms
                .lock()
                .unwrap()
                .record(after.as_millis() as u64);
        }
    }
}

/// One attacker connection until the server closes it (`Some(lifetime)`) or the attack ends.
async fn attacker(addr: &str, dribble: Option<Duration>, until: Instant, attack: &Attack) -> bool {
    let Ok(Ok(stream)) =
        tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await
    else {
        attack.connect_failed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
        return false;
    };
    attack.opened();
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let dribbler = async move {
        let Some(every) = dribble else {
            return std::future::pending::<()>().await;
        };
        if write
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            return std::future::pending().await;
        }
        for i in 0u64.. {
            tokio::time::sleep(every).await;
            if write
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        std::future::pending().await
    };
    let closed = async {
        let mut buf = [0u8; 512];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let outcome = tokio::select! {
        after = closed => Some(after),
        _ = dribbler => None,
        _ = tokio::time::sleep_until(until.into()) => None,
    };
    attack.closed(outcome);
    outcome.is_some()
}

/// `GET /healthz` on a fresh connection: its latency if answered 200 within 5 s.
async fn probe(addr: &str) -> Option<Duration> {
    let started = Instant::now();
    let attempt = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
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

fn quantiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p99": h.value_at_quantile(0.99),
        "max": h.max(),
    })
}

/// The server's connection series from `/metrics`.
async fn server_metrics(addr: &str) -> Value {
    let text = match reqwest::get(format!("http://{addr}/metrics")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return json!({"error": e.to_string()}),
    };
    let series: serde_json::Map<String, Value> =
        crate::samples(&text, &["http_connections", "http_accept_errors"])
            .into_iter()
            .map(|(series, value)| (series.to_owned(), json!(value)))
            .collect();
    Value::Object(series)
}

/// Runs the attack and the health checker; prints and returns the report.
pub async fn run(args: &SlowArgs) -> anyhow::Result<Value> {
    let attack = Arc::new(Attack {
        open: AtomicUsize::new(0),
        open_max: AtomicUsize::new(0),
        opened: AtomicUsize::new(0),
        connect_failed: AtomicUsize::new(0),
        closed_after_ms: std::sync::Mutex::new(Histogram::new(3)?),
    });
    let until = Instant::now() + Duration::from_secs(args.duration_s);
    let dribble = Duration::from_millis(args.dribble_ms);
    let kinds = std::iter::repeat_n(Some(dribble), args.slowloris)
        .chain(std::iter::repeat_n(None, args.silent));
    let mut attackers = Vec::new();
    for kind in kinds {
        let (addr, attack, reconnect) = (args.addr.clone(), attack.clone(), args.reconnect);
        attackers.push(tokio::spawn(async move {
            loop {
                let cut = attacker(&addr, kind, until, &attack).await;
                if !reconnect && cut || Instant::now() >= until {
                    return;
                }
            }
        }));
    }
    let mut health = Histogram::<u64>::new(3)?;
    let mut health_failed = 0u64;
    while Instant::now() < until {
        match probe(&args.addr).await {
            Some(latency) => health.record(latency.as_micros() as u64)?,
            None => health_failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for a in attackers {
        let _ = a.await;
    }
    let closed = attack.closed_after_ms.lock().unwrap().clone();
    let report = json!({
        "slowloris": args.slowloris,
        "silent": args.silent,
        "dribble_ms": args.dribble_ms,
        "reconnect": args.reconnect,
        "duration_s": args.duration_s,
        "attacker_connections_opened": attack.opened.load(Ordering::Relaxed),
        "attacker_connections_open_max": attack.open_max.load(Ordering::Relaxed),
        "attacker_connect_failures": attack.connect_failed.load(Ordering::Relaxed),
        "closed_by_server_after_ms": quantiles(&closed),
        "healthz_us": quantiles(&health),
        "healthz_failed": health_failed,
        "server": server_metrics(&args.addr).await,
    });
    println!(
        "slow clients: {} opened, at most {} open at once; closed by the server after p50 {} ms, \
         max {} ms ({} closed); /healthz: {} ok (p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms), {} failed",
        attack.opened.load(Ordering::Relaxed),
        attack.open_max.load(Ordering::Relaxed),
        closed.value_at_quantile(0.5),
        closed.max(),
        closed.len(),
        health.len(),
        health.value_at_quantile(0.5) as f64 / 1000.0,
        health.value_at_quantile(0.99) as f64 / 1000.0,
        health.max() as f64 / 1000.0,
        health_failed,
    );
    println!("server: {}", report["server"]);
    Ok(report)
}
