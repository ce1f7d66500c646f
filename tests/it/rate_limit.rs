//! Rate limits against the real binary: login attempts per account, holds per account,
//! e-mails per address and requests per client address answer 429 with Retry-After, change nothing, and are separate
//! budgets.

use serde_json::json;
use std::time::Duration;
use tests::{Api, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_budget_requests_get_429_with_retry_after_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            ("RATE_LIMIT__ENABLED", "true"),
            (
                "RATE_LIMIT__LOGIN_PER_ACCOUNT",
                "{ per_sec = 0.01, burst = 3 }",
            ),
            (
                "RATE_LIMIT__HOLDS_PER_ACCOUNT",
                "{ per_sec = 0.01, burst = 2 }",
            ),
            (
                "RATE_LIMIT__WRITES_PER_IP",
                "{ per_sec = 0.01, burst = 40 }",
            ),
            // Room for the per-address e-mail checks below (9 requests from one address).
            ("RATE_LIMIT__MAIL_PER_IP", "{ per_sec = 0.01, burst = 40 }"),
        ],
    );
    let admin = Api::admin(&server).await;
    admin.wait_ready().await;
    let (event, tt) = admin.published_event(100, 600, 4).await;
    let (_, ann) = admin.with_token(None).signed_in("ann@example.com").await;
    let ann = admin.with_token(Some(ann["access_token"].as_str().unwrap().to_owned()));
    let (_, bob) = admin.with_token(None).signed_in("bob@example.com").await;
    let bob = admin.with_token(Some(bob["access_token"].as_str().unwrap().to_owned()));

    // Password guessing: the account's budget (3, one used by the sign-in above... per
    // address as typed, so Ann's own login counted once) runs out; another account is free.
    let anonymous = admin.with_token(None);
    let guess = |email: &'static str| {
        let anonymous = &anonymous;
        async move {
            anonymous
                .post(
                    "/api/v1/auth/login",
                    &json!({"email": email, "password": "wrong guess 123"}),
                    None,
                )
                .await
        }
    };
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(guess("ann@example.com").await.status);
    }
    assert_eq!(
        statuses,
        [401, 401, 429, 429],
        "one of Ann's 3 went to her real login"
    );
    let limited = guess("ann@example.com").await;
    assert_eq!(limited.str("code"), "rate_limited");
    assert_eq!(limited.content_type, "application/problem+json");
    let wait: u64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=100).contains(&wait), "Retry-After {wait}");
    assert_eq!(guess("nobody@example.com").await.status, 401);

    // Holds per account: Ann's third is refused and holds nothing; Bob still buys.
    let hold = json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "A", "email": "ann@example.com"}});
    let path = format!("/api/v1/events/{event}/registrations");
    assert_eq!(ann.post(&path, &hold, Some("k1")).await.status, 201);
    assert_eq!(ann.post(&path, &hold, Some("k2")).await.status, 201);
    let third = ann.post(&path, &hold, Some("k3")).await;
    assert_eq!(
        (third.status, third.str("code").as_str()),
        (429, "rate_limited")
    );
    assert!(third.retry_after.is_some());
    assert_eq!(bob.post(&path, &hold, Some("k1")).await.status, 201);
    let avail = admin
        .get(&format!("/api/v1/events/{event}/availability"))
        .await;
    assert_eq!(avail.body["ticket_types"][0]["held"], 3);
    let mine = ann.get("/api/v1/users/me/registrations").await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 2);

    // Other changes per client address: 40 in a burst (some already spent), then 429.
    let mut last = 0;
    for _ in 0..40 {
        last = admin
            .post(
                &format!("/api/v1/events/{event}/complete"),
                &json!({}),
                None,
            )
            .await
            .status;
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "the per-address write budget never ran out");
    // Reads have their own budget.
    assert_eq!(
        admin.get(&format!("/api/v1/events/{event}")).await.status,
        200
    );

    // E-mails per target address: nobody floods one mailbox, whether or not it has an
    // account (the answer does not tell); another address is still served.
    let reset = |email: &'static str| {
        let anonymous = &anonymous;
        async move {
            anonymous
                .post(
                    "/api/v1/auth/password-reset",
                    &json!({"email": email}),
                    None,
                )
                .await
                .status
        }
    };
    for email in ["ann@example.com", "nobody@example.com"] {
        let mut statuses = vec![];
        for _ in 0..4 {
            statuses.push(reset(email).await);
        }
        assert_eq!(statuses, [202, 202, 202, 429], "{email}");
    }
    assert_eq!(reset("bob@example.com").await, 202);
    server.terminate(Duration::from_secs(10));
}

