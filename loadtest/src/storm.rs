//! `checkin-storm`: M scanners over the WebSocket CheckInHub scan K tickets, each ticket once,
//! plus injected duplicates (a share of tickets presented at a second gate at the same time)
//! and retries (the same scan sent again with its nonce, as after a lost answer). Reports
//! scans/s and latency, and checks exactly-once: every ticket admitted exactly once, duplicates
//! reported equal duplicates injected, every retry answered like its original, and the server's
//! own ticket export shows K admissions.

use anyhow::{Context, bail};
use futures::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `checkin-storm` settings.
#[derive(clap::Args, Clone)]
pub struct StormArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base: String,
    /// Scanners (WebSocket connections).
    #[arg(long, short = 'm', default_value_t = 8)]
    pub scanners: usize,
    #[arg(long, short = 'k', default_value_t = 10_000)]
    pub tickets: usize,
    /// Share of tickets also presented at a second gate at the same time.
    #[arg(long, default_value_t = 0.02)]
    pub duplicate_rate: f64,
    /// Share of scans sent again with the same nonce.
    #[arg(long, default_value_t = 0.01)]
    pub retry_rate: f64,
    /// Scans in flight per scanner.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "loadtest-report.json")]
    pub report: String,
    /// An organizer or admin account (e.g. the server's bootstrap admin).
    #[arg(long, default_value = "admin@loadtest.local")]
    pub email: String,
    /// Its password (default: the LOADTEST_PASSWORD environment variable).
    #[arg(long)]
    pub password: Option<String>,
}

/// One scan to send.
#[derive(Clone)]
struct Planned {
    code: usize,
    gate: &'static str,
    nonce: String,
    /// `Some(i)`: a retry of planned scan `i`.
    retry_of: Option<usize>,
    /// A second presentation of its ticket (injected duplicate).
    second: bool,
}

/// Sets up an event with `k` confirmed tickets (marked paid by the organizer); returns
/// (event id, codes).
async fn tickets(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    k: usize,
) -> anyhow::Result<(String, Vec<String>)> {
    let (event, tt) = crate::setup_event(http, token, base, k as u32, 100).await?;
    let mut codes = Vec::with_capacity(k);
    let mut left = k;
    while left > 0 {
        let q = left.min(100);
        let held = crate::post(
            http,
            Some(token),
            &format!("{base}/api/v1/events/{event}/registrations"),
            &json!({"ticket_type_id": tt, "quantity": q,
                "attendee": {"name": "Storm", "email": "storm@loadtest.example.com"}}),
        )
        .await?;
        let id = held["id"].as_str().context("registration id")?;
        let confirmed = crate::post(
            http,
            Some(token),
            // The tickets cost money: issued as the box office does, marked paid.
            &format!("{base}/api/v1/registrations/{id}/mark-paid"),
            &json!({}),
        )
        .await?;
        for t in confirmed["tickets"].as_array().context("tickets")? {
            codes.push(t["code"].as_str().context("code")?.to_owned());
        }
        left -= q;
    }
    Ok((event, codes))
}

/// The scan plan: every ticket once, duplicates at a second gate, retries with the same nonce,
/// dealt round-robin to scanners (a ticket's two presentations go to different scanners).
fn plan(args: &StormArgs, k: usize) -> Vec<Vec<Planned>> {
    let m = args.scanners.max(1);
    let mut per: Vec<Vec<Planned>> = vec![Vec::new(); m];
    let every = |rate: f64| {
        if rate <= 0.0 {
            usize::MAX
        } else {
            (1.0 / rate).round().max(1.0) as usize
        }
    };
    let (dup_every, retry_every) = (every(args.duplicate_rate), every(args.retry_rate));
    let mut n = 0usize;
    for code in 0..k {
        let scanner = code % m;
        let first = Planned {
            code,
            gate: "north",
            nonce: format!("storm-{code}-a"),
            retry_of: None,
            second: false,
        };
        per[scanner].push(first.clone());
        n += 1;
        if code % dup_every == 0 {
            // Presented at the same time at another gate, by another scanner.
            per[(scanner + 1) % m].push(Planned {
                gate: "south",
                nonce: format!("storm-{code}-b"),
                second: true,
                ..first.clone()
            });
            n += 1;
        }
        if code % retry_every == 1 {
            let i = per[scanner].len() - 1;
            per[scanner].push(Planned {
                retry_of: Some(i),
                ..first
            });
            n += 1;
        }
    }
    let _ = n;
    per
}

