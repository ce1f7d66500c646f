//! `loadtest cardinality`: how the metrics scrape grows with events, and whether it shrinks back.
//!
//! Creates N events (one ticket type each), sells and scans one ticket in each (so every
//! per-event family has a series), and scrapes `/metrics`: series in all, series labelled with
//! an event, bytes. Then, with `--wait-secs`, scrapes until no event series is left (the events
//! passivate after the server's `engine.passivate_after_secs` and the exporter drops their
//! series after as long again) and reports how long that took and what was left.

use crate::{login, post, setup_event};
use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

#[derive(Args, Clone)]
pub struct CardinalityArgs {
    /// Server base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base: String,
    /// Events to create, each with one sale and one scan.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Events set up at once.
    #[arg(long, short = 'c', default_value_t = 16)]
    concurrency: usize,
    /// How long to wait for the event series to leave the scrape (0: do not wait).
    #[arg(long, default_value_t = 0)]
    wait_secs: u64,
    /// An organizer or admin account (e.g. the server's bootstrap admin).
    #[arg(long, default_value = "admin@loadtest.local")]
    email: String,
    /// Its password (default: the LOADTEST_PASSWORD environment variable).
    #[arg(long)]
    password: Option<String>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "loadtest-report.json")]
    pub report: String,
}

/// One scrape, counted.
struct Scrape {
    series: usize,
    event_series: usize,
    bytes: usize,
    /// Time to fetch it (the server renders every family on each scrape).
    ms: f64,
}

impl Scrape {
    fn json(&self) -> Value {
        json!({"series": self.series, "event_series": self.event_series, "bytes": self.bytes,
               "ms": self.ms})
    }
}

async fn scrape(http: &reqwest::Client, base: &str) -> anyhow::Result<Scrape> {
    let started = Instant::now();
    let text = crate::metrics_text(http, base).await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let samples = || {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
    };
    Ok(Scrape {
        series: samples().count(),
        event_series: samples().filter(|l| l.contains("event=\"")).count(),
        bytes: text.len(),
        ms,
    })
}

/// An event with one ticket sold and scanned at the door.
async fn one_event(http: &reqwest::Client, token: &str, base: &str) -> anyhow::Result<()> {
    let (event, tt) = setup_event(http, token, base, 10, 1).await?;
    let held = post(
        http,
        Some(token),
        &format!("{base}/api/v1/events/{event}/registrations"),
        &json!({"ticket_type_id": tt, "quantity": 1,
                "attendee": {"name": "Guest", "email": "guest@example.com"}}),
    )
    .await?;
    let id = held["id"].as_str().context("registration id")?;
    let confirmed = post(
        http,
        Some(token),
        // The tickets cost money: issued as the box office does, marked paid.
        &format!("{base}/api/v1/registrations/{id}/mark-paid"),
        &json!({}),
    )
    .await?;
    let code = confirmed["tickets"][0]["code"]
        .as_str()
        .context("ticket code")?;
    post(
        http,
        Some(token),
        &format!("{base}/api/v1/events/{event}/check-ins"),
        &json!({"ticket_code": code, "gate": "main"}),
    )
    .await?;
    Ok(())
}

pub async fn run(args: &CardinalityArgs) -> anyhow::Result<Value> {
    let http = crate::client(args.concurrency)?;
    let password = match &args.password {
        Some(p) => p.clone(),
        None => std::env::var("LOADTEST_PASSWORD")
            .context("give --password or LOADTEST_PASSWORD for the organizer/admin account")?,
    };
    let token = login(&http, &args.base, &args.email, &password).await?;
    let before = scrape(&http, &args.base).await?;
    let started = Instant::now();
    let indices: Vec<usize> = (0..args.events).collect();
    for chunk in indices.chunks(args.concurrency.max(1)) {
        let batch = chunk.iter().map(|_| one_event(&http, &token, &args.base));
        for result in futures::future::join_all(batch).await {
            result?;
        }
    }
    let setup_secs = started.elapsed().as_secs_f64();
    let loaded = scrape(&http, &args.base).await?;
    println!(
        "before: {} series; after {} events (set up in {setup_secs:.1} s): {} series, {} with an \
         event label, {} bytes, scraped in {:.1} ms",
        before.series, args.events, loaded.series, loaded.event_series, loaded.bytes, loaded.ms
    );
    let mut report = json!({
        "events": args.events, "before": before.json(), "loaded": loaded.json(),
        "setup_secs": setup_secs,
    });
    if args.wait_secs > 0 {
        let waited = Instant::now();
        let deadline = waited + Duration::from_secs(args.wait_secs);
        let mut last = scrape(&http, &args.base).await?;
        while last.event_series > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            last = scrape(&http, &args.base).await?;
        }
        println!(
            "after {:.0} s idle: {} series, {} with an event label, {} bytes",
            waited.elapsed().as_secs_f64(),
            last.series,
            last.event_series,
            last.bytes
        );
        report["idle"] = json!({"secs": waited.elapsed().as_secs_f64(), "scrape": last.json()});
    }
    Ok(report)
}
