//! `loadtest`: drives a running gateway over HTTP keep-alive like any client would.
//!
//! - `flash-sale`: creates an event, fires N buyers (one hold each, own Idempotency-Key) at
//!   capacity C with concurrency K, retries 503s after `Retry-After` with the same key, then
//!   verifies every acknowledged registration is readable and sold <= capacity.
//! - `noop`: the same client and settings against `GET /healthz`.
//! - `ratio`: `noop` then `flash-sale` in one run, and the ratio of their throughputs (the
//!   figure that counts on a noisy machine).
//!
//! - `checkin-storm`: M scanners over the WebSocket hub scan K tickets with injected
//!   duplicates and retried nonces, and check exactly-once (see `storm`).
//! - `slow-clients`: slowloris and silent connections with a health checker alongside (see
//!   `slow`).
//!
//! Every run prints throughput and p50/p90/p99/p99.9 latency and writes a JSON report.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for the registration engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// A flash sale: N buyers, capacity C, concurrency K.
    FlashSale(SaleArgs),
    /// GET /healthz with the same client and settings.
    Noop(CommonArgs),
    /// noop, then flash-sale, in one run; prints holds/s ÷ noop requests/s.
    Ratio(SaleArgs),
    /// M scanners over the WebSocket hub, K tickets, injected duplicates: scans/s, latency,
    /// exactly-once.
    CheckinStorm(storm::StormArgs),
    /// Slowloris and silent connections with a health checker alongside: connections held,
    /// time to close, /healthz latency.
    SlowClients(slow::SlowArgs),
    /// Signed Stripe webhooks for N started payments (with redeliveries): confirmations/s,
    /// latency, each registration confirmed once. Serves a Stripe API stub for the gateway.
    Webhooks(webhooks::WebhookArgs),
    /// N events, each with a sale and a scan: the metrics scrape's series before and after,
    /// and (with --wait-secs) after the events went idle.
    Cardinality(cardinality::CardinalityArgs),
}

mod cardinality;
mod slow;
mod storm;
mod webhooks;

#[derive(Args, Clone)]
struct CommonArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Requests (buyers) in total.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    requests: usize,
    /// Requests in flight at once (connections).
    #[arg(long, short = 'c', default_value_t = 64)]
    concurrency: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "loadtest-report.json")]
    report: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct SaleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Seats on sale (default: as many as buyers, so every hold is a durable write).
    #[arg(long)]
    capacity: Option<u32>,
    /// Seats per buyer.
    #[arg(long, default_value_t = 1)]
    quantity: u16,
    /// Most attempts per buyer (503s are retried after Retry-After).
    #[arg(long, default_value_t = 20)]
    attempts_max: u32,
    /// Send no Idempotency-Key (to measure what the key costs; 503s are then not retried safely).
    #[arg(long)]
    no_idempotency_key: bool,
    /// Print the wall-clock time of every hold slower than this many milliseconds (to line
    /// latency spikes up with the server's log).
    #[arg(long)]
    slow_ms: Option<u64>,
    /// An organizer or admin account that creates the event (e.g. the server's bootstrap admin).
    #[arg(long, default_value = "admin@loadtest.local")]
    email: String,
    /// Its password (default: the LOADTEST_PASSWORD environment variable).
    #[arg(long)]
    password: Option<String>,
    /// Buyer accounts signed up before the sale; holds take turns among their tokens.
    #[arg(long, default_value_t = 64)]
    buyers: usize,
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    elapsed: Duration,
    /// Every attempt's latency, microseconds.
    latency: Histogram<u64>,
    by_status: std::collections::BTreeMap<u16, u64>,
    retries: u64,
    failures: u64,
}

impl Phase {
    fn completed(&self) -> u64 {
        self.by_status.values().sum()
    }

    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn print(&self) {
        println!(
            "{}: {} replies in {:.2}s = {:.0} req/s; status {:?}; retries {}; failures {}",
            self.name,
            self.completed(),
            self.elapsed.as_secs_f64(),
            self.per_sec(self.completed()),
            self.by_status,
            self.retries,
            self.failures
        );
        println!(
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.quantile_ms(0.5),
            self.quantile_ms(0.9),
            self.quantile_ms(0.99),
            self.quantile_ms(0.999),
            self.latency.max() as f64 / 1000.0
        );
    }

