//! Payments end to end: the real gateway against localstripe (a stateful fake Stripe server,
//! started by the test on loopback), with webhooks signed by localstripe itself or, for
//! forged, stale and redelivered ones, by the test's own implementation of Stripe's scheme.

use serde_json::json;
use std::time::Duration;
use tests::{Api, LocalStripe, Server, wait_for};

const WEBHOOK_SECRET: &str = "whsec_regengine_test";

/// A gateway taking Stripe payments at `stripe` (two webhook secrets: one being rotated out).
fn gateway(dir: &std::path::Path, stripe: &LocalStripe, extra: &[(&str, &str)]) -> Server {
    let secrets = format!("[\"whsec_previous\", \"{WEBHOOK_SECRET}\"]");
    let mut env = vec![
        ("PAYMENTS__STRIPE__ENABLED", "true"),
        ("PAYMENTS__STRIPE__API_BASE", stripe.base.as_str()),
        ("PAYMENTS__STRIPE__SECRET_KEY", tests::STRIPE_SECRET_KEY),
        ("PAYMENTS__STRIPE__WEBHOOK_SECRETS", secrets.as_str()),
    ];
    env.extend_from_slice(extra);
    Server::start(dir, &env)
}

/// Waits until the registration satisfies `done`; returns it.
async fn registration_until(
    api: &Api,
    id: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let path = format!("/api/v1/registrations/{id}");
    let found = wait_for(Duration::from_secs(20), || {
        let path = path.clone();
        let done = &done;
        async move {
            let r = api.get(&path).await;
            done(&r.body).then_some(r.body)
        }
    })
    .await;
    match found {
        Some(body) => body,
        None => panic!(
            "registration {id} never got there: {}",
            api.get(&path).await.body
        ),
    }
}

/// A signed delivery of `event` (a Stripe event body) to the gateway's webhook, without a
/// token (as Stripe sends it).
async fn deliver(api: &Api, body: &serde_json::Value, secret: &str, t: i64) -> tests::Reply {
    let api = api.with_token(None);
    let payload = serde_json::to_vec(body).unwrap();
    let signature = tests::stripe_signature(secret, t, &payload);
    api.send(
        api.at(reqwest::Method::POST, "/api/v1/payments/webhooks/stripe")
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(payload),
    )
    .await
}

