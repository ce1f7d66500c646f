//! SMTP through lettre's connections: implicit TLS, STARTTLS, or plain (a local relay), with
//! optional authentication, a pool of idle connections and timeouts.
//!
//! The pool is ours, not lettre's: lettre 0.11.23 opens its sockets with Nagle's algorithm on
//! and writes a message's final `.` apart from its body, so every message waited for the
//! server's delayed ACK (40 ms on Linux): 16 connections drained ~115 mails a second to any
//! server. For plain and STARTTLS connections we open the socket ourselves with `TCP_NODELAY`
//! and hand it to lettre (`connect_with_transport`); implicit TLS still goes through lettre's
//! own connect until a release carries its fix (lettre PR #1159).
//!
//! Only a refusal of this message or this recipient is permanent (550, 551, 552, 553 without
//! a 5.7.x policy code: no such mailbox, mailbox full for good, address malformed). Everything
//! else is retried: 4xx, timeouts, refused connections, and also the 5xx replies that come
//! from the server's set-up rather than the message (530/535 authentication, 554 at the
//! greeting, 5.7.x relay or policy refusals), so a wrong password or a block list does not
//! turn a whole sale's mail into dead letters in a minute; it waits, visible in the backlog.

use engine::notify::{SendError, Sent};
use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An idle connection is dropped after this long (servers close them after a few minutes).
const IDLE_MAX: Duration = Duration::from_secs(60);
/// An idle connection older than this is checked with a NOOP before it carries a message.
const IDLE_CHECK: Duration = Duration::from_secs(5);
/// Longest a message's transaction may take once a connection is ready (RFC 5321 4.5.3.2.6
/// gives the reply to the final dot 10 minutes: a server that scans content before it answers
/// must not make us send the mail again).
const SEND_MAX: Duration = Duration::from_secs(600);

/// How to reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Security {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain, then STARTTLS, required (port 587).
    Starttls,
    /// No TLS at all: only for a relay on the same host or network.
    None,
}

/// The server and how to talk to it.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password, if the server wants them.
    pub credentials: Option<(String, String)>,
    /// Opening a connection (TCP, greeting, EHLO, STARTTLS, AUTH) and a NOOP check each take
    /// at most this long (a message's transaction: `SEND_MAX`).
    pub timeout: Duration,
    /// Idle connections kept open at most.
    pub pool_max: u32,
}

