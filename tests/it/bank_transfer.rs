//! Bank transfers end to end: a structured creditor reference per registration, the seats
//! held until the transfer's deadline, and uploaded statements matched by reference and
//! amount (exact matches confirm, anything else is listed and changes nothing).

use serde_json::json;
use std::time::Duration;
use tests::{Api, Server};

/// Groups of four, as a reference is printed on an invoice and typed by a buyer.
fn printed(reference: &str) -> String {
    reference
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

async fn upload(api: &Api, event: &str, csv: &str) -> tests::Reply {
    api.post_raw(
        &format!("/api/v1/events/{event}/bank-statements"),
        "text/csv",
        csv.as_bytes().to_vec(),
    )
    .await
}

/// Holds `quantity` seats and starts paying them by transfer; the registration and the
/// answer's `bank` instructions.
async fn transfer_started(
    buyer: &Api,
    event: &str,
    tt: &str,
    quantity: i64,
) -> (String, serde_json::Value) {
    let id = buyer.hold(event, tt, quantity, None).await.str("id");
    let started = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "bank_transfer"}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    (id, started.body["bank"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_confirm_exact_transfers_and_list_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[
            ("PAYMENTS__BANK_TRANSFER__ENABLED", "true"),
            ("PAYMENTS__BANK_TRANSFER__PAYEE", "Night at the Opera Ltd"),
            ("PAYMENTS__BANK_TRANSFER__IBAN", "DE89370400440532013000"),
            ("PAYMENTS__BANK_TRANSFER__BIC", "COBADEFFXXX"),
        ],
    );
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    // Holds of 10 minutes; a transfer keeps the seats for 72 hours.
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ada@example.com").await;
    let mut regs = Vec::new();
    for _ in 0..2 {
        let (id, bank) = transfer_started(&buyer, &event, &tt, 2).await;
        assert_eq!(bank["iban"], "DE89370400440532013000");
        assert_eq!(bank["amount"], "90.00");
        assert_eq!(bank["currency"], "EUR");
        let reference = bank["reference"].as_str().unwrap().to_owned();
        assert!(reference.starts_with("RF"), "{reference}");
        let deadline =
            chrono::DateTime::parse_from_rfc3339(bank["deadline"].as_str().unwrap()).unwrap();
        assert!(
            deadline > chrono::Utc::now() + chrono::Duration::hours(71),
            "held until the deadline"
        );
        regs.push((id, reference));
    }
    let ((ada, ada_ref), (bob, bob_ref)) = (regs[0].clone(), regs[1].clone());
    let statement = format!(
        "ID,Date,Name,Reference,Amount,Currency\n\
         L1,2026-12-02,Ada Lovelace,\"Opera {}\",90.00,EUR\n\
         L2,2026-12-02,Bob,{bob_ref},45.00,EUR\n\
         L3,2026-12-02,Someone,rent december,1200.00,EUR\n\
         L4,2026-12-02,Bank,fees,-3.20,EUR\n",
        printed(&ada_ref)
    );
    // Only managers upload; only CSV; an unreadable statement applies nothing.
    assert_eq!(upload(&buyer, &event, &statement).await.status, 403);
    let json_body = admin
        .post(
            &format!("/api/v1/events/{event}/bank-statements"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(json_body.status, 415, "{json_body:?}");
    let broken = upload(&admin, &event, &statement.replace("Currency", "Curr")).await;
    assert_eq!(broken.status, 422, "{broken:?}");
    assert_eq!(
        admin
            .get(&format!("/api/v1/registrations/{ada}"))
            .await
            .body["status"],
        "held"
    );

    let result = upload(&admin, &event, &statement).await;
    assert_eq!(result.status, 200, "{result:?}");
    assert_eq!(result.body["lines"], 3, "the debit is skipped");
    assert_eq!(result.body["applied"], 1);
    let exceptions = result.body["exceptions"].as_array().unwrap();
    assert_eq!(exceptions.len(), 2, "{exceptions:?}");
    assert_eq!(exceptions[0]["reason"], "partial");
    assert_eq!(exceptions[0]["registration_id"], bob.as_str());
    assert_eq!(exceptions[0]["expected_minor"], 9000);
    assert_eq!(exceptions[1]["reason"], "unmatched");
    let paid = admin
        .get(&format!("/api/v1/registrations/{ada}"))
        .await
        .body;
    assert_eq!(paid["status"], "confirmed");
    assert_eq!(paid["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(paid["payment"]["provider"], "bank_transfer");
    assert_eq!(
        admin
            .get(&format!("/api/v1/registrations/{bob}"))
            .await
            .body["status"],
        "held"
    );
    // The same statement again: nothing twice.
    let again = upload(&admin, &event, &statement).await;
    assert_eq!(
        (
            again.body["applied"].as_u64(),
            again.body["duplicates"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert_eq!(admin.availability(&event).await, (10, 2, 2, 6));

    // An event with its own payee and deadline; invalid settings are refused.
    let bad = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Gala", "starts_at": "2030-07-01T18:00:00Z", "ends_at": "2030-07-01T23:00:00Z",
                "bank_transfer": {"payee": "", "iban": "not an iban", "bic": "X", "deadline_hours": 0}}),
            None,
        )
        .await;
    assert_eq!(bad.status, 422, "{bad:?}");
    assert_eq!(bad.body["errors"].as_array().unwrap().len(), 4, "{bad:?}");
    let gala = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Gala", "starts_at": "2030-07-01T18:00:00Z", "ends_at": "2030-07-01T23:00:00Z",
                "bank_transfer": {"payee": "Gala Foundation", "iban": "NL91ABNA0417164300", "deadline_hours": 24}}),
            None,
        )
        .await;
    assert_eq!(gala.status, 201, "{gala:?}");
    assert_eq!(gala.body["bank_transfer"]["payee"], "Gala Foundation");
    let gala = gala.str("id");
    let gala_tt = admin
        .post(
            &format!("/api/v1/events/{gala}/ticket-types"),
            &json!({"name": "Seat", "price_minor": 12000, "currency": "EUR", "capacity": 5}),
            None,
        )
        .await
        .str("id");
    admin
        .post(&format!("/api/v1/events/{gala}/publish"), &json!({}), None)
        .await;
    let id = buyer.hold(&gala, &gala_tt, 1, None).await.str("id");
    let started = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "bank_transfer"}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    assert_eq!(started.body["bank"]["payee"], "Gala Foundation");
    assert_eq!(started.body["bank"]["iban"], "NL91ABNA0417164300");
    assert_eq!(started.body["bank"]["amount"], "120.00");
    let deadline =
        chrono::DateTime::parse_from_rfc3339(started.body["bank"]["deadline"].as_str().unwrap())
            .unwrap();
    let in_a_day = chrono::Utc::now() + chrono::Duration::hours(24);
    assert!(
        (deadline.to_utc() - in_a_day).num_minutes().abs() < 5,
        "{deadline}"
    );
    server.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_bank_transfer_without_a_payee() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(5, 600, 4, 4500).await;
    let id = admin.hold(&event, &tt, 1, None).await.str("id");
    let refused = admin
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "bank_transfer"}),
            None,
        )
        .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (422, Some("provider_not_configured")),
        "{refused:?}"
    );
    assert!(admin.get(&format!("/api/v1/registrations/{id}")).await.body["payment"].is_null());
    server.terminate(Duration::from_secs(10));
}