/// Holds one seat (with an idempotency key) and starts its Stripe payment; returns the
/// registration and its PaymentIntent.
async fn held_and_paying(api: &Api, event: &str, tt: &str, key: &str) -> (String, String) {
    let held = api.hold(event, tt, 1, Some(key)).await;
    assert_eq!(held.status, 201, "{held:?}");
    let id = held.str("id");
    let started = api
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "stripe"}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    let intent = started.body["payment"]["provider_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, intent)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_sale_confirms_once_through_stripe_and_forged_webhooks_change_nothing() {
    let stripe = LocalStripe::start();
    let dir = tempfile::tempdir().unwrap();
    let server = gateway(&dir.path().join("data"), &stripe, &[]);
    stripe
        .register_webhook(
            &server.url("/api/v1/payments/webhooks/stripe"),
            WEBHOOK_SECRET,
        )
        .await;
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    // 45.00 EUR a seat, holds for 10 minutes.
    let (event, tt) = admin.published_priced_event(10, 600, 4, 4500).await;
    let buyer = admin.buyer("ada@example.com").await;
    let held = buyer.hold(&event, &tt, 2, None).await;
    assert_eq!(held.status, 201, "{held:?}");
    let id = held.str("id");
    assert_eq!(held.body["price"]["total_minor"], 9000);

    // Unpaid: the buyer's own confirm is refused and changes nothing.
    let refused = buyer
        .post(
            &format!("/api/v1/registrations/{id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(refused.status, 402, "{refused:?}");
    assert_eq!(refused.body["code"], "payment_required");
    assert_eq!(
        buyer.get(&format!("/api/v1/registrations/{id}")).await.body["status"],
        "held"
    );

    // Start paying: a PaymentIntent for exactly the journaled total, the hold extended.
    let started = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "stripe"}),
            None,
        )
        .await;
    assert_eq!(started.status, 201, "{started:?}");
    let payment = &started.body["payment"];
    assert_eq!(payment["state"], "pending");
    assert_eq!(payment["amount_minor"], 9000);
    assert_eq!(payment["currency"], "EUR");
    let intent = payment["provider_ref"].as_str().unwrap().to_owned();
    assert!(
        started.body["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&intent)
    );
    let at_stripe = stripe.intent(&intent).await;
    assert_eq!(at_stripe["amount"], 9000);
    assert_eq!(at_stripe["currency"], "eur");
    assert_eq!(at_stripe["metadata"]["registration_id"], id.as_str());

    // A forged delivery (wrong secret), a stale one (signed 10 minutes ago) and one without a
    // signature: 400, nothing changes, and the refusal is audited.
    let succeeded = json!({"id": "evt_forged", "type": "payment_intent.succeeded", "data": {"object": {
        "id": intent, "object": "payment_intent", "amount": 9000, "currency": "eur",
        "metadata": {"registration_id": id}}}});
    let forged = deliver(&admin, &succeeded, "whsec_wrong", now()).await;
    assert_eq!(forged.status, 400, "{forged:?}");
    assert_eq!(forged.body["code"], "webhook_rejected");
    let stale = deliver(&admin, &succeeded, WEBHOOK_SECRET, now() - 600).await;
    assert_eq!(stale.status, 400, "{stale:?}");
    let unsigned = admin
        .with_token(None)
        .post_raw(
            "/api/v1/payments/webhooks/stripe",
            "application/json",
            serde_json::to_vec(&succeeded).unwrap(),
        )
        .await;
    assert_eq!(unsigned.status, 400);
    assert_eq!(
        buyer.get(&format!("/api/v1/registrations/{id}")).await.body["status"],
        "held"
    );
    let audit = admin.get("/api/v1/audit?limit=500").await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"]
                .as_str()
                .is_some_and(|a| a.contains("webhooks/stripe rejected"))),
        "{audit:?}"
    );
    // The buyer pays in their browser: localstripe charges the card and sends its own signed
    // `payment_intent.succeeded`; the registration is confirmed with its tickets.
    stripe.pay(&intent).await;
    let confirmed = registration_until(&buyer, &id, |r| r["status"] == "confirmed").await;
    assert_eq!(confirmed["tickets"].as_array().unwrap().len(), 2);
    assert_eq!(confirmed["payment"]["state"], "succeeded");
    assert_eq!(confirmed["payment"]["captured_minor"], 9000);

    // Redeliveries (with the other secret of the rotation) are answered 200 and change
    // nothing; a capture for another amount is recorded as ignored.
    let redelivered = json!({"id": "evt_again", "type": "payment_intent.succeeded", "data": {"object": {
        "id": intent, "object": "payment_intent", "amount": 9000, "currency": "eur",
        "metadata": {"registration_id": id}}}});
    for _ in 0..2 {
        let r = deliver(&admin, &redelivered, WEBHOOK_SECRET, now()).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let again = deliver(&admin, &redelivered, WEBHOOK_SECRET, now()).await;
    assert_eq!(again.body["result"], "duplicate");
    let late_failure = json!({"id": "evt_failed", "type": "payment_intent.payment_failed", "data": {"object": {
        "id": intent, "amount": 9000, "currency": "eur", "metadata": {"registration_id": id},
        "last_payment_error": {"code": "card_declined"}}}});
    let r = deliver(&admin, &late_failure, WEBHOOK_SECRET, now()).await;
    assert_eq!(
        (r.status, r.body["result"].as_str()),
        (200, Some("ignored")),
        "{r:?}"
    );
    assert_eq!(r.body["reason"], "after_capture");
    let after = buyer.get(&format!("/api/v1/registrations/{id}")).await.body;
    assert_eq!(
        after["tickets"], confirmed["tickets"],
        "tickets issued once"
    );
    assert_eq!(after["payment"]["state"], "succeeded");
    // An unknown event type is acknowledged (Stripe stops sending it).
    let other =
        json!({"id": "evt_cus", "type": "customer.created", "data": {"object": {"id": "cus_1"}}});
    assert_eq!(
        deliver(&admin, &other, "whsec_previous", now()).await.body["result"],
        "unhandled"
    );
    assert_eq!(admin.availability(&event).await, (10, 0, 2, 8));
    // Bad input changes nothing: a signed body that is not an event (400), a capture for a
    // registration nobody knows (200 ignored: not ours), one for another amount (recorded,
    // ignored), a payment for an unknown registration (404), a refund of 0 (422).
    let garbage = {
        let anonymous = admin.with_token(None);
        let payload = b"{not json".to_vec();
        let signature = tests::stripe_signature(WEBHOOK_SECRET, now(), &payload);
        anonymous
            .send(
                anonymous
                    .at(reqwest::Method::POST, "/api/v1/payments/webhooks/stripe")
                    .header("content-type", "application/json")
                    .header("stripe-signature", signature)
                    .body(payload),
            )
            .await
    };
    assert_eq!(
        (garbage.status, garbage.body["code"].as_str()),
        (400, Some("webhook_rejected"))
    );
    let stranger = json!({"id": "evt_stranger", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_unknown", "amount": 9000, "currency": "eur",
        "metadata": {"registration_id": uuid::Uuid::new_v4().to_string()}}}});
    let r = deliver(&admin, &stranger, WEBHOOK_SECRET, now()).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (200, Some("unknown_payment")),
        "{r:?}"
    );
    let wrong_amount = json!({"id": "evt_cents", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_other", "amount": 8999, "currency": "eur", "metadata": {"registration_id": id}}}});
    let r = deliver(&admin, &wrong_amount, WEBHOOK_SECRET, now()).await;
    assert_eq!(r.body["reason"], "amount_mismatch", "{r:?}");
    let nobody = admin
        .post(
            &format!("/api/v1/registrations/{}/payments", uuid::Uuid::new_v4()),
            &json!({"provider": "stripe"}),
            None,
        )
        .await;
    assert_eq!(nobody.status, 404, "{nobody:?}");
    let unknown_provider = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "cash"}),
            None,
        )
        .await;
    assert_eq!(unknown_provider.status, 422, "{unknown_provider:?}");
    let zero = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({"amount_minor": 0}),
            None,
        )
        .await;
    assert_eq!(zero.status, 422, "{zero:?}");
    let after_bad = buyer.get(&format!("/api/v1/registrations/{id}")).await.body;
    assert_eq!(
        after_bad["payment"], after["payment"],
        "bad input changed the payment"
    );
    assert_eq!(admin.availability(&event).await, (10, 0, 2, 8));

    // A manager refunds 30.00 EUR: decided at once, carried out at Stripe by the relay.
    let buyer_refund = buyer
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({"amount_minor": 3000}),
            None,
        )
        .await;
    assert_eq!(
        buyer_refund.status, 403,
        "only managers refund: {buyer_refund:?}"
    );
    let too_much = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({"amount_minor": 9001}),
            None,
        )
        .await;
    assert_eq!(too_much.status, 409);
    assert_eq!(too_much.body["code"], "refund_too_large");
    let refund = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({"amount_minor": 3000}),
            None,
        )
        .await;
    assert_eq!(refund.status, 202, "{refund:?}");
    let refunded = registration_until(&admin, &id, |r| {
        r["payment"]["refunds"][0]["state"] == "succeeded"
    })
    .await;
    assert_eq!(refunded["payment"]["state"], "partially_refunded");
    assert_eq!(refunded["payment"]["refunded_minor"], 3000);
    assert_eq!(refunded["status"], "confirmed");
    let at_stripe = stripe.refunds(&intent).await;
    assert_eq!(at_stripe.len(), 1, "one refund at Stripe: {at_stripe:?}");
    assert_eq!(at_stripe[0]["amount"], 3000);
    // The rest: the registration ends with its money, its seats go back.
    let rest = admin
        .post(
            &format!("/api/v1/registrations/{id}/refunds"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(rest.status, 202, "{rest:?}");
    let ended = registration_until(&admin, &id, |r| r["payment"]["state"] == "refunded").await;
    assert_eq!(ended["status"], "canceled");
    assert_eq!(stripe.refunds(&intent).await.len(), 2);
    assert_eq!(admin.availability(&event).await, (10, 0, 0, 10));
    server.terminate(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_office_mark_paid_confirms_and_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(5, 600, 4, 4500).await;
    let buyer = admin.buyer("bob@example.com").await;
    let id = buyer.hold(&event, &tt, 1, None).await.str("id");
    // Stripe is not configured here.
    let start = buyer
        .post(
            &format!("/api/v1/registrations/{id}/payments"),
            &json!({"provider": "stripe"}),
            None,
        )
        .await;
    assert_eq!(start.status, 422, "{start:?}");
    assert_eq!(start.body["code"], "provider_not_configured");
    let webhook = deliver(&admin, &json!({}), WEBHOOK_SECRET, now()).await;
    assert_eq!(
        webhook.status, 404,
        "Stripe is not enabled here: {webhook:?}"
    );
    // The buyer cannot mark their own registration paid.
    let own = buyer
        .post(
            &format!("/api/v1/registrations/{id}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(own.status, 403, "{own:?}");
    let paid = admin
        .post(
            &format!("/api/v1/registrations/{id}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(paid.status, 200, "{paid:?}");
    assert_eq!(paid.body["status"], "confirmed");
    assert_eq!(paid.body["payment"]["provider"], "manual");
    assert_eq!(paid.body["payment"]["captured_minor"], 4500);
    let twice = admin
        .post(
            &format!("/api/v1/registrations/{id}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.body["code"], "already_paid");
    let audit = admin.get(&format!("/api/v1/events/{event}/audit")).await;
    assert!(
        audit.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |e| e["action"] == "POST /api/v1/registrations/{id}/mark-paid"
                    && e["status"] == 200
            ),
        "{audit:?}"
    );
    // A free ticket type confirms without payment; there is nothing to pay.
    let free = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "Free", "price_minor": 0, "currency": "EUR", "capacity": 5}),
            None,
        )
        .await;
    assert_eq!(free.status, 201, "{free:?}");
    let free_id = buyer.hold(&event, &free.str("id"), 1, None).await.str("id");
    let nothing = admin
        .post(
            &format!("/api/v1/registrations/{free_id}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(nothing.body["code"], "nothing_to_pay");
    let confirmed = buyer
        .post(
            &format!("/api/v1/registrations/{free_id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    server.terminate(Duration::from_secs(10));
}

/// The webhook storm: 1,000 registrations paid at localstripe; its 1,000 real
/// `payment_intent.succeeded` events delivered (signed with the webhook secret) with 30%
/// duplicates in shuffled order, 16 at a time, with a kill -9 of the gateway once 500 were
/// acknowledged; after the restart, everything not acknowledged is delivered again.
/// Afterwards every registration is confirmed exactly once, captured = confirmed totals,
/// nothing is oversold, and the server's revenue summary agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_storm_with_a_kill_9_confirms_every_paid_registration_once() {
    use futures::StreamExt;
    use rand::seq::{IndexedRandom, SliceRandom};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    const N: usize = 1000;
    let stripe = LocalStripe::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = gateway(&data, &stripe, &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(N as u32, 600, 1, 4500).await;
    // Holds and payments (each creates a PaymentIntent at localstripe).
    let intents: Vec<(String, String)> = futures::stream::iter(0..N)
        .map(|i| {
            let admin = admin.clone();
            let (event, tt) = (event.clone(), tt.clone());
            async move { held_and_paying(&admin, &event, &tt, &format!("storm-{i}")).await }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    // Every buyer pays; localstripe records one succeeded event per intent (no webhook is
    // registered with it: the test delivers them).
    futures::stream::iter(intents.iter())
        .for_each_concurrent(8, |(_, intent)| stripe.pay(intent))
        .await;
    let events = stripe.events("payment_intent.succeeded").await;
    assert_eq!(events.len(), N);
    let mut deliveries: Vec<serde_json::Value> = events.clone();
    let mut rng = rand::rng();
    deliveries.extend(events.choose_multiple(&mut rng, N * 3 / 10).cloned());
    deliveries.shuffle(&mut rng);

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let deliver_all = |api: Api, batch: Vec<(usize, serde_json::Value)>, acks: Arc<AtomicUsize>| async move {
        futures::stream::iter(batch)
            .map(|(i, body)| {
                let (api, acks) = (api.with_token(None), acks.clone());
                async move {
                    let payload = serde_json::to_vec(&body).unwrap();
                    let signature = tests::stripe_signature(WEBHOOK_SECRET, now(), &payload);
                    let request = api
                        .at(reqwest::Method::POST, "/api/v1/payments/webhooks/stripe")
                        .header("content-type", "application/json")
                        .header("stripe-signature", signature)
                        .body(payload);
                    let ok = api.try_send(request).await.is_some_and(|r| r.status == 200);
                    if ok {
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    (i, ok)
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<(usize, bool)>>()
            .await
    };
    let numbered: Vec<(usize, serde_json::Value)> =
        deliveries.iter().cloned().enumerate().collect();
    let storm = tokio::spawn(deliver_all(admin.clone(), numbered, acknowledged.clone()));
    let half = wait_for(Duration::from_secs(120), || {
        let acks = acknowledged.clone();
        async move { (acks.load(Ordering::SeqCst) >= N / 2).then_some(()) }
    })
    .await;
    assert!(half.is_some(), "the storm did not get going");
    server.kill9();
    let results = storm.await.unwrap();
    let undelivered: Vec<(usize, serde_json::Value)> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(i, _)| (*i, deliveries[*i].clone()))
        .collect();
    assert!(!undelivered.is_empty(), "the kill came after the storm");
    // The Stripe side redelivers what was not acknowledged.
    let server = gateway(&data, &stripe, &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let again = deliver_all(admin.clone(), undelivered, Arc::new(AtomicUsize::new(0))).await;
    assert!(
        again.iter().all(|(_, ok)| *ok),
        "a redelivery after the restart failed"
    );

    // Every paid registration confirmed exactly once, with one ticket, captured once.
    let mut tickets = std::collections::HashSet::new();
    for (id, intent) in &intents {
        let r = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
        assert_eq!(r["status"], "confirmed", "{r}");
        assert_eq!(r["payment"]["provider_ref"], intent.as_str());
        assert_eq!(r["payment"]["captured_minor"], 4500, "{r}");
        assert_eq!(r["payment"]["state"], "succeeded");
        let issued = r["tickets"].as_array().unwrap();
        assert_eq!(issued.len(), 1);
        assert!(
            tickets.insert(issued[0]["id"].as_str().unwrap().to_owned()),
            "a ticket issued twice"
        );
    }
    assert_eq!(admin.availability(&event).await, (N as u64, 0, N as u64, 0));
    let summary = admin
        .get(&format!("/api/v1/events/{event}/payments/summary"))
        .await;
    assert_eq!(summary.status, 200, "{summary:?}");
    let line = &summary.body["lines"][0];
    assert_eq!(line["provider"], "stripe");
    assert_eq!(line["payments"], N);
    assert_eq!(line["captured_minor"], 4500 * N as i64);
    assert_eq!(line["refunded_minor"], 0);
    assert_eq!(summary.body["confirmed_paid"], N);
    assert_eq!(
        summary.body["confirmed_totals_minor"]["EUR"],
        line["captured_minor"]
    );
    let listed = admin
        .get(&format!(
            "/api/v1/events/{event}/payments?state=succeeded&limit=500"
        ))
        .await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 500);
    assert!(listed.body["next_cursor"].is_string());
    let csv = admin
        .send(admin.at(
            reqwest::Method::GET,
            &format!("/api/v1/events/{event}/payments.csv"),
        ))
        .await;
    assert_eq!(csv.status, 200);
    server.terminate(Duration::from_secs(20));
}

/// Canceling an event with paid registrations refunds every capture exactly once, even when
/// the gateway is killed while the refunds are going out and restarted: the cascade resumes
/// and each refund is carried out once at Stripe (the relay repeats a call with the same
/// idempotency key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_event_refunds_every_payment_once_across_a_kill_9() {
    use futures::StreamExt;
    const N: usize = 60;
    let stripe = LocalStripe::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = gateway(&data, &stripe, &[]);
    stripe
        .register_webhook(
            &server.url("/api/v1/payments/webhooks/stripe"),
            WEBHOOK_SECRET,
        )
        .await;
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin
        .published_priced_event(N as u32 + 5, 600, 1, 4500)
        .await;
    let paid: Vec<(String, String)> = futures::stream::iter(0..N)
        .map(|i| {
            let (admin, stripe) = (admin.clone(), &stripe);
            let (event, tt) = (event.clone(), tt.clone());
            async move {
                let (id, intent) = held_and_paying(&admin, &event, &tt, &format!("c-{i}")).await;
                stripe.pay(&intent).await;
                (id, intent)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for (id, _) in &paid {
        registration_until(&admin, id, |r| r["status"] == "confirmed").await;
    }
    // One more holds without paying.
    let unpaid = admin.hold(&event, &tt, 1, None).await.str("id");
    let canceled = admin
        .post(&format!("/api/v1/events/{event}/cancel"), &json!({}), None)
        .await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    // Kill -9 as soon as the first refund went out.
    let first = wait_for(Duration::from_secs(30), || {
        let (stripe, paid) = (&stripe, &paid);
        async move {
            for (_, intent) in paid {
                if !stripe.refunds(intent).await.is_empty() {
                    return Some(());
                }
            }
            None
        }
    })
    .await;
    assert!(first.is_some(), "no refund went out");
    server.kill9();
    let server = gateway(&data, &stripe, &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let progress = wait_for(Duration::from_secs(60), || {
        let admin = admin.clone();
        let event = event.clone();
        async move {
            let p = admin
                .get(&format!("/api/v1/events/{event}/cancellation"))
                .await;
            (p.body["done"] == true).then_some(p.body)
        }
    })
    .await
    .expect("the cancellation finished");
    assert_eq!(progress["registrations_live"], 0);
    assert_eq!(progress["refunds_succeeded"], N);
    assert_eq!(progress["refunds_failed"], 0);
    assert_eq!(progress["refunded_minor"]["EUR"], 4500 * N as i64);
    for (id, intent) in &paid {
        let at_stripe = stripe.refunds(intent).await;
        assert_eq!(at_stripe.len(), 1, "refunded once at Stripe: {at_stripe:?}");
        assert_eq!(at_stripe[0]["amount"], 4500);
        let r = admin.get(&format!("/api/v1/registrations/{id}")).await.body;
        assert_eq!(r["status"], "canceled");
        assert_eq!(r["payment"]["state"], "refunded", "{r}");
    }
    let r = admin
        .get(&format!("/api/v1/registrations/{unpaid}"))
        .await
        .body;
    assert_eq!(r["status"], "canceled");
    server.terminate(Duration::from_secs(20));
}

/// A payment completed at Stripe whose webhook arrives after the hold ended: with the seats
/// gone it is refunded in full (and the buyer told); with seats left it takes them again and
/// confirms. A hold that ends with its payment never completed has its PaymentIntent canceled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_payments_take_seats_left_or_are_refunded_and_unpaid_intents_are_canceled() {
    let stripe = LocalStripe::start();
    let dir = tempfile::tempdir().unwrap();
    // Holds of 2 s, extended by 1 s when paying; no webhook registered at localstripe: the
    // test delivers its events late.
    let server = gateway(
        &dir.path().join("data"),
        &stripe,
        &[("PAYMENTS__HOLD_EXTENSION_SECS", "1")],
    );
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(1, 2, 1, 4500).await;
    let start = |id: String| {
        let admin = admin.clone();
        async move {
            let r = admin
                .post(
                    &format!("/api/v1/registrations/{id}/payments"),
                    &json!({"provider": "stripe"}),
                    None,
                )
                .await;
            assert_eq!(r.status, 201, "{r:?}");
            r.body["payment"]["provider_ref"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let succeeded_event = |intent: String| {
        let stripe = &stripe;
        async move {
            let events = stripe.events("payment_intent.succeeded").await;
            events
                .into_iter()
                .find(|e| e["data"]["object"]["id"] == intent.as_str())
                .expect("localstripe recorded the payment")
        }
    };

    // Ada pays at Stripe, but her webhook is late: her hold expires, Bob takes the seat.
    let ada = admin.hold(&event, &tt, 1, None).await.str("id");
    let ada_intent = start(ada.clone()).await;
    stripe.pay(&ada_intent).await;
    registration_until(&admin, &ada, |r| r["status"] == "expired").await;
    let bob = admin.hold(&event, &tt, 1, None).await;
    assert_eq!(bob.status, 201, "{bob:?}");
    let late = deliver(
        &admin,
        &succeeded_event(ada_intent.clone()).await,
        WEBHOOK_SECRET,
        now(),
    )
    .await;
    assert_eq!(
        (late.status, late.body["result"].as_str()),
        (200, Some("applied")),
        "{late:?}"
    );
    let refunded = registration_until(&admin, &ada, |r| r["payment"]["state"] == "refunded").await;
    assert_eq!(
        refunded["status"], "expired",
        "no seat for a late payment without seats"
    );
    assert_eq!(refunded["payment"]["refunds"][0]["reason"], "refund_due");
    assert_eq!(stripe.refunds(&ada_intent).await.len(), 1);
    assert_eq!(
        admin.availability(&event).await,
        (1, 1, 0, 0),
        "Bob keeps his seat"
    );
    // (Mail is delivered after the refund is visible: wait for it.)
    let told = wait_for(Duration::from_secs(10), || async {
        let told = tests::mailed(&server, "buyer@example.com", "payment_refunded");
        (!told.is_empty()).then_some(told)
    })
    .await
    .unwrap_or_default();
    assert_eq!(told.len(), 1, "the buyer is told once: {told:?}");

    // Bob's payment is never completed: when his hold ends, its PaymentIntent is canceled.
    let bob = bob.str("id");
    let bob_intent = start(bob.clone()).await;
    registration_until(&admin, &bob, |r| r["status"] == "expired").await;
    let canceled = wait_for(Duration::from_secs(20), || {
        let (stripe, intent) = (&stripe, bob_intent.clone());
        async move { (stripe.intent(&intent).await["status"] == "canceled").then_some(()) }
    })
    .await;
    assert!(canceled.is_some(), "the unpaid intent was not canceled");

    // Cleo pays late too, but the seat is free now: she gets it.
    let cleo = admin.hold(&event, &tt, 1, None).await.str("id");
    let cleo_intent = start(cleo.clone()).await;
    stripe.pay(&cleo_intent).await;
    registration_until(&admin, &cleo, |r| r["status"] == "expired").await;
    let late = deliver(
        &admin,
        &succeeded_event(cleo_intent.clone()).await,
        WEBHOOK_SECRET,
        now(),
    )
    .await;
    assert_eq!(late.status, 200, "{late:?}");
    let seated = registration_until(&admin, &cleo, |r| r["status"] == "confirmed").await;
    assert_eq!(seated["tickets"].as_array().unwrap().len(), 1);
    assert_eq!(seated["payment"]["state"], "succeeded");
    assert!(stripe.refunds(&cleo_intent).await.is_empty());
    assert_eq!(admin.availability(&event).await, (1, 0, 1, 0));
    server.terminate(Duration::from_secs(10));
}

/// A buyer cancelling their paid registration gets their money back within the event's refund
/// window, and is refused (nothing changes) outside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_cancels_a_paid_registration_only_within_the_refund_window() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_priced_event(5, 600, 4, 4500).await;
    let buyer = admin.buyer("cleo@example.com").await;
    let paid = |n: i64| {
        let (admin, buyer, event, tt) = (admin.clone(), buyer.clone(), event.clone(), tt.clone());
        async move {
            let id = buyer.hold(&event, &tt, n, None).await.str("id");
            let r = admin
                .post(
                    &format!("/api/v1/registrations/{id}/mark-paid"),
                    &json!({}),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            id
        }
    };
    // No refund window: the buyer cannot cancel what they paid for.
    let first = paid(1).await;
    let refused = buyer
        .post(
            &format!("/api/v1/registrations/{first}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (409, Some("refund_window_closed")),
        "{refused:?}"
    );
    assert_eq!(
        admin
            .get(&format!("/api/v1/registrations/{first}"))
            .await
            .body["status"],
        "confirmed"
    );
    // Refunds until a day before the event: the cancellation refunds everything.
    let window = admin
        .patch(
            &format!("/api/v1/events/{event}"),
            &json!({"refund_until": "2030-05-31T18:00:00Z"}),
        )
        .await;
    assert_eq!(window.status, 200, "{window:?}");
    assert_eq!(window.body["refund_until"], "2030-05-31T18:00:00Z");
    let late = admin
        .patch(
            &format!("/api/v1/events/{event}"),
            &json!({"refund_until": "2030-06-02T00:00:00Z"}),
        )
        .await;
    assert_eq!(late.status, 422, "after the event's end: {late:?}");
    let canceled = buyer
        .post(
            &format!("/api/v1/registrations/{first}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200, "{canceled:?}");
    assert_eq!(canceled.body["status"], "canceled");
    assert_eq!(
        canceled.body["payment"]["refunds"][0]["reason"],
        "buyer_canceled"
    );
    let refunded = tests::wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let first = first.clone();
        async move {
            let r = admin
                .get(&format!("/api/v1/registrations/{first}"))
                .await
                .body;
            (r["payment"]["state"] == "refunded").then_some(r)
        }
    })
    .await;
    assert!(
        refunded.is_some(),
        "the box-office payment was not refunded"
    );
    // A manager's cancel does not refund on its own (the money stays listed as captured).
    let second = paid(2).await;
    let by_manager = admin
        .post(
            &format!("/api/v1/registrations/{second}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(by_manager.status, 200);
    assert_eq!(by_manager.body["payment"]["captured_minor"], 9000);
    assert_eq!(by_manager.body["payment"]["refunds"], json!([]));
    assert_eq!(admin.availability(&event).await, (5, 0, 0, 5));
    server.terminate(Duration::from_secs(10));
}
