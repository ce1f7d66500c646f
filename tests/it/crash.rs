//! kill -9 at random moments during a concurrent sale: after each restart on the same data
//! directory, every registration that got a 2xx is there with its status, and no pool is
//! oversold. Registrations listed by the read model agree with the pool's counts.

use rand::Rng;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tests::{Api, Server};

const CAPACITY: u64 = 120;
const ITERATIONS: usize = 5;
const WORKERS: usize = 24;

/// What the client was told, per registration id: the acknowledged status, and the status
/// of a later request whose reply was lost in the kill (it may or may not have been applied).
type Acked = Arc<Mutex<HashMap<String, (&'static str, Option<&'static str>)>>>;

async fn buyer(
    api: Api,
    (event, tt): (String, String),
    acked: Acked,
    done: Arc<AtomicUsize>,
    (worker, iteration): (usize, usize),
    mut mine: Vec<String>,
) {
    for n in 0.. {
        let roll: u32 = rand::rng().random_range(0..10);
        let reply = if roll < 2 && !mine.is_empty() {
            let id = mine.swap_remove(0);
            let (action, status) = if roll == 0 {
                ("cancel", "canceled")
            } else {
                ("confirm", "confirmed")
            };
            if let Some(entry) = acked.lock().unwrap().get_mut(&id) {
                entry.1 = Some(status);
            }
            let Some(r) = api
                .try_post(
                    &format!("/api/v1/registrations/{id}/{action}"),
                    &json!({}),
                    None,
                )
                .await
            else {
                return;
            };
            let mut acked = acked.lock().unwrap();
            let entry = acked.get_mut(&id).expect("tracked");
            entry.1 = None;
            if r.status == 200 {
                entry.0 = status;
                if status == "confirmed" {
                    mine.push(id);
                }
            }
            drop(acked);
            r
        } else {
            let quantity = rand::rng().random_range(1..=2);
            let body = json!({"ticket_type_id": tt, "quantity": quantity, "attendee": {"name": "B", "email": format!("w{worker}@example.com")}});
            let key = format!("it{iteration}-w{worker}-n{n}");
            let Some(r) = api
                .try_post(
                    &format!("/api/v1/events/{event}/registrations"),
                    &body,
                    Some(&key),
                )
                .await
            else {
                return;
            };
            if r.status == 201 {
                let id = r.str("id");
                acked.lock().unwrap().insert(id.clone(), ("held", None));
                mine.push(id);
            }
            r
        };
        assert!(
            reply.status < 500 || reply.status == 503,
            "server error: {reply:?}"
        );
        done.fetch_add(1, Ordering::Relaxed);
    }
}

async fn verify(api: &Api, event: &str, acked: &Acked) {
    let expected: Vec<_> = acked
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    for (id, (status, maybe)) in expected {
        let r = api.get(&format!("/api/v1/registrations/{id}")).await;
        assert_eq!(r.status, 200, "acknowledged registration {id} lost");
        let found = r.str("status");
        assert!(
            found == status || Some(found.as_str()) == maybe,
            "registration {id} is {found}; acknowledged {status} (unacknowledged attempt: {maybe:?})"
        );
        // What the kill left unknown is settled now: the durable status is the truth.
        if let Some(attempted) = maybe {
            let settled = if found == attempted {
                attempted
            } else {
                status
            };
            acked.lock().unwrap().insert(id, (settled, None));
        }
    }
    let (capacity, held, confirmed, available) = api.availability(event).await;
    assert!(
        held + confirmed <= capacity,
        "oversold: {held} + {confirmed} > {capacity}"
    );
    assert_eq!(held + confirmed + available, capacity);
    // The read model agrees with the pool.
    let (mut listed_held, mut listed_confirmed, mut after) = (0, 0, String::new());
    loop {
        let page = api
            .get(&format!(
                "/api/v1/events/{event}/registrations?limit=500{after}"
            ))
            .await;
        for item in page.body["items"].as_array().unwrap() {
            let q = item["quantity"].as_u64().unwrap();
            match item["status"].as_str().unwrap() {
                "held" => listed_held += q,
                "confirmed" => listed_confirmed += q,
                _ => {}
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(
        (listed_held, listed_confirmed),
        (held, confirmed),
        "read model and pool disagree"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_sale_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked: Acked = Arc::default();
    let mut event = None;
    for iteration in 0..ITERATIONS {
        // A small snapshot interval so recovery also goes through snapshots.
        let server = Server::start(&data, &[("ENGINE__SNAPSHOT_EVERY_EVENTS", "16")]);
        let api = Api::admin(&server).await;
        api.wait_ready().await;
        let (event_id, tt) = match &event {
            Some(e) => e,
            None => event.insert(api.published_event(CAPACITY as u32, 600, 2).await),
        }
        .clone();
        verify(&api, &event_id, &acked).await;

        let done = Arc::new(AtomicUsize::new(0));
        let kill_at = rand::rng().random_range(20..250);
        // Live registrations from earlier iterations, shared out so the sale keeps moving
        // (confirms and cancels) after the pool sells out.
        let mut live: Vec<Vec<String>> = vec![Vec::new(); WORKERS];
        for (i, (id, (status, _))) in acked.lock().unwrap().iter().enumerate() {
            if *status != "canceled" {
                live[i % WORKERS].push(id.clone());
            }
        }
        let acked_before = acked.lock().unwrap().len();
        let workers: Vec<_> = live
            .into_iter()
            .enumerate()
            .map(|(w, mine)| {
                let target = (event_id.clone(), tt.clone());
                tokio::spawn(buyer(
                    api.clone(),
                    target,
                    acked.clone(),
                    done.clone(),
                    (w, iteration),
                    mine,
                ))
            })
            .collect();
        let reached = tests::wait_for(std::time::Duration::from_secs(60), || {
            let done = done.clone();
            async move { (done.load(Ordering::Relaxed) >= kill_at).then_some(()) }
        })
        .await;
        assert!(reached.is_some(), "the sale made no progress");
        server.kill9();
        for w in workers {
            if let Err(e) = w.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        let acked_now = acked.lock().unwrap().len();
        eprintln!(
            "iteration {iteration}: killed after {kill_at} replies; {} new registrations acknowledged, {acked_now} in all",
            acked_now - acked_before
        );
    }
    let server = Server::start(&data, &[]);
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let (event_id, _) = event.unwrap();
    verify(&api, &event_id, &acked).await;
}
