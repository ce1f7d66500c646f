//! One access-log line per request (JSON), with the request id (a client's kept only when
//! short and plain), the W3C trace id, the matched route (never the raw path) and the account.

use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Server, wait_for};

/// The access lines logged so far.
fn access_lines(server: &Server) -> Vec<Value> {
    let log = std::fs::read_to_string(server.data_dir.with_extension("log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_one_access_line_with_a_bounded_request_id_and_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("LOG__FORMAT", "json"), ("LOG__FILTER", "warn,access=info")],
    );
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let me = api.get("/api/v1/users/me").await;
    let admin_id = me.str("id");
    let (event, tt) = api.published_event(10, 600, 4).await;

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let hold = api
        .http
        .post(server.url(&format!("/api/v1/events/{event}/registrations")))
        .bearer_auth(api.token.clone().unwrap())
        .header("x-request-id", "front-42.a:b_c")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"ticket_type_id": tt, "quantity": 1,
                      "attendee": {"name": "Ada", "email": "ada@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(hold.status(), 201);
    assert_eq!(hold.headers()["x-request-id"], "front-42.a:b_c");

    // An id that is too long, or has odd characters, is replaced by a UUID.
    for bad in ["x".repeat(65), "a b".to_owned(), "<script>".to_owned()] {
        let reply = api
            .http
            .get(server.url("/healthz"))
            .header("x-request-id", &bad)
            .send()
            .await
            .unwrap();
        let given = reply.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(
            uuid::Uuid::parse_str(&given).is_ok(),
            "{bad:?} became {given}"
        );
    }
    let missing = api
        .http
        .get(server.url(&format!("/api/v1/nothing/{event}")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let logged = wait_for(Duration::from_secs(10), || {
        let lines = access_lines(&server);
        async move { (lines.len() >= 6).then_some(lines) }
    })
    .await
    .expect("access lines");
    let hold_line = logged
        .iter()
        .find(|l| l["fields"]["request_id"] == "front-42.a:b_c")
        .expect("the hold's line");
    let f = &hold_line["fields"];
    assert_eq!(f["method"], "POST");
    assert_eq!(
        f["route"], "/api/v1/events/{id}/registrations",
        "the route, not the path"
    );
    assert_eq!(f["status"], 201);
    assert_eq!(f["trace_id"], trace);
    assert_eq!(f["account"], admin_id.as_str());
    assert!(f["duration_us"].as_u64().unwrap() > 0);
    let health = logged
        .iter()
        .filter(|l| l["fields"]["route"] == "/healthz")
        .count();
    assert_eq!(health, 3, "one line per request");
    let unmatched = logged
        .iter()
        .find(|l| l["fields"]["status"] == 404)
        .expect("the 404's line");
    assert_eq!(unmatched["fields"]["route"], "", "no route matched");
    assert_eq!(unmatched["fields"]["account"], "", "anonymous");
    assert!(
        !logged.iter().any(|l| l.to_string().contains(&event)),
        "no raw path (with its ids) in the access log"
    );
}