/// What one scanner saw.
#[derive(Default)]
struct Seen {
    latency: Vec<u64>,
    /// Result per planned scan (by index in the scanner's plan).
    results: HashMap<usize, String>,
}

/// A hub connection as `token`'s account, with Nagle off (frames are small and batched).
async fn connect(
    ws_url: String,
    token: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let mut request = ws_url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true).await?;
    Ok(ws)
}

async fn scanner(
    ws_url: String,
    token: String,
    event: String,
    codes: std::sync::Arc<Vec<String>>,
    plan: Vec<Planned>,
    window: usize,
) -> anyhow::Result<(Vec<Planned>, Seen)> {
    let (mut sink, mut stream) = connect(ws_url, &token).await?.split();
    let mut seen = Seen::default();
    let mut sent_at: HashMap<usize, Instant> = HashMap::new();
    let mut next = 0;
    while seen.results.len() < plan.len() {
        // Keep `window` scans in flight; a retry waits for its original's answer. The frames
        // of one refill go out in one write.
        let mut fed = false;
        while next < plan.len() && sent_at.len() < window {
            let p = &plan[next];
            if let Some(original) = p.retry_of
                && !seen.results.contains_key(&original)
            {
                break;
            }
            let frame = json!({"type": "scan", "event_id": event, "ticket_code": codes[p.code],
                "gate": p.gate, "nonce": p.nonce, "ref": next.to_string()});
            sink.feed(Message::text(frame.to_string())).await?;
            sent_at.insert(next, Instant::now());
            next += 1;
            fed = true;
        }
        if fed {
            sink.flush().await?;
        }
        let first = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("no answer within 30 s")?;
        // Take every answer already here before refilling, so refills go out together.
        let mut ready = vec![first];
        while ready.len() < window
            && let Some(more) = stream.next().now_or_never()
        {
            ready.push(more);
        }
        for frame in ready {
            let Message::Text(text) = frame.context("connection closed")?? else {
                continue;
            };
            let v: Value = serde_json::from_str(&text)?;
            match v["type"].as_str() {
                Some("scan_result") => {
                    let i: usize = v["ref"].as_str().context("ref")?.parse()?;
                    let started = sent_at.remove(&i).context("unknown ref")?;
                    seen.latency.push(started.elapsed().as_micros() as u64);
                    let result = v["data"]["result"].as_str().unwrap_or("?").to_owned();
                    seen.results.insert(i, result);
                }
                Some("error") => bail!("hub error: {v}"),
                _ => {}
            }
        }
    }
    Ok((plan, seen))
}

/// The transport's ceiling on this machine: `n` `ping` frames per connection over the same
/// hub, window and connection count as the storm, each answered by a `pong` (the hub answers
/// them in order). Returns the latencies (µs).
async fn pinger(
    ws_url: String,
    token: String,
    n: usize,
    window: usize,
) -> anyhow::Result<Vec<u64>> {
    let (mut sink, mut stream) = connect(ws_url, &token).await?.split();
    let frame = json!({"type": "ping"}).to_string();
    let mut sent: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let (mut next, mut latency) = (0, Vec::with_capacity(n));
    while latency.len() < n {
        let mut fed = false;
        while next < n && sent.len() < window {
            sink.feed(Message::text(frame.clone())).await?;
            sent.push_back(Instant::now());
            next += 1;
            fed = true;
        }
        if fed {
            sink.flush().await?;
        }
        let reply = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .context("no pong within 30 s")?
            .context("connection closed")??;
        if let Message::Text(text) = reply
            && text.contains("\"pong\"")
        {
            let started = sent.pop_front().context("unexpected pong")?;
            latency.push(started.elapsed().as_micros() as u64);
        }
    }
    Ok(latency)
}

/// What the scans came back with, against what was planned.
#[derive(Default)]
struct Tally {
    admitted: usize,
    duplicates: usize,
    injected: usize,
    retries: usize,
    retries_ok: usize,
    other: HashMap<String, usize>,
    /// Admissions per ticket (each must be 1).
    admitted_codes: Vec<u32>,
}

impl Tally {
    fn record(&mut self, plan: &[Planned], seen: &Seen) {
        for (i, p) in plan.iter().enumerate() {
            let result = seen.results.get(&i).map(String::as_str).unwrap_or("?");
            if let Some(original) = p.retry_of {
                self.retries += 1;
                if seen.results.get(&original).map(String::as_str) == Some(result) {
                    self.retries_ok += 1;
                }
                continue;
            }
            if p.second {
                self.injected += 1;
            }
            match result {
                "admitted" => {
                    self.admitted += 1;
                    self.admitted_codes[p.code] += 1;
                }
                "duplicate" => self.duplicates += 1,
                other => *self.other.entry(other.to_owned()).or_default() += 1,
            }
        }
    }

