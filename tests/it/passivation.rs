//! An idle event is passivated (its actors stop, memory is released) and activated again
//! from durable state on next use, with nothing lost.

use serde_json::json;
use std::time::Duration;
use tests::{Api, Server, wait_for};

async fn active_events(api: &Api) -> Option<u64> {
    api.metric("regengine_engine_active_events")
        .await
        .map(|v| v as u64)
}

/// The scrape's series labelled with `event` (the per-event families, `regengine_event_*`).
async fn event_series(api: &Api, event: &str) -> Vec<String> {
    let scrape = api.scrape().await.expect("/metrics answers");
    let label = format!("event=\"{event}\"");
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_owned)
        .collect()
}

/// Waits until no series of `event` is left in the scrape (its actors passivated and the
/// exporter's idle timeout, here the 1 s passivation time, passed).
async fn event_series_gone(api: &Api, event: &str) -> bool {
    wait_for(Duration::from_secs(20), || {
        let api = api.clone();
        async move { event_series(&api, event).await.is_empty().then_some(()) }
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_events_passivate_and_come_back_from_durable_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("ENGINE__PASSIVATE_AFTER_SECS", "1")],
    );
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let (event, tt) = api.published_event(5, 600, 5).await;
    let held = api.hold(&event, &tt, 2, None).await;
    let confirmed = api
        .post(
            &format!("/api/v1/registrations/{}/confirm", held.str("id")),
            &json!({}),
            None,
        )
        .await;
    let code = confirmed.body["tickets"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(api.hold(&event, &tt, 1, None).await.status, 201);
    // While it is active: its pool's seats, and its holds by result (two holds, both ok).
    let mut series = event_series(&api, &event).await;
    series.sort();
    assert!(
        series.len() == 2
            && series[0].starts_with("regengine_event_holds_total{")
            && series[0].contains("result=\"ok\"")
            && series[0].ends_with(" 2")
            && series[1].starts_with("regengine_event_pool_available_seats{")
            && series[1].ends_with(" 2"),
        "the event's series while it is active: {series:?}"
    );

    let idle = wait_for(Duration::from_secs(20), || {
        let api = api.clone();
        async move { (active_events(&api).await? == 0).then_some(()) }
    })
    .await;
    assert!(idle.is_some(), "the idle event was not passivated");
    assert!(
        event_series_gone(&api, &event).await,
        "a passivated event's series leave the scrape"
    );

    // Back from durable state: counts, idempotent confirm, exactly-once check-in, selling.
    assert_eq!(api.availability(&event).await, (5, 1, 2, 2));
    let again = api
        .post(
            &format!("/api/v1/registrations/{}/confirm", held.str("id")),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(
        (again.status, again.str("status").as_str()),
        (200, "confirmed")
    );
    let scan = |gate: &'static str| {
        let (api, event, code) = (api.clone(), event.clone(), code.clone());
        async move {
            api.post(
                &format!("/api/v1/events/{event}/check-ins"),
                &json!({"ticket_code": code, "gate": gate}),
                None,
            )
            .await
        }
    };
    assert_eq!(scan("a").await.status, 200);
    assert_eq!(active_events(&api).await, Some(1));
    // Active again: its series are back, the check-in total from the durable statistics.
    let admitted = format!("regengine_event_checkin_admitted_total{{event=\"{event}\"}}");
    let back = wait_for(Duration::from_secs(20), || {
        let (api, admitted) = (api.clone(), admitted.clone());
        async move { (api.metric(&admitted).await? == 1.0).then_some(()) }
    })
    .await;
    assert!(back.is_some(), "{:?}", event_series(&api, &event).await);
    assert!(
        event_series(&api, &event)
            .await
            .iter()
            .any(|l| l.starts_with("regengine_event_pool_available_seats{")),
        "the pool's seats are back"
    );
    let idle = wait_for(Duration::from_secs(20), || {
        let api = api.clone();
        async move { (active_events(&api).await? == 0).then_some(()) }
    })
    .await;
    assert!(idle.is_some(), "not passivated again");
    assert!(
        event_series_gone(&api, &event).await,
        "gone again after the second passivation"
    );
    let second = scan("b").await;
    assert_eq!(
        (second.status, second.str("code").as_str()),
        (409, "already_checked_in")
    );
    assert_eq!(
        second.body["first_gate"], "a",
        "the admission survived passivation"
    );
    assert_eq!(api.hold(&event, &tt, 2, None).await.status, 201);
    assert_eq!(api.hold(&event, &tt, 1, None).await.str("code"), "sold_out");
}
