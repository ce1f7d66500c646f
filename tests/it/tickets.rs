//! Tickets against the real binary: numbers and Ed25519-signed codes, QR images read back
//! with an independent decoder, published keys that verify codes offline, the scanner's
//! verify endpoint, key rotation, and revocation by cancellation.

use data_encoding::{BASE32_NOPAD, BASE64URL_NOPAD};
use serde_json::{Value, json};
use tests::{Api, Reply, Server};

/// Verifies a code with a published public key alone, as an offline scanner would.
fn verifies_offline(code: &str, public_key: &str) -> bool {
    let bytes = BASE32_NOPAD
        .decode(code.strip_prefix("T2").unwrap().as_bytes())
        .unwrap();
    let (payload, signature) = bytes.split_at(54);
    let key: [u8; 32] = BASE64URL_NOPAD
        .decode(public_key.as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key).unwrap();
    let signature = ed25519_dalek::Signature::from_bytes(signature.try_into().unwrap());
    key.verify_strict(payload, &signature).is_ok()
}

async fn bytes(api: &Api, path: &str) -> (u16, String, Vec<u8>) {
    let response = api.at(reqwest::Method::GET, path).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        status,
        content_type,
        response.bytes().await.unwrap().to_vec(),
    )
}

async fn verify(api: &Api, event: &str, code: &str) -> Value {
    let r: Reply = api
        .post(
            &format!("/api/v1/events/{event}/tickets/verify"),
            &json!({"ticket_code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_tickets_qr_keys_rotation_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(10, 600, 4).await;
    let (other_event, other_tt) = admin.published_event(10, 600, 4).await;
    let (_, ann) = admin.with_token(None).signed_in("ann@example.com").await;
    let ann = admin.with_token(Some(ann["access_token"].as_str().unwrap().to_owned()));
    let (_, bob) = admin.with_token(None).signed_in("bob@example.com").await;
    let bob = admin.with_token(Some(bob["access_token"].as_str().unwrap().to_owned()));

    // Ann buys two seats: two tickets, numbered 1 and 2 in the pool, with signed codes.
    let held = ann.hold(&event, &tt, 2, None).await;
    let reg = held.str("id");
    let confirmed = ann
        .post(
            &format!("/api/v1/registrations/{reg}/confirm"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.body);
    let tickets = confirmed.body["tickets"].as_array().unwrap().clone();
    let numbers: Vec<&str> = tickets
        .iter()
        .map(|t| t["number"].as_str().unwrap())
        .collect();
    assert!(numbers[0].ends_with(&format!(
        "-1-000001-{}",
        &numbers[0][numbers[0].len() - 1..]
    )));
    assert!(numbers[1].contains("-1-000002-"), "{numbers:?}");
    let ticket_id = tickets[0]["id"].as_str().unwrap();
    let code = tickets[0]["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("T2"));
    let ticket = ann.get(&format!("/api/v1/tickets/{ticket_id}")).await;
    assert_eq!(
        (ticket.str("code"), ticket.str("number")),
        (code.clone(), numbers[0].to_owned())
    );

    // Doors prep: every issued code of the event is remembered for cheap online checks; only
    // the event's staff and managers may ask.
    let prepared = admin
        .post(
            &format!("/api/v1/events/{event}/check-in/prepare"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(prepared.status, 200, "{:?}", prepared.body);
    assert_eq!(prepared.body["tickets"], 2);
    assert_eq!(
        bob.post(
            &format!("/api/v1/events/{event}/check-in/prepare"),
            &json!({}),
            None
        )
        .await
        .status,
        403
    );

    // QR images: the PNG decodes to the code; only the holder (or a manager) gets them.
    let (status, content_type, png) =
        bytes(&ann, &format!("/api/v1/tickets/{ticket_id}/qr.png")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/png"));
    assert_eq!(tests::decode_qr_png(&png), code);
    let (status, content_type, svg) =
        bytes(&ann, &format!("/api/v1/tickets/{ticket_id}/qr.svg")).await;
    assert_eq!((status, content_type.as_str()), (200, "image/svg+xml"));
    assert!(String::from_utf8(svg).unwrap().contains("<svg"));
    assert_eq!(
        bytes(&bob, &format!("/api/v1/tickets/{ticket_id}/qr.png"))
            .await
            .0,
        404
    );
    assert_eq!(
        bytes(&admin, &format!("/api/v1/tickets/{ticket_id}/qr.png"))
            .await
            .0,
        200
    );

    // Published keys verify the code offline; a buyer cannot read them.
    let keys = admin
        .get(&format!("/api/v1/events/{event}/ticket-keys"))
        .await;
    assert_eq!(keys.status, 200, "{:?}", keys.body);
    assert_eq!(
        (
            keys.body["algorithm"].as_str(),
            keys.body["current"].as_u64()
        ),
        (Some("Ed25519"), Some(1))
    );
    let key1 = keys.body["keys"][0]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(verifies_offline(&code, &key1));
    assert_eq!(
        ann.get(&format!("/api/v1/events/{event}/ticket-keys"))
            .await
            .status,
        403
    );

    // The scanner's check: valid; tampered; another event's code.
    let check = verify(&admin, &event, &code).await;
    assert_eq!(
        (check["result"].as_str(), check["number"].as_str()),
        (Some("valid"), Some(numbers[0]))
    );
    let mut tampered = code.clone().into_bytes();
    tampered[30] = if tampered[30] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        verify(&admin, &event, &tampered).await["result"],
        "invalid_signature"
    );
    let other = admin.hold(&other_event, &other_tt, 1, None).await.str("id");
    let other_code = admin
        .post(
            &format!("/api/v1/registrations/{other}/confirm"),
            &json!({}),
            None,
        )
        .await
        .body["tickets"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = verify(&admin, &event, &other_code).await;
    assert_eq!(
        (wrong["result"].as_str(), wrong["event_id"].as_str()),
        (Some("wrong_event"), Some(other_event.as_str()))
    );
    let scan = |code: String| {
        let admin = admin.clone();
        let event = event.clone();
        async move {
            admin
                .post(
                    &format!("/api/v1/events/{event}/check-ins"),
                    &json!({"ticket_code": code, "gate": "north"}),
                    None,
                )
                .await
        }
    };
    assert_eq!(scan(tampered).await.status, 422);
    assert_eq!(scan(other_code).await.str("code"), "wrong_event");

    // Admitted once; the check then shows when and where.
    assert_eq!(scan(code.clone()).await.status, 200);
    let check = verify(&admin, &event, &code).await;
    assert_eq!(
        (check["result"].as_str(), check["gate"].as_str()),
        (Some("valid"), Some("north"))
    );
    assert!(check["checked_in_at"].is_string());

    // Rotation: every ticket gets a new code at once; the old one is refused as retired.
    assert_eq!(
        ann.post(
            &format!("/api/v1/events/{event}/ticket-keys/rotate"),
            &json!({}),
            None
        )
        .await
        .status,
        403
    );
    let rotated = admin
        .post(
            &format!("/api/v1/events/{event}/ticket-keys/rotate"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    assert_eq!(rotated.body["current"], 2);
    assert_eq!(rotated.body["keys"][0]["status"], "retired");
    let key2 = rotated.body["keys"][1]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(verify(&admin, &event, &code).await["result"], "retired_key");
    assert_eq!(scan(code.clone()).await.status, 422);
    let new_code = ann
        .get(&format!("/api/v1/tickets/{ticket_id}"))
        .await
        .str("code");
    assert_ne!(new_code, code);
    assert!(verifies_offline(&new_code, &key2) && !verifies_offline(&new_code, &key1));
    assert_eq!(verify(&admin, &event, &new_code).await["result"], "valid");
    assert_eq!(scan(new_code).await.str("code"), "already_checked_in");

    // Canceling revokes the registration's tickets.
    let second = ann
        .get(&format!(
            "/api/v1/tickets/{}",
            tickets[1]["id"].as_str().unwrap()
        ))
        .await
        .str("code");
    assert_eq!(
        ann.post(
            &format!("/api/v1/registrations/{reg}/cancel"),
            &json!({}),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(verify(&admin, &event, &second).await["result"], "revoked");
    assert_eq!(scan(second).await.str("code"), "ticket_revoked");

    // The revocation list: both tickets, numbered; a scanner catches up from its version.
    let list = admin
        .get(&format!("/api/v1/events/{event}/revocations"))
        .await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["version"], 2);
    let revoked: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ticket_id"].as_str().unwrap())
        .collect();
    let ids: Vec<&str> = tickets.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(revoked, ids);
    let since = admin
        .get(&format!(
            "/api/v1/events/{event}/revocations?since=1&limit=10"
        ))
        .await;
    assert_eq!(since.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(since.body["items"][0]["version"], 2);
    let other_list = admin
        .get(&format!("/api/v1/events/{other_event}/revocations"))
        .await;
    assert_eq!(other_list.body["version"], 0);
    assert_eq!(
        ann.get(&format!("/api/v1/events/{event}/revocations"))
            .await
            .status,
        403
    );
}

/// A confirmed (or only held) registration for `email` with `quantity` seats.
async fn bought(
    api: &Api,
    event: &str,
    tt: &str,
    name: &str,
    email: &str,
    quantity: u32,
    confirm: bool,
) -> String {
    let body = json!({"ticket_type_id": tt, "quantity": quantity, "attendee": {"name": name, "email": email}});
    let held = api
        .post(
            &format!("/api/v1/events/{event}/registrations"),
            &body,
            None,
        )
        .await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let id = held.str("id");
    if confirm {
        let r = api
            .post(
                &format!("/api/v1/registrations/{id}/confirm"),
                &json!({}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    id
}

async fn text(api: &Api, path: &str) -> (u16, String, String) {
    let (status, content_type, body) = bytes(api, path).await;
    (status, content_type, String::from_utf8(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organizers_bulk_cancel_resend_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let admin = Api::admin(&server).await;
    let (event, tt) = admin.published_event(20, 600, 4).await;
    let (other_event, other_tt) = admin.published_event(20, 600, 4).await;
    let cy = bought(&admin, &event, &tt, "Cy", "cy@example.com", 2, true).await;
    let di = bought(
        &admin,
        &event,
        &tt,
        "=HYPERLINK(\"evil\")",
        "di@example.com",
        1,
        true,
    )
    .await;
    let held = bought(&admin, &event, &tt, "Ed", "ed@example.com", 1, false).await;
    let elsewhere = bought(
        &admin,
        &other_event,
        &other_tt,
        "Flo",
        "flo@example.com",
        1,
        true,
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let (_, buyer) = admin.with_token(None).signed_in("gus@example.com").await;
    let buyer = admin.with_token(Some(buyer["access_token"].as_str().unwrap().to_owned()));
    let results = |r: &Reply| -> Vec<String> {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["result"].as_str().unwrap().to_owned())
            .collect()
    };

    // Resend: confirmed ones are queued (one commit), the rest say why.
    let ids = json!({"registration_ids": [cy, held, elsewhere, unknown]});
    let path = format!("/api/v1/events/{event}/registrations/bulk-resend");
    assert_eq!(buyer.post(&path, &ids, None).await.status, 403);
    let resent = admin.post(&path, &ids, None).await;
    assert_eq!(resent.status, 200, "{:?}", resent.body);
    assert_eq!(
        results(&resent),
        ["queued", "not_confirmed", "not_found", "not_found"]
    );
    let token_or_tickets = tests::wait_for(std::time::Duration::from_secs(30), || async {
        tests::mailed(&server, "cy@example.com", "tickets").pop()
    })
    .await
    .expect("tickets message");
    let lines = token_or_tickets["tickets"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    let code = lines[0]["code"].as_str().unwrap();
    assert_eq!(verify(&admin, &event, code).await["result"], "valid");
    let too_many: Vec<String> = (0..501).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let refused = admin
        .post(&path, &json!({"registration_ids": too_many}), None)
        .await;
    assert_eq!(refused.status, 422, "{:?}", refused.body);

    // Exports: a row per registration / per ticket, formulas defused.
    let (status, content_type, csv) =
        text(&admin, &format!("/api/v1/events/{event}/registrations.csv")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/csv; charset=utf-8")
    );
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("registration_id,status,"));
    assert!(csv.contains("\"'=HYPERLINK(\"\"evil\"\")\""), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"));
    let (_, _, tickets_csv) = text(&admin, &format!("/api/v1/events/{event}/tickets.csv")).await;
    // The same, gzipped (the compression layer must see the stream end cleanly).
    let gzipped = admin
        .at(
            reqwest::Method::GET,
            &format!("/api/v1/events/{event}/tickets.csv"),
        )
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gzipped.status(), 200);
    assert!(!gzipped.bytes().await.unwrap().is_empty());
    let ticket_rows: Vec<&str> = tickets_csv.lines().skip(1).collect();
    assert_eq!(ticket_rows.len(), 3, "{tickets_csv}");
    assert!(ticket_rows.iter().all(|r| r.contains(",valid,")));
    assert_eq!(
        text(&buyer, &format!("/api/v1/events/{event}/tickets.csv"))
            .await
            .0,
        403
    );

    // Cancel: confirmed and held ones of this event; the rest say why; tickets are revoked.
    let ids = json!({"registration_ids": [cy, held, elsewhere, unknown, di]});
    let path = format!("/api/v1/events/{event}/registrations/bulk-cancel");
    assert_eq!(buyer.post(&path, &ids, None).await.status, 403);
    let canceled = admin.post(&path, &ids, None).await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(
        results(&canceled),
        ["canceled", "canceled", "not_found", "not_found", "canceled"]
    );
    let again = admin
        .post(&path, &json!({"registration_ids": [cy]}), None)
        .await;
    assert_eq!(results(&again), ["invalid_state"]);
    assert_eq!(again.body["items"][0]["status"], "canceled");
    let revocations = admin
        .get(&format!("/api/v1/events/{event}/revocations"))
        .await;
    assert_eq!(
        revocations.body["version"], 3,
        "two of Cy's tickets and Di's"
    );
    let (_, _, tickets_csv) = text(&admin, &format!("/api/v1/events/{event}/tickets.csv")).await;
    assert!(tickets_csv.lines().skip(1).all(|r| r.contains(",revoked,")));
    let avail = admin.availability(&event).await;
    assert_eq!(
        (avail.1, avail.2),
        (0, 0),
        "no seat held or confirmed any more"
    );
    // The other event was not touched.
    assert_eq!(
        admin
            .get(&format!("/api/v1/registrations/{elsewhere}"))
            .await
            .str("status"),
        "confirmed"
    );
}
