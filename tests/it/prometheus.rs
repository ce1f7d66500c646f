//! The operations kit against the real tools (Debian's `prometheus` package, which `.ci/run`
//! installs): promtool checks the Prometheus configuration and runs the alerts' unit tests; a
//! real Prometheus scrapes a gateway under a short load, and every recording rule and every
//! dashboard query returns data; the Grafana dashboard is consistent (Grafana itself cannot be
//! installed here).

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tests::{Api, Server, wait_for};

/// A file of the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs promtool; its success and what it said.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo("."))
        .output()
        .expect("promtool (Debian package prometheus) is needed: `bash .ci/run` installs it");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// The values of `key: value` lines (YAML written one key per line), in order.
fn yaml_values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let key = format!("{key}: ");
    text.lines()
        .filter_map(|l| l.trim_start().trim_start_matches("- ").strip_prefix(&key))
        .map(|v| v.trim().trim_matches('"'))
        .collect()
}

/// A Markdown heading's anchor as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn promtool_checks_the_rules_and_every_alert_is_tested_and_documented() {
    let (ok, said) = promtool(&["check", "config", "config/prometheus/prometheus.yml"]);
    assert!(ok, "promtool check config: {said}");
    let (ok, said) = promtool(&["test", "rules", "config/prometheus/tests/alerts-test.yml"]);
    assert!(ok, "promtool test rules: {said}");

    let alerts_file = read("config/prometheus/rules/regengine-alerts.yml");
    let tests_file = read("config/prometheus/tests/alerts-test.yml");
    let runbook = read("docs/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(anchor)
        .collect();
    // Each alert's block: from its `- alert:` line to the next.
    let blocks: Vec<&str> = alerts_file.split("- alert: ").skip(1).collect();
    assert!(blocks.len() >= 15, "{} alerts", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap().trim();
        for key in ["summary", "description", "runbook_url"] {
            assert_eq!(yaml_values(block, key).len(), 1, "{name}: one {key}");
        }
        let severity = yaml_values(block, "severity");
        assert!(
            severity == ["page"] || severity == ["ticket"],
            "{name}: severity {severity:?}"
        );
        let runbook_url = yaml_values(block, "runbook_url")[0];
        let (file, section) = runbook_url.split_once('#').unwrap();
        assert_eq!(file, "docs/runbook.md", "{name}");
        assert!(
            anchors.contains(section),
            "{name}: no section #{section} in docs/runbook.md"
        );
        // A unit test where it fires and one where it stays silent.
        let cases: Vec<&str> = tests_file
            .split(&format!("alertname: {name}\n"))
            .skip(1)
            .map(|rest| rest.trim_start())
            .collect();
        assert!(
            cases.iter().any(|c| c.starts_with("exp_alerts:\n")),
            "{name}: no test where it fires"
        );
        assert!(
            cases.iter().any(|c| c.starts_with("exp_alerts: []")),
            "{name}: no test where it stays silent"
        );
    }
}

/// Template variables a query may use: the dashboard's own and Grafana's built-ins.
fn dashboard() -> (Value, BTreeSet<String>) {
    let dashboard: Value =
        serde_json::from_str(&read("config/grafana/dashboards/regengine.json")).unwrap();
    let mut variables: BTreeSet<String> = ["__rate_interval", "__interval", "__range"]
        .map(str::to_owned)
        .into();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        variables.insert(variable["name"].as_str().unwrap().to_owned());
    }
    (dashboard, variables)
}

/// Every query of the dashboard's panels (rows excluded), with its panel's title.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_owned();
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_owned()))
        })
        .collect()
}

#[test]
fn the_dashboard_is_consistent() {
    let (dashboard, variables) = dashboard();
    assert_eq!(dashboard["uid"], "regengine");
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    for name in ["datasource", "instance", "event"] {
        assert!(variables.contains(name), "template variable {name}");
    }
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    let panels = dashboard["panels"].as_array().unwrap();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id twice"
        );
        let grid = &panel["gridPos"];
        assert!(
            grid["w"].as_u64().unwrap() + grid["x"].as_u64().unwrap() <= 24,
            "{title}: off the grid"
        );
        if panel["type"] == "row" {
            continue;
        }
        assert!(titles.insert(title), "{title}: title twice");
        assert!(
            !panel["description"].as_str().unwrap().is_empty(),
            "{title}"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for target in targets {
            assert!(refs.insert(target["refId"].as_str().unwrap()), "{title}");
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expr = target["expr"].as_str().unwrap();
            for used in expr.split('$').skip(1) {
                let name: String = used
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                assert!(variables.contains(&name), "{title}: ${name} is not defined");
            }
        }
    }
    assert!(
        panels.iter().filter(|p| p["type"] == "row").count() >= 4,
        "on-sale, check-in, engine and outbox rows"
    );
}

