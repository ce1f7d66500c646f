//! PayPal end to end: the real gateway against a local PayPal following PayPal's documented
//! formats (OAuth2 client credentials, Orders v2 with intent CAPTURE, refunds of captures,
//! verify-webhook-signature), started by the test on loopback.

use serde_json::json;
use std::time::Duration;
use tests::{Api, FakePayPal, Server};

fn gateway(dir: &std::path::Path, paypal: &FakePayPal) -> Server {
    Server::start(
        dir,
        &[
            ("PAYMENTS__PAYPAL__ENABLED", "true"),
            ("PAYMENTS__PAYPAL__API_BASE", paypal.base.as_str()),
            ("PAYMENTS__PAYPAL__CLIENT_ID", tests::PAYPAL_CLIENT_ID),
            (
                "PAYMENTS__PAYPAL__CLIENT_SECRET",
                tests::PAYPAL_CLIENT_SECRET,
            ),
            ("PAYMENTS__PAYPAL__WEBHOOK_ID", tests::PAYPAL_WEBHOOK_ID),
        ],
    )
}

/// A webhook delivery with PayPal's transmission headers, signed as the fake PayPal vouches
/// for (`sign`: with the right webhook id and event id; otherwise a forged signature).
async fn deliver(api: &Api, event: &serde_json::Value, sign: bool) -> tests::Reply {
    let api = api.with_token(None);
    let (id, time) = (
        "b2384410-f8d2-11ed-8a3e-bb3a5f1c1a2a",
        "2026-12-07T01:00:00Z",
    );
    // PayPal's bytes, its own key order (not sorted): the server must hand them back as sent.
    let body = String::from_utf8(serde_json::to_vec(event).unwrap()).unwrap();
    let body = body.replacen('{', "{\"zz_first\": 1, ", 1).into_bytes();
    let signature = if sign {
        FakePayPal::signature(id, time, tests::PAYPAL_WEBHOOK_ID, &body)
    } else {
        "forged".to_owned()
    };
    api.send(
        api.at(reqwest::Method::POST, "/api/v1/payments/webhooks/paypal")
            .header("content-type", "application/json")
            .header("paypal-transmission-id", id)
            .header("paypal-transmission-time", time)
            .header("paypal-transmission-sig", signature)
            .header(
                "paypal-cert-url",
                "https://api-m.paypal.com/v1/notifications/certs/CERT-360caa42",
            )
            .header("paypal-auth-algo", "SHA256withRSA")
            .body(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paypal_order_is_approved_captured_once_and_refunded() {
    let paypal = FakePayPal::start(3600);
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&dir.path().join("data"), &paypal);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    // 45.00 EUR a seat.
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ada@example.com").await;
    let id = buyer.hold(&event, &tt, 2, None).await.str("id");

    let started = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "paypal"}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    let order = started.body["payment"]["provider_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(started.body["payment"]["provider"], "paypal");
    let approve = started.body["approve_url"].as_str().unwrap();
    assert!(
        approve.ends_with(&format!("checkoutnow?token={order}")),
        "{approve}"
    );

    // Back from PayPal before approving: nothing is captured, nothing changes.
    let early = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments/capture"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (early.status, early.body["code"].as_str()),
        (409, Some("payment_not_approved")),
        "{early:?}"
    );
    // Approved: the capture confirms, with tickets; a repeat changes nothing.
    paypal.approve(&order).await;
    let captured = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments/capture"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(captured.status, 200, "{captured:?}");
    assert_eq!(captured.body["status"], "confirmed");
    assert_eq!(captured.body["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(captured.body["payment"]["captured_minor"], 9000);
    let capture_id = captured.body["payment"]["captures"][0]["provider_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(capture_id, order, "a capture has its own id");
    let again = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments/capture"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(again.body["tickets"], captured.body["tickets"]);

    // PayPal's own PAYMENT.CAPTURE.COMPLETED for the same capture: verified, changes nothing.
    let completed = json!({"id": "WH-1", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource_type": "capture",
        "resource": {"id": capture_id, "status": "COMPLETED", "custom_id": id,
            "amount": {"currency_code": "EUR", "value": "90.00"}}});
    let r = deliver(&admin, &completed, true).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("ignored")),
        "{r:?}"
    );
    assert_eq!(r.body["reason"], "no_change");
    let forged = deliver(&admin, &completed, false).await;
    assert_eq!(
        (forged.status, forged.body["code"].as_str()),
        (400, Some("webhook_rejected"))
    );
    let unheaded = admin
        .with_token(None)
        .post_raw(
            "/api/v1/payments/webhooks/paypal",
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(unheaded.status, 400);

    // A manager refunds 30.00 EUR: the relay refunds the capture at PayPal.
    let refund = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({"amount_minor": 3000}),
            None,
        )
        .await;
    assert_eq!(refund.status, 202, "{refund:?}");
    let refunded = tests::wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            let r = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
            (r["payment"]["refunds"][0]["state"] == "succeeded").then_some(r)
        }
    })
    .await
    .expect("the refund went through");
    assert_eq!(refunded["payment"]["state"], "partially_refunded");
    // PayPal reports the refund (running total 30.00 EUR): nothing more changes.
    let reported = json!({"id": "WH-2", "event_type": "PAYMENT.CAPTURE.REFUNDED", "resource": {
        "id": "1J000000000000001", "amount": {"currency_code": "EUR", "value": "30.00"},
        "seller_payable_breakdown": {"total_refunded_amount": {"currency_code": "EUR", "value": "30.00"}},
        "links": [{"rel": "up", "href": format!("{}/v2/payments/captures/{capture_id}", paypal.base)}]}});
    let r = deliver(&admin, &reported, true).await;
    assert_eq!(r.status, 200, "{r:?}");
    let after = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
    assert_eq!(after["payment"]["refunded_minor"], 3000);
    assert_eq!(after["status"], "confirmed");
    let stats = paypal.stats().await;
    assert_eq!(stats["captures"], 1, "captured once: {stats}");
    assert_eq!(stats["refunds"], 1);
    assert_eq!(stats["tokens_issued"], 1, "the token is cached: {stats}");
    // A token PayPal stopped taking is replaced once, and the call goes through.
    paypal.expire_tokens().await;
    let rest = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(rest.status, 202);
    let ended = tests::wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let id = id.clone();
        async move {
            let r = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
            (r["payment"]["state"] == "refunded").then_some(r)
        }
    })
    .await
    .expect("the rest was refunded");
    assert_eq!(ended["status"], "canceled");
    assert_eq!(paypal.stats().await["tokens_issued"], 2);
    server.terminate(Duration::from_secs(10));
}
