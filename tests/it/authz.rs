//! The authorization matrix: every protected route against anonymous callers, attendees,
//! an organizer of another event, and other users' objects. Every denied call gets 401, 403
//! or 404, and the state is unchanged afterwards.

use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Reply, Server};

/// A signed-in client of its own.
async fn user(admin: &Api, email: &str, roles: &[&str]) -> (String, Api) {
    admin.account(email, roles).await
}

/// (name, caller, method, path, body, the statuses that count as denied correctly).
type Case<'a> = (
    &'a str,
    &'a Api,
    reqwest::Method,
    String,
    Option<Value>,
    &'a [u16],
);

async fn call(api: &Api, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
    let mut request = api.at(method, path);
    if let Some(body) = body {
        request = request.json(body);
    }
    api.send(request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_who_is_calling() {
    use reqwest::Method as M;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let anonymous = admin.with_token(None);
    let (alice_id, alice) = user(&admin, "alice@example.com", &["organizer"]).await;
    let (_, bob) = user(&admin, "bob@example.com", &["organizer"]).await;
    let (_, carol) = user(&admin, "carol@example.com", &[]).await;
    let (dave_id, dave) = user(&admin, "dave@example.com", &[]).await;

    // Alice's event X with one ticket type; Bob's event Y.
    let (x, tt) = alice.published_event(10, 600, 4).await;
    let (y, _) = bob.published_event(10, 600, 4).await;
    // Carol holds and confirms two seats of X; her ticket's code.
    let hold = json!({"ticket_type_id": tt, "quantity": 2, "attendee": {"name": "Carol", "email": "carol@example.com"}});
    let reg = carol
        .post(&format!("/api/v1/events/{x}/registrations"), &hold, None)
        .await;
    assert_eq!(reg.status, 201, "{:?}", reg.body);
    let reg_id = reg.str("id");
    let confirmed = carol
        .post(
            &format!("/api/v1/registrations/{reg_id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let ticket_id = confirmed.body["tickets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = confirmed.body["tickets"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let snapshot = |api: &Api| {
        let (api, x, reg_id) = (
            api.with_token(admin.token.clone()),
            x.clone(),
            reg_id.clone(),
        );
        async move {
            let event = api.get(&format!("/api/v1/events/{x}")).await.body;
            let reg = api
                .get(&format!("/api/v1/registrations/{reg_id}"))
                .await
                .body;
            let avail = api
                .get(&format!("/api/v1/events/{x}/availability"))
                .await
                .body;
            (
                event["title"].clone(),
                event["status"].clone(),
                event["ticket_types"].as_array().map(Vec::len),
                reg["status"].clone(),
                avail["ticket_types"][0]["available"].clone(),
            )
        }
    };
    let before = snapshot(&admin).await;

    let new_event = json!({"title": "Mine now", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T23:00:00Z"});
    let new_tt = json!({"name": "Extra", "price_minor": 1, "currency": "EUR", "capacity": 1000});
    let patch = json!({"title": "Hijacked"});
    let scan = json!({"ticket_code": code, "gate": "side door"});
    let roles = json!({"roles": ["admin"]});
    let e = |p: &str| format!("/api/v1/events/{x}{p}");
    // (who, method, path, body, allowed statuses)
    let cases: Vec<Case<'_>> = vec![
        // Anonymous: no protected route.
        (
            "anon create event",
            &anonymous,
            M::POST,
            "/api/v1/events".into(),
            Some(new_event.clone()),
            &[401],
        ),
        (
            "anon patch",
            &anonymous,
            M::PATCH,
            e(""),
            Some(patch.clone()),
            &[401],
        ),
        (
            "anon publish",
            &anonymous,
            M::POST,
            e("/cancel"),
            None,
            &[401],
        ),
        (
            "anon hold",
            &anonymous,
            M::POST,
            e("/registrations"),
            Some(hold.clone()),
            &[401],
        ),
        (
            "anon read registration",
            &anonymous,
            M::GET,
            format!("/api/v1/registrations/{reg_id}"),
            None,
            &[401],
        ),
        (
            "anon list registrations",
            &anonymous,
            M::GET,
            e("/registrations"),
            None,
            &[401],
        ),
        (
            "anon check-in",
            &anonymous,
            M::POST,
            e("/check-ins"),
            Some(scan.clone()),
            &[401],
        ),
        (
            "anon ticket",
            &anonymous,
            M::GET,
            format!("/api/v1/tickets/{ticket_id}"),
            None,
            &[401],
        ),
        (
            "anon me",
            &anonymous,
            M::GET,
            "/api/v1/users/me".into(),
            None,
            &[401],
        ),
        // An attendee cannot organise.
        (
            "attendee create event",
            &dave,
            M::POST,
            "/api/v1/events".into(),
            Some(new_event.clone()),
            &[403],
        ),
        (
            "attendee patch",
            &dave,
            M::PATCH,
            e(""),
            Some(patch.clone()),
            &[403],
        ),
        (
            "attendee cancel",
            &dave,
            M::POST,
            e("/cancel"),
            None,
            &[403],
        ),
        (
            "attendee ticket type",
            &dave,
            M::POST,
            e("/ticket-types"),
            Some(new_tt.clone()),
            &[403],
        ),
        (
            "attendee list registrations",
            &dave,
            M::GET,
            e("/registrations"),
            None,
            &[403],
        ),
        (
            "attendee check-in",
            &dave,
            M::POST,
            e("/check-ins"),
            Some(scan.clone()),
            &[403],
        ),
        (
            "attendee by e-mail",
            &dave,
            M::GET,
            "/api/v1/registrations?email=carol@example.com".into(),
            None,
            &[403],
        ),
        (
            "attendee grants roles",
            &dave,
            M::PUT,
            "/api/v1/users/00000000-0000-7000-8000-000000000000/roles".into(),
            Some(roles.clone()),
            &[403],
        ),
        // Another user's registration and ticket do not exist for Dave.
        (
            "other's registration",
            &dave,
            M::GET,
            format!("/api/v1/registrations/{reg_id}"),
            None,
            &[404],
        ),
        (
            "confirm other's",
            &dave,
            M::POST,
            format!("/api/v1/registrations/{reg_id}/confirm"),
            None,
            &[404],
        ),
        (
            "cancel other's",
            &dave,
            M::POST,
            format!("/api/v1/registrations/{reg_id}/cancel"),
            None,
            &[404],
        ),
        (
            "other's ticket",
            &dave,
            M::GET,
            format!("/api/v1/tickets/{ticket_id}"),
            None,
            &[404],
        ),
        // The organizer of Y has no say over X.
        (
            "organizer of Y patches X",
            &bob,
            M::PATCH,
            e(""),
            Some(patch.clone()),
            &[403],
        ),
        (
            "organizer of Y cancels X",
            &bob,
            M::POST,
            e("/cancel"),
            None,
            &[403],
        ),
        (
            "organizer of Y adds to X",
            &bob,
            M::POST,
            e("/ticket-types"),
            Some(new_tt.clone()),
            &[403],
        ),
        (
            "organizer of Y lists X",
            &bob,
            M::GET,
            e("/registrations"),
            None,
            &[403],
        ),
        (
            "organizer of Y scans at X",
            &bob,
            M::POST,
            e("/check-ins"),
            Some(scan.clone()),
            &[403],
        ),
        (
            "organizer of Y reads X's registration",
            &bob,
            M::GET,
            format!("/api/v1/registrations/{reg_id}"),
            None,
            &[404],
        ),
        (
            "organizer of Y cancels X's registration",
            &bob,
            M::POST,
            format!("/api/v1/registrations/{reg_id}/cancel"),
            None,
            &[404],
        ),
        (
            "organizer grants roles",
            &bob,
            M::PUT,
            "/api/v1/users/00000000-0000-7000-8000-000000000000/roles".into(),
            Some(roles.clone()),
            &[403],
        ),
        // Mass assignment: fields a client does not own are refused, whoever sends them.
        (
            "owner in new event",
            &alice,
            M::POST,
            "/api/v1/events".into(),
            Some(
                json!({"title": "T", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T23:00:00Z", "owner": "x"}),
            ),
            &[422],
        ),
        (
            "status in patch",
            &alice,
            M::PATCH,
            e(""),
            Some(json!({"status": "canceled"})),
            &[422],
        ),
        (
            "sold seats in ticket type",
            &alice,
            M::POST,
            e("/ticket-types"),
            Some(
                json!({"name": "N", "price_minor": 1, "currency": "EUR", "capacity": 5, "confirmed": 5}),
            ),
            &[422],
        ),
        (
            "price in a hold",
            &carol,
            M::POST,
            e("/registrations"),
            Some(
                json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "C", "email": "c@example.com"}, "price_minor": 0}),
            ),
            &[422],
        ),
        (
            "user_id in a hold",
            &carol,
            M::POST,
            e("/registrations"),
            Some(
                json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "C", "email": "c@example.com"}, "user_id": "x"}),
            ),
            &[422],
        ),
        (
            "roles in profile",
            &carol,
            M::PATCH,
            "/api/v1/users/me".into(),
            Some(json!({"roles": ["admin"]})),
            &[422],
        ),
    ];
    for (name, api, method, path, body, allowed) in &cases {
        let r = call(api, method.clone(), path, body.as_ref()).await;
        assert!(
            allowed.contains(&r.status),
            "{name}: {method} {path} -> {} {:?}",
            r.status,
            r.body
        );
        assert_eq!(r.content_type, "application/problem+json", "{name}");
    }
    assert_eq!(
        snapshot(&admin).await,
        before,
        "a denied call changed something"
    );
    // Y is untouched too.
    assert_eq!(
        admin.get(&format!("/api/v1/events/{y}")).await.body["status"],
        "published"
    );

    // What each may do: the owner manages and scans; the holder reads her own; lists are scoped.
    assert_eq!(
        carol
            .get(&format!("/api/v1/registrations/{reg_id}"))
            .await
            .status,
        200
    );
    assert_eq!(
        carol
            .get(&format!("/api/v1/tickets/{ticket_id}"))
            .await
            .status,
        200
    );
    let mine = carol.get("/api/v1/users/me/registrations").await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1);
    let none = dave.get("/api/v1/users/me/registrations").await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        alice
            .get(&format!("/api/v1/registrations/{reg_id}"))
            .await
            .status,
        200
    );
    assert_eq!(alice.get(&e("/registrations")).await.status, 200);
    let admitted = alice.post(&e("/check-ins"), &scan, None).await;
    assert_eq!(admitted.status, 200, "{:?}", admitted.body);
    assert_eq!(public_reads(&anonymous, &x).await, [200, 200, 200]);
    // A draft is its managers' business: others get 404 and do not see it listed.
    let draft = alice
        .post("/api/v1/events", &new_event, None)
        .await
        .str("id");
    for (who, api, status) in [
        ("anonymous", &anonymous, 404),
        ("attendee", &dave, 404),
        ("other organizer", &bob, 404),
        ("owner", &alice, 200),
        ("admin", &admin, 200),
    ] {
        assert_eq!(
            api.get(&format!("/api/v1/events/{draft}")).await.status,
            status,
            "{who}"
        );
        assert_eq!(
            api.get(&format!("/api/v1/events/{draft}/availability"))
                .await
                .status,
            status,
            "{who}"
        );
        let listed = api.get("/api/v1/events?limit=200").await.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == draft.as_str());
        assert_eq!(listed, status == 200, "{who}");
    }

    // Per-event roles: Erin is staff of X, Frank co-organizes X.
    let (erin_id, erin) = user(&admin, "erin@example.com", &[]).await;
    let (frank_id, frank) = user(&admin, "frank@example.com", &[]).await;
    let member = |api: &Api, user: &str, role: Option<&str>| {
        let path = format!("/api/v1/events/{x}/members/{user}");
        let request = match role {
            Some(role) => api.at(M::PUT, &path).json(&json!({"role": role})),
            None => api.at(M::DELETE, &path),
        };
        let api = api.with_token(api.token.clone());
        async move { api.send(request).await }
    };
    // Only X's managers hand out roles in X.
    assert_eq!(member(&bob, &erin_id, Some("staff")).await.status, 403);
    assert_eq!(member(&dave, &erin_id, Some("staff")).await.status, 403);
    assert_eq!(member(&alice, &erin_id, Some("staff")).await.status, 200);
    let members = member(&alice, &frank_id, Some("organizer")).await;
    assert_eq!(members.status, 200);
    assert_eq!(
        members.body.as_array().unwrap().len(),
        3,
        "{:?}",
        members.body
    );
    let second = json!({"ticket_code": confirmed.body["tickets"][1]["code"], "gate": "east"});
    // Staff of X scan at X, and nowhere else, and do nothing else.
    assert_eq!(
        erin.post(&format!("/api/v1/events/{y}/check-ins"), &second, None)
            .await
            .status,
        403
    );
    assert_eq!(
        call(&erin, M::PATCH, &e(""), Some(&patch)).await.status,
        403
    );
    assert_eq!(erin.get(&e("/registrations")).await.status, 403);
    assert_eq!(
        erin.get(&format!("/api/v1/registrations/{reg_id}"))
            .await
            .status,
        404
    );
    assert_eq!(member(&erin, &dave_id, Some("staff")).await.status, 403);
    let scanned = erin.post(&e("/check-ins"), &second, None).await;
    assert_eq!(scanned.status, 200, "{:?}", scanned.body);
    // A co-organizer manages X.
    assert_eq!(frank.get(&e("/registrations")).await.status, 200);
    assert_eq!(
        call(
            &frank,
            M::PATCH,
            &e(""),
            Some(&json!({"title": "Renamed by Frank"}))
        )
        .await
        .status,
        200
    );
    // Roles can be taken back: Erin can no longer scan.
    assert_eq!(member(&alice, &erin_id, None).await.status, 200);
    assert_eq!(erin.post(&e("/check-ins"), &scan, None).await.status, 403);

    // The audit log of X: who did what, with the outcome, for admins only.
    assert_eq!(alice.get(&e("/audit")).await.status, 403);
    let log = admin.get(&e("/audit?limit=500")).await;
    assert_eq!(log.status, 200, "{:?}", log.body);
    let entries = log.body["items"].as_array().unwrap().clone();
    let has = |actor: &str, action: &str, status: u64| {
        entries.iter().any(|x| {
            x["actor"] == actor
                && x["action"] == action
                && x["status"] == status
                && !x["request_id"].as_str().unwrap_or("").is_empty()
        })
    };
    assert!(
        has(&alice_id, "POST /api/v1/events/{id}/publish", 200),
        "{entries:#?}"
    );
    assert!(
        has(&dave_id, "PATCH /api/v1/events/{id}", 403),
        "denied attempts are audited"
    );
    assert!(
        has(&erin_id, "POST /api/v1/events/{id}/check-ins", 200),
        "staff scans"
    );
    assert!(has(
        &alice_id,
        "DELETE /api/v1/events/{id}/members/{user_id}",
        200
    ));
    // Buyers' own holds are the sale, not administration: not audited.
    assert!(
        !entries
            .iter()
            .any(|x| x["action"] == "POST /api/v1/events/{id}/registrations")
    );
    // Role grants are in the log outside events.
    let global = admin.get("/api/v1/audit?limit=500").await;
    assert!(
        global.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["action"] == "PUT /api/v1/users/{id}/roles")
    );

    // An admin grant takes effect with the next token: Dave becomes an organizer.
    let (_, dave) = user(&admin, "dave2@example.com", &["organizer"]).await;
    let created = dave.post("/api/v1/events", &new_event, None).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    server.terminate(Duration::from_secs(10));
}

