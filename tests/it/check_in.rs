//! Check-in: exactly one admission per ticket under concurrent scans; the documented
//! refusals for forged, foreign and revoked tickets.

use futures::future::join_all;
use serde_json::json;
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
