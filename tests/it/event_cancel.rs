//! Canceling an event ends what it sold: open holds are released, confirmations are refused
//! with 409, issued tickets go on the revocation list (scanners and `verify` refuse them),
//! the waiting list is emptied, and every person concerned is told through the outbox. A
//! confirm racing a registration's cancel never answers 200 with revoked tickets.

use futures::future::join_all;
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Server, mailed, wait_for};

async fn hold_as(api: &Api, event: &str, tt: &str, quantity: u16, email: &str) -> String {
    let held = api
        .post(
            &format!("/api/v1/events/{event}/registrations"),
            &json!({"ticket_type_id": tt, "quantity": quantity,
                    "attendee": {"name": "Buyer", "email": email}}),
            None,
        )
        .await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    held.str("id")
}

async fn confirm(api: &Api, reg: &str) -> tests::Reply {
    api.post(
        &format!("/api/v1/registrations/{reg}/confirm"),
        &json!({}),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canceled_event_ends_its_holds_tickets_and_waiting_list_and_tells_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(3, 600, 4).await;
    let ann = admin.account("ann@example.com", &[]).await.1;
    let bob = admin.account("bob@example.com", &[]).await.1;
    let cat = admin.account("cat@example.com", &[]).await.1;

    // Ann has two tickets, Bob holds the last seat, Cat waits.
    let ann_reg = hold_as(&ann, &event, &tt, 2, "ann@example.com").await;
    let confirmed = confirm(&ann, &ann_reg).await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let codes: Vec<String> = confirmed.body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    let bob_reg = hold_as(&bob, &event, &tt, 1, "bob@example.com").await;
    let waiting = cat
        .post(
            &format!("/api/v1/events/{event}/waiting-list"),
            &json!({"ticket_type_id": tt, "quantity": 1,
                    "attendee": {"name": "Cat", "email": "cat@example.com"}}),
            None,
        )
        .await;
    assert_eq!(waiting.status, 201, "{:?}", waiting.body);
    let place = waiting.str("id");

    let canceled = admin
        .post(&format!("/api/v1/events/{event}/cancel"), &json!({}), None)
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(canceled.str("status"), "canceled");

    // Bob's hold can no longer become tickets: 409, whether the close has run yet or not.
    let late = confirm(&bob, &bob_reg).await;
    assert_eq!(late.status, 409, "{:?}", late.body);
    assert!(
        ["event_not_open", "invalid_registration_state"].contains(&late.str("code").as_str()),
        "{:?}",
        late.body
    );

    // Both registrations end; the seats are back; the waiting place is gone.
    for (api, reg) in [(&ann, &ann_reg), (&bob, &bob_reg)] {
        let ended = wait_for(Duration::from_secs(10), || async {
            let r = api.get(&format!("/api/v1/registrations/{reg}")).await;
            (r.str("status") == "canceled").then_some(())
        })
        .await;
        assert!(ended.is_some(), "registration {reg} still live");
    }
    let (capacity, held, sold, _) = admin.availability(&event).await;
    assert_eq!((capacity, held, sold), (3, 0, 0));
    let gone = cat.get(&format!("/api/v1/waiting-list/{place}")).await;
    assert!(
        gone.status == 404 || gone.str("status") != "waiting",
        "{:?}",
        gone.body
    );
    assert_eq!(confirm(&bob, &bob_reg).await.status, 409);

    // Ann's tickets are revoked: on the list scanners download, and refused by verify.
    let revocations = admin
        .get(&format!("/api/v1/events/{event}/revocations"))
        .await;
    assert_eq!(revocations.status, 200, "{:?}", revocations.body);
    assert!(
        revocations.body["version"].as_u64().unwrap_or(0) >= 2,
        "{:?}",
        revocations.body
    );
    for code in &codes {
        let verdict = admin
            .post(
                &format!("/api/v1/events/{event}/tickets/verify"),
                &json!({"ticket_code": code}),
                None,
            )
            .await;
        assert_eq!(verdict.str("result"), "revoked", "{:?}", verdict.body);
    }

    // Everyone concerned is told, once.
    for (to, tickets) in [
        ("ann@example.com", true),
        ("bob@example.com", false),
        ("cat@example.com", false),
    ] {
        let told = wait_for(Duration::from_secs(10), || async {
            let m = mailed(&server, to, "event_canceled");
            (!m.is_empty()).then_some(m)
        })
        .await
        .unwrap_or_else(|| panic!("{to} not told"));
        assert_eq!(told.len(), 1, "{told:?}");
        let text = told[0]["text"].as_str().unwrap();
        assert!(text.contains("canceled"), "{text}");
        assert_eq!(text.contains("no longer valid"), tickets, "{text}");
    }

    // After a restart nothing comes back to life and nobody is told anything new (a send the
    // shutdown cut short may be repeated: at least once, with the same message id).
    let server = server.restart(&[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (_, held, sold, _) = admin.availability(&event).await;
    assert_eq!((held, sold), (0, 0));
    let mut ids: Vec<String> = mailed(&server, "ann@example.com", "event_canceled")
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_racing_a_cancel_never_answers_200_with_revoked_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(200, 600, 4).await;
    for _ in 0..10 {
        let reg = admin.hold(&event, &tt, 1, None).await.str("id");
        let requests = (0..100).map(|i| {
            let (api, reg) = (admin.clone(), reg.clone());
            async move {
                let action = if i % 2 == 0 { "confirm" } else { "cancel" };
                let r = api
                    .post(
                        &format!("/api/v1/registrations/{reg}/{action}"),
                        &json!({}),
                        None,
                    )
                    .await;
                (action, r)
            }
        });
        for (action, r) in join_all(requests).await {
            match (action, r.status) {
                ("confirm", 200) => {
                    assert_eq!(r.str("status"), "confirmed", "{:?}", r.body);
                    assert!(r.body["tickets"].as_array().is_some_and(|t| !t.is_empty()));
                }
                (_, 200) => assert_eq!(r.str("status"), "canceled"),
                (_, 409) => assert_eq!(
                    r.body["type"],
                    Value::from("/problems/invalid_registration_state")
                ),
                other => panic!("{other:?}: {:?}", r.body),
            }
        }
    }
}
