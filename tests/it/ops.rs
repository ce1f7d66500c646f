//! Operations surface: health, readiness, metrics, OpenAPI, docs, overload shedding and
//! graceful shutdown.

use futures::future::join_all;
use serde_json::json;
use std::time::Duration;
use tests::{Api, Server};

/// `promtool check metrics` (Debian's `prometheus`; `.ci/run` installs it) finds nothing
/// wrong in a scrape: every family has HELP, counters end in `_total`, units are base units.
fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is needed: `bash .ci/run` installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_openapi_and_docs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    assert_eq!(api.get("/healthz").await.status, 200);
    let (event, tt) = api.published_event(10, 600, 4).await;
    let held = api.hold(&event, &tt, 1, None).await;
    api.post(
        &format!("/api/v1/registrations/{}/confirm", held.str("id")),
        &json!({}),
        None,
    )
    .await;

    let metrics = api
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "regengine_http_request_duration_seconds_bucket",
        "regengine_engine_commands_total{command=\"hold\",result=\"ok\"}",
        "regengine_engine_commands_total{command=\"confirm\",result=\"ok\"}",
        "regengine_event_pool_available_seats",
        "regengine_engine_admission_inflight",
        "regengine_journal_batch_events",
        "regengine_journal_flush_seconds",
        "regengine_journal_queue_depth",
        "regengine_build_info{",
        "regengine_tokio_alive_tasks ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_cpu_seconds_total ",
    ] {
        assert!(metrics.contains(series), "metric {series} missing");
    }
    // One prefix for the application's families; process_* keep their standard names.
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        assert!(
            line.starts_with("regengine_") || line.starts_with("process_"),
            "unprefixed series: {line}"
        );
    }
    promtool_accepts(&metrics);
    // The build's commit, the same in `--version` and `regengine_build_info`.
    let version = std::process::Command::new(tests::gateway_binary())
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let commit = version
        .trim()
        .strip_suffix(')')
        .and_then(|v| v.rsplit_once("(commit "))
        .map(|(_, commit)| commit.to_owned())
        .unwrap_or_else(|| panic!("--version: {version}"));
    assert!(!commit.is_empty(), "{version}");
    assert!(
        metrics.contains(&format!("commit=\"{commit}\"")),
        "regengine_build_info carries the commit {commit}"
    );

    let doc = api.get("/openapi.json").await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/v1/events",
        "/api/v1/events/{id}",
        "/api/v1/events/{id}/publish",
        "/api/v1/events/{id}/cancel",
        "/api/v1/events/{id}/complete",
        "/api/v1/events/{id}/ticket-types",
        "/api/v1/events/{id}/availability",
        "/api/v1/events/{id}/registrations",
        "/api/v1/registrations/{id}",
        "/api/v1/registrations/{id}/confirm",
        "/api/v1/registrations/{id}/cancel",
        "/api/v1/events/{id}/check-ins",
        "/api/v1/tickets/{id}",
        "/api/v1/ws",
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/users/me/registrations",
        "/api/v1/users/{id}/roles",
        "/api/v1/events/{id}/members",
        "/api/v1/events/{id}/members/{user_id}",
        "/api/v1/events/{id}/audit",
        "/api/v1/audit",
        "/metrics",
        "/healthz",
        "/readyz",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    // Every operation on a path with `{id}` declares the `id` path parameter.
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if !path.contains("{id}") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            let declared = operation["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == "id" && p["in"] == "path"));
            assert!(
                declared,
                "{method} {path} does not declare its id parameter"
            );
        }
    }
    // Every API operation documents the stack's answers; protected ones their token.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    let public = [
        "get /api/v1/events",
        "get /api/v1/events/{id}",
        "get /api/v1/events/{id}/availability",
        "get /api/v1/ws",
        // Authenticated by the provider's signature instead of a token.
        "post /api/v1/payments/webhooks/stripe",
        "post /api/v1/payments/webhooks/paypal",
        "post /api/v1/notifications/webhooks/sendgrid",
        "post /api/v1/notifications/webhooks/twilio",
        // By the signed token in its URL.
        "post /api/v1/unsubscribe",
    ];
    for (path, operations) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/") {
            continue;
        }
        for (method, operation) in operations.as_object().unwrap() {
            let responses = &operation["responses"];
            assert!(responses["429"].is_object(), "{method} {path}: no 429");
            let open = public.contains(&format!("{method} {path}").as_str())
                || path.starts_with("/api/v1/auth/");
            assert_eq!(
                operation["security"].is_array(),
                !open,
                "{method} {path}: security"
            );
            if !open {
                assert!(responses["401"].is_object(), "{method} {path}: no 401");
            }
            // Errors are problem+json; query parameters are in the query (not the path).
            for (status, response) in responses.as_object().unwrap() {
                if status.as_str() >= "400" {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status}: not problem+json"
                    );
                }
            }
            for param in operation["parameters"].as_array().into_iter().flatten() {
                if ["limit", "after", "status", "email"].contains(&param["name"].as_str().unwrap())
                {
                    assert_eq!(param["in"], "query", "{method} {path}: {param}");
                }
            }
        }
    }
    let docs = api.http.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