    fn each_once(&self) -> bool {
        self.admitted_codes.iter().all(|n| *n == 1)
    }
}

/// Runs the storm and checks exactly-once; returns the report.
pub async fn run(args: &StormArgs) -> anyhow::Result<Value> {
    let http = crate::client(args.scanners * 2)?;
    let password = match &args.password {
        Some(p) => p.clone(),
        None => std::env::var("LOADTEST_PASSWORD")
            .context("give --password or LOADTEST_PASSWORD for the organizer/admin account")?,
    };
    let token = crate::login(&http, &args.base, &args.email, &password).await?;
    let (event, codes) = tickets(&http, &token, &args.base, args.tickets).await?;
    println!("checkin-storm: {} tickets of event {event}", codes.len());
    prepare(&http, &token, &args.base, &event).await?;
    let caches_before = cache_lookups(&http, &args.base).await?;
    let ws_url = format!("{}/api/v1/ws", args.base.replacen("http", "ws", 1));
    let (total, elapsed, latency, tally) =
        scan_all(args, &ws_url, &token, &event, std::sync::Arc::new(codes)).await?;
    let caches = cache_rates(&caches_before, &cache_lookups(&http, &args.base).await?);
    let checked_in = export_checked_in(&http, &token, &args.base, &event).await?;
    let exactly_once = tally.admitted == args.tickets
        && tally.each_once()
        && tally.duplicates == tally.injected
        && tally.retries_ok == tally.retries
        && tally.other.is_empty()
        && checked_in == args.tickets;
    let per_sec = total as f64 / elapsed.as_secs_f64();
    let q = |x: f64| latency.value_at_quantile(x) as f64 / 1000.0;
    println!(
        "checkin-storm: {total} scans by {} scanners in {:.2}s = {per_sec:.0} scans/s",
        args.scanners,
        elapsed.as_secs_f64()
    );
    println!(
        "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        latency.max() as f64 / 1000.0
    );
    println!("  cache hit rates during the scans: {caches}");
    let noop_per_sec = noop_rate(args, &ws_url, &token, total, per_sec).await?;
    println!(
        "verify: admitted {} of {} tickets (each once: {}), duplicates {} of {} injected, retries answered alike {} of {}, other {:?}, export shows {checked_in} checked in: {}",
        tally.admitted,
        args.tickets,
        tally.each_once(),
        tally.duplicates,
        tally.injected,
        tally.retries_ok,
        tally.retries,
        tally.other,
        if exactly_once { "OK" } else { "FAILED" }
    );
    let report = json!({
        "scans": total, "scanners": args.scanners, "tickets": args.tickets,
        "elapsed_s": elapsed.as_secs_f64(), "scans_per_sec": per_sec,
        "latency_ms": {"p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999)},
        "admitted": tally.admitted, "duplicates": tally.duplicates,
        "duplicates_injected": tally.injected, "retries": tally.retries,
        "retries_answered_alike": tally.retries_ok, "export_checked_in": checked_in,
        "exactly_once": exactly_once, "cache_hit_rates": caches,
        "noop_frames_per_sec": noop_per_sec, "ratio_scans_to_noop": per_sec / noop_per_sec,
    });
    if !exactly_once {
        bail!("exactly-once check failed: {report}");
    }
    Ok(report)
}

/// Doors prep, as an organizer would run it before opening (a server with the code cache off
/// answers it too, and then every scan pays the signature arithmetic).
async fn prepare(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    event: &str,
) -> anyhow::Result<()> {
    let prepared: Value = http
        .post(format!("{base}/api/v1/events/{event}/check-in/prepare"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "checkin-storm: prepared {} codes in {} ms (server remembers {})",
        prepared["tickets"], prepared["elapsed_ms"], prepared["remembered"]
    );
    Ok(())
}

/// Every scanner's plan, run at once; returns scans sent, the time they took, their latency
/// and what came back.
async fn scan_all(
    args: &StormArgs,
    ws_url: &str,
    token: &str,
    event: &str,
    codes: std::sync::Arc<Vec<String>>,
) -> anyhow::Result<(usize, Duration, Histogram<u64>, Tally)> {
    let plans = plan(args, args.tickets);
    let total: usize = plans.iter().map(Vec::len).sum();
    let started = Instant::now();
    let runs = plans.into_iter().map(|p| {
        tokio::spawn(scanner(
            ws_url.to_owned(),
            token.to_owned(),
            event.to_owned(),
            codes.clone(),
            p,
            args.window.max(1),
        ))
    });
    let outcomes = futures::future::join_all(runs).await;
    let elapsed = started.elapsed();
    println!("checkin-storm: scans answered; checking");
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut tally = Tally {
        admitted_codes: vec![0; args.tickets],
        ..Tally::default()
    };
    for outcome in outcomes {
        let (plan, seen) = outcome??;
        for l in &seen.latency {
            latency.record((*l).max(1))?;
        }
        tally.record(&plan, &seen);
    }
    Ok((total, elapsed, latency, tally))
}

/// The server's own account: tickets its export shows as checked in.
async fn export_checked_in(
    http: &reqwest::Client,
    token: &str,
    base: &str,
    event: &str,
) -> anyhow::Result<usize> {
    let export = http
        .get(format!("{base}/api/v1/events/{event}/tickets.csv"))
        .bearer_auth(token)
        .send()
        .await?
        .text()
        .await?;
    Ok(export
        .lines()
        .skip(1)
        .filter(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            cells.get(9).is_some_and(|c| !c.is_empty())
        })
        .count())
}

/// The same number of frames as no-op pings, same connections and window: the ratio compares
/// scans with what the transport and this load generator can do in the same run.
async fn noop_rate(
    args: &StormArgs,
    ws_url: &str,
    token: &str,
    total: usize,
    scans_per_sec: f64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let per_conn = total.div_ceil(args.scanners);
    let pings = (0..args.scanners).map(|_| {
        tokio::spawn(pinger(
            ws_url.to_owned(),
            token.to_owned(),
            per_conn,
            args.window.max(1),
        ))
    });
    let mut noop_latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for outcome in futures::future::join_all(pings).await {
        for l in outcome?? {
            noop_latency.record(l.max(1))?;
        }
    }
    let noop_elapsed = started.elapsed().as_secs_f64();
    let noop_per_sec = (per_conn * args.scanners) as f64 / noop_elapsed;
    println!(
        "noop: {} pings in {:.2}s = {noop_per_sec:.0} frames/s, p50 {:.2} p99 {:.2} ms; ratio scans/s ÷ no-op frames/s = {:.3}",
        per_conn * args.scanners,
        noop_elapsed,
        noop_latency.value_at_quantile(0.5) as f64 / 1000.0,
        noop_latency.value_at_quantile(0.99) as f64 / 1000.0,
        scans_per_sec / noop_per_sec
    );
    Ok(noop_per_sec)
}

/// `regengine_cache_lookups_total` of the server's caches, by (cache, result); empty for a server
/// that does not count them.
async fn cache_lookups(
    http: &reqwest::Client,
    base: &str,
) -> anyhow::Result<HashMap<(String, String), f64>> {
    let text = crate::metrics_text(http, base).await?;
    let label = |labels: &str, name: &str| {
        let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
        let len = labels[start..].find('"')?;
        Some(labels[start..start + len].to_owned())
    };
    Ok(crate::samples(&text, &["regengine_cache_lookups_total{"])
        .into_iter()
        .filter_map(|(series, value)| {
            let key = (label(series, "cache")?, label(series, "result")?);
            Some((key, value))
        })
        .collect())
}

/// Hits, misses and hit rate per cache between two readings of [`cache_lookups`].
fn cache_rates(
    before: &HashMap<(String, String), f64>,
    after: &HashMap<(String, String), f64>,
) -> Value {
    let delta = |cache: &str, result: &str| {
        let key = (cache.to_owned(), result.to_owned());
        after.get(&key).copied().unwrap_or(0.0) - before.get(&key).copied().unwrap_or(0.0)
    };
    let mut caches: Vec<&String> = after.keys().map(|(cache, _)| cache).collect();
    caches.sort();
    caches.dedup();
    let rates: serde_json::Map<String, Value> = caches
        .into_iter()
        .map(|cache| {
            let (hits, misses) = (delta(cache, "hit"), delta(cache, "miss"));
            let rate = if hits + misses > 0.0 {
                json!(hits / (hits + misses))
            } else {
                Value::Null
            };
            (
                cache.clone(),
                json!({"hits": hits, "misses": misses, "hit_rate": rate}),
            )
        })
        .collect();
    Value::Object(rates)
}
