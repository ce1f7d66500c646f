//! Accounts and tokens against the real binary: sign-up, login, profile, rotating refresh
//! tokens with reuse detection, logout, durability across a restart, and forged or broken
//! access tokens.

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::Duration;
use tests::{Api, Server};

const PASSWORD: &str = "correct horse battery";

async fn login(api: &Api) -> tests::Reply {
    let body = json!({"email": "ada@example.com", "password": PASSWORD});
    api.post("/api/v1/auth/login", &body, None).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server);
    api.wait_ready().await;

    // Sign-up: validation, then uniqueness (case-insensitive), and no role can be chosen.
    let weak = api
        .post(
            "/api/v1/auth/signup",
            &json!({"email": "not-an-email", "password": "short", "name": ""}),
            None,
        )
        .await;
    assert_eq!(weak.status, 422, "{:?}", weak.body);
    let fields: Vec<&str> = weak.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"email") && fields.contains(&"password") && fields.contains(&"name"));
    let escalate = api
        .post(
            "/api/v1/auth/signup",
            &json!({"email": "x@example.com", "password": PASSWORD, "name": "X", "roles": ["admin"]}),
            None,
        )
        .await;
    assert_eq!(escalate.status, 422, "{:?}", escalate.body);
    let (user_id, tokens) = api.signed_in("Ada@Example.com").await;
    let again = api
        .post(
            "/api/v1/auth/signup",
            &json!({"email": " ada@example.COM ", "password": PASSWORD, "name": "Ada 2"}),
            None,
        )
        .await;
    assert_eq!(
        (again.status, again.str("code").as_str()),
        (409, "email_taken")
    );

    // Wrong password and unknown account look the same.
    for (email, password) in [
        ("ada@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let r = api
            .post(
                "/api/v1/auth/login",
                &json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(
            (r.status, r.str("code").as_str()),
            (401, "invalid_credentials")
        );
    }

    // The profile needs a token; it reports what is missing.
    let anonymous = api.get("/api/v1/users/me").await;
    assert_eq!(
        (anonymous.status, anonymous.str("code").as_str()),
        (401, "unauthorized")
    );
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(tokens["token_type"], "Bearer");
    let me = api.get_as("/api/v1/users/me", &access).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.str("id"), user_id);
    assert_eq!(me.str("email"), "ada@example.com");
    assert_eq!(me.body["roles"], json!(["attendee"]));
    assert_eq!(me.body["profile_complete"], false);
    assert_eq!(me.body["missing_fields"], json!(["phone", "organization"]));

    // Mass assignment is refused and changes nothing; a valid patch completes the profile.
    let patch = |body: Value| {
        api.http
            .patch(format!("{}/api/v1/users/me", api.base))
            .bearer_auth(&access)
            .json(&body)
    };
    for body in [
        json!({"roles": ["admin"]}),
        json!({"email": "other@example.com"}),
        json!({"email_verified": true}),
        json!({"phone": "call me maybe"}),
    ] {
        let r = api.send(patch(body.clone())).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
    }
    let unchanged = api.get_as("/api/v1/users/me", &access).await;
    assert_eq!(unchanged.body["roles"], json!(["attendee"]));
    assert_eq!(unchanged.str("email"), "ada@example.com");
    let prefs = json!({"locale": "de-DE", "time_zone": "Europe/Berlin",
        "transactional": {"email": true, "sms": true, "push": true},
        "reminders": {"email": false, "sms": false, "push": true},
        "marketing": {"email": false, "sms": false, "push": false}});
    let done = api
        .send(patch(
            json!({"phone": "+49 30 1234567", "organization": "ACME", "preferences": prefs}),
        ))
        .await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(done.body["profile_complete"], true);
    assert_eq!(done.body["preferences"], prefs);

    // Refresh rotates; the used token presented again revokes the whole family.
    let refresh = |token: &str| {
        let body = json!({"refresh_token": token});
        let api = &api;
        async move { api.post("/api/v1/auth/refresh", &body, None).await }
    };
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&first).await;
    assert_eq!(rotated.status, 200, "{:?}", rotated.body);
    let second = rotated.str("refresh_token");
    assert_ne!(second, first);
    let me = api
        .get_as("/api/v1/users/me", &rotated.str("access_token"))
        .await;
    assert_eq!(me.status, 200);
    let reused = refresh(&first).await;
    assert_eq!(
        (reused.status, reused.str("code").as_str()),
        (401, "refresh_token_reused")
    );
    let revoked = refresh(&second).await;
    assert_eq!(
        revoked.status, 401,
        "the family is revoked: {:?}",
        revoked.body
    );
    // Each refusal says what is wrong with the refresh token (not "an access token is
    // required": none was asked for).
    assert_eq!(
        revoked.str("code"),
        "invalid_refresh_token",
        "{:?}",
        revoked.body
    );
    assert!(
        revoked.str("detail").contains("refresh token"),
        "{:?}",
        revoked.body
    );

    // Two refreshes racing with one token: exactly one wins.
    let token = login(&api).await.str("refresh_token");
    let (a, b) = tokio::join!(refresh(&token), refresh(&token));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 401], "{:?} / {:?}", a.body, b.body);

    // Logout ends a session; its token is useless afterwards.
    let token = login(&api).await.str("refresh_token");
    let out = api
        .post(
            "/api/v1/auth/logout",
            &json!({"refresh_token": token}),
            None,
        )
        .await;
    assert_eq!(out.status, 204);
    let ended = refresh(&token).await;
    assert_eq!(
        (ended.status, ended.str("code").as_str()),
        (401, "invalid_refresh_token")
    );
    assert!(
        ended.str("detail").contains("session ended"),
        "{:?}",
        ended.body
    );
    let garbage = refresh("rt1.not-a-token").await;
    assert_eq!(
        (garbage.status, garbage.str("code").as_str()),
        (401, "invalid_refresh_token")
    );
    assert!(
        garbage.str("detail").contains("malformed"),
        "{:?}",
        garbage.body
    );
    assert!(!garbage.str("detail").contains("access token"));

    // Everything is durable: after a restart the account, its profile and a session remain.
    let token = login(&api).await.str("refresh_token");
    let server = server.restart(&[]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let after = api
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": token}),
            None,
        )
        .await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    let me = api
        .get_as("/api/v1/users/me", &after.str("access_token"))
        .await;
    assert_eq!(me.body["organization"], "ACME");
    let dup = api
        .post(
            "/api/v1/auth/signup",
            &json!({"email": "ADA@example.com", "password": PASSWORD, "name": "Ada"}),
            None,
        )
        .await;
    assert_eq!(dup.status, 409);

    // Password change: the current password is checked, the new one validated; afterwards
    // only the new one signs in and every earlier session is over.
    let before = login(&api).await;
    let (access, old_refresh) = (before.str("access_token"), before.str("refresh_token"));
    let change = |current: &str, new: &str| {
        let request = api
            .http
            .post(format!("{}/api/v1/users/me/password", api.base))
            .bearer_auth(&access)
            .json(&json!({"current_password": current, "new_password": new}));
        let api = &api;
        async move { api.send(request).await }
    };
    let wrong = change("not my password", "a brand new passphrase").await;
    assert_eq!(
        (wrong.status, wrong.str("code").as_str()),
        (401, "invalid_credentials")
    );
    assert_eq!(change(PASSWORD, "short").await.status, 422);
    assert_eq!(change(PASSWORD, "a brand new passphrase").await.status, 204);
    assert_eq!(login(&api).await.status, 401, "the old password is gone");
    let fresh = api
        .post(
            "/api/v1/auth/login",
            &json!({"email": "ada@example.com", "password": "a brand new passphrase"}),
            None,
        )
        .await;
    assert_eq!(fresh.status, 200);
    let stale = api
        .post(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": old_refresh}),
            None,
        )
        .await;
    assert_eq!(
        stale.status, 401,
        "sessions from before the change are over"
    );
    server.terminate(Duration::from_secs(10));
}

