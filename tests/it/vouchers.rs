//! Vouchers and prices against the real binary: the last use of a voucher goes to exactly one
//! of many concurrent buyers, uses come back when holds expire or are canceled, seats set
//! aside by a voucher are sold only to its holders, and the hold, the confirm and the receipt
//! show one price.

use futures::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Reply, Server, wait_for};

async fn voucher(api: &Api, event: &str, body: Value) -> Reply {
    api.post(&format!("/api/v1/events/{event}/vouchers"), &body, None)
        .await
}

async fn hold_with(api: &Api, event: &str, tt: &str, quantity: i64, code: &str) -> Reply {
    let body = json!({
        "ticket_type_id": tt, "quantity": quantity, "voucher": code,
        "attendee": {"name": "Buyer", "email": "buyer@example.com"}
    });
    api.post(
        &format!("/api/v1/events/{event}/registrations"),
        &body,
        None,
    )
    .await
}

async fn uses(api: &Api, event: &str, code: &str) -> u64 {
    let v = api
        .get(&format!("/api/v1/events/{event}/vouchers/{code}"))
        .await;
    assert_eq!(v.status, 200, "{:?}", v.body);
    v.body["uses"].as_u64().unwrap()
}

/// Holds `n` seats at once with `code`; returns the replies.
async fn race(api: &Api, event: &str, tt: &str, code: &str, n: usize) -> Vec<Reply> {
    join_all((0..n).map(|_| hold_with(api, event, tt, 1, code))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_use_goes_to_one_buyer_and_one_price_holds_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let event = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Vouchers", "starts_at": "2030-06-01T18:00:00Z",
                "ends_at": "2030-06-01T23:00:00Z", "hold_ttl_secs": 600}),
            None,
        )
        .await
        .str("id");
    let tt = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "GA", "price_minor": 999, "currency": "EUR", "capacity": 40, "max_per_order": 4}),
            None,
        )
        .await;
    assert_eq!(tt.status, 201, "{:?}", tt.body);
    let (tt, pool) = (tt.str("id"), tt.str("pool_id"));
    let vip = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "VIP", "price_minor": 5000, "currency": "EUR", "pool_id": pool}),
            None,
        )
        .await
        .str("id");
    let other_pool = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "Parking", "price_minor": 700, "currency": "EUR", "capacity": 10}),
            None,
        )
        .await
        .str("id");
    let publish = admin
        .post(&format!("/api/v1/events/{event}/publish"), &json!({}), None)
        .await;
    assert_eq!(publish.status, 200);

    // Creation: codes are normalised and unique; bad input changes nothing.
    let created = voucher(
        &admin,
        &event,
        json!({"code": "spring", "ticket_type_ids": [tt], "percent_off": 12, "max_uses": 1}),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.str("code"), "SPRING");
    let again = voucher(
        &admin,
        &event,
        json!({"code": "Spring", "ticket_type_ids": [vip], "max_uses": 3}),
    )
    .await;
    assert_eq!(
        (again.status, again.str("code")),
        (409, "voucher_exists".into())
    );
    for (body, field) in [
        (
            json!({"ticket_type_ids": [tt], "percent_off": 10, "amount_off_minor": 100, "max_uses": 1}),
            "percent_off",
        ),
        (
            json!({"ticket_type_ids": [tt, other_pool], "max_uses": 1}),
            "ticket_type_ids",
        ),
        (
            json!({"ticket_type_ids": [tt], "percent_off": 101, "max_uses": 1}),
            "percent_off",
        ),
        (json!({"ticket_type_ids": [tt], "max_uses": 0}), "max_uses"),
        (
            json!({"code": "no spaces", "ticket_type_ids": [tt], "max_uses": 1}),
            "code",
        ),
    ] {
        let r = voucher(&admin, &event, body).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(r.body["errors"][0]["field"], field, "{:?}", r.body);
    }
    let generated = voucher(
        &admin,
        &event,
        json!({"ticket_type_ids": [tt, vip], "amount_off_minor": 250, "max_uses": 10}),
    )
    .await;
    assert_eq!(generated.status, 201, "{:?}", generated.body);
    assert_eq!(generated.str("code").len(), 10);
    let listed = admin.get(&format!("/api/v1/events/{event}/vouchers")).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 2);

    // A quote shows the price a hold would record, without taking a use.
    let quote = |code: &str| {
        let admin = admin.clone();
        let path =
            format!("/api/v1/events/{event}/quote?ticket_type_id={tt}&quantity=1&voucher={code}");
        async move { admin.get(&path).await }
    };
    let quoted = quote("spring").await;
    assert_eq!(quoted.status, 200, "{:?}", quoted.body);
    assert_eq!(
        (&quoted.body["discount_minor"], &quoted.body["total_minor"]),
        (&json!(120), &json!(879))
    );
    assert_eq!(quote("NOPE").await.str("reason"), "unknown");
    assert_eq!(uses(&admin, &event, "SPRING").await, 0);

    // The race: 24 buyers at once for the last (only) use. Exactly one gets it.
    let replies = race(&admin, &event, &tt, "spring", 24).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(
        winners.len(),
        1,
        "one winner: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(
            (r.status, r.str("code")),
            (409, "voucher_used_up".into()),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["remaining"], 0);
    }
    assert_eq!(uses(&admin, &event, "SPRING").await, 1);
    assert_eq!(quote("SPRING").await.str("code"), "voucher_used_up");
    // 12% of 999 = 119.88, rounded half up per seat: 120.
    let price = &winners[0].body["price"];
    assert_eq!(
        (
            &price["unit_price_minor"],
            &price["discount_minor"],
            &price["total_minor"],
            &price["voucher"]
        ),
        (&json!(999), &json!(120), &json!(879), &json!("SPRING"))
    );

    // Canceled: the use comes back, and the next race again has one winner.
    let first = winners[0].str("id");
    let canceled = admin
        .post(
            &format!("/api/v1/registrations/{first}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200);
    assert_eq!(uses(&admin, &event, "SPRING").await, 0);
    let replies = race(&admin, &event, &tt, "SPRING", 12).await;
    let winners: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(winners.len(), 1);
    let reg = winners[0].str("id");

    // Paid (at the box office) for exactly the price decided with the hold, which the
    // confirmed registration and the receipt show.
    let confirmed = admin
        .post(
            &format!("/api/v1/registrations/{reg}/mark-paid"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    assert_eq!(confirmed.body["status"], "confirmed");
    assert_eq!(confirmed.body["price"], winners[0].body["price"]);
    assert_eq!(confirmed.body["payment"]["captured_minor"], 879);
    let receipt = admin
        .get(&format!("/api/v1/registrations/{reg}/receipt"))
        .await;
    assert_eq!(receipt.status, 200, "{:?}", receipt.body);
    assert_eq!(
        (
            &receipt.body["subtotal_minor"],
            &receipt.body["discount_minor"],
            &receipt.body["total_minor"]
        ),
        (&json!(999), &json!(120), &json!(879))
    );
    assert_eq!(receipt.body["lines"][0]["description"], "GA");
    assert_eq!(
        receipt.body["ticket_numbers"][0],
        confirmed.body["tickets"][0]["number"]
    );

    // Refusals: each with its reason, and nothing held.
    let before = admin.availability(&event).await;
    let unknown = hold_with(&admin, &event, &tt, 1, "NOPE").await;
    assert_eq!(
        (unknown.status, unknown.str("code"), unknown.str("reason")),
        (422, "voucher_not_valid".into(), "unknown".into())
    );
    let code = generated.str("code");
    let wrong_type = hold_with(&admin, &event, &other_pool, 1, &code).await;
    assert_eq!(
        (wrong_type.status, wrong_type.str("reason")),
        (422, "wrong_ticket_type".into())
    );
    let too_many = hold_with(&admin, &event, &tt, 2, "SPRING").await;
    assert_eq!(
        (too_many.status, too_many.str("code")),
        (409, "voucher_used_up".into())
    );
    let later = voucher(
        &admin,
        &event,
        json!({"code": "LATER", "ticket_type_ids": [tt], "max_uses": 5, "valid_from": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(later.status, 201);
    assert_eq!(
        hold_with(&admin, &event, &tt, 1, "later")
            .await
            .str("reason"),
        "not_yet_valid"
    );
    let off = admin
        .post(
            &format!("/api/v1/events/{event}/vouchers/LATER/deactivate"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (off.status, off.body["active"].clone()),
        (200, json!(false))
    );
    assert_eq!(admin.availability(&event).await, before);

    // A fixed amount is taken per seat; VIP seats with the generated voucher.
    let fixed = hold_with(&admin, &event, &vip, 2, &code.to_lowercase()).await;
    assert_eq!(fixed.status, 201, "{:?}", fixed.body);
    assert_eq!(
        (
            &fixed.body["price"]["subtotal_minor"],
            &fixed.body["price"]["discount_minor"],
            &fixed.body["price"]["total_minor"]
        ),
        (&json!(10000), &json!(500), &json!(9500))
    );

    // Only managers see vouchers.
    let (_, bob) = admin.with_token(None).signed_in("bob@example.com").await;
    let bob = admin.with_token(Some(bob["access_token"].as_str().unwrap().to_owned()));
    assert_eq!(
        bob.get(&format!("/api/v1/events/{event}/vouchers"))
            .await
            .status,
        403
    );
    assert_eq!(
        bob.get(&format!("/api/v1/registrations/{reg}/receipt"))
            .await
            .status,
        404
    );

    // Restarted, the pool rebuilds voucher uses from its journal: still used up.
    let server = server.restart(&[]);
    let admin = Api::admin(&server).await;
    assert_eq!(uses(&admin, &event, "SPRING").await, 1);
    let after = hold_with(&admin, &event, &tt, 1, "SPRING").await;
    assert_eq!(after.str("code"), "voucher_used_up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_seats_go_to_voucher_holders_and_expiry_returns_uses() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    // 5 seats, holds of 3 seconds.
    let (event, tt) = admin.published_event(5, 3, 5).await;

    let vip = voucher(
        &admin,
        &event,
        json!({"code": "VIPS", "ticket_type_ids": [tt], "max_uses": 2, "reserve_seats": true}),
    )
    .await;
    assert_eq!(
        (vip.status, vip.body["reserved_seats"].clone()),
        (201, json!(2)),
        "{:?}",
        vip.body
    );
    let too_big = voucher(
        &admin,
        &event,
        json!({"code": "HUGE", "ticket_type_ids": [tt], "max_uses": 4, "reserve_seats": true}),
    )
    .await;
    assert_eq!(
        (too_big.status, too_big.str("code")),
        (409, "sold_out".into())
    );
    let a = admin
        .get(&format!("/api/v1/events/{event}/availability"))
        .await;
    assert_eq!(a.body["ticket_types"][0]["reserved"], 2);
    assert_eq!(admin.availability(&event).await, (5, 0, 0, 3));

    // General sale gets 3 seats, not 4; the voucher's holders still get theirs.
    let four = admin.hold(&event, &tt, 4, None).await;
    assert_eq!(
        (four.status, four.body["available"].clone()),
        (409, json!(3))
    );
    let general = admin.hold(&event, &tt, 3, None).await;
    assert_eq!(general.status, 201);
    assert_eq!(
        admin.hold(&event, &tt, 1, None).await.str("code"),
        "sold_out"
    );
    let with_voucher = hold_with(&admin, &event, &tt, 2, "vips").await;
    assert_eq!(with_voucher.status, 201, "{:?}", with_voucher.body);
    let (capacity, held, confirmed, available) = admin.availability(&event).await;
    assert!(held + confirmed <= capacity);
    assert_eq!((held, available), (5, 0));

    // The holds expire: the voucher's uses come back (and with them its reservation).
    let back = wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let event = event.clone();
        async move { (uses(&admin, &event, "VIPS").await == 0).then_some(()) }
    })
    .await;
    assert!(back.is_some(), "expired holds gave their voucher uses back");
    let restored = wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let event = event.clone();
        async move { (admin.availability(&event).await == (5, 0, 0, 3)).then_some(()) }
    })
    .await;
    assert!(restored.is_some(), "{:?}", admin.availability(&event).await);

    // Deactivated, its seats return to general sale.
    let off = admin
        .post(
            &format!("/api/v1/events/{event}/vouchers/VIPS/deactivate"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (off.status, off.body["reserved_seats"].clone()),
        (200, json!(0))
    );
    assert_eq!(admin.availability(&event).await, (5, 0, 0, 5));
    let gone = hold_with(&admin, &event, &tt, 1, "VIPS").await;
    assert_eq!(gone.str("reason"), "deactivated");

    // A reserving voucher whose validity ends gives its seats back by itself.
    let until = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let soon = voucher(
        &admin,
        &event,
        json!({"code": "SOON", "ticket_type_ids": [tt], "max_uses": 3, "reserve_seats": true,
            "valid_until": until}),
    )
    .await;
    assert_eq!(soon.status, 201, "{:?}", soon.body);
    assert_eq!(admin.availability(&event).await, (5, 0, 0, 2));
    // Availability is published when the pool decides; the voucher's read model follows once
    // the decision is durable.
    let released = wait_for(Duration::from_secs(20), || {
        let admin = admin.clone();
        let event = event.clone();
        async move {
            let seats = admin.availability(&event).await;
            let voucher = admin
                .get(&format!("/api/v1/events/{event}/vouchers/SOON"))
                .await;
            (seats == (5, 0, 0, 5) && voucher.body["active"] == false).then_some(())
        }
    })
    .await;
    assert!(released.is_some(), "{:?}", admin.availability(&event).await);
    let past = voucher(
        &admin,
        &event,
        json!({"code": "PAST", "ticket_type_ids": [tt], "max_uses": 1, "valid_until": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(past.body["errors"][0]["field"], "valid_until");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_windows_and_order_minimums() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, _) = admin.published_event(10, 600, 4).await;
    let create = |body: Value| {
        let admin = admin.clone();
        let event = event.clone();
        async move {
            admin
                .post(&format!("/api/v1/events/{event}/ticket-types"), &body, None)
                .await
        }
    };
    let pairs = create(
        json!({"name": "Pairs", "price_minor": 100, "currency": "EUR", "capacity": 10,
        "min_per_order": 2, "max_per_order": 4}),
    )
    .await;
    assert_eq!(
        (pairs.status, pairs.body["min_per_order"].clone()),
        (201, json!(2))
    );
    let one = admin.hold(&event, &pairs.str("id"), 1, None).await;
    assert_eq!(
        (one.status, one.body["errors"][0]["field"].clone()),
        (422, json!("quantity"))
    );
    assert_eq!(
        admin.hold(&event, &pairs.str("id"), 2, None).await.status,
        201
    );

    let early = create(
        json!({"name": "Later", "price_minor": 100, "currency": "EUR", "capacity": 10,
        "sales_start": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let r = admin.hold(&event, &early.str("id"), 1, None).await;
    assert_eq!(
        (r.status, r.str("code"), r.str("reason")),
        (409, "not_on_sale".into(), "not_started".into())
    );
    let ended = create(
        json!({"name": "Past", "price_minor": 100, "currency": "EUR", "capacity": 10,
        "sales_end": "2020-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        admin
            .hold(&event, &ended.str("id"), 1, None)
            .await
            .str("reason"),
        "ended"
    );
    let bad = create(json!({"name": "Bad", "price_minor": 100, "currency": "EUR", "capacity": 10,
        "sales_start": "2030-01-02T00:00:00Z", "sales_end": "2030-01-01T00:00:00Z", "min_per_order": 9, "max_per_order": 4}))
    .await;
    assert_eq!(bad.status, 422);
    let fields: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["min_per_order", "sales_end"]);
}