    fn json(&self) -> Value {
        json!({
            "elapsed_secs": self.elapsed.as_secs_f64(),
            "replies": self.completed(),
            "replies_per_sec": self.per_sec(self.completed()),
            "by_status": self.by_status.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "retries": self.retries,
            "failures": self.failures,
            "latency_ms": {
                "p50": self.quantile_ms(0.5), "p90": self.quantile_ms(0.9), "p99": self.quantile_ms(0.99),
                "p99_9": self.quantile_ms(0.999), "max": self.latency.max() as f64 / 1000.0,
            },
        })
    }
}

/// The server's Prometheus text exposition (`GET /metrics`).
async fn metrics_text(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    Ok(http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?)
}

/// The samples of a Prometheus text exposition (`/metrics`) whose series starts with one of
/// `prefixes`: the series with its labels (`name{a="b"}`), and its value.
fn samples<'a>(text: &'a str, prefixes: &[&str]) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|line| prefixes.iter().any(|p| line.starts_with(p)))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series, value.parse().ok()?))
        })
        .collect()
}

fn client(concurrency: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn progress(total: usize, quiet: bool, name: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template("{prefix} {bar:40} {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(name.to_owned());
    bar
}

/// Runs `requests` jobs over `concurrency` workers. A job returns (status, attempts,
/// latency of its last attempt in µs), or `None` when it failed. Each worker keeps its own
/// histogram and counters (no shared lock on the hot path); they are merged at the end.
async fn drive<F, Fut>(name: &'static str, common: &CommonArgs, job: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Option<(u16, u32, u64)>> + Send,
{
    type Tally = (
        Histogram<u64>,
        std::collections::BTreeMap<u16, u64>,
        u64,
        u64,
    );
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let bar = progress(common.requests, common.quiet, name);
    let started = Instant::now();
    let workers: Vec<_> = (0..common.concurrency)
        .map(|_| {
            let (job, next, bar, total) = (job.clone(), next.clone(), bar.clone(), common.requests);
            tokio::spawn(async move {
                let mut tally: Tally = (
                    Histogram::new_with_bounds(1, 60_000_000, 3)?,
                    Default::default(),
                    0,
                    0,
                );
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return anyhow::Ok(tally);
                    }
                    match job(i).await {
                        Some((status, attempts, latency_us)) => {
                            let _ = tally.0.record(latency_us.max(1));
                            *tally.1.entry(status).or_default() += 1;
                            tally.2 += u64::from(attempts.saturating_sub(1));
                        }
                        None => tally.3 += 1,
                    }
                    if i % 256 == 0 {
                        bar.set_position(i as u64);
                    }
                }
            })
        })
        .collect();
    let mut all: Tally = (
        Histogram::new_with_bounds(1, 60_000_000, 3)?,
        Default::default(),
        0,
        0,
    );
    for w in workers {
        let (latency, statuses, retries, failures) = w.await??;
        all.0.add(latency)?;
        for (status, n) in statuses {
            *all.1.entry(status).or_default() += n;
        }
        all.2 += retries;
        all.3 += failures;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(Phase {
        name,
        elapsed,
        latency: all.0,
        by_status: all.1,
        retries: all.2,
        failures: all.3,
    })
}

async fn noop(common: &CommonArgs) -> anyhow::Result<Phase> {
    let http = client(common.concurrency)?;
    let url = format!("{}/healthz", common.base);
    drive("noop", common, move |_| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let started = Instant::now();
            let response = http.get(&url).send().await.ok()?;
            let status = response.status().as_u16();
            response.bytes().await.ok()?;
            Some((status, 1, started.elapsed().as_micros() as u64))
        }
    })
    .await
}

async fn post(
    http: &reqwest::Client,
    token: Option<&str>,
    url: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let mut request = http.post(url).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status}: {value}");
    }
    Ok(value)
}

/// GETs JSON with a token.
async fn get_json(http: &reqwest::Client, token: &str, url: &str) -> anyhow::Result<Value> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status}: {value}");
    }
    Ok(value)
}

/// Signs in; returns the access token.
async fn login(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let reply = post(
        http,
        None,
        &format!("{base}/api/v1/auth/login"),
        &json!({"email": email, "password": password}),
    )
    .await
    .with_context(|| format!("signing in as {email}"))?;
    Ok(reply["access_token"]
        .as_str()
        .context("access token")?
        .to_owned())
}

/// Signs up and signs in `n` buyer accounts (a few at a time: password hashing is slow on
/// purpose); returns their access tokens.
async fn buyer_tokens(http: &reqwest::Client, base: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let password = format!("loadtest-{run}");
    let mut tokens = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(8) {
        let batch = chunk.iter().map(|k| {
            let (http, password) = (http.clone(), password.clone());
            let email = format!("buyer-{}-{k}@loadtest.example.com", &run[..8]);
            let base = base.to_owned();
            async move {
                post(
                    &http,
                    None,
                    &format!("{base}/api/v1/auth/signup"),
                    &json!({"email": email, "password": password, "name": format!("Buyer {k}")}),
                )
                .await?;
                login(&http, &base, &email, &password).await
            }
        });
        for token in futures::future::join_all(batch).await {
            tokens.push(token?);
        }
    }
    Ok(tokens)
}