/// Signs `claims` with `alg` and `key`, with the given `typ` and `kid`.
fn token(
    alg: Algorithm,
    key: &[u8],
    typ: Option<&str>,
    kid: Option<&str>,
    claims: &Value,
) -> String {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_owned);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_broken_access_tokens_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let api = Api::new(&server);
    api.wait_ready().await;
    let (user_id, _) = api.signed_in("eve@example.com").await;
    let key = std::fs::read(dir.path().join("jwt-signing.key")).unwrap();
    let t = now();
    let claims = |patch: Value| {
        let mut c = json!({"iss": "regengine", "aud": "regengine-api", "sub": user_id,
            "exp": t + 600, "nbf": t - 5, "iat": t - 5, "jti": "test", "roles": ["attendee"]});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let good = token(
        Algorithm::HS256,
        &key,
        Some("at+jwt"),
        Some("k1"),
        &claims(json!({})),
    );
    // The forging works: a correctly made token is accepted...
    assert_eq!(api.get_as("/api/v1/users/me", &good).await.status, 200);

    // ... and every flaw is refused.
    let unsigned = {
        let header = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#);
        let payload = BASE64URL_NOPAD.encode(claims(json!({})).to_string().as_bytes());
        format!("{header}.{payload}.")
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let payload =
            BASE64URL_NOPAD.encode(claims(json!({"roles": ["admin"]})).to_string().as_bytes());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let other_key = [7u8; 32];
    let cases = [
        ("alg none", unsigned),
        (
            "HS384 with the right key",
            token(
                Algorithm::HS384,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({})),
            ),
        ),
        (
            "another key",
            token(
                Algorithm::HS256,
                &other_key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({})),
            ),
        ),
        (
            "wrong aud",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"aud": "someone-else"})),
            ),
        ),
        (
            "wrong iss",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"iss": "evil"})),
            ),
        ),
        (
            "expired beyond leeway",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"exp": t - 120})),
            ),
        ),
        (
            "nbf in the future",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"nbf": t + 120})),
            ),
        ),
        ("tampered payload", tampered),
        (
            "missing sub",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"sub": null})),
            ),
        ),
        (
            "sub not a user id",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k1"),
                &claims(json!({"sub": "admin"})),
            ),
        ),
        (
            "not an access token (typ)",
            token(
                Algorithm::HS256,
                &key,
                Some("JWT"),
                Some("k1"),
                &claims(json!({})),
            ),
        ),
        (
            "unknown kid",
            token(
                Algorithm::HS256,
                &key,
                Some("at+jwt"),
                Some("k9"),
                &claims(json!({})),
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (name, bad) in cases {
        let r = api.get_as("/api/v1/users/me", &bad).await;
        assert_eq!(r.status, 401, "{name}: {:?}", r.body);
        assert_eq!(r.content_type, "application/problem+json", "{name}");
    }
    // Inside the leeway (30 s) an expired token still passes.
    let grace = token(
        Algorithm::HS256,
        &key,
        Some("at+jwt"),
        Some("k1"),
        &claims(json!({"exp": t - 5})),
    );
    assert_eq!(api.get_as("/api/v1/users/me", &grace).await.status, 200);
    server.terminate(Duration::from_secs(10));
}
