//! `webhooks`: webhook-to-confirmation throughput. N registrations are held and their Stripe
//! payments started (the gateway creates each PaymentIntent at a Stripe API stub this command
//! serves on `--stripe-stub`); then N `payment_intent.succeeded` events, signed here with the
//! webhook secret as Stripe signs them (plus `--duplicates` redeliveries, shuffled), are posted
//! to the gateway's webhook. Each 200 means the registration is confirmed durably (or the
//! delivery was a redelivery). Reports confirmations/s and the delivery latency, and checks
//! that every registration is confirmed once.
//!
//! Start the gateway with Stripe pointed at the stub first, e.g.
//! `REGENGINE__PAYMENTS__STRIPE__ENABLED=true
//!  REGENGINE__PAYMENTS__STRIPE__API_BASE=http://127.0.0.1:12111
//!  REGENGINE__PAYMENTS__STRIPE__SECRET_KEY=sk_test_loadtest
//!  REGENGINE__PAYMENTS__STRIPE__WEBHOOK_SECRETS='["whsec_loadtest"]'`.

use crate::{CommonArgs, drive, login, post, setup_event};
use anyhow::Context;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// `webhooks` settings.
#[derive(clap::Args, Clone)]
pub struct WebhookArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where this command serves the Stripe API stub the gateway creates intents at.
    #[arg(long, default_value = "127.0.0.1:12111")]
    pub stripe_stub: String,
    /// The webhook signing secret the gateway is configured with.
    #[arg(long, default_value = "whsec_loadtest")]
    pub secret: String,
    /// Share of events delivered twice (shuffled in).
    #[arg(long, default_value_t = 0.3)]
    pub duplicates: f64,
    /// An organizer or admin account (e.g. the server's bootstrap admin).
    #[arg(long, default_value = "admin@loadtest.local")]
    pub email: String,
    /// Its password (default: the LOADTEST_PASSWORD environment variable).
    #[arg(long)]
    pub password: Option<String>,
}

/// Serves the few Stripe API answers the gateway needs: a PaymentIntent for every create, an
/// empty object for a cancel, a succeeded refund. HTTP/1.1 with keep-alive, loopback only.
async fn stripe_stub(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the Stripe stub on {addr}"))?;
    let counter = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let _ = serve(socket, counter).await;
            });
        }
    });
    Ok(())
}

async fn serve(socket: tokio::net::TcpStream, counter: Arc<AtomicU64>) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let path = request_line.split_whitespace().nth(1).unwrap_or_default();
        let answer = if path.ends_with("/cancel") {
            json!({"id": path, "status": "canceled"})
        } else if path.starts_with("/v1/refunds") {
            json!({"id": format!("re_lt{n}"), "status": "succeeded"})
        } else {
            let id = format!("pi_lt{n}");
            json!({"id": id, "client_secret": format!("{id}_secret_lt"), "status": "requires_payment_method"})
        };
        let answer = answer.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(answer.as_bytes()).await?;
    }
}

/// A started payment: (registration id, PaymentIntent id).
type Started = Option<(String, String)>;

