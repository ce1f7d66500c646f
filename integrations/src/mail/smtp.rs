//! SMTP through lettre: implicit TLS, STARTTLS, or plain (a local relay), with optional
//! authentication, a connection pool and timeouts. A reply the server gives as permanent
//! (5xx: an address refused for good) is a permanent failure; anything else (4xx, a
//! timeout, a connection refused) is retried.

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
            Err(e) if e.is_permanent() => Err(SendError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::Retry(format!("SMTP: {e}"))),
        }
    }
}