/// A Prometheus server started by the test, stopped when dropped.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `target` every second with the repository's rules.
    fn start(dir: &Path, target: &str) -> Prometheus {
        let rules = ["regengine-recording.yml", "regengine-alerts.yml"].map(|f| {
            repo(&format!("config/prometheus/rules/{f}"))
                .display()
                .to_string()
        });
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\n\
             scrape_configs:\n  - job_name: regengine\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules[0], rules[1]
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        // A free port: bound by the OS, released, then given to Prometheus.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus) is needed: `bash .ci/run` installs it");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The result vector of an instant query; `Err` with Prometheus's error if it failed.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", self.base)).unwrap();
        url.query_pairs_mut().append_pair("query", expr);
        let reply = http.get(url).send().await.map_err(|e| e.to_string())?;
        let body: Value = reply.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// Holds, confirmations, scans (a duplicate among them) and a few reads.
async fn short_load(api: &Api) -> String {
    let (event, tt) = api.published_event(200, 600, 4).await;
    for _ in 0..20 {
        assert_eq!(api.hold(&event, &tt, 1, None).await.status, 201);
    }
    let attendee = json!({"name": "Ada", "email": "ada@example.com"});
    for _ in 0..5 {
        let registration = api.confirmed(&event, &tt, attendee.clone(), 2).await;
        for ticket in registration["tickets"].as_array().unwrap() {
            let scan = json!({"ticket_code": ticket["code"], "gate": "north"});
            let path = format!("/api/v1/events/{event}/check-ins");
            assert_eq!(api.post(&path, &scan, None).await.status, 200);
        }
    }
    let registration = api.confirmed(&event, &tt, attendee, 1).await;
    let scan = json!({"ticket_code": registration["tickets"][0]["code"], "gate": "south"});
    let path = format!("/api/v1/events/{event}/check-ins");
    assert_eq!(api.post(&path, &scan, None).await.status, 200);
    assert_eq!(
        api.post(&path, &scan, None).await.status,
        409,
        "a duplicate"
    );
    assert_eq!(
        api.get(&format!("/api/v1/events/{event}")).await.status,
        200
    );
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_recording_rule_and_dashboard_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &[("HTTP__ADMIN_BIND", "127.0.0.1:0")],
    );
    let admin = server.admin.clone().unwrap();
    let prometheus = Prometheus::start(dir.path(), admin.trim_start_matches("http://"));
    let api = Api::admin(&server).await;
    api.wait_ready().await;
    let http = reqwest::Client::new();
    let up = wait_for(Duration::from_secs(30), || {
        let (http, prometheus) = (http.clone(), &prometheus);
        async move {
            let up = prometheus
                .query(&http, "up{job=\"regengine\"} == 1")
                .await
                .ok()?;
            (!up.is_empty()).then_some(())
        }
    })
    .await;
    assert!(
        up.is_some(),
        "Prometheus scrapes the admin listener: see {}",
        dir.path().join("prometheus.log").display()
    );
    let event = short_load(&api).await;

    // Every recording rule, and every panel query with its variables set, returns data once
    // Prometheus has a few scrapes of the load (rates need two samples).
    let records: Vec<String> = yaml_values(
        &read("config/prometheus/rules/regengine-recording.yml"),
        "record",
    )
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(records.len() >= 25, "{records:?}");
    let (dashboard, _) = dashboard();
    let panels: Vec<(String, String)> = panel_queries(&dashboard)
        .into_iter()
        .map(|(title, expr)| {
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$event", &event);
            (title, expr)
        })
        .collect();
    assert!(panels.len() >= 30, "{} panel queries", panels.len());
    let queries: Vec<(String, String)> = records
        .iter()
        .map(|r| (format!("recording rule {r}"), r.clone()))
        .chain(panels)
        .collect();
    let missing = |queries: Vec<(String, String)>| {
        let (http, prometheus) = (http.clone(), &prometheus);
        async move {
            let mut missing = BTreeMap::new();
            for (what, expr) in queries {
                match prometheus.query(&http, &expr).await {
                    Ok(result) if !result.is_empty() => {}
                    Ok(_) => {
                        missing.insert(what, format!("no data: {expr}"));
                    }
                    Err(e) => {
                        missing.insert(what, format!("{e}: {expr}"));
                    }
                }
            }
            missing
        }
    };
    let all = wait_for(Duration::from_secs(60), || {
        let missing = missing(queries.clone());
        async move { missing.await.is_empty().then_some(()) }
    })
    .await;
    assert!(all.is_some(), "{:#?}", missing(queries).await);

    // Every rule evaluates without error.
    let rules: Value = http
        .get(format!("{}/api/v1/rules", prometheus.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut evaluated = 0;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule}");
            evaluated += 1;
        }
    }
    assert!(evaluated >= 40, "{evaluated} rules loaded");
}