/// A pooled SMTP client.
pub struct Smtp {
    settings: SmtpSettings,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

/// Why a send failed: the server's reply (judged by [`refused_for_good`]), or the network.
enum Failure {
    Smtp(lettre::transport::smtp::Error),
    Network(String),
}

impl Failure {
    fn into_send_error(self) -> SendError {
        match self {
            Failure::Smtp(e) if refused_for_good(&e) => SendError::Permanent(format!("SMTP: {e}")),
            Failure::Smtp(e) => SendError::Retry(format!("SMTP: {e}")),
            Failure::Network(e) => SendError::Retry(format!("SMTP: {e}")),
        }
    }
}

impl Smtp {
    /// A client for `settings` (connections are opened on first use).
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let tls = match settings.security {
            Security::None => None,
            Security::Implicit | Security::Starttls => {
                Some(TlsParameters::new(settings.host.clone()).map_err(|e| e.to_string())?)
            }
        };
        Ok(Self {
            settings: settings.clone(),
            tls,
            credentials: settings
                .credentials
                .as_ref()
                .map(|(user, password)| Credentials::new(user.clone(), password.clone())),
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one message; the server's reply text is kept as the provider id.
    pub async fn send(&self, email: Message) -> Result<Sent, SendError> {
        let envelope = email.envelope().clone();
        let bytes = email.formatted();
        let (mut conn, reused) = self.checkout().await.map_err(Failure::into_send_error)?;
        let mut sent = tokio::time::timeout(SEND_MAX, conn.send(&envelope, &bytes)).await;
        // A pooled connection the server closed meanwhile fails without any reply: once more
        // on a new one (lettre drops a connection after any error, so it is not reused).
        if reused && matches!(&sent, Ok(Err(e)) if e.status().is_none()) {
            conn = self
                .connect_in_time()
                .await
                .map_err(Failure::into_send_error)?;
            sent = tokio::time::timeout(SEND_MAX, conn.send(&envelope, &bytes)).await;
        }
        match sent {
            Ok(Ok(response)) => {
                self.checkin(conn);
                Ok(Sent {
                    provider_id: response.message().next().map(str::to_owned),
                })
            }
            Ok(Err(e)) => Err(Failure::Smtp(e).into_send_error()),
            Err(_) => Err(Failure::Network("timed out sending".into()).into_send_error()),
        }
    }

    /// An idle connection that still answers (`true`: reused), or a new one.
    async fn checkout(&self) -> Result<(AsyncSmtpConnection, bool), Failure> {
        loop {
            let next = {
                let mut idle = self
                    .idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                idle.retain(|(_, since)| since.elapsed() < IDLE_MAX);
                idle.pop()
            };
            let Some((mut conn, since)) = next else {
                break;
            };
            if since.elapsed() < IDLE_CHECK {
                return Ok((conn, true));
            }
            let alive = tokio::time::timeout(self.settings.timeout, conn.test_connected()).await;
            if alive == Ok(true) {
                return Ok((conn, true));
            }
            if alive.is_err() {
                // The server went silent: the other idle connections are no better.
                self.idle
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                break;
            }
        }
        Ok((self.connect_in_time().await?, false))
    }

    async fn connect_in_time(&self) -> Result<AsyncSmtpConnection, Failure> {
        tokio::time::timeout(self.settings.timeout, self.connect())
            .await
            .map_err(|_| Failure::Network("timed out connecting".into()))?
    }

    fn checkin(&self, conn: AsyncSmtpConnection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.settings.pool_max as usize {
            idle.push((conn, Instant::now()));
        }
    }

    /// A new connection: greeted, encrypted as configured, authenticated.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let (host, port) = (self.settings.host.as_str(), self.settings.port);
        let mut conn = match (self.settings.security, &self.tls) {
            (Security::Implicit, tls) => AsyncSmtpConnection::connect_tokio1(
                (host, port),
                Some(self.settings.timeout),
                &self.hello,
                tls.clone(),
                None,
            )
            .await
            .map_err(Failure::Smtp)?,
            (security, tls) => {
                let tcp = tokio::net::TcpStream::connect((host, port))
                    .await
                    .map_err(|e| Failure::Network(format!("connecting to {host}:{port}: {e}")))?;
                tcp.set_nodelay(true)
                    .map_err(|e| Failure::Network(format!("TCP_NODELAY: {e}")))?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(Failure::Smtp)?;
                if let (Security::Starttls, Some(tls)) = (security, tls) {
                    // Required: a server that does not offer it gets nothing in clear.
                    conn.starttls(tls.clone(), &self.hello)
                        .await
                        .map_err(Failure::Smtp)?;
                }
                conn
            }
        };
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials)
                .await
                .map_err(Failure::Smtp)?;
        }
        Ok(conn)
    }
}

/// Whether the server refused this recipient or message for good (see the module's doc).
fn refused_for_good(e: &lettre::transport::smtp::Error) -> bool {
    let Some(code) = e.status() else {
        return false;
    };
    let text = e.to_string();
    permanent(&code.to_string(), &text)
}

fn permanent(code: &str, text: &str) -> bool {
    matches!(code, "550" | "551" | "552" | "553") && !text.contains(" 5.7.")
}

#[cfg(test)]
mod tests {
    use super::permanent;

    #[test]
    fn only_a_refused_mailbox_or_message_is_permanent() {
        assert!(permanent(
            "550",
            "permanent error (550): 5.1.1 mailbox unavailable"
        ));
        assert!(permanent(
            "553",
            "permanent error (553): mailbox name not allowed"
        ));
        assert!(!permanent(
            "550",
            "permanent error (550): 5.7.1 Relaying denied"
        ));
        assert!(!permanent(
            "535",
            "permanent error (535): 5.7.8 authentication failed"
        ));
        assert!(!permanent(
            "554",
            "permanent error (554): no SMTP service here"
        ));
        assert!(!permanent("451", "transient error (451): try again later"));
    }
}