/// Creates and publishes an event with one ticket type; returns (event id, ticket type id).
async fn setup_event(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    capacity: u32,
    quantity: u16,
) -> anyhow::Result<(String, String)> {
    let event = post(
        http,
        Some(token),
        &format!("{base}/api/v1/events"),
        &json!({"title": "Load test on-sale", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T23:00:00Z"}),
    )
    .await?;
    let event_id = event["id"].as_str().context("event id")?.to_owned();
    let tt = post(
        http,
        Some(token),
        &format!("{base}/api/v1/events/{event_id}/ticket-types"),
        &json!({"name": "GA", "price_minor": 5000, "currency": "EUR", "capacity": capacity, "max_per_order": quantity.max(1)}),
    )
    .await?;
    post(
        http,
        Some(token),
        &format!("{base}/api/v1/events/{event_id}/publish"),
        &json!({}),
    )
    .await?;
    Ok((
        event_id,
        tt["id"].as_str().context("ticket type id")?.to_owned(),
    ))
}

/// The one field of a 201 the client needs.
#[derive(serde::Deserialize)]
struct Created<'a> {
    id: &'a str,
}

struct SaleOutcome {
    phase: Phase,
    acknowledged: Vec<String>,
    event_id: String,
    capacity: u32,
    /// The organizer's token (verification reads every registration).
    token: String,
}

async fn flash_sale(args: &SaleArgs) -> anyhow::Result<SaleOutcome> {
    let common = &args.common;
    let http = client(common.concurrency)?;
    let capacity = args
        .capacity
        .unwrap_or((common.requests as u32).saturating_mul(u32::from(args.quantity)));
    let password = match &args.password {
        Some(p) => p.clone(),
        None => std::env::var("LOADTEST_PASSWORD")
            .context("give --password or LOADTEST_PASSWORD for the organizer/admin account")?,
    };
    let token = login(&http, &common.base, &args.email, &password).await?;
    let buyers = Arc::new(buyer_tokens(&http, &common.base, args.buyers.max(1)).await?);
    let (event_id, tt) = setup_event(&http, &token, &common.base, capacity, args.quantity).await?;
    let url = format!("{}/api/v1/events/{event_id}/registrations", common.base);
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (acks, quantity, attempts_max) = (acknowledged.clone(), args.quantity, args.attempts_max);
    let send_key = !args.no_idempotency_key;
    let slow_us = args.slow_ms.map(|ms| ms * 1000);
    let run = uuid::Uuid::new_v4();
    let phase = drive("flash-sale", common, move |i| {
        let (http, url, tt, acks) = (http.clone(), url.clone(), tt.clone(), acks.clone());
        let buyer = buyers[i % buyers.len()].clone();
        async move {
            // The body is written directly: the client shares the machine with the server, so
            // its own cost per request is kept small.
            let body = format!(
                r#"{{"ticket_type_id":"{tt}","quantity":{quantity},"attendee":{{"name":"Buyer {i}","email":"buyer{i}@example.com"}}}}"#
            );
            let key = format!("{run}-{i}");
            for attempt in 1..=attempts_max {
                let started = Instant::now();
                let mut request = http
                    .post(&url)
                    .bearer_auth(&buyer)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if send_key {
                    request = request.header("Idempotency-Key", &key);
                }
                let response = request.send().await.ok()?;
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let bytes = response.bytes().await.ok()?;
                let latency_us = started.elapsed().as_micros() as u64;
                if slow_us.is_some_and(|slow| latency_us >= slow) {
                    eprintln!("slow: {} ms, finished at {}", latency_us / 1000, chrono::Utc::now().format("%H:%M:%S%.3f"));
                }
                if status == 503 && attempt < attempts_max {
                    tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
                    continue;
                }
                if status == 201
                    && let Ok(created) = serde_json::from_slice::<Created<'_>>(&bytes)
                {
                    acks.lock().unwrap_or_else(|e| e.into_inner()).push(created.id.to_owned());
                }
                return Some((status, attempt, latency_us));
            }
            None
        }
    })
    .await?;
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(SaleOutcome {
        phase,
        acknowledged,
        event_id,
        capacity,
        token,
    })
}

/// Every acknowledged registration is readable, and sold <= capacity.
async fn verify(args: &SaleArgs, outcome: &SaleOutcome) -> anyhow::Result<Value> {
    let common = &args.common;
    let http = client(common.concurrency)?;
    let ids = Arc::new(outcome.acknowledged.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let missing = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..common.concurrency)
        .map(|_| {
            let (http, ids, next, missing, base, token) = (
                http.clone(),
                ids.clone(),
                next.clone(),
                missing.clone(),
                common.base.clone(),
                outcome.token.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    let ok = match http
                        .get(format!("{base}/api/v1/registrations/{id}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                    {
                        Ok(r) => r.status() == 200,
                        Err(_) => false,
                    };
                    if !ok {
                        missing.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.await?;
    }
    let availability: Value = http
        .get(format!(
            "{}/api/v1/events/{}/availability",
            common.base, outcome.event_id
        ))
        .send()
        .await?
        .json()
        .await?;
    let t = &availability["ticket_types"][0];
    let (held, confirmed) = (
        t["held"].as_u64().unwrap_or(0),
        t["confirmed"].as_u64().unwrap_or(0),
    );
    let sold = outcome.acknowledged.len() as u64 * u64::from(args.quantity);
    let missing = missing.load(Ordering::Relaxed);
    let ok =
        missing == 0 && held + confirmed <= u64::from(outcome.capacity) && held + confirmed == sold;
    println!(
        "verify: {} acknowledged, {missing} missing; pool held {held} + confirmed {confirmed} of {} (acknowledged seats {sold}): {}",
        outcome.acknowledged.len(),
        outcome.capacity,
        if ok { "OK" } else { "FAILED" }
    );
    Ok(
        json!({"acknowledged": outcome.acknowledged.len(), "missing": missing, "held": held, "confirmed": confirmed,
        "capacity": outcome.capacity, "sold_seats": sold, "ok": ok}),
    )
}

async fn sale_report(args: &SaleArgs) -> anyhow::Result<(Phase, Value)> {
    let outcome = flash_sale(args).await?;
    outcome.phase.print();
    let holds = outcome.acknowledged.len() as u64;
    println!(
        "  durable holds: {holds} = {:.0} holds/s",
        outcome.phase.per_sec(holds)
    );
    let verification = verify(args, &outcome).await?;
    let mut report = outcome.phase.json();
    report["holds_acknowledged"] = json!(holds);
    report["holds_per_sec"] = json!(outcome.phase.per_sec(holds));
    report["verification"] = verification;
    report["settings"] = json!({"requests": args.common.requests, "concurrency": args.common.concurrency,
        "capacity": outcome.capacity, "quantity": args.quantity});
    let failed = !report["verification"]["ok"].as_bool().unwrap_or(false);
    if failed {
        bail!("verification failed: {}", report["verification"]);
    }
    Ok((outcome.phase, report))
}

fn write_report(path: &str, report: &Value) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(report)?)
        .with_context(|| format!("writing {path}"))?;
    println!("report: {path}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Noop(common) => {
            let phase = noop(&common).await?;
            phase.print();
            write_report(&common.report, &json!({"noop": phase.json()}))?;
        }
        Command::FlashSale(args) => {
            let (_, report) = sale_report(&args).await?;
            write_report(&args.common.report, &json!({"flash_sale": report}))?;
        }
        Command::CheckinStorm(args) => {
            let report = storm::run(&args).await?;
            write_report(&args.report, &json!({"checkin_storm": report}))?;
        }
        Command::Webhooks(args) => {
            let report = webhooks::run(&args).await?;
            write_report(&args.common.report, &json!({"webhooks": report}))?;
        }
        Command::Cardinality(args) => {
            let report = cardinality::run(&args).await?;
            write_report(&args.report, &json!({"cardinality": report}))?;
        }
        Command::SlowClients(args) => {
            let report = slow::run(&args).await?;
            write_report(&args.report, &json!({"slow_clients": report}))?;
        }
        Command::Ratio(args) => {
            let noop_phase = noop(&args.common).await?;
            noop_phase.print();
            let (_, sale) = sale_report(&args).await?;
            let noop_rate = noop_phase.per_sec(noop_phase.completed());
            let ratio = sale["holds_per_sec"].as_f64().unwrap_or(0.0) / noop_rate;
            println!("ratio: durable holds/s ÷ no-op requests/s = {ratio:.3}");
            write_report(
                &args.common.report,
                &json!({"noop": noop_phase.json(), "flash_sale": sale, "holds_per_noop_ratio": ratio}),
            )?;
        }
    }
    Ok(())
}