/// Transfers with a deadline one hour out, reminded 3599 s before it: due a second after the
/// start.
const REMINDING: &[(&str, &str)] = &[
    ("PAYMENTS__BANK_TRANSFER__ENABLED", "true"),
    ("PAYMENTS__BANK_TRANSFER__PAYEE", "Night at the Opera Ltd"),
    ("PAYMENTS__BANK_TRANSFER__IBAN", "DE89370400440532013000"),
    ("PAYMENTS__BANK_TRANSFER__DEADLINE_HOURS", "1"),
    ("PAYMENTS__BANK_TRANSFER__REMINDER_BEFORE_SECS", "3599"),
];

/// A transfer that has not arrived `reminder_before_secs` before its deadline is reminded to
/// the buyer once, through the outbox (its file adapter here), with the amount, the reference
/// and the deadline; a paid one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_still_due_is_reminded_once_before_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), REMINDING);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ada@example.com").await;
    let mut started = Vec::new();
    for _ in 0..2 {
        started.push(transfer_started(&buyer, &event, &tt, 1).await);
    }
    // The second one is paid at once (the box office took it): no reminder for it.
    let paid = admin
        .post(
            &format!("/api/v1/registrations/{}/mark-paid", started[1].0),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let reminders = tests::wait_for(Duration::from_secs(20), || async {
        let all = tests::mailed(&server, "buyer@example.com", "payment_reminder");
        (!all.is_empty()).then_some(all)
    })
    .await
    .expect("a payment_reminder was sent");
    let (unpaid, bank) = &started[0];
    let text = reminders[0]["text"].as_str().unwrap();
    assert!(text.contains("45.00 EUR"), "{text}");
    assert!(text.contains(bank["reference"].as_str().unwrap()), "{text}");
    assert!(
        reminders[0]["link"]
            .as_str()
            .unwrap()
            .ends_with(unpaid.as_str())
    );
    // Once: a later expiry pass (another hold's) sends nothing more, nor a restart.
    let server = server.restart(REMINDING);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let short = admin.published_priced_event(1, 1, 1, 100).await;
    let held = admin.hold(&short.0, &short.1, 1, None).await.str("id");
    let expired = tests::wait_for(Duration::from_secs(20), || {
        let (admin, held) = (admin.clone(), held.clone());
        async move {
            let r = admin.get(&format!("/api/v1/registrations/{held}")).await;
            (r.body["status"] == "expired").then_some(())
        }
    })
    .await;
    assert!(expired.is_some());
    // The registration's pool is active again (recovery), its reminder done. A message queued
    // now is delivered after anything the recovery queued (the outbox goes oldest first).
    let status = admin.get(&format!("/api/v1/registrations/{unpaid}")).await;
    assert_eq!(status.body["status"], "held");
    admin.buyer("zed@example.com").await;
    tests::mailed_token(&server, "zed@example.com", "verify_email", 1).await;
    assert_eq!(
        tests::mailed(&server, "buyer@example.com", "payment_reminder").len(),
        1,
        "reminded once"
    );
}