/// A redis-server of the test's own on a free loopback port, without persistence.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        Redis { child, port }
    }

    async fn wait_ready(&self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.port;
        let ready = tests::wait_for(Duration::from_secs(10), || async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            s.write_all(b"PING\r\n").await.ok()?;
            let mut buf = [0u8; 7];
            s.read_exact(&mut buf).await.ok()?;
            (&buf == b"+PONG\r\n").then_some(())
        })
        .await;
        assert!(ready.is_some(), "redis-server did not start");
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_budgets_through_redis_and_keep_selling_without_it() {
    let redis = Redis::start();
    redis.wait_ready().await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("shared-jwt.key");
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let env = [
        ("RATE_LIMIT__ENABLED", "true"),
        ("RATE_LIMIT__REDIS_URL", url.as_str()),
        (
            "RATE_LIMIT__HOLDS_PER_ACCOUNT",
            "{ per_sec = 0.01, burst = 3 }",
        ),
        ("AUTH__SIGNING_KEY_FILE", key.to_str().unwrap()),
    ];
    let a = Server::start(&dir.path().join("a"), &env);
    let b = Server::start(&dir.path().join("b"), &env);
    let admin_a = Api::admin(&a).await;
    let admin_b = Api::admin(&b).await;
    admin_a.wait_ready().await;
    admin_b.wait_ready().await;
    let (event_a, tt_a) = admin_a.published_event(100, 600, 4).await;
    let (event_b, tt_b) = admin_b.published_event(100, 600, 4).await;
    // One account (tokens are valid on both gateways: they share the signing key).
    let (_, ann) = admin_a.with_token(None).signed_in("ann@example.com").await;
    let token = Some(ann["access_token"].as_str().unwrap().to_owned());
    let (ann_a, ann_b) = (admin_a.with_token(token.clone()), admin_b.with_token(token));
    let hold = |tt: &str| json!({"ticket_type_id": tt, "quantity": 1, "attendee": {"name": "Ann", "email": "ann@example.com"}});
    let at_a = format!("/api/v1/events/{event_a}/registrations");
    let at_b = format!("/api/v1/events/{event_b}/registrations");
    // Redis connects in the background: wait until both gateways are connected (the budget
    // of 3 is then shared: 2 at A, 1 at B, and the 4th anywhere is refused).
    for api in [&admin_a, &admin_b] {
        let connected = tests::wait_for(Duration::from_secs(10), || async {
            let up = api
                .metric("regengine_rate_limit_redis_connected")
                .await
                .unwrap_or(0.0);
            (up == 1.0).then_some(())
        })
        .await;
        assert!(connected.is_some(), "a gateway never connected to Redis");
    }
    let mut statuses = vec![];
    for (api, path, tt) in [
        (&ann_a, &at_a, &tt_a),
        (&ann_a, &at_a, &tt_a),
        (&ann_b, &at_b, &tt_b),
        (&ann_b, &at_b, &tt_b),
        (&ann_a, &at_a, &tt_a),
    ] {
        statuses.push(api.post(path, &hold(tt), None).await.status);
    }
    assert_eq!(
        statuses,
        [201, 201, 201, 429, 429],
        "one budget across both gateways"
    );

    // Redis dies: each gateway falls back to its own buckets and keeps selling.
    redis.kill();
    let after = ann_b.post(&at_b, &hold(&tt_b), None).await;
    assert_eq!(after.status, 201, "{:?}", after.body);
    assert!(
        admin_b
            .metric("regengine_rate_limit_redis_fallbacks_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    a.terminate(Duration::from_secs(10));
    b.terminate(Duration::from_secs(10));
}

/// Behind trusted proxies (`http.trusted_proxies`) each client has its own per-address budget,
/// named by `X-Forwarded-For` or `Forwarded`; IPv6 clients share one per /64. From an
/// untrusted peer the headers are ignored: a client cannot pick a fresh address per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_budgets_follow_the_client_behind_trusted_proxies() {
    let reads = ("RATE_LIMIT__READS_PER_IP", "{ per_sec = 0.01, burst = 2 }");
    // Three reads as `from` (none: the peer itself), by the header `name`; their statuses.
    let reads_from = |api: Api, name: &'static str, from: &'static str| async move {
        let mut statuses = vec![];
        for _ in 0..3 {
            let mut request = api.http.get(format!("{}/api/v1/events", api.base));
            if !from.is_empty() {
                request = request.header(name, from);
            }
            statuses.push(request.send().await.unwrap().status().as_u16());
        }
        statuses
    };

    let dir = tempfile::tempdir().unwrap();
    let behind = Server::start(
        &dir.path().join("behind"),
        &[
            ("RATE_LIMIT__ENABLED", "true"),
            reads,
            ("HTTP__TRUSTED_PROXIES", "[\"127.0.0.0/8\"]"),
        ],
    );
    let api = Api::new(&behind);
    api.wait_ready().await;
    let xff = "x-forwarded-for";
    // The client named by the proxy, not whatever it wrote before the proxy's entry.
    assert_eq!(
        reads_from(api.clone(), xff, "9.9.9.9, 203.0.113.1").await,
        [200, 200, 429]
    );
    assert_eq!(
        reads_from(api.clone(), xff, "8.8.8.8, 203.0.113.2").await,
        [200, 200, 429]
    );
    assert_eq!(
        reads_from(api.clone(), xff, "2001:db8:1:2::1").await,
        [200, 200, 429]
    );
    // A client's own `Forwarded` is not read (the proxies write X-Forwarded-For): it is the
    // proxy's address, whose budget is still whole, and then spent.
    assert_eq!(
        reads_from(api.clone(), "forwarded", "for=192.0.2.99").await,
        [200, 200, 429]
    );
    assert_eq!(
        reads_from(api.clone(), "forwarded", "for=192.0.2.98").await,
        [429, 429, 429]
    );
    // The same /64: the same budget, already spent.
    assert_eq!(
        reads_from(api.clone(), xff, "2001:db8:1:2:ffff::9").await,
        [429, 429, 429]
    );
    assert_eq!(
        reads_from(api.clone(), xff, "2001:db8:1:3::1").await,
        [200, 200, 429]
    );

    let direct = Server::start(
        &dir.path().join("direct"),
        &[("RATE_LIMIT__ENABLED", "true"), reads],
    );
    let api = Api::new(&direct);
    api.wait_ready().await;
    assert_eq!(
        reads_from(api.clone(), xff, "203.0.113.1").await,
        [200, 200, 429]
    );
    assert_eq!(
        reads_from(api.clone(), xff, "203.0.113.2").await,
        [429, 429, 429],
        "an untrusted peer's header is ignored: one budget for the peer"
    );
}
