//! E-mailed single-use links against the real binary: address verification and password
//! reset through the outbox (read from its file adapter), and the outbox's at-least-once
//! delivery across a restart when its adapter was failing.

use serde_json::json;
use std::time::Duration;
use tests::{Api, Server, mailed, mailed_token, wait_for};

const PASSWORD: &str = "correct horse battery";

async fn verify(api: &Api, token: &str) -> tests::Reply {
    api.post("/api/v1/auth/verify-email", &json!({"token": token}), None)
        .await
}

async fn me_verified(api: &Api, access: &str) -> bool {
    let me = api.get_as("/api/v1/users/me", access).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    me.body["email_verified"].as_bool().unwrap()
}

/// A token with its last character changed (still well-formed, wrong digest).
fn tampered(token: &str) -> String {
    let mut t = token.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == 'A' { 'B' } else { 'A' });
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_verification_and_password_reset() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server);
    api.wait_ready().await;

    // Sign-up sends a verification link; the account starts unverified.
    let (_, tokens) = api.signed_in("ann@example.com").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let first = mailed_token(&server, "ann@example.com", "verify_email", 1).await;
    assert!(first.starts_with("ev1."), "{first}");
    assert!(!me_verified(&api, &access).await);

    // Garbage, tampered, and wrong-purpose tokens: 400 invalid_token, nothing changes.
    for bad in [
        "nonsense".to_owned(),
        tampered(&first),
        first.replacen("ev1.", "pr1.", 1),
    ] {
        let reply = verify(&api, &bad).await;
        assert_eq!(reply.status, 400, "{bad}: {:?}", reply.body);
        assert_eq!(reply.body["code"], "invalid_token");
    }
    assert!(!me_verified(&api, &access).await);

    // A new link replaces the first one.
    let ann = api.with_token(Some(access.clone()));
    let resend = ann
        .send(ann.at(reqwest::Method::POST, "/api/v1/users/me/verification"))
        .await;
    assert_eq!(resend.status, 202, "{:?}", resend.body);
    let second = mailed_token(&server, "ann@example.com", "verify_email", 2).await;
    assert_ne!(first, second);
    assert_eq!(verify(&api, &first).await.status, 400);
    assert_eq!(verify(&api, &second).await.status, 204);
    assert!(me_verified(&api, &access).await);
    // Used up; and a verified address gets no more links.
    assert_eq!(verify(&api, &second).await.status, 400);
    let again = ann
        .send(ann.at(reqwest::Method::POST, "/api/v1/users/me/verification"))
        .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["code"], "email_already_verified");

    // Password reset: the same answer for an unknown address; a link only to the real one.
    let unknown = api
        .post(
            "/api/v1/auth/password-reset",
            &json!({"email": "nobody@example.com"}),
            None,
        )
        .await;
    assert_eq!(unknown.status, 202, "{:?}", unknown.body);
    let malformed = api
        .post("/api/v1/auth/password-reset", &json!({"email": "x"}), None)
        .await;
    assert_eq!(malformed.status, 422, "{:?}", malformed.body);
    let known = api
        .post(
            "/api/v1/auth/password-reset",
            &json!({"email": " ANN@example.com"}),
            None,
        )
        .await;
    assert_eq!(known.status, 202, "{:?}", known.body);
    let reset = mailed_token(&server, "ann@example.com", "reset_password", 1).await;
    assert!(reset.starts_with("pr1."), "{reset}");
    assert!(mailed(&server, "nobody@example.com", "reset_password").is_empty());
    let line = &mailed(&server, "ann@example.com", "reset_password")[0];
    assert!(
        line["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/reset-password?token={reset}")),
        "{line}"
    );

    let confirm = |token: &str, password: &str| {
        let body = json!({"token": token, "new_password": password});
        let api = api.clone();
        async move {
            api.post("/api/v1/auth/password-reset/confirm", &body, None)
                .await
        }
    };
    // A weak password, a verification token, a tampered token: refused, nothing changes.
    assert_eq!(confirm(&reset, "short").await.status, 422);
    assert_eq!(confirm(&second, "a brand new password").await.status, 400);
    assert_eq!(
        confirm(&tampered(&reset), "a brand new password")
            .await
            .status,
        400
    );
    let login = |password: &str| {
        let body = json!({"email": "ann@example.com", "password": password});
        let api = api.clone();
        async move { api.post("/api/v1/auth/login", &body, None).await.status }
    };
    assert_eq!(login(PASSWORD).await, 200);

    // The real reset: the new password works, the old one and every session do not.
    assert_eq!(confirm(&reset, "a brand new password").await.status, 204);
    assert_eq!(login(PASSWORD).await, 401);
    assert_eq!(login("a brand new password").await, 200);
    let refresh = api
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(refresh.status, 401, "{:?}", refresh.body);
    // Single use.
    assert_eq!(confirm(&reset, "another new password").await.status, 400);
    assert_eq!(login("a brand new password").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_messages_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The adapter cannot write (its directory does not exist): the message is fanned out of
    // the outbox, and its delivery waits, retried.
    let broken = [
        ("OUTBOX__FILE", "missing-dir/outbox.jsonl"),
        ("OUTBOX__RETRY_MS", "50"),
    ];
    let server = Server::start(dir.path(), &broken);
    let api = Api::new(&server);
    api.wait_ready().await;
    api.signed_in("bob@example.com").await;
    let failures = wait_for(Duration::from_secs(10), || async {
        api.metric(r#"regengine_notify_attempts_total{channel="email",result="retry"}"#)
            .await
            .filter(|n| *n >= 2.0)
    })
    .await;
    assert!(failures.is_some(), "the adapter never failed");
    assert_eq!(api.metric("regengine_outbox_pending").await, Some(0.0));
    let waiting = wait_for(Duration::from_secs(5), || async {
        api.metric(r#"regengine_notify_backlog{channel="email"}"#)
            .await
            .filter(|n| *n == 1.0)
    })
    .await;
    assert_eq!(waiting, Some(1.0), "one delivery waits");
    assert!(mailed(&server, "bob@example.com", "verify_email").is_empty());

    // Restarted with a working adapter: the message goes out, once.
    let server = server.restart(&[]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let token = mailed_token(&server, "bob@example.com", "verify_email", 1).await;
    let reply = verify(&api, &token).await;
    assert_eq!(reply.status, 204, "{:?}", reply.body);
    let drained = wait_for(Duration::from_secs(10), || async {
        api.metric(r#"regengine_notify_backlog{channel="email"}"#)
            .await
            .filter(|n| *n == 0.0)
    })
    .await;
    assert!(drained.is_some());
    assert_eq!(mailed(&server, "bob@example.com", "verify_email").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_adapter_keeps_refusing_goes_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let broken = [
        ("OUTBOX__FILE", "missing-dir/outbox.jsonl"),
        ("OUTBOX__RETRY_MS", "10"),
        ("OUTBOX__ATTEMPTS_MAX", "3"),
    ];
    let server = Server::start(dir.path(), &broken);
    let api = Api::new(&server);
    api.wait_ready().await;
    api.signed_in("carl@example.com").await;
    api.signed_in("dora@example.com").await;
    // Each is tried 3 times, then set aside: neither holds up the other, the backlog empties
    // and admins see both among the dead letters.
    let dead = wait_for(Duration::from_secs(20), || async {
        api.metric(r#"regengine_notify_attempts_total{channel="email",result="failed"}"#)
            .await
            .filter(|n| *n >= 2.0)
    })
    .await;
    assert_eq!(dead, Some(2.0));
    assert_eq!(api.metric("regengine_outbox_pending").await, Some(0.0));
    assert_eq!(
        api.metric(r#"regengine_notify_attempts_total{channel="email",result="retry"}"#)
            .await,
        Some(4.0)
    );
    let admin = Api::admin(&server).await;
    let listed = admin.get("/api/v1/deliveries/dead").await;
    let kinds: Vec<&str> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["verify_email", "verify_email"], "{listed:?}");
}
