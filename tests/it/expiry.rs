//! Hold expiry by actor timer, and the confirm/expire race: a confirm arriving as the hold
//! expires ends confirmed or expired, never both, and seats are counted once.

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::json;
use std::time::Duration;
use tests::{Api, Server, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_and_their_seats_return() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(5, 1, 5).await;
    let held = api.hold(&event, &tt, 5, None).await;
    assert_eq!(held.status, 201);
    assert_eq!(api.hold(&event, &tt, 1, None).await.str("code"), "sold_out");
    let id = held.str("id");
    let expired = wait_for(Duration::from_secs(15), || {
        let api = api.clone();
        let id = id.clone();
        async move {
            (api.get(&format!("/api/v1/registrations/{id}"))
                .await
                .str("status")
                == "expired")
                .then_some(())
        }
    })
    .await;
    assert!(expired.is_some(), "the hold did not expire");
    assert_eq!(api.availability(&event).await, (5, 0, 0, 5));
    let confirm = api
        .post(
            &format!("/api/v1/registrations/{id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (confirm.status, confirm.str("code").as_str()),
        (409, "invalid_registration_state")
    );
    assert_eq!(
        api.hold(&event, &tt, 5, None).await.status,
        201,
        "the seats are back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_racing_expiry_end_in_exactly_one_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(200, 1, 1).await;
    let holds = join_all((0..150).map(|_| {
        let (api, event, tt) = (api.clone(), event.clone(), tt.clone());
        tokio::spawn(async move { api.hold(&event, &tt, 1, None).await })
    }))
    .await;
    let holds: Vec<(String, DateTime<Utc>)> = holds
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.status, 201);
            (r.str("id"), r.str("expires_at").parse().unwrap())
        })
        .collect();
    // Each confirm is sent within ±60 ms of its hold's deadline.
    let confirms = join_all(holds.iter().enumerate().map(|(i, (id, expires_at))| {
        let (api, id) = (api.clone(), id.clone());
        let offset = chrono::Duration::milliseconds((i as i64 % 13) * 10 - 60);
        let at = *expires_at + offset;
        tokio::spawn(async move {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep_until(tokio::time::Instant::now() + wait).await;
            (
                id.clone(),
                api.post(
                    &format!("/api/v1/registrations/{id}/confirm"),
                    &json!({}),
                    None,
                )
                .await,
            )
        })
    }))
    .await;
    let all_settled = wait_for(Duration::from_secs(20), || {
        let api = api.clone();
        let event = event.clone();
        async move { (api.availability(&event).await.1 == 0).then_some(()) }
    })
    .await;
    assert!(all_settled.is_some(), "holds did not all settle");
    let (mut confirmed, mut expired) = (0u64, 0u64);
    for c in confirms {
        let (id, reply) = c.unwrap();
        let final_status = api
            .get(&format!("/api/v1/registrations/{id}"))
            .await
            .str("status");
        match reply.status {
            200 => {
                assert_eq!(
                    final_status, "confirmed",
                    "{id} was confirmed but ended {final_status}"
                );
                confirmed += 1;
            }
            409 => {
                assert!(matches!(
                    reply.str("code").as_str(),
                    "hold_expired" | "invalid_registration_state"
                ));
                assert_eq!(
                    final_status, "expired",
                    "{id} was refused but ended {final_status}"
                );
                expired += 1;
            }
            other => panic!("unexpected confirm reply {other}: {reply:?}"),
        }
    }
    eprintln!("confirm/expire race: {confirmed} confirmed, {expired} expired");
    assert_eq!(confirmed + expired, 150);
    assert_eq!(
        api.availability(&event).await,
        (200, 0, confirmed, 200 - confirmed),
        "seats counted once"
    );
}
