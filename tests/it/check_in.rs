//! Check-in: exactly one admission per ticket under concurrent scans; the documented
//! refusals for forged, foreign and revoked tickets; check-in lists (gates, ticket types,
//! opening time, re-entry), nonces, and offline uploads merged earliest-first.

use futures::future::join_all;
use serde_json::{Value, json};
use tests::{Api, Server};

async fn confirmed_ticket(
    api: &Api,
    event: &str,
    tt: &str,
    quantity: i64,
) -> (String, Vec<String>) {
    let held = api.hold(event, tt, quantity, None).await;
    assert_eq!(held.status, 201, "{held:?}");
    let id = held.str("id");
    let confirmed = api
        .post(
            &format!("/api/v1/registrations/{id}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(confirmed.status, 200, "{confirmed:?}");
    assert_eq!(confirmed.str("status"), "confirmed");
    let codes = confirmed.body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["code"].as_str().unwrap().to_owned())
        .collect();
    (id, codes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_scans_admit_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(10, 600, 2).await;
    let (_, codes) = confirmed_ticket(&api, &event, &tt, 2).await;

    let scans = (0..50).map(|i| {
        let (api, event, code) = (api.clone(), event.clone(), codes[0].clone());
        tokio::spawn(async move {
            api.post(
                &format!("/api/v1/events/{event}/check-ins"),
                &json!({"ticket_code": code, "gate": format!("gate-{i}")}),
                None,
            )
            .await
        })
    });
    let replies: Vec<_> = join_all(scans)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let admitted: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(admitted.len(), 1, "exactly one admission");
    let winner = admitted[0];
    let duplicates: Vec<_> = replies.iter().filter(|r| r.status == 409).collect();
    assert_eq!(duplicates.len(), 49);
    for d in duplicates {
        assert_eq!(d.str("code"), "already_checked_in");
        assert_eq!(
            d.body["first_checked_in_at"], winner.body["admitted_at"],
            "names when it was first admitted"
        );
        assert_eq!(
            d.body["first_gate"], winner.body["gate"],
            "names where it was first admitted"
        );
    }
    // The other seat's ticket is still admissible once.
    let second = api
        .post(
            &format!("/api/v1/events/{event}/check-ins"),
            &json!({"ticket_code": codes[1]}),
            None,
        )
        .await;
    assert_eq!(second.status, 200);
    // The ticket read model shows the admission.
    let ticket = api
        .get(&format!("/api/v1/tickets/{}", winner.str("ticket_id")))
        .await;
    assert_eq!(ticket.body["checked_in_at"], winner.body["admitted_at"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_foreign_and_revoked_tickets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(10, 600, 2).await;
    let (other_event, other_tt) = api.published_event(10, 600, 2).await;
    let (_, codes) = confirmed_ticket(&api, &event, &tt, 1).await;
    let scan = |event: String, code: String| {
        let api = api.clone();
        async move {
            api.post(
                &format!("/api/v1/events/{event}/check-ins"),
                &json!({"ticket_code": code}),
                None,
            )
            .await
        }
    };

    let mut forged = codes[0].clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    // A forged (tampered) code is invalid input: 422 on its field, nothing admitted.
    let r = scan(event.clone(), String::from_utf8(forged).unwrap()).await;
    assert_eq!(
        (r.status, r.str("code").as_str()),
        (422, "validation_failed")
    );
    assert_eq!(r.body["errors"][0]["field"], "ticket_code");

    let r = scan(other_event.clone(), codes[0].clone()).await;
    assert_eq!((r.status, r.str("code").as_str()), (409, "wrong_event"));

    let (reg, revoked) = confirmed_ticket(&api, &other_event, &other_tt, 1).await;
    let canceled = api
        .post(
            &format!("/api/v1/registrations/{reg}/cancel"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(canceled.str("status"), "canceled");
    let r = scan(other_event.clone(), revoked[0].clone()).await;
    assert_eq!((r.status, r.str("code").as_str()), (409, "ticket_revoked"));

    // None of the refusals admitted anything: the real ticket is still admissible.
    let r = scan(event, codes[0].clone()).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_gates_reentry_nonces_and_offline_merges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(20, 600, 8).await;
    let vip = api
        .post(
            &format!("/api/v1/events/{event}/ticket-types"),
            &json!({"name": "VIP", "price_minor": 9900, "currency": "EUR", "capacity": 5}),
            None,
        )
        .await;
    assert_eq!(vip.status, 201, "{:?}", vip.body);
    let (_, codes) = confirmed_ticket(&api, &event, &tt, 4).await;
    let list = |body: Value| {
        let api = api.clone();
        let event = event.clone();
        async move {
            let r = api
                .post(
                    &format!("/api/v1/events/{event}/checkin-lists"),
                    &body,
                    None,
                )
                .await;
            assert_eq!(r.status, 201, "{:?}", r.body);
            r.str("id")
        }
    };
    let main =
        list(json!({"name": "Main", "gates": ["north", "south"], "allow_reentry": true})).await;
    let lounge = list(json!({"name": "Lounge", "ticket_type_ids": [vip.str("id")]})).await;
    let tomorrow = list(json!({"name": "Tomorrow", "opens_at": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339()})).await;
    let bad = api
        .post(
            &format!("/api/v1/events/{event}/checkin-lists"),
            &json!({"name": "", "ticket_type_ids": [uuid::Uuid::new_v4()]}),
            None,
        )
        .await;
    assert_eq!(bad.status, 422, "{:?}", bad.body);
    let lists = api
        .get(&format!("/api/v1/events/{event}/checkin-lists"))
        .await;
    assert_eq!(lists.body["items"].as_array().unwrap().len(), 3);

    let scan = |body: Value| {
        let api = api.clone();
        let event = event.clone();
        async move {
            api.post(&format!("/api/v1/events/{event}/check-ins"), &body, None)
                .await
        }
    };
    let code = |r: &tests::Reply| (r.status, r.str("code"), r.str("result"));
    let t1 = &codes[0];
    // Gates and ticket types of a list; its opening time; an unknown list.
    let r = scan(json!({"ticket_code": t1, "list_id": main, "gate": "west"})).await;
    assert_eq!(code(&r).1, "not_allowed_at_gate");
    let r = scan(json!({"ticket_code": t1, "list_id": lounge})).await;
    assert_eq!(code(&r).1, "not_allowed_at_gate");
    let r = scan(json!({"ticket_code": t1, "list_id": tomorrow})).await;
    assert_eq!(code(&r).1, "not_yet_valid");
    let r = scan(json!({"ticket_code": t1, "list_id": uuid::Uuid::new_v4()})).await;
    assert_eq!(
        (r.status, r.str("code").as_str()),
        (404, "check_in_list_not_found")
    );
    // Entry, duplicate, exit, re-entry (the first admission stands).
    let r = scan(json!({"ticket_code": t1, "list_id": main, "gate": "north"})).await;
    assert_eq!(code(&r), (200, String::new(), "admitted".into()));
    let first_at = r.str("admitted_at");
    let r = scan(json!({"ticket_code": t1, "list_id": main, "gate": "south"})).await;
    assert_eq!(
        (
            r.status,
            r.str("code").as_str(),
            r.str("first_gate").as_str()
        ),
        (409, "already_checked_in", "north")
    );
    let r = scan(json!({"ticket_code": t1, "list_id": main, "gate": "south", "direction": "exit"}))
        .await;
    assert_eq!(r.str("result"), "exited");
    let r = scan(json!({"ticket_code": t1, "list_id": main, "gate": "south"})).await;
    assert_eq!(
        (r.str("result"), r.str("admitted_at")),
        ("admitted".into(), first_at)
    );
    // Lists are independent: the default list admits it once more.
    assert_eq!(
        scan(json!({"ticket_code": t1})).await.str("result"),
        "admitted"
    );
    assert_eq!(
        scan(json!({"ticket_code": t1})).await.str("code"),
        "already_checked_in"
    );
    // A never-admitted ticket cannot exit.
    let r = scan(
        json!({"ticket_code": codes[1], "list_id": main, "gate": "north", "direction": "exit"}),
    )
    .await;
    assert_eq!(r.str("code"), "not_checked_in");

    // A retried scan (same nonce) gets its first answer; without the nonce it is a duplicate.
    let with_nonce = json!({"ticket_code": codes[1], "gate": "north", "nonce": "scanner-7/42"});
    assert_eq!(scan(with_nonce.clone()).await.str("result"), "admitted");
    assert_eq!(scan(with_nonce).await.str("result"), "admitted");
    assert_eq!(
        scan(json!({"ticket_code": codes[1]})).await.str("code"),
        "already_checked_in"
    );

    // Offline uploads: two scanners saw tickets 3 and 4; the earliest admission wins.
    let t0 = chrono::Utc::now() - chrono::Duration::hours(1);
    let at = |mins: i64| (t0 + chrono::Duration::minutes(mins)).to_rfc3339();
    let upload = |scans: Value| {
        let api = api.clone();
        let event = event.clone();
        async move {
            let r = api
                .post(
                    &format!("/api/v1/events/{event}/check-ins/offline"),
                    &json!({"scans": scans}),
                    None,
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            r.body
        }
    };
    let results = |report: &Value| -> Vec<String> {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["result"].as_str().unwrap().to_owned())
            .collect()
    };
    let a = json!([
        {"ticket_code": codes[2], "scanned_at": at(10), "gate": "A", "nonce": "a-1"},
        {"ticket_code": codes[3], "scanned_at": at(5), "gate": "A", "nonce": "a-2"},
        {"ticket_code": "T2FORGED", "scanned_at": at(6), "gate": "A"},
    ]);
    let b = json!([
        {"ticket_code": codes[2], "scanned_at": at(2), "gate": "B", "nonce": "b-1"},
        {"ticket_code": codes[3], "scanned_at": at(9), "gate": "B", "nonce": "b-2"},
    ]);
    let report_a = upload(a.clone()).await;
    assert_eq!(
        results(&report_a),
        ["admitted", "admitted", "invalid_signature"]
    );
    let report_b = upload(b).await;
    assert_eq!(
        results(&report_b),
        ["admitted", "duplicate"],
        "B's ticket-3 scan is earlier"
    );
    assert_eq!(
        (
            report_b["admitted"].as_u64(),
            report_b["duplicates"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(report_b["items"][1]["first_gate"], "A");
    // Uploading A again (same nonces) changes nothing.
    assert_eq!(
        results(&upload(a).await),
        ["admitted", "admitted", "invalid_signature"]
    );
    // The standing admissions: ticket 3 at B (earliest), ticket 4 at A.
    let standing = |c: &str| {
        let api = api.clone();
        let event = event.clone();
        let c = c.to_owned();
        async move {
            api.post(
                &format!("/api/v1/events/{event}/tickets/verify"),
                &json!({"ticket_code": c}),
                None,
            )
            .await
            .body
        }
    };
    let t3 = standing(&codes[2]).await;
    assert_eq!(t3["gate"], "B");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(t3["checked_in_at"].as_str().unwrap())
            .unwrap()
            .timestamp(),
        (t0 + chrono::Duration::minutes(2)).timestamp()
    );
    assert_eq!(standing(&codes[3]).await["gate"], "A");
    // A nonce belongs to its scan: another ticket scanned with a nonce used before is decided
    // on its own (ticket 3 stands admitted: a duplicate), not answered with the other's result.
    let reused =
        scan(json!({"ticket_code": codes[2], "gate": "north", "nonce": "scanner-7/42"})).await;
    assert_eq!(reused.str("code"), "already_checked_in");
    // Scans from the future are refused whole.
    let future = upload_raw(&api, &event, json!([{"ticket_code": codes[0], "scanned_at": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339()}])).await;
    assert_eq!(future.status, 422);
}

async fn upload_raw(api: &Api, event: &str, scans: Value) -> tests::Reply {
    api.post(
        &format!("/api/v1/events/{event}/check-ins/offline"),
        &json!({"scans": scans}),
        None,
    )
    .await
}

/// Opens an offline-pack entry as a scanner would, from the scheme the API documents (written
/// here independently of the server's code): `None` if `code` is not the entry's ticket.
fn open_entry(pack: &Value, code: &str) -> Option<Value> {
    use aes_gcm::aead::{Aead, KeyInit};
    use hmac::Mac;
    let derive = |context: &[u8]| -> [u8; 32] {
        let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::KeyInit>::new_from_slice(context).unwrap();
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    };
    let b64 = data_encoding::BASE64URL_NOPAD;
    let lookup = b64.encode(&derive(b"regengine/offline/lookup/v1"));
    let entry = pack["entries"]
        .as_array()?
        .iter()
        .find(|e| e["lookup"] == lookup.as_str())?;
    let sealed = b64.decode(entry["data"].as_str()?.as_bytes()).ok()?;
    let (nonce, ciphertext) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    let cipher = aes_gcm::Aes256Gcm::new(&derive(b"regengine/offline/key/v1").into());
    let plain = cipher
        .decrypt(&aes_gcm::Nonce::from(nonce), ciphertext)
        .ok()?;
    serde_json::from_slice(&plain).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_pack_opens_only_with_each_tickets_own_code() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(10, 600, 4).await;
    let (reg, codes) = confirmed_ticket(&api, &event, &tt, 2).await;
    let (_, more) = confirmed_ticket(&api, &event, &tt, 1).await;
    // A held (unconfirmed) registration has no tickets, so no entries.
    assert_eq!(api.hold(&event, &tt, 1, None).await.status, 201);
    let path = format!("/api/v1/events/{event}/check-in/offline-pack");
    let pack = api.get(&path).await;
    assert_eq!(pack.status, 200, "{:?}", pack.body);
    let pack = pack.body;
    assert_eq!(pack["scheme"], "regengine-offline-v1");
    assert_eq!(pack["entries"].as_array().unwrap().len(), 3);
    assert_eq!(pack["next"], Value::Null);
    let registration = api.get(&format!("/api/v1/registrations/{reg}")).await;
    for (i, code) in codes.iter().enumerate() {
        let opened = open_entry(&pack, code).expect("the ticket's own code opens its entry");
        let issued = &registration.body["tickets"][i];
        assert_eq!(opened["ticket_id"], issued["id"]);
        assert_eq!(opened["ticket_number"], issued["number"]);
        assert_eq!(opened["registration_id"], reg.as_str());
        assert_eq!(opened["ticket_type_id"], tt.as_str());
        assert_eq!(
            opened["attendee_name"],
            registration.body["attendee"]["name"]
        );
    }
    assert!(open_entry(&pack, &more[0]).is_some());
    // A code that is not a ticket's (one character changed) finds nothing.
    let mut forged = codes[0].clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    assert!(open_entry(&pack, &String::from_utf8(forged).unwrap()).is_none());

    // Paged by confirmed registrations.
    let first = api.get(&format!("{path}?limit=1")).await.body;
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    let after = first["next"].as_str().unwrap();
    let second = api.get(&format!("{path}?limit=1&after={after}")).await.body;
    assert_eq!(second["entries"].as_array().unwrap().len(), 1);
    assert_eq!(second["next"], Value::Null);

    // The pack says which key and revocation version it was made with; a rotation changes
    // every code, so the old pack no longer opens with the new codes.
    assert_eq!(pack["key_id"], 1);
    assert_eq!(pack["revocations_version"], 0);
    let rotated = api
        .post(
            &format!("/api/v1/events/{event}/ticket-keys/rotate"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let renewed = api.get(&format!("/api/v1/registrations/{reg}")).await;
    let new_code = renewed.body["tickets"][0]["code"].as_str().unwrap();
    assert!(open_entry(&pack, new_code).is_none());
    let fresh = api.get(&path).await.body;
    assert_eq!(fresh["key_id"], 2);
    assert!(open_entry(&fresh, new_code).is_some());

    // Bad input and outsiders are refused, nothing else.
    assert_eq!(api.get(&format!("{path}?limit=0")).await.status, 400);
    assert_eq!(api.get(&format!("{path}?after=nope")).await.status, 400);
    let (bob_id, bob) = api.with_token(None).signed_in("bob@example.com").await;
    let bob = api.with_token(Some(bob["access_token"].as_str().unwrap().to_owned()));
    assert_eq!(bob.get(&path).await.status, 403);
    // The event's door staff may.
    let staff = api.at(
        reqwest::Method::PUT,
        &format!("/api/v1/events/{event}/members/{bob_id}"),
    );
    assert_eq!(
        api.send(staff.json(&json!({"role": "staff"}))).await.status,
        200
    );
    let pack = bob.get(&path).await;
    assert_eq!(pack.status, 200, "{:?}", pack.body);
    assert!(open_entry(&pack.body, new_code).is_some());
}
