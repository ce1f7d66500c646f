//! Test harness: builds and starts the real `gateway` binary on `127.0.0.1:0` with its own
//! data directory, reads the address it prints, and stops it with SIGTERM or SIGKILL.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub mod mail;
pub mod twilio;
pub mod webhooks;
pub mod ws;

/// Longest a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the gateway binary, built (once per test process) with the same cargo.
pub fn gateway_binary() -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "gateway", "--bin", "gateway"])
        .current_dir(workspace_root())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building the gateway binary failed");
    // target/debug/deps/it-xxxx → target/debug/gateway
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("gateway");
    assert!(path.exists(), "{} not found", path.display());
    *built = Some(path.clone());
    path
}

/// A running gateway process.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT` of the admin listener, when `HTTP__ADMIN_BIND` was given.
    pub admin: Option<String>,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Server {
    /// Starts a server on `data_dir` with extra `REGENGINE__…` overrides.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::start_with_nofile(data_dir, env, None)
    }

    /// Like [`Server::start`], with the process's open-file limit (soft and hard) set to
    /// `nofile` (through the shell's `ulimit`, then `exec`: the pid stays the gateway's).
    pub fn start_with_nofile(data_dir: &Path, env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.with_extension("log"))
            .expect("log file");
        let mut command = match nofile {
            None => Command::new(gateway_binary()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(gateway_binary());
                sh
            }
        };
        // No `--config`: the built-in defaults plus these overrides.
        command
            .env("REGENGINE__HTTP__BIND", "127.0.0.1:0")
            .env("REGENGINE__STORAGE__DATA_DIR", data_dir)
            .env("REGENGINE__LOG__FORMAT", "text")
            .env("REGENGINE__LOG__FILTER", "warn")
            .env("REGENGINE__AUTH__BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("REGENGINE_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            // Tests drive thousands of requests from one address and account; the rate-limit
            // test turns limits back on.
            .env("REGENGINE__RATE_LIMIT__ENABLED", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (k, v) in env {
            command.env(format!("REGENGINE__{k}"), v);
        }
        let mut child = command.spawn().expect("starting the gateway");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // The API's line comes first, then the admin listener's if there is one.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("listening on http://")
                    .or_else(|| line.strip_prefix("admin listening on http://"))
                {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut next_addr = || match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gateway did not start; see {}",
                    data_dir.with_extension("log").display()
                );
            }
        };
        let addr = next_addr();
        let admin = env
            .iter()
            .any(|(k, v)| *k == "HTTP__ADMIN_BIND" && !v.is_empty())
            .then(|| format!("http://{}", next_addr()));
        Server {
            child,
            base: format!("http://{addr}"),
            addr,
            admin,
            data_dir: data_dir.to_owned(),
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server gracefully (asserting a clean exit) and starts it again on the same
    /// data directory with `env`.
    pub fn restart(self, env: &[(&str, &str)]) -> Server {
        let data = self.data_dir.clone();
        let status = self.terminate(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "unclean exit: {status:?}"
        );
        Server::start(&data, env)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `timeout`).
    pub fn terminate(mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns `Some` or `deadline` passes.
pub async fn wait_for<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The messages the server's outbox delivered to `to` of `kind` (`verify_email`,
/// `reset_password`), oldest first, read from its file adapter (`<data>/outbox.jsonl`).
pub fn mailed(server: &Server, to: &str, kind: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(server.data_dir.join("outbox.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["to"] == to && m["kind"] == kind)
        .collect()
}

/// Waits (up to 10 s) until the outbox delivered `n` messages to `to` of `kind`; returns the
/// token of the `n`th.
pub async fn mailed_token(server: &Server, to: &str, kind: &str, n: usize) -> String {
    wait_for(Duration::from_secs(10), || async {
        let all = mailed(server, to, kind);
        all.get(n - 1)
            .and_then(|m| m["token"].as_str().map(str::to_owned))
    })
    .await
    .unwrap_or_else(|| panic!("message {n} ({kind}) to {to} never delivered"))
}

/// A thin JSON client for the API.
#[derive(Clone)]
pub struct Api {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Bearer token sent with every request, if signed in.
    pub token: Option<String>,
}

/// The bootstrap admin every test server gets (see `Server::start`).
pub const ADMIN_EMAIL: &str = "admin@test.local";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin password for tests";

/// A response: status, headers and JSON body (`Null` when empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: String,
    /// Retry-After, if any.
    pub retry_after: Option<String>,
    /// Body.
    pub body: serde_json::Value,
}

impl Reply {
    /// `body[key]` as a string.
    pub fn str(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_default().to_owned()
    }
}

impl Api {
    /// A client for `server`.
    pub fn new(server: &Server) -> Api {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Api {
            http,
            base: server.base.clone(),
            token: None,
        }
    }

    /// A client signed in as the bootstrap admin (allowed everything).
    pub async fn admin(server: &Server) -> Api {
        let mut api = Api::new(server);
        let body = serde_json::json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
        let login = api.post("/api/v1/auth/login", &body, None).await;
        assert_eq!(login.status, 200, "admin login: {:?}", login.body);
        api.token = Some(login.str("access_token"));
        api
    }

    /// The same client with another bearer token (`None`: anonymous).
    pub fn with_token(&self, token: Option<String>) -> Api {
        Api {
            http: self.http.clone(),
            base: self.base.clone(),
            token,
        }
    }

    /// A request to `path`, with the bearer token if signed in.
    pub fn at(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Signs up and in as `email` (by this admin's grace, with the global `roles`); the new
    /// account's id and an `Api` acting as it.
    pub async fn account(&self, email: &str, roles: &[&str]) -> (String, Api) {
        let (id, tokens) = self.with_token(None).signed_in(email).await;
        let mut api = self.with_token(Some(tokens["access_token"].as_str().unwrap().to_owned()));
        if !roles.is_empty() {
            let r = self
                .send(
                    self.at(reqwest::Method::PUT, &format!("/api/v1/users/{id}/roles"))
                        .json(&serde_json::json!({"roles": roles})),
                )
                .await;
            assert_eq!(r.status, 200, "{:?}", r.body);
            // Roles are in the token: sign in again.
            let login = api
                .with_token(None)
                .post(
                    "/api/v1/auth/login",
                    &serde_json::json!({"email": email, "password": "correct horse battery"}),
                    None,
                )
                .await;
            api.token = Some(login.str("access_token"));
        }
        (id, api)
    }

    /// Sends any request built on `self.http`.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        self.try_send(request).await.expect("request failed")
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> Reply {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .bearer_auth(token),
        )
        .await
    }

    /// Signs up `email` (password `correct horse battery`) and logs in; returns the user id
    /// and the login reply's body (`access_token`, `refresh_token`, ...).
    pub async fn signed_in(&self, email: &str) -> (String, serde_json::Value) {
        let body = serde_json::json!({"email": email, "password": "correct horse battery", "name": "Test User"});
        let signup = self.post("/api/v1/auth/signup", &body, None).await;
        assert_eq!(signup.status, 201, "{:?}", signup.body);
        let login = self
            .post(
                "/api/v1/auth/login",
                &serde_json::json!({"email": email, "password": "correct horse battery"}),
                None,
            )
            .await;
        assert_eq!(login.status, 200, "{:?}", login.body);
        (signup.str("id"), login.body)
    }

    /// A new account signed up and signed in as `email`: an `Api` with its token.
    pub async fn buyer(&self, email: &str) -> Api {
        let (_, login) = self.with_token(None).signed_in(email).await;
        self.with_token(login["access_token"].as_str().map(str::to_owned))
    }

    /// Sends; `None` when the connection failed (server killed) before a whole reply arrived.
    pub async fn try_send(&self, request: reqwest::RequestBuilder) -> Option<Reply> {
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type").unwrap_or_default();
        let retry_after = header("retry-after");
        let bytes = response.bytes().await.ok()?;
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Some(Reply {
            status,
            content_type,
            retry_after,
            body,
        })
    }

    /// POST that tolerates a dead server.
    pub async fn try_post(
        &self,
        path: &str,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> Option<Reply> {
        let mut request = self.at(reqwest::Method::POST, path).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.try_send(request).await
    }

    /// The value of one series in `/metrics` (`name` with its labels, as exposed).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.scrape().await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The server's `/metrics` text; `None` if it cannot be read.
    pub async fn scrape(&self) -> Option<String> {
        let reply = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .ok()?;
        reply.text().await.ok()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let ready = wait_for(Duration::from_secs(30), || async {
            let r = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "server not ready in time");
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.at(reqwest::Method::GET, path)).await
    }

    /// GET a non-JSON answer: status, content type and the bytes.
    pub async fn get_bytes(&self, path: &str) -> (u16, String, Vec<u8>) {
        let response = self
            .at(reqwest::Method::GET, path)
            .send()
            .await
            .expect("a reply");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.expect("a body").to_vec();
        (status, content_type, bytes)
    }

    /// POST a JSON body, with an optional Idempotency-Key.
    pub async fn post(&self, path: &str, body: &serde_json::Value, key: Option<&str>) -> Reply {
        let mut request = self.at(reqwest::Method::POST, path).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        self.send(request).await
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.send(
            self.at(reqwest::Method::POST, path)
                .header("content-type", content_type)
                .body(body),
        )
        .await
    }

    /// PATCH a JSON body.
    pub async fn patch(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(self.at(reqwest::Method::PATCH, path).json(body))
            .await
    }

    /// Creates a published event with one free ticket type of `capacity` (a hold confirms
    /// without payment); returns (event, ticket type).
    pub async fn published_event(
        &self,
        capacity: u32,
        hold_ttl_secs: u32,
        max_per_order: u16,
    ) -> (String, String) {
        self.published_priced_event(capacity, hold_ttl_secs, max_per_order, 0)
            .await
    }

    /// Like [`Api::published_event`], at `price_minor` EUR cents a seat (confirmed only once
    /// paid); returns (event, ticket type).
    pub async fn published_priced_event(
        &self,
        capacity: u32,
        hold_ttl_secs: u32,
        max_per_order: u16,
        price_minor: i64,
    ) -> (String, String) {
        let event = self
            .post(
                "/api/v1/events",
                &serde_json::json!({
                    "title": "Flash sale", "starts_at": "2030-06-01T18:00:00Z", "ends_at": "2030-06-01T23:00:00Z",
                    "hold_ttl_secs": hold_ttl_secs, "category": "music"
                }),
                None,
            )
            .await;
        assert_eq!(event.status, 201, "{event:?}");
        let event_id = event.str("id");
        let tt = self
            .post(
                &format!("/api/v1/events/{event_id}/ticket-types"),
                &serde_json::json!({"name": "GA", "price_minor": price_minor, "currency": "EUR", "capacity": capacity, "max_per_order": max_per_order}),
                None,
            )
            .await;
        assert_eq!(tt.status, 201, "{tt:?}");
        let published = self
            .post(
                &format!("/api/v1/events/{event_id}/publish"),
                &serde_json::json!({}),
                None,
            )
            .await;
        assert_eq!(published.status, 200, "{published:?}");
        (event_id, tt.str("id"))
    }

    /// Holds `quantity` seats.
    pub async fn hold(
        &self,
        event: &str,
        ticket_type: &str,
        quantity: i64,
        key: Option<&str>,
    ) -> Reply {
        let body = serde_json::json!({
            "ticket_type_id": ticket_type, "quantity": quantity,
            "attendee": {"name": "Buyer", "email": "buyer@example.com"}
        });
        self.post(&format!("/api/v1/events/{event}/registrations"), &body, key)
            .await
    }

    /// Holds `quantity` seats for `attendee` (`{"name", "email"}`) and confirms them; the
    /// registration as the API shows it (with its tickets' numbers and codes).
    pub async fn confirmed(
        &self,
        event: &str,
        ticket_type: &str,
        attendee: serde_json::Value,
        quantity: u16,
    ) -> serde_json::Value {
        let body = serde_json::json!({
            "ticket_type_id": ticket_type, "quantity": quantity, "attendee": attendee
        });
        let held = self
            .post(
                &format!("/api/v1/events/{event}/registrations"),
                &body,
                None,
            )
            .await;
        assert_eq!(held.status, 201, "{held:?}");
        let id = held.str("id");
        let path = format!("/api/v1/registrations/{id}/confirm");
        let done = self.post(&path, &serde_json::json!({}), None).await;
        assert_eq!(done.status, 200, "{done:?}");
        done.body
    }

    /// Holds one seat (for the attendee `hold` uses) and confirms it; the registration's id.
    pub async fn confirmed_one(&self, event: &str, ticket_type: &str) -> String {
        let attendee = serde_json::json!({"name": "Buyer", "email": "buyer@example.com"});
        let registration = self.confirmed(event, ticket_type, attendee, 1).await;
        registration["id"].as_str().expect("an id").to_owned()
    }

    /// The actions of the audit log at `path` (`/api/v1/audit`, `/api/v1/events/{id}/audit`).
    pub async fn audit_actions(&self, path: &str) -> Vec<String> {
        let audit = self.get(path).await;
        assert_eq!(audit.status, 200, "{audit:?}");
        audit.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["action"].as_str().map(str::to_owned))
            .collect()
    }

    /// The dead deliveries on `channel` (admins' list), once there is one (within 20 s).
    pub async fn dead_deliveries(&self, channel: &str) -> Vec<serde_json::Value> {
        wait_for(Duration::from_secs(20), || async {
            let page = self.get("/api/v1/deliveries/dead").await;
            let items: Vec<serde_json::Value> = page.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["channel"] == channel)
                .cloned()
                .collect();
            (!items.is_empty()).then_some(items)
        })
        .await
        .unwrap_or_else(|| panic!("no dead {channel} delivery"))
    }

    /// Availability of the event's first ticket type: (capacity, held, confirmed, available).
    pub async fn availability(&self, event: &str) -> (u64, u64, u64, u64) {
        let a = self
            .get(&format!("/api/v1/events/{event}/availability"))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
        let t = &a.body["ticket_types"][0];
        let n = |k: &str| t[k].as_u64().unwrap_or(u64::MAX);
        (n("capacity"), n("held"), n("confirmed"), n("available"))
    }
}

/// localstripe (a stateful fake Stripe server from PyPI), started on a free loopback port in
/// a virtual environment of its own under the target directory (installed on first use by
/// `tests/support/install-python-tools.sh`, which `.ci/run` also runs).
pub struct LocalStripe {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

/// The secret key the tests give the gateway and use themselves (localstripe accepts any
/// `sk_` key).
pub const STRIPE_SECRET_KEY: &str = "sk_test_regengine";

static LOCALSTRIPE_VENV: Mutex<Option<PathBuf>> = Mutex::new(None);

pub(crate) fn localstripe_python() -> PathBuf {
    let mut venv = LOCALSTRIPE_VENV.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = venv.as_ref() {
        return path.join("bin/python");
    }
    // target/debug/deps/it-xxxx → target
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).expect("target directory").to_owned();
    let dir = target.join("localstripe-venv");
    let status = Command::new("bash")
        .arg(workspace_root().join("tests/support/install-python-tools.sh"))
        .arg(&dir)
        .status()
        .expect("running install-python-tools.sh");
    assert!(status.success(), "installing the Python test tools failed");
    *venv = Some(dir.clone());
    dir.join("bin/python")
}

/// A test fake's JSON answer to `request` (it must answer).
pub(crate) async fn fake_json(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .expect("the fake answers")
        .json()
        .await
        .expect("JSON")
}

/// What a test fake reports of a request it made on the test's behalf (a webhook or callback
/// it sent): the receiver's status and body.
pub(crate) async fn fake_relayed(request: reqwest::RequestBuilder) -> (u16, String) {
    let reply = fake_json(request).await;
    (
        reply["status"].as_u64().unwrap_or_default() as u16,
        reply["body"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Starts `tests/support/<script>` with the localstripe environment's Python (it has aiohttp)
/// and `args`; returns the child and the base URL it printed.
pub(crate) fn python_server(script: &str, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(localstripe_python())
        .arg(workspace_root().join("tests/support").join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {script}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(base) = line.strip_prefix("listening on ") {
                let _ = tx.send(base.to_owned());
            }
        }
    });
    let base = rx
        .recv_timeout(START_TIMEOUT)
        .unwrap_or_else(|_| panic!("{script} did not start"));
    (child, base)
}

impl LocalStripe {
    /// Starts one, empty.
    pub fn start() -> LocalStripe {
        let (child, base) = python_server("run_localstripe.py", &[]);
        LocalStripe {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .basic_auth(STRIPE_SECRET_KEY, Some(""))
            .form(form)
            .send()
            .await
            .expect("localstripe answers");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "localstripe {path}: {status} {body}");
        body
    }

    /// Sends its webhooks to `url`, signed with `secret`.
    pub async fn register_webhook(&self, url: &str, secret: &str) {
        let response = self
            .http
            .post(format!("{}/_config/webhooks/regengine", self.base))
            .form(&[("url", url), ("secret", secret)])
            .send()
            .await
            .expect("localstripe answers");
        assert!(response.status().is_success(), "{response:?}");
    }

    /// What the buyer's browser does with the client secret: a test card, attached to the
    /// PaymentIntent, then the confirmation (localstripe charges it and sends the signed
    /// `payment_intent.succeeded` a second later).
    pub async fn pay(&self, intent: &str) {
        let card = self
            .post(
                "/v1/payment_methods",
                &[
                    ("type", "card"),
                    ("card[number]", "4242424242424242"),
                    ("card[exp_month]", "12"),
                    ("card[exp_year]", "2034"),
                    ("card[cvc]", "123"),
                ],
            )
            .await;
        let card = card["id"].as_str().expect("payment method id");
        self.post(
            &format!("/v1/payment_intents/{intent}"),
            &[("payment_method", card)],
        )
        .await;
        let confirmed = self
            .post(&format!("/v1/payment_intents/{intent}/confirm"), &[])
            .await;
        assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    }

    /// A PaymentIntent as localstripe has it.
    pub async fn intent(&self, intent: &str) -> serde_json::Value {
        self.get(&format!("/v1/payment_intents/{intent}")).await
    }

    /// GETs `path` (with the secret key) as JSON.
    async fn get(&self, path: &str) -> serde_json::Value {
        self.http
            .get(format!("{}{path}", self.base))
            .basic_auth(STRIPE_SECRET_KEY, Some(""))
            .send()
            .await
            .expect("localstripe answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The refunds localstripe made for a PaymentIntent.
    pub async fn refunds(&self, intent: &str) -> Vec<serde_json::Value> {
        let list = self
            .get(&format!("/v1/refunds?payment_intent={intent}"))
            .await;
        list["data"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `Stripe-Signature` header for `payload` signed at `t` with `secret`, computed the way
/// Stripe documents it (HMAC-SHA256 over `t.payload`, hex), by the test's own code.
pub fn stripe_signature(secret: &str, t: i64, payload: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    let digest = mac.finalize().into_bytes();
    format!("t={t},v1={}", data_encoding::HEXLOWER.encode(&digest))
}

impl LocalStripe {
    /// Every event of `kind` localstripe recorded, oldest first (what it would deliver).
    pub async fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/events?type={kind}&limit=100");
            if let Some(a) = &after {
                path.push_str(&format!("&starting_after={a}"));
            }
            let page = self.get(&path).await;
            let items = page["data"].as_array().cloned().unwrap_or_default();
            after = items
                .last()
                .and_then(|e| e["id"].as_str())
                .map(str::to_owned);
            all.extend(items);
            if page["has_more"] != true || after.is_none() {
                return all;
            }
        }
    }
}

/// A local PayPal (`tests/support/fake_paypal.py`) following PayPal's documented formats.
pub struct FakePayPal {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

/// The credentials and webhook id the tests give the gateway and the fake PayPal.
pub const PAYPAL_CLIENT_ID: &str = "AbRegengineTestClient";
pub const PAYPAL_CLIENT_SECRET: &str = "EFregengineTestSecret";
pub const PAYPAL_WEBHOOK_ID: &str = "1JE4291016473214C";

impl FakePayPal {
    /// Starts one; its tokens live `token_ttl_secs`.
    pub fn start(token_ttl_secs: u64) -> FakePayPal {
        let ttl = token_ttl_secs.to_string();
        let (child, base) = python_server(
            "fake_paypal.py",
            &[
                PAYPAL_CLIENT_ID,
                PAYPAL_CLIENT_SECRET,
                PAYPAL_WEBHOOK_ID,
                &ttl,
            ],
        );
        FakePayPal {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// What the buyer does at PayPal: approves the order.
    pub async fn approve(&self, order: &str) {
        let r = self
            .http
            .post(format!("{}/_test/approve/{order}", self.base))
            .send()
            .await
            .expect("fake PayPal answers");
        assert!(r.status().is_success(), "{r:?}");
    }

    /// Forgets every token it issued (as if they expired early).
    pub async fn expire_tokens(&self) {
        self.http
            .post(format!("{}/_test/expire-tokens", self.base))
            .send()
            .await
            .expect("fake PayPal answers");
    }

    /// Its counters: `tokens_issued`, `orders`, `captures`, `refunds`, `verifications`.
    pub async fn stats(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/_test/stats", self.base))
            .send()
            .await
            .expect("fake PayPal answers")
            .json()
            .await
            .expect("JSON")
    }

    /// The transmission signature the fake PayPal vouches for (PayPal's message over the
    /// event body as sent, see its docstring), computed by the test.
    pub fn signature(transmission_id: &str, time: &str, webhook_id: &str, body: &[u8]) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"fake-paypal-signing-secret")
            .expect("any key");
        let crc = crc32(body);
        mac.update(format!("{transmission_id}|{time}|{webhook_id}|{crc}").as_bytes());
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    }
}

impl Drop for FakePayPal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CRC-32 (IEEE 802.3, as zlib computes it), bit by bit.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The text of a PDF as poppler's `pdftotext -layout` reads it (poppler-utils; `.ci/run`
/// installs it): a checker from other hands than the PDF writer's.
pub fn pdftotext(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("document.pdf");
    std::fs::write(&path, pdf).expect("PDF written");
    let out = Command::new("pdftotext")
        .args(["-layout", path.to_str().expect("utf-8 path"), "-"])
        .output()
        .expect("pdftotext runs (poppler-utils)");
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 text")
}

/// Decodes the QR code in a PNG (rqrr: a decoder independent of the encoder).
pub fn decode_qr_png(bytes: &[u8]) -> String {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    // Bit depths under 8 are widened to 8 (a 1-bit image's 1 becomes 255).
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = buf.len() / (w * h);
    let mut img =
        rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[(y * w + x) * channels]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}