/// With `http.admin_bind`, `/metrics` is served there and no longer on the API port; the
/// health endpoints answer on both; the admin listener serves nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_takes_metrics_off_the_api_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("HTTP__ADMIN_BIND", "127.0.0.1:0")],
    );
    let admin = server.admin.clone().expect("the admin listener's address");
    assert_ne!(admin, server.base);
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let (event, tt) = api.published_event(10, 600, 4).await;
    assert_eq!(api.hold(&event, &tt, 1, None).await.status, 201);
    let get = |url: String| {
        let http = api.http.clone();
        async move {
            let reply = http.get(url).send().await.unwrap();
            let (status, kind) = (
                reply.status().as_u16(),
                reply.headers().get("content-type").cloned(),
            );
            (status, kind, reply.text().await.unwrap())
        }
    };
    let (status, kind, _) = get(server.url("/metrics")).await;
    assert_eq!(status, 404, "no /metrics on the API port");
    assert_eq!(kind.unwrap(), "application/problem+json");
    let (status, _, scrape) = get(format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        scrape.contains("regengine_engine_commands_total{command=\"hold\",result=\"ok\"} 1"),
        "the admin scrape counts the API's hold: {scrape}"
    );
    promtool_accepts(&scrape);
    for base in [server.base.as_str(), admin.as_str()] {
        assert_eq!(get(format!("{base}/healthz")).await.0, 200, "{base}");
        assert_eq!(get(format!("{base}/readyz")).await.0, 200, "{base}");
    }
    for path in ["/api/v1/events", "/openapi.json", "/docs/"] {
        assert_eq!(
            get(format!("{admin}{path}")).await.0,
            404,
            "{path} on the admin port"
        );
    }

    // The image's HEALTHCHECK: `gateway --probe-ready` asks the configured address.
    let probe = |env: &[(&str, &str)]| {
        let mut command = std::process::Command::new(tests::gateway_binary());
        command.arg("--probe-ready");
        for (k, v) in env {
            command.env(k, v);
        }
        command.output().unwrap()
    };
    let admin_addr = admin.trim_start_matches("http://");
    let answered = probe(&[("REGENGINE__HTTP__ADMIN_BIND", admin_addr)]);
    assert!(answered.status.success(), "{answered:?}");
    let answered = probe(&[("REGENGINE__HTTP__BIND", server.addr.as_str())]);
    assert!(
        answered.status.success(),
        "the API port, without an admin listener"
    );
    // Nothing listens there any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = probe(&[("REGENGINE__HTTP__BIND", &closed.to_string())]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_shed_with_503_and_retry_after_never_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[("HTTP__CONCURRENCY_MAX", "2")]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(1000, 600, 1).await;
    let replies = join_all((0..400).map(|_| {
        let (api, event, tt) = (api.clone(), event.clone(), tt.clone());
        tokio::spawn(async move { api.hold(&event, &tt, 1, None).await })
    }))
    .await;
    let (mut created, mut shed) = (0, 0);
    for r in replies {
        let r = r.unwrap();
        match r.status {
            201 => created += 1,
            503 => {
                shed += 1;
                assert_eq!(r.retry_after.as_deref(), Some("1"));
                assert_eq!(r.content_type, "application/problem+json");
                assert_eq!(r.str("code"), "overloaded");
            }
            other => panic!("unexpected {other}: {r:?}"),
        }
    }
    eprintln!("overload: {created} created, {shed} shed");
    assert!(shed > 0, "nothing was shed at a concurrency limit of 2");
    let (_, held, _, _) = api.availability(&event).await;
    assert_eq!(held, created, "shed requests changed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_exits_cleanly_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let api = Api::admin(&server).await;
    let (event, tt) = api.published_event(10, 600, 4).await;
    let held = api.hold(&event, &tt, 2, None).await;
    let status = server
        .terminate(Duration::from_secs(20))
        .expect("did not stop in time");
    assert!(status.success(), "exit status {status}");
    let server = Server::start(&data, &[]);
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    assert_eq!(
        api.get(&format!("/api/v1/registrations/{}", held.str("id")))
            .await
            .str("status"),
        "held"
    );
    assert_eq!(api.availability(&event).await, (10, 2, 0, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_events_and_ticket_types_is_durably_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let api = Api::admin(&server).await;
    let body = json!({"title": "Retry me", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"});
    let first = api.post("/api/v1/events", &body, Some("create-1")).await;
    assert_eq!(first.status, 201);
    let event = first.str("id");
    let tt_body = json!({"name": "GA", "price_minor": 100, "currency": "EUR", "capacity": 5});
    let tt_path = format!("/api/v1/events/{event}/ticket-types");
    let tt = api.post(&tt_path, &tt_body, Some("tt-1")).await;
    assert_eq!(tt.status, 201);

    // After a restart the gateway's cache is empty: the keys are answered from durable state.
    let server = server.restart(&[]);
    let api = Api::admin(&server).await;
    let again = api.post("/api/v1/events", &body, Some("create-1")).await;
    assert_eq!(
        (again.status, again.str("id")),
        (201, event.clone()),
        "{again:?}"
    );
    let other = api.post("/api/v1/events", &json!({"title": "Else", "starts_at": "2031-01-01T18:00:00Z", "ends_at": "2031-01-01T22:00:00Z"}), Some("create-1")).await;
    assert_eq!(
        (other.status, other.str("code").as_str()),
        (422, "idempotency_key_reused")
    );
    let tt_again = api.post(&tt_path, &tt_body, Some("tt-1")).await;
    assert_eq!(
        (tt_again.status, tt_again.str("id")),
        (201, tt.str("id")),
        "{tt_again:?}"
    );
    let record = api.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(
        record.body["ticket_types"].as_array().unwrap().len(),
        1,
        "no second ticket type"
    );
    let listed = api.get("/api/v1/events?q=Retry").await;
    assert_eq!(
        listed.body["items"].as_array().unwrap().len(),
        1,
        "no second event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_cors_compression_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let origin = "https://tickets.example.com";
    let server = Server::start(
        &dir.path().join("data"),
        &[("HTTP__CORS_ALLOWED_ORIGINS", &format!("[\"{origin}\"]"))],
    );
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    for _ in 0..12 {
        api.published_event(10, 600, 4).await;
    }
    let get = |path: &str| api.at(reqwest::Method::GET, path);

    // Every API answer: hardening headers and a request id, also on errors.
    for path in [
        "/api/v1/events",
        "/api/v1/events/not-an-id",
        "/api/v1/users/me",
    ] {
        let r = get(path).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'none'")
        );
        assert!(!h["x-request-id"].is_empty(), "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "HSTS is opt-in"
        );
    }
    // A client's own request id comes back.
    let r = get("/api/v1/events")
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");

    // Large JSON is gzipped for clients that ask; small replies and the docs stay plain.
    let big = get("/api/v1/events")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(big.headers()["content-encoding"], "gzip");
    let small = get("/api/v1/users/me")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(small.headers().get("content-encoding").is_none());
    let docs = api
        .http
        .get(server.url("/docs/"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(docs.headers().get("content-encoding").is_none());

    // CORS: the configured origin may call with a token and an Idempotency-Key; others may not.
    let preflight = |from: &str| {
        api.http
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/events"))
            .header("origin", from)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight(origin).await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], origin);
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("idempotency-key") && allowed_headers.contains("authorization")
    );
    let other = preflight("https://evil.example.net").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    server.terminate(Duration::from_secs(10));
}
