//! SMTP through lettre: implicit TLS, STARTTLS, or plain (a local relay), with optional
//! authentication, a connection pool and timeouts.
//!
//! Only a refusal of this message or this recipient is permanent (550, 551, 552, 553 without
//! a 5.7.x policy code: no such mailbox, mailbox full for good, address malformed). Everything
//! else is retried: 4xx, timeouts, refused connections, and also the 5xx replies that come
//! from the server's set-up rather than the message (530/535 authentication, 554 at the
//! greeting, 5.7.x relay or policy refusals), so a wrong password or a block list does not
//! turn a whole sale's mail into dead letters in a minute; it waits, visible in the backlog.

use engine::notify::{SendError, Sent};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

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
    /// Each command's timeout.
    pub timeout: Duration,
    /// Connections kept open at most.
    pub pool_max: u32,
}

/// A pooled SMTP client.
pub struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl Smtp {
    /// A client for `settings` (connections are opened on first use). Must run inside a
    /// Tokio runtime (the pool starts a task).
    pub fn new(settings: &SmtpSettings) -> Result<Self, String> {
        let builder = match settings.security {
            Security::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host)
                .map_err(|e| e.to_string())?,
            Security::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(|e| e.to_string())?
            }
            Security::None => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            }
        };
        let mut builder = builder
            .port(settings.port)
            .timeout(Some(settings.timeout))
            .pool_config(
                PoolConfig::new()
                    .max_size(settings.pool_max)
                    .idle_timeout(Duration::from_secs(60)),
            );
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
        })
    }

    /// Sends one message; the server's reply text is kept as the provider id.
    pub async fn send(&self, email: Message) -> Result<Sent, SendError> {
        match self.transport.send(email).await {
            Ok(response) => Ok(Sent {
                provider_id: response.message().next().map(str::to_owned),
            }),
            Err(e) if refused_for_good(&e) => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Retry(format!("SMTP: {e}"))),
        }
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
