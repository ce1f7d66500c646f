//! Invoices end to end: paid registrations (through localstripe, and at the box office) get
//! invoices numbered 1, 2, 3, … per organizer with no gaps, refunds get credit notes in the
//! same sequence, a kill -9 neither skips nor reuses a number, and the PDFs read back with
//! poppler's `pdftotext` show the number, the parties, the lines and the totals.

use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, LocalStripe, Server, pdftotext, wait_for};

const WEBHOOK_SECRET: &str = "whsec_invoices_test";

fn gateway(dir: &std::path::Path, stripe: &LocalStripe) -> Server {
    let secrets = format!("[\"{WEBHOOK_SECRET}\"]");
    Server::start(
        dir,
        &[
            ("PAYMENTS__STRIPE__ENABLED", "true"),
            ("PAYMENTS__STRIPE__API_BASE", stripe.base.as_str()),
            ("PAYMENTS__STRIPE__SECRET_KEY", tests::STRIPE_SECRET_KEY),
            ("PAYMENTS__STRIPE__WEBHOOK_SECRETS", secrets.as_str()),
        ],
    )
}

/// Signs `email` in again (after a restart).
async fn login(server: &Server, email: &str) -> Api {
    let api = Api::new(server);
    let r = api
        .post(
            "/api/v1/auth/login",
            &json!({"email": email, "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    api.with_token(Some(r.str("access_token")))
}

/// A published event of `org` with `invoicing` settings and one ticket type at `price_minor`
/// EUR and `vat_rate_bp`; returns (event, ticket type).
async fn event_with(
    org: &Api,
    invoicing: Value,
    price_minor: i64,
    vat_rate_bp: u16,
) -> (String, String) {
    let event = org
        .post(
            "/api/v1/events",
            &json!({"title": "Sommerfest", "starts_at": "2030-06-01T18:00:00Z",
                    "ends_at": "2030-06-01T23:00:00Z", "invoicing": invoicing}),
            None,
        )
        .await;
    assert_eq!(event.status, 201, "{event:?}");
    let id = event.str("id");
    let tt = org
        .post(
            &format!("/api/v1/events/{id}/ticket-types"),
            &json!({"name": "Standard", "price_minor": price_minor, "currency": "EUR",
                    "capacity": 20, "vat_rate_bp": vat_rate_bp}),
            None,
        )
        .await;
    assert_eq!(tt.status, 201, "{tt:?}");
    let published = org
        .post(&format!("/api/v1/events/{id}/publish"), &json!({}), None)
        .await;
    assert_eq!(published.status, 200, "{published:?}");
    (id, tt.str("id"))
}

/// Waits until the registration has `n` documents; returns them.
async fn documents(api: &Api, id: &str, n: usize) -> Vec<Value> {
    let path = format!("/api/v1/registrations/{id}/invoices");
    let found = wait_for(Duration::from_secs(20), || {
        let path = path.clone();
        async move {
            let r = api.get(&path).await;
            assert_eq!(r.status, 200, "{r:?}");
            let docs = r.body["documents"].as_array().cloned().unwrap_or_default();
            (docs.len() >= n).then_some(docs)
        }
    })
    .await;
    match found {
        Some(docs) => docs,
        None => panic!(
            "{id} never had {n} documents: {:?}",
            api.get(&path).await.body
        ),
    }
}

/// The text of a PDF the API serves at `path`.
async fn pdf_text(api: &Api, path: &str) -> String {
    let (status, content_type, bytes) = api.get_bytes(path).await;
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&bytes));
    assert_eq!(content_type, "application/pdf");
    pdftotext(&bytes)
}

fn assert_shows(text: &str, expected: &[&str]) {
    for e in expected {
        assert!(text.contains(e), "{e:?} not in:\n{text}");
    }
}

async fn mark_paid(org: &Api, id: &str) {
    let r = org
        .post(
            &format!("/api/v1/registrations/{id}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_registrations_get_gapless_invoices_and_refunds_get_credit_notes() {
    let stripe = LocalStripe::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = gateway(&data, &stripe);
    stripe
        .register_webhook(
            &server.url("/api/v1/payments/webhooks/stripe"),
            WEBHOOK_SECRET,
        )
        .await;
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (_, olga) = admin.account("olga@example.com", &["organizer"]).await;
    let (event, tt) = event_with(
        &olga,
        json!({"seller_name": "Konzert GmbH", "seller_address": ["Hauptstr. 1", "10115 Berlin"],
               "seller_vat_id": "DE123456789"}),
        8500,
        1900,
    )
    .await;
    let buyer = admin.buyer("ada@example.com").await;

    // 1. Paid through Stripe: 2 × 85.00 gross at 19 %, VAT decided with the hold.
    let held = buyer.hold(&event, &tt, 2, None).await;
    assert_eq!(held.status, 201, "{held:?}");
    assert_eq!(
        held.body["price"]["vat"],
        json!({"rate_bp": 1900, "included": true, "net_minor": 14286, "vat_minor": 2714})
    );
    let first = held.str("id");
    // Billing details for the invoice (a company); invalid ones are refused, nothing starts.
    let invalid = buyer
        .post(
            &format!("/api/v1/registrations/{first}/payments"),
            &json!({"provider": "stripe", "billing": {"name": "", "vat_id": "x".repeat(40)}}),
            None,
        )
        .await;
    assert_eq!(invalid.status, 422, "{invalid:?}");
    let started = buyer
        .post(
            &format!("/api/v1/registrations/{first}/payments"),
            &json!({"provider": "stripe", "billing": {"name": "Analytical Engines Ltd",
                "address": ["12 St James's Square", "London SW1Y 4JH"], "vat_id": "GB123456789"}}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    stripe
        .pay(started.body["payment"]["provider_ref"].as_str().unwrap())
        .await;
    // The invoice relay issues the invoice after the webhook confirmed the registration.
    let docs = documents(&buyer, &first, 1).await;
    assert_eq!(docs[0]["number"], 1);
    assert_eq!(docs[0]["display_number"], "INV-000001");
    assert_eq!(docs[0]["kind"], "invoice");
    assert_eq!(
        (
            docs[0]["gross_minor"].as_i64(),
            docs[0]["vat_minor"].as_i64()
        ),
        (Some(17_000), Some(2_714))
    );
    let text = pdf_text(
        &buyer,
        &format!("/api/v1/registrations/{first}/invoice.pdf"),
    )
    .await;
    assert_shows(
        &text,
        &[
            "Invoice",
            "INV-000001",
            "Konzert GmbH",
            "10115 Berlin",
            "VAT ID DE123456789",
            "Analytical Engines Ltd",
            "London SW1Y 4JH",
            "VAT ID GB123456789",
            "buyer@example.com",
            "Standard – Sommerfest",
            "85.00 EUR",
            "170.00 EUR",
            "142.86 EUR",
            "27.14 EUR",
            "19 %",
            "Paid (stripe)",
        ],
    );
    let (status, content_type, html) = buyer
        .get_bytes(&format!("/api/v1/registrations/{first}/invoice.html"))
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    let html = String::from_utf8(html).unwrap();
    assert!(
        html.contains("INV-000001") && html.contains("170.00 EUR"),
        "{html}"
    );

    // 2. The box office: asking for the invoice issues it at once (no wait for the relay).
    let second = buyer.hold(&event, &tt, 1, None).await.str("id");
    mark_paid(&olga, &second).await;
    let text = pdf_text(
        &olga,
        &format!("/api/v1/registrations/{second}/invoice.pdf"),
    )
    .await;
    assert_shows(
        &text,
        &[
            "INV-000002",
            "85.00 EUR",
            "13.57 EUR",
            "Paid (manual)",
            "Buyer",
        ],
    );

    // 3. A partial refund of the first (at Stripe, through the relay): a credit note, next
    //    number, crediting exactly the refund.
    let refund = olga
        .post(
            &format!("/api/v1/registrations/{first}/refunds"),
            &json!({"amount_minor": 5000}),
            None,
        )
        .await;
    assert_eq!(refund.status, 202, "{refund:?}");
    let docs = documents(&buyer, &first, 2).await;
    assert_eq!(docs[1]["number"], 3);
    assert_eq!(docs[1]["kind"], "credit_note");
    assert_eq!(docs[1]["corrects"], 1);
    assert_eq!(docs[1]["gross_minor"], -5000);
    let text = pdf_text(&buyer, docs[1]["pdf"].as_str().unwrap()).await;
    assert_shows(
        &text,
        &[
            "Credit note",
            "INV-000003",
            "Corrects invoice",
            "INV-000001",
            "-50.00 EUR",
        ],
    );

    // Bad input changes nothing: not paid yet, someone else's, malformed or unknown files.
    let unpaid = buyer.hold(&event, &tt, 1, None).await.str("id");
    let r = buyer
        .get(&format!("/api/v1/registrations/{unpaid}/invoice.pdf"))
        .await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (404, Some("invoice_not_found")),
        "{r:?}"
    );
    assert_eq!(
        buyer
            .get(&format!("/api/v1/registrations/{unpaid}/invoices"))
            .await
            .body["documents"],
        json!([])
    );
    let eve = admin.buyer("eve@example.com").await;
    let r = eve
        .get(&format!("/api/v1/registrations/{first}/invoice.pdf"))
        .await;
    assert!(matches!(r.status, 403 | 404), "{r:?}");
    for (file, status) in [
        ("abc.pdf", 400),
        ("1.txt", 400),
        ("1", 400),
        ("99.pdf", 404),
        ("2.pdf", 404),
    ] {
        let r = buyer
            .get(&format!("/api/v1/registrations/{first}/invoices/{file}"))
            .await;
        assert_eq!(r.status, status, "{file}: {r:?}");
        assert_eq!(r.content_type, "application/problem+json", "{file}");
    }

    // Another organizer numbers from 1; net prices add VAT on top (100.00 + 7 %).
    let (_, nils) = admin.account("nils@example.com", &["organizer"]).await;
    let (net_event, net_tt) = event_with(
        &nils,
        json!({"seller_name": "Nils Events", "prices_include_vat": false}),
        10_000,
        700,
    )
    .await;
    let held = buyer.hold(&net_event, &net_tt, 2, None).await;
    assert_eq!(held.body["price"]["total_minor"], 21_400, "{held:?}");
    mark_paid(&nils, &held.str("id")).await;
    let text = pdf_text(
        &buyer,
        &format!("/api/v1/registrations/{}/invoice.pdf", held.str("id")),
    )
    .await;
    assert_shows(
        &text,
        &[
            "INV-000001",
            "Nils Events",
            "100.00 EUR",
            "200.00 EUR",
            "14.00 EUR",
            "214.00 EUR",
            "7 %",
            "Amounts exclude VAT",
        ],
    );

    // kill -9: the ledger continues where it was, nothing skipped or reused.
    server.kill9();
    let server = gateway(&data, &stripe);
    let buyer = login(&server, "ada@example.com").await;
    buyer.wait_ready().await;
    let olga = login(&server, "olga@example.com").await;
    let fourth = buyer.hold(&event, &tt, 1, None).await.str("id");
    mark_paid(&olga, &fourth).await;
    let docs = documents(&buyer, &fourth, 1).await;
    assert_eq!(docs[0]["number"], 4);
    // A full refund of the box-office sale: a credit note mirroring its invoice.
    let refund = olga
        .post(
            &format!("/api/v1/registrations/{second}/refunds"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(refund.status, 202, "{refund:?}");
    let docs = documents(&olga, &second, 2).await;
    assert_eq!(
        (docs[1]["number"].as_u64(), docs[1]["gross_minor"].as_i64()),
        (Some(5), Some(-8500))
    );
    assert_eq!(docs[1]["vat_minor"], -1357);
    // Every number of the organizer's ledger, once each.
    let mut numbers = Vec::new();
    for id in [&first, &second, &fourth] {
        for d in documents(&olga, id, 1).await {
            numbers.push(d["number"].as_u64().unwrap());
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, vec![1, 2, 3, 4, 5]);
    // The organizer's books: the ledger in number order, paged, and as CSV.
    let page = olga.get("/api/v1/users/me/invoices?limit=3").await;
    assert_eq!(page.status, 200, "{page:?}");
    let listed: Vec<u64> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["number"].as_u64().unwrap())
        .collect();
    assert_eq!(
        (listed, page.body["next"].as_u64()),
        (vec![1, 2, 3], Some(3))
    );
    let rest = olga.get("/api/v1/users/me/invoices?after=3").await;
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 2);
    assert_eq!(rest.body["next"], serde_json::Value::Null);
    assert_eq!(rest.body["items"][1]["kind"], "credit_note");
    let (status, content_type, csv) = olga.get_bytes("/api/v1/users/me/invoices.csv").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    let csv = String::from_utf8(csv).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 6, "{csv}");
    assert!(rows[1].starts_with("1,INV-000001,invoice,,"), "{csv}");
    assert!(
        rows[1].contains("Analytical Engines Ltd,GB123456789,EUR,14286,2714,17000"),
        "{csv}"
    );
    assert!(rows[5].starts_with("5,INV-000005,credit_note,2,"), "{csv}");
    // Nobody else's books: the buyer has none.
    let theirs = buyer.get("/api/v1/users/me/invoices").await;
    assert_eq!(theirs.body["items"], serde_json::json!([]));
    assert_eq!(
        olga.get("/api/v1/users/me/invoices?limit=0").await.status,
        400
    );
}
