//! A real SMTP server for the mail tests (aiosmtpd, `tests/support/smtp_sink.py`), each
//! message it accepted parsed by a MIME parser from other hands (`mail-parser`), and the
//! `icalendar` package reading calendars back.

use crate::{localstripe_python, python_server, workspace_root};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// An SMTP server on 127.0.0.1 writing each message to a file.
pub struct SmtpSink {
    child: Child,
    /// Its port.
    pub port: u16,
    /// Where the messages are written.
    pub dir: PathBuf,
}

impl SmtpSink {
    /// Starts one on a free port, writing to `dir`.
    pub fn start(dir: &Path) -> SmtpSink {
        Self::start_on(dir, 0)
    }

    /// Starts one on `port` (0: a free one), writing to `dir` (added to what is there).
    pub fn start_on(dir: &Path, port: u16) -> SmtpSink {
        Self::spawn(dir, port, false)
    }

    /// One that writes each message but never acknowledges it (the sender waits).
    pub fn withholding(dir: &Path) -> SmtpSink {
        Self::spawn(dir, 0, true)
    }

    fn spawn(dir: &Path, port: u16, withhold: bool) -> SmtpSink {
        let dir_arg = dir.to_str().expect("utf-8 path");
        let port_arg = port.to_string();
        let mut args = vec![dir_arg, port_arg.as_str()];
        if withhold {
            args.push("--withhold");
        }
        let (child, addr) = python_server("smtp_sink.py", &args);
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the sink prints its address");
        SmtpSink {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    /// Every message received so far, raw, in arrival order.
    pub fn raw(&self) -> Vec<Vec<u8>> {
        received(&self.dir)
    }

    /// Stops it (connections are refused until a new one starts on the port).
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages written to `dir`, in arrival order (file names sort by sink and count).
pub fn received(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    names.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// How many messages are in `dir` (without reading them).
pub fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                .count()
        })
        .unwrap_or(0)
}

/// An iCalendar object read by Python's `icalendar`: uid, summary, location, sequence,
/// start, end (ISO 8601) and the start's time zone.
pub fn read_ics(ics: &[u8]) -> serde_json::Value {
    let mut child = Command::new(localstripe_python())
        .arg(workspace_root().join("tests/support/read_ics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(ics)
        .expect("ics written");
    let out = child.wait_with_output().expect("read_ics.py ran");
    assert!(
        out.status.success(),
        "icalendar refused the calendar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from read_ics.py")
}

/// A local SendGrid (`tests/support/fake_sendgrid.py`) following SendGrid's documented
/// formats: the v3 mail send API and the signed event webhook, its signing key made by
/// Python's `cryptography`.
pub struct FakeSendGrid {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    http: reqwest::Client,
}

/// The API key the tests give the gateway and the fake SendGrid.
pub const SENDGRID_API_KEY: &str = "SG.regengine-test-key";

impl FakeSendGrid {
    /// Starts one that refuses recipients at `refused_domain` (400) and answers the first
    /// `unavailable` sends with 503.
    pub fn start(refused_domain: &str, unavailable: u32) -> FakeSendGrid {
        let unavailable = unavailable.to_string();
        let (child, base) = python_server(
            "fake_sendgrid.py",
            &[SENDGRID_API_KEY, refused_domain, &unavailable],
        );
        FakeSendGrid {
            child,
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> serde_json::Value {
        crate::fake_json(self.http.get(format!("{}{path}", self.base))).await
    }

    /// Its event webhook verification key (base64 DER, as SendGrid shows it).
    pub async fn public_key(&self) -> String {
        let body = self.get("/_test/public-key").await;
        body["public_key"].as_str().expect("a key").to_owned()
    }

    /// The send requests it accepted, in order (each with its `x_message_id`), and its
    /// counters (`requests`, `unavailable`, `refused`).
    pub async fn sent(&self) -> (Vec<serde_json::Value>, serde_json::Value) {
        let body = self.get("/_test/sent").await;
        (
            body["sent"].as_array().cloned().unwrap_or_default(),
            body["stats"].clone(),
        )
    }

    /// Has it sign `events` (timestamped `timestamp`, or now) and POST them to `url` as
    /// SendGrid does; `tamper` changes the body after signing. The receiver's status and body.
    pub async fn deliver_events(
        &self,
        url: &str,
        events: &serde_json::Value,
        tamper: bool,
        timestamp: Option<i64>,
    ) -> (u16, String) {
        let order = serde_json::json!({
            "url": url, "events": events, "tamper": tamper, "timestamp": timestamp,
        });
        let url = format!("{}/_test/events", self.base);
        crate::fake_relayed(self.http.post(url).json(&order)).await
    }
}

impl Drop for FakeSendGrid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every mail in the sink at `dir`, once it holds as many as the server counts sent (within
/// 10 s): nothing sent is still on its way, so a count of them is final.
pub async fn settled(api: &crate::Api, dir: &Path) -> Vec<Vec<u8>> {
    crate::wait_for(std::time::Duration::from_secs(10), || async {
        let sent = api
            .metric(r#"regengine_notify_attempts_total{channel="email",result="sent"}"#)
            .await?;
        let all = received(dir);
        (sent == all.len() as f64).then_some(all)
    })
    .await
    .expect("the sink holds every mail sent")
}

/// An SMTP sink and a server mailing to it (fan-outs looked for every 50 ms), with `extra`
/// settings; the sink's directory.
pub fn with_smtp(
    dir: &Path,
    extra: &[(&str, &str)],
) -> (SmtpSink, crate::Server, std::path::PathBuf) {
    let maildir = dir.join("mail");
    let sink = SmtpSink::start(&maildir);
    let port = sink.port.to_string();
    let mut env = vec![
        ("OUTBOX__DELIVERY", "smtp"),
        ("OUTBOX__SMTP__HOST", "127.0.0.1"),
        ("OUTBOX__SMTP__PORT", port.as_str()),
        ("OUTBOX__SMTP__SECURITY", "none"),
        ("OUTBOX__SCHEDULE_POLL_MS", "50"),
    ];
    env.extend_from_slice(extra);
    let server = crate::Server::start(&dir.join("data"), &env);
    (sink, server, maildir)
}
