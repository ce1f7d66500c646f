//! Smaller hardening findings, against the real binary: someone else's draft is as invisible
//! to writes as to reads (404, not 403 or 409); event times stay in a sane window and a past
//! event cannot be published; control characters are refused in one-line texts; and
//! bidirectional overrides cannot disguise a cell of an export.

use reqwest::Method as M;
use serde_json::json;
use tests::{Api, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_draft_answers_404_to_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (_, alice) = admin.account("alice@example.com", &["organizer"]).await;
    let (_, bob) = admin.account("bob@example.com", &["organizer"]).await;
    let (buyer_id, buyer) = admin.account("buyer@example.com", &[]).await;
    let draft = alice
        .post(
            "/api/v1/events",
            &json!({"title": "Secret", "starts_at": "2030-06-01T18:00:00Z",
                    "ends_at": "2030-06-01T23:00:00Z"}),
            None,
        )
        .await
        .str("id");
    let tt = alice
        .post(
            &format!("/api/v1/events/{draft}/ticket-types"),
            &json!({"name": "GA", "price_minor": 0, "currency": "EUR", "capacity": 5}),
            None,
        )
        .await
        .str("id");
    let missing = uuid::Uuid::new_v4().to_string();
    let hold = json!({"ticket_type_id": tt, "quantity": 1,
                      "attendee": {"name": "B", "email": "buyer@example.com"}});
    let calls = |event: &str| {
        vec![
            (
                M::PATCH,
                format!("/api/v1/events/{event}"),
                json!({"title": "Mine"}),
            ),
            (
                M::POST,
                format!("/api/v1/events/{event}/publish"),
                json!({}),
            ),
            (M::POST, format!("/api/v1/events/{event}/cancel"), json!({})),
            (
                M::POST,
                format!("/api/v1/events/{event}/ticket-types"),
                json!({"name": "X", "price_minor": 0, "currency": "EUR", "capacity": 1}),
            ),
            (
                M::GET,
                format!("/api/v1/events/{event}/registrations"),
                json!(null),
            ),
            (
                M::POST,
                format!("/api/v1/events/{event}/registrations"),
                hold.clone(),
            ),
            (
                M::POST,
                format!("/api/v1/events/{event}/waiting-list"),
                hold.clone(),
            ),
            (
                M::GET,
                format!("/api/v1/events/{event}/quote?ticket_type_id={tt}&quantity=1"),
                json!(null),
            ),
            (
                M::GET,
                format!("/api/v1/events/{event}/members"),
                json!(null),
            ),
            (
                M::PUT,
                format!("/api/v1/events/{event}/members/{buyer_id}"),
                json!({"role": "staff"}),
            ),
            (
                M::GET,
                format!("/api/v1/events/{event}/availability"),
                json!(null),
            ),
        ]
    };
    for (who, api) in [("another organizer", &bob), ("a buyer", &buyer)] {
        for ((method, path, body), (_, missing_path, _)) in
            calls(&draft).into_iter().zip(calls(&missing))
        {
            let send = |path: String| {
                let mut request = api.at(method.clone(), &path);
                if !body.is_null() {
                    request = request.json(&body);
                }
                api.send(request)
            };
            let (on_draft, on_missing) = (send(path.clone()).await, send(missing_path).await);
            assert_eq!(
                (on_draft.status, on_draft.str("code")),
                (on_missing.status, on_missing.str("code")),
                "{who}: {method} {path} tells a draft from a missing event: {:?}",
                on_draft.body
            );
            assert_eq!(on_draft.status, 404, "{who}: {method} {path}");
        }
    }
    // The draft is untouched, and once published it is visible: a stranger's write is 403.
    let published = alice
        .post(&format!("/api/v1/events/{draft}/publish"), &json!({}), None)
        .await;
    assert_eq!(published.status, 200, "{:?}", published.body);
    assert_eq!(published.str("title"), "Secret");
    let patch = bob
        .send(
            bob.at(M::PATCH, &format!("/api/v1/events/{draft}"))
                .json(&json!({"title": "Mine"})),
        )
        .await;
    assert_eq!(patch.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_times_stay_in_a_sane_window_and_past_events_do_not_sell() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let create = |starts: &str, ends: &str| {
        let body = json!({"title": "T", "starts_at": starts, "ends_at": ends});
        let admin = admin.clone();
        async move { admin.post("/api/v1/events", &body, None).await }
    };
    for (starts, ends) in [
        ("1970-01-01T00:00:00Z", "1970-01-01T01:00:00Z"),
        ("0000-01-01T00:00:00Z", "0000-01-01T01:00:00Z"),
        ("9999-01-01T00:00:00Z", "9999-01-01T01:00:00Z"),
        ("2030-01-01T00:00:00Z", "+10000-01-01T00:00:00Z"),
    ] {
        let r = create(starts, ends).await;
        assert!(
            r.status == 422 || r.status == 400,
            "{starts}..{ends}: {} {:?}",
            r.status,
            r.body
        );
        assert_ne!(r.status, 201);
    }
    let window = create("1999-12-31T23:00:00Z", "2000-01-01T01:00:00Z").await;
    assert_eq!(window.status, 422);
    assert_eq!(
        window.body["errors"][0]["field"], "starts_at",
        "{:?}",
        window.body
    );
    // Nothing above was stored.
    let listed = admin.get("/api/v1/events?status=draft").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(0));

    // Inside the window but over: a draft may be kept, never published or sold.
    let past = create("2001-05-01T18:00:00Z", "2001-05-01T23:00:00Z").await;
    assert_eq!(past.status, 201, "{:?}", past.body);
    let id = past.str("id");
    let tt = admin
        .post(
            &format!("/api/v1/events/{id}/ticket-types"),
            &json!({"name": "GA", "price_minor": 0, "currency": "EUR", "capacity": 5}),
            None,
        )
        .await;
    assert_eq!(tt.status, 201);
    let publish = admin
        .post(&format!("/api/v1/events/{id}/publish"), &json!({}), None)
        .await;
    assert_eq!(publish.status, 422, "{:?}", publish.body);
    assert_eq!(publish.body["errors"][0]["field"], "ends_at");
    // A published event that is over sells nothing: move a live one into the past.
    let (live, live_tt) = admin.published_event(5, 600, 1).await;
    let moved = admin
        .patch(
            &format!("/api/v1/events/{live}"),
            &json!({"starts_at": "2001-05-01T18:00:00Z", "ends_at": "2001-05-01T23:00:00Z"}),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    let late = admin.hold(&live, &live_tt, 1, None).await;
    assert_eq!(
        (late.status, late.str("code").as_str()),
        (409, "not_on_sale"),
        "{:?}",
        late.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_refused_and_bidi_overrides_cannot_disguise_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    for title in ["Bad\u{0}title", "Ring\u{7}", "Two\nlines", "Esc\u{1b}[31m"] {
        let r = admin
            .post(
                "/api/v1/events",
                &json!({"title": title, "starts_at": "2030-06-01T18:00:00Z",
                        "ends_at": "2030-06-01T23:00:00Z"}),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{title:?}: {:?}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "title");
    }
    // A description may have lines and tabs.
    let ok = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Fine", "description": "Line one\n\tLine two",
                    "starts_at": "2030-06-01T18:00:00Z", "ends_at": "2030-06-01T23:00:00Z"}),
            None,
        )
        .await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);

    let (event, tt) = admin.published_event(10, 600, 1).await;
    let hold = |name: &str| {
        let body = json!({"ticket_type_id": tt, "quantity": 1,
                          "attendee": {"name": name, "email": "a@example.com"}});
        let (admin, path) = (
            admin.clone(),
            format!("/api/v1/events/{event}/registrations"),
        );
        async move { admin.post(&path, &body, None).await }
    };
    let bell = hold("Ann\u{7}").await;
    assert_eq!(bell.status, 422, "{:?}", bell.body);
    assert_eq!(bell.body["errors"][0]["field"], "attendee.name");
    // Right-to-left text is a name like any other; an override is kept in the record but
    // shown as U+FFFD in the export, where it would make the cell read backwards.
    let rtl = hold("Eve\u{202E}gpj.exe").await;
    assert_eq!(rtl.status, 201, "{:?}", rtl.body);
    let (_, availability_after, _, _) = admin.availability(&event).await;
    assert_eq!(availability_after, 1, "the refused hold booked nothing");
    let export = admin
        .at(M::GET, &format!("/api/v1/events/{event}/registrations.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let text = export.text().await.unwrap();
    assert!(text.contains("Eve\u{FFFD}gpj.exe"), "{text}");
    assert!(!text.contains('\u{202E}'));
}