const BANK: &[(&str, &str)] = &[
    ("PAYMENTS__BANK_TRANSFER__ENABLED", "true"),
    ("PAYMENTS__BANK_TRANSFER__PAYEE", "Night at the Opera Ltd"),
    ("PAYMENTS__BANK_TRANSFER__IBAN", "DE89370400440532013000"),
];

/// Credits that do not fit are kept, once per line and across restarts, until a manager
/// applies, refunds or ignores each; applying pays the registration, never a partial credit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_exceptions_stay_until_a_manager_applies_refunds_or_ignores_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), BANK);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ann@example.com").await;
    let mut regs = Vec::new();
    for _ in 0..3 {
        let (id, bank) = transfer_started(&buyer, &event, &tt, 1).await;
        regs.push((id, bank["reference"].as_str().unwrap().to_owned()));
    }
    let ((ann, ann_ref), (bob, bob_ref), (cat, _)) =
        (regs[0].clone(), regs[1].clone(), regs[2].clone());
    let statement = format!(
        "id,name,reference,amount,currency\n\
         L1,Ann,{ann_ref},50.00,EUR\n\
         L2,Bob,{bob_ref},20.00,EUR\n\
         L3,Cat,tickets for cat,45.00,EUR\n\
         L4,Landlord,rent,1200.00,EUR\n"
    );
    let result = upload(&admin, &event, &statement).await;
    assert_eq!(result.status, 200, "{result:?}");
    assert_eq!(result.body["applied"], 0);
    let reasons: Vec<&str> = result.body["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["over", "partial", "unmatched", "unmatched"]);
    // Uploaded again, then a restart: the same four, open.
    assert_eq!(upload(&admin, &event, &statement).await.status, 200);
    let server = server.restart(BANK);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let list = |status: &'static str| {
        let (admin, event) = (admin.clone(), event.clone());
        async move {
            admin
                .get(&format!(
                    "/api/v1/events/{event}/bank-statements/exceptions?status={status}"
                ))
                .await
        }
    };
    let open = list("open").await;
    assert_eq!(
        open.body["exceptions"].as_array().unwrap().len(),
        4,
        "{open:?}"
    );
    let buyer = Api::new(&server).with_token(buyer.token.clone());
    let listed_by_buyer = buyer
        .get(&format!(
            "/api/v1/events/{event}/bank-statements/exceptions"
        ))
        .await;
    assert_eq!(listed_by_buyer.status, 403);

    let resolve = |line: &'static str, body: serde_json::Value| {
        let (admin, event) = (admin.clone(), event.clone());
        async move {
            admin
                .post(
                    &format!("/api/v1/events/{event}/bank-statements/exceptions/{line}/resolve"),
                    &body,
                    None,
                )
                .await
        }
    };
    let status_of = |id: String| {
        let admin = admin.clone();
        async move {
            admin.get(&format!("/api/v1/registrations/{id}")).await.body["status"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    // The over-payment pays Ann; 5.00 is to go back by hand. Once.
    let applied = resolve("L1", json!({"action": "apply", "note": "5.00 back"})).await;
    assert_eq!(applied.status, 200, "{applied:?}");
    let resolution = &applied.body["resolution"];
    assert_eq!(resolution["action"], "apply");
    assert_eq!(resolution["registration_id"], ann.as_str());
    assert_eq!(resolution["to_refund_minor"], 500);
    assert_eq!(status_of(ann.clone()).await, "confirmed");
    let twice = resolve("L1", json!({"action": "ignore"})).await;
    assert_eq!(
        (twice.status, twice.body["code"].as_str()),
        (409, Some("already_resolved"))
    );
    // A partial credit cannot pay Bob: refused, nothing changes; it is refunded instead.
    let partial = resolve("L2", json!({"action": "apply"})).await;
    assert_eq!(
        (partial.status, partial.body["code"].as_str()),
        (409, Some("amount_mismatch"))
    );
    assert_eq!(status_of(bob.clone()).await, "held");
    let refunded = resolve("L2", json!({"action": "refund", "note": "returned"})).await;
    assert_eq!(refunded.status, 200, "{refunded:?}");
    assert_eq!(refunded.body["resolution"]["to_refund_minor"], 2000);
    // A line without a reference needs the registration named; then it pays Cat.
    let unnamed = resolve("L3", json!({"action": "apply"})).await;
    assert_eq!(unnamed.status, 422, "{unnamed:?}");
    let named = resolve("L3", json!({"action": "apply", "registration_id": cat})).await;
    assert_eq!(named.status, 200, "{named:?}");
    assert_eq!(status_of(cat.clone()).await, "confirmed");
    let ignored = resolve("L4", json!({"action": "ignore", "note": "rent, not ours"})).await;
    assert_eq!(ignored.status, 200, "{ignored:?}");
    // Bad input changes nothing.
    assert_eq!(resolve("L9", json!({"action": "ignore"})).await.status, 404);
    assert_eq!(resolve("L4", json!({"action": "keep"})).await.status, 422);
    assert_eq!(list("bogus").await.status, 400);
    assert_eq!(list("open").await.body["exceptions"], json!([]));
    assert_eq!(
        list("resolved").await.body["exceptions"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let audit = admin.get(&format!("/api/v1/events/{event}/audit")).await;
    let resolves = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["action"] == "POST /api/v1/events/{id}/bank-statements/exceptions/{line_id}/resolve"
                && e["status"] == 200
        })
        .count();
    assert_eq!(resolves, 4, "{audit:?}");
}

/// A CAMT.053 statement (ISO 20022 XML) is read like a CSV one: its booked credit with the
/// structured reference confirms, a second upload applies nothing twice, a statement with a
/// DTD is refused whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camt_053_statement_confirms_like_a_csv_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), BANK);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ann@example.com").await;
    let (id, bank) = transfer_started(&buyer, &event, &tt, 2).await;
    let reference = bank["reference"].as_str().unwrap().to_owned();
    let camt = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt>
<GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-12-02T18:00:00</CreDtTm></GrpHdr>
<Stmt><Id>S1</Id>
<Ntry><Amt Ccy="EUR">90.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-12-02</Dt></BookgDt><AcctSvcrRef>2026120200001</AcctSvcrRef>
<NtryDtls><TxDtls><RltdPties><Dbtr><Nm>Ann</Nm></Dbtr></RltdPties>
<RmtInf><Strd><CdtrRefInf><Ref>{reference}</Ref></CdtrRefInf></Strd></RmtInf></TxDtls></NtryDtls></Ntry>
<Ntry><Amt Ccy="EUR">2.50</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts></Ntry>
</Stmt></BkToCstmrStmt></Document>"#
    );
    let send = |content_type: &'static str, body: String| {
        let (admin, event) = (admin.clone(), event.clone());
        async move {
            admin
                .post_raw(
                    &format!("/api/v1/events/{event}/bank-statements"),
                    content_type,
                    body.into_bytes(),
                )
                .await
        }
    };
    let with_dtd = camt.replace(
        "<Document ",
        "<!DOCTYPE Document [<!ENTITY x \"y\">]><Document ",
    );
    let refused = send("application/xml", with_dtd).await;
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(send("text/plain", camt.clone()).await.status, 415);
    let applied = send("application/xml", camt.clone()).await;
    assert_eq!(applied.status, 200, "{applied:?}");
    assert_eq!(
        (
            applied.body["lines"].as_u64(),
            applied.body["applied"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let paid = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
    assert_eq!(paid["status"], "confirmed");
    assert_eq!(paid["payment"]["captures"][0]["amount_minor"], 9000);
    let again = send("text/xml; charset=utf-8", camt).await;
    assert_eq!(again.body["duplicates"], 1, "{again:?}");
    // Statements have their own size limit (8 MiB), not the JSON bodies' 64 KiB.
    let mut long = String::from("id,reference,amount,currency\n");
    for i in 0..3000 {
        long.push_str(&format!("D{i},bank fee,-1.00,EUR\n"));
    }
    assert!(long.len() > 65_536);
    let read = send("text/csv", long).await;
    assert_eq!(
        (read.status, read.body["lines"].as_u64()),
        (200, Some(0)),
        "{read:?}"
    );
    let huge = "x".repeat(8 * 1024 * 1024 + 1);
    let too_big = send("text/csv", huge).await;
    assert_eq!(
        (too_big.status, too_big.body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}