/// `t=…,v1=…` for `payload`, as Stripe signs it.
fn signature(secret: &str, t: u64, payload: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    format!(
        "t={t},v1={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

pub async fn run(args: &WebhookArgs) -> anyhow::Result<Value> {
    let common = &args.common;
    stripe_stub(&args.stripe_stub).await?;
    let http = crate::client(common.concurrency)?;
    let password = match &args.password {
        Some(p) => p.clone(),
        None => std::env::var("LOADTEST_PASSWORD")
            .context("give --password or LOADTEST_PASSWORD for the organizer/admin account")?,
    };
    let token = Arc::new(login(&http, &common.base, &args.email, &password).await?);
    let n = common.requests;
    let (event, tt) = setup_event(&http, &token, &common.base, n as u32, 1).await?;
    let (setup, paid) = start_payments(common, &http, &token, &event, &tt).await?;
    let (deliveries, phase) = deliver(args, &http, &paid).await?;
    let confirmations_per_sec = n as f64 / phase.elapsed.as_secs_f64();
    println!(
        "confirmations: {n} in {:.2}s = {confirmations_per_sec:.0}/s ({deliveries} deliveries, {:.0}/s)",
        phase.elapsed.as_secs_f64(),
        phase.per_sec(phase.completed())
    );
    // Every registration confirmed once; the revenue summary agrees.
    let url = format!("{}/api/v1/events/{event}/payments/summary", common.base);
    let summary = crate::get_json(&http, &token, &url).await?;
    let captured = summary["lines"][0]["captured_minor"].as_i64().unwrap_or(0);
    let confirmed = summary["confirmed_paid"].as_u64().unwrap_or(0);
    let ok = confirmed == n as u64 && captured == 5000 * n as i64;
    println!(
        "verify: {confirmed} of {n} confirmed, captured {captured}: {}",
        if ok { "ok" } else { "MISMATCH" }
    );
    Ok(json!({
        "setup": setup.json(),
        "webhooks": phase.json(),
        "registrations": n,
        "deliveries": deliveries,
        "confirmations_per_sec": confirmations_per_sec,
        "verified": ok,
    }))
}

/// Holds `n` seats and starts their Stripe payments (setup, measured but not the point);
/// returns the phase and (registration, PaymentIntent) pairs.
async fn start_payments(
    common: &CommonArgs,
    http: &reqwest::Client,
    token: &Arc<String>,
    event: &str,
    tt: &str,
) -> anyhow::Result<(crate::Phase, Vec<(String, String)>)> {
    let n = common.requests;
    let intents: Arc<std::sync::Mutex<Vec<Started>>> =
        Arc::new(std::sync::Mutex::new(vec![None; n]));
    let (http, token, sink) = (http.clone(), token.clone(), intents.clone());
    let base = common.base.clone();
    let url = format!("{base}/api/v1/events/{event}/registrations");
    let tt = tt.to_owned();
    let setup = drive("hold+pay", common, move |i| {
        let (http, token, sink, base, url, tt) = (
            http.clone(),
            token.clone(),
            sink.clone(),
            base.clone(),
            url.clone(),
            tt.clone(),
        );
        async move {
            let started = Instant::now();
            let held = post(
                &http,
                Some(&token),
                &url,
                &json!({"ticket_type_id": tt, "quantity": 1,
                "attendee": {"name": "Payer", "email": format!("payer-{i}@loadtest.example.com")}}),
            )
            .await
            .ok()?;
            let id = held["id"].as_str()?.to_owned();
            let paying = post(
                &http,
                Some(&token),
                &format!("{base}/api/v1/registrations/{id}/payments"),
                &json!({"provider": "stripe"}),
            )
            .await
            .ok()?;
            let intent = paying["payment"]["provider_ref"].as_str()?.to_owned();
            sink.lock().unwrap_or_else(|e| e.into_inner())[i] = Some((id, intent));
            Some((201, 1, started.elapsed().as_micros() as u64))
        }
    })
    .await?;
    setup.print();
    let paid: Vec<(String, String)> = intents
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .flatten()
        .cloned()
        .collect();
    anyhow::ensure!(
        paid.len() == n,
        "only {} of {n} payments started",
        paid.len()
    );
    Ok((setup, paid))
}

/// Delivers every payment's signed `payment_intent.succeeded`, a share twice, shuffled;
/// returns the number of deliveries and the measured phase.
async fn deliver(
    args: &WebhookArgs,
    http: &reqwest::Client,
    paid: &[(String, String)],
) -> anyhow::Result<(usize, crate::Phase)> {
    let n = paid.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.extend((0..n).filter(|i| (*i as f64 * 0.618_033_988_75).fract() < args.duplicates));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let deliveries = order.len();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        paid.iter()
            .enumerate()
            .map(|(i, (id, intent))| {
                json!({"id": format!("evt_lt{i}"), "type": "payment_intent.succeeded", "data": {"object": {
                    "id": intent, "object": "payment_intent", "amount": 5000, "amount_received": 5000,
                    "currency": "eur", "metadata": {"registration_id": id}}}})
                .to_string()
                .into_bytes()
            })
            .collect(),
    );
    let order = Arc::new(order);
    let url = format!("{}/api/v1/payments/webhooks/stripe", args.common.base);
    let secret = args.secret.clone();
    let mut phase_args = args.common.clone();
    phase_args.requests = deliveries;
    let http = http.clone();
    let phase = drive("webhooks", &phase_args, move |k| {
        let (http, url, secret, bodies, order) = (
            http.clone(),
            url.clone(),
            secret.clone(),
            bodies.clone(),
            order.clone(),
        );
        async move {
            let body = bodies[order[k]].clone();
            let t = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            let started = Instant::now();
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .header("stripe-signature", signature(&secret, t, &body))
                .body(body)
                .send()
                .await
                .ok()?;
            let status = response.status().as_u16();
            response.bytes().await.ok()?;
            Some((status, 1, started.elapsed().as_micros() as u64))
        }
    })
    .await?;
    phase.print();
    Ok((deliveries, phase))
}