/// Event list, detail and availability are public.
async fn public_reads(api: &Api, event: &str) -> [u16; 3] {
    [
        api.get("/api/v1/events").await.status,
        api.get(&format!("/api/v1/events/{event}")).await.status,
        api.get(&format!("/api/v1/events/{event}/availability"))
            .await
            .status,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_holds_of_one_account_never_exceed_max_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let event = admin
        .post(
            "/api/v1/events",
            &json!({"title": "Limited", "starts_at": "2030-01-01T18:00:00Z", "ends_at": "2030-01-01T23:00:00Z"}),
            None,
        )
        .await
        .str("id");
    let tt = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "GA", "price_minor": 100, "currency": "EUR", "capacity": 1000, "max_per_order": 4, "max_per_account": 3}),
            None,
        )
        .await;
    assert_eq!(tt.body["max_per_account"], 3, "{:?}", tt.body);
    let tt = tt.str("id");
    admin
        .post(&format!("/api/v1/events/{event}/publish"), &json!({}), None)
        .await;
    let (_, ann) = user(&admin, "ann@example.com", &[]).await;
    let (_, bob) = user(&admin, "bob@example.com", &[]).await;
    let path = format!("/api/v1/events/{event}/registrations");
    let hold = json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "Ann", "email": "ann@example.com"}});

    // 20 holds of one seat from one account at once: exactly 3 succeed.
    let replies = futures::future::join_all((0..20).map(|_| ann.post(&path, &hold, None))).await;
    let ok: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(ok.len(), 3);
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(
            (r.status, r.str("code").as_str()),
            (409, "account_limit_reached"),
            "{:?}",
            r.body
        );
    }
    // Another account is not affected; a two-seat order over the limit is refused whole.
    assert_eq!(bob.post(&path, &hold, None).await.status, 201);
    let two = json!({"ticket_type_id": tt, "quantity": 2, "attendee": {"name": "Bob", "email": "bob@example.com"}});
    assert_eq!(bob.post(&path, &two, None).await.status, 201);
    assert_eq!(bob.post(&path, &two, None).await.status, 409);
    // Seats given back count no more.
    let canceled = ann
        .post(
            &format!("/api/v1/registrations/{}/cancel", ok[0].str("id")),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.status, 200);
    assert_eq!(ann.post(&path, &hold, None).await.status, 201);
    assert_eq!(ann.post(&path, &hold, None).await.status, 409);
    // The limit holds across a restart (rebuilt from the journal).
    let server = server.restart(&[]);
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let ann = admin.with_token(ann.token.clone());
    assert_eq!(ann.post(&path, &hold, None).await.status, 409);
    let avail = admin
        .get(&format!("/api/v1/events/{event}/availability"))
        .await;
    assert_eq!(avail.body["ticket_types"][0]["held"], 6);
    server.terminate(Duration::from_secs(10));
}
