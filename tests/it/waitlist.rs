//! The waiting list against the real binary: seats freed by a cancellation and by a hold's
//! expiry go to the people waiting, in line, in the same decision that freed them (general
//! buyers racing for them get nothing); each place is offered once; unclaimed offers pass on;
//! the pool never holds more than its capacity. Offers are pushed to the buyer's WebSocket feed
//! and written to the outbox.

use futures::future::join_all;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Reply, Server, mailed, wait_for};
use tokio_tungstenite::tungstenite::Message;

async fn join(api: &Api, event: &str, tt: &str, email: &str) -> Reply {
    api.post(
        &format!("/api/v1/events/{event}/waiting-list"),
        &json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "Waiting", "email": email}}),
        None,
    )
    .await
}

async fn place(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("/api/v1/waiting-list/{id}")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// Waits until the place `id` has `status`; returns it.
async fn place_becomes(api: &Api, id: &str, status: &str) -> Value {
    let found = wait_for(Duration::from_secs(20), || async {
        let p = place(api, id).await;
        (p["status"] == status).then_some(p)
    })
    .await;
    found.unwrap_or_else(|| panic!("place {id} never became {status}"))
}

/// Capacity is never exceeded: held + confirmed ≤ capacity.
async fn within_capacity(api: &Api, event: &str) -> (u64, u64, u64, u64) {
    let a = api.availability(event).await;
    assert!(a.1 + a.2 <= a.0, "over capacity: {a:?}");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_seats_go_to_the_line_once_each_and_unclaimed_offers_pass_on() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("ENGINE__WAITLIST_OFFER_SECS", "4")],
    );
    let admin = Api::admin(&server).await;
    let mut waiters = Vec::new();
    for i in 1..=5 {
        let email = format!("w{i}@example.com");
        let (id, login) = admin.with_token(None).signed_in(&email).await;
        let token = login["access_token"].as_str().unwrap().to_owned();
        waiters.push((id, admin.with_token(Some(token.clone())), email, token));
    }
    // 4 seats, holds of 6 seconds (offers: 4 seconds).
    let (event, tt) = admin.published_event(4, 6, 4).await;
    let w1 = &waiters[0].1;
    let early = join(w1, &event, &tt, "w1@example.com").await;
    assert_eq!(
        (
            early.status,
            early.str("code"),
            early.body["available"].clone()
        ),
        (409, "not_sold_out".into(), json!(4)),
        "nobody waits while seats can be bought"
    );

    // Sold out: A holds 2 (they will expire), B confirmed 2 (canceled below).
    let a = admin.hold(&event, &tt, 2, None).await;
    let b = admin.hold(&event, &tt, 2, None).await;
    let b_id = b.str("id");
    let confirmed = admin
        .post(
            &format!("/api/v1/registrations/{b_id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!((a.status, confirmed.status), (201, 200));

    // w1 listens to its own registrations.
    let (w1_id, _, _, w1_token) = &waiters[0];
    let mut ws = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{}/api/v1/ws", server.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {w1_token}").parse().unwrap(),
        );
        tokio_tungstenite::connect_async(request).await.unwrap().0
    };
    let topic = format!("registrations:{w1_id}");
    ws.send(Message::text(
        json!({"type": "subscribe", "topic": topic}).to_string(),
    ))
    .await
    .unwrap();

    // Five join, in order; a second place for the same ticket type is refused.
    let mut places = Vec::new();
    for (i, (_, api, email, _)) in waiters.iter().enumerate() {
        let r = join(api, &event, &tt, email).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(r.body["position"], i + 1);
        places.push(r.str("id"));
    }
    let twice = join(w1, &event, &tt, "w1@example.com").await;
    assert_eq!(
        (twice.status, twice.str("code")),
        (409, "already_waiting".into())
    );
    // w5 leaves and joins again: still last.
    let w5 = &waiters[4].1;
    let left = w5
        .post(
            &format!("/api/v1/waiting-list/{}/leave", places[4]),
            &json!({}),
            None,
        )
        .await;
    assert_eq!((left.status, left.str("status")), (200, "left".into()));
    let again = join(w5, &event, &tt, "w5@example.com").await;
    assert_eq!(again.body["position"], 5);
    places[4] = again.str("id");

    // B is canceled while ten general buyers race for its seats: the seats go to w1 and w2 in
    // the cancellation's own decision, so every general buyer finds the event sold out.
    let (cancel_path, empty) = (format!("/api/v1/registrations/{b_id}/cancel"), json!({}));
    let cancel = admin.post(&cancel_path, &empty, None);
    let racers = join_all((0..10).map(|_| admin.hold(&event, &tt, 1, None)));
    let (canceled, racers) = tokio::join!(cancel, racers);
    assert_eq!(canceled.status, 200);
    for r in &racers {
        assert_eq!(
            (r.status, r.str("code")),
            (409, "sold_out".into()),
            "{:?}",
            r.body
        );
    }
    let p1 = place_becomes(w1, &places[0], "offered").await;
    let p2 = place_becomes(&waiters[1].1, &places[1], "offered").await;
    assert_eq!(place(&waiters[2].1, &places[2]).await["position"], 1);
    within_capacity(&admin, &event).await;

    // The offer is a held registration of w1's, pushed on its feed and sent by mail.
    let offer = p1["registration_id"].as_str().unwrap().to_owned();
    let pushed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("feed closed");
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "registration" && v["data"]["id"] == offer.as_str() {
                return v;
            }
        }
    })
    .await
    .expect("the offer was pushed");
    assert_eq!(pushed["data"]["status"], "held");
    assert_eq!(pushed["data"]["waitlist_entry_id"], places[0].as_str());
    let mail = wait_for(Duration::from_secs(10), || async {
        mailed(&server, "w1@example.com", "waitlist_offer")
            .into_iter()
            .next()
    })
    .await
    .expect("the offer was mailed");
    assert!(mail["link"].as_str().unwrap().ends_with(&offer));

    // w1 claims its offer; w2 declines, and its seat goes to w3 at once.
    let claimed = w1
        .post(
            &format!("/api/v1/registrations/{offer}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(claimed.status, 200, "{:?}", claimed.body);
    let w2_offer = p2["registration_id"].as_str().unwrap();
    let declined = waiters[1]
        .1
        .post(
            &format!("/api/v1/registrations/{w2_offer}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(declined.status, 200);
    assert_eq!(place(w1, &places[0]).await["status"], "claimed");
    assert_eq!(place(&waiters[1].1, &places[1]).await["status"], "declined");
    place_becomes(&waiters[2].1, &places[2], "offered").await;

    // A's hold expires: w4 and w5 get its two seats.
    place_becomes(&waiters[3].1, &places[3], "offered").await;
    place_becomes(w5, &places[4], "offered").await;
    within_capacity(&admin, &event).await;

    // Nobody claims the last three offers: they pass, and with nobody left waiting the seats
    // return to general sale.
    for i in 2..5 {
        place_becomes(&waiters[i].1, &places[i], "passed").await;
    }
    let settled = wait_for(Duration::from_secs(20), || async {
        (within_capacity(&admin, &event).await == (4, 0, 1, 3)).then_some(())
    })
    .await;
    assert!(settled.is_some(), "{:?}", admin.availability(&event).await);

    // Each place got exactly one offer: one registration per waiting account.
    for (_, api, _, _) in &waiters {
        let mine = api.get("/api/v1/users/me/registrations").await;
        let items = mine.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{:?}", mine.body);
    }
    assert_eq!(admin.hold(&event, &tt, 3, None).await.status, 201);
}
