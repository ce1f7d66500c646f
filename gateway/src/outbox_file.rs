//! The outbox's development adapter: each message, rendered with its link, appended as one
//! JSON line to a private file (mode 0600). Tests read their verification and reset links
//! from it; developers `tail -f` it. The file is rotated beyond a configured size, so it is
//! bounded too.

use engine::outbox::{BoxFuture, MessageKind, MessageSink, OutboxMessage, mask};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Appends messages to a JSON-lines file.
pub struct FileSink {
    file: Arc<SpoolFile>,
    link_base: String,
}

/// The file, written on blocking threads (each line is fsynced).
struct SpoolFile {
    path: PathBuf,
    bytes_max: u64,
    lock: Mutex<()>,
}

/// One line of the file.
#[derive(Serialize)]
struct Line<'a> {
    id: uuid::Uuid,
    kind: &'static str,
    to: &'a str,
    user_id: Option<uuid::Uuid>,
    subject: String,
    link: String,
    /// The single-use token of a link, if the message has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Ticket numbers and codes, for ticket messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    tickets: Option<&'a [engine::outbox::TicketLine]>,
    created_at: chrono::DateTime<chrono::Utc>,
    text: String,
}

impl FileSink {
    /// A sink writing to `path`, rotated beyond `bytes_max`; links start with `link_base`.
    pub fn new(path: &Path, bytes_max: u64, link_base: &str) -> Self {
        Self {
            file: Arc::new(SpoolFile {
                path: path.to_owned(),
                bytes_max,
                lock: Mutex::new(()),
            }),
            link_base: link_base.trim_end_matches('/').to_owned(),
        }
    }

    fn render<'a>(&self, message: &'a OutboxMessage) -> Line<'a> {
        let base = &self.link_base;
        let rendered = match &message.kind {
            MessageKind::VerifyEmail { token, expires_at } => single_use(
                base,
                "verify-email",
                token,
                *expires_at,
                "Confirm your e-mail address",
                "confirm your e-mail address",
            ),
            MessageKind::ResetPassword { token, expires_at } => single_use(
                base,
                "reset-password",
                token,
                *expires_at,
                "Reset your password",
                "choose a new password (if you did not ask for this, ignore this message)",
            ),
            MessageKind::Tickets {
                event_title,
                registration_id,
                tickets,
            } => tickets_issued(base, event_title, *registration_id, tickets),
            MessageKind::WaitlistOffer {
                registration_id,
                quantity,
                expires_at,
            } => waitlist_offer(base, *registration_id, *quantity, *expires_at),
            MessageKind::EventCanceled {
                event_id,
                event_title,
                registration_id,
                tickets_revoked,
            } => event_canceled(
                base,
                *event_id,
                event_title,
                *registration_id,
                *tickets_revoked,
            ),
            MessageKind::PaymentRefunded {
                registration_id,
                amount_minor,
                currency,
                cause,
            } => payment_refunded(base, *registration_id, *amount_minor, currency, *cause),
            MessageKind::PaymentReminder {
                registration_id,
                amount_minor,
                currency,
                reference,
                deadline,
            } => payment_reminder(
                base,
                *registration_id,
                *amount_minor,
                currency,
                reference.as_deref(),
                *deadline,
            ),
        };
        Line {
            id: message.id,
            kind: message.kind.as_str(),
            to: &message.to,
            user_id: message.user_id.map(|u| u.0),
            subject: rendered.subject,
            link: rendered.link,
            token: rendered.token,
            expires_at: rendered.expires_at,
            tickets: rendered.tickets,
            created_at: message.created_at,
            text: rendered.text,
        }
    }
}

impl SpoolFile {
    fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(meta) = std::fs::metadata(&self.path)
            && meta.len() + line.len() as u64 > self.bytes_max
        {
            std::fs::rename(&self.path, rotated(&self.path))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path)?;
        file.write_all(line)?;
        // On disk before the message leaves the outbox (at least once, across a power loss).
        file.sync_data()
    }
}

/// What a message says, before the line adds who it goes to.
struct Rendered<'a> {
    subject: String,
    link: String,
    /// The single-use token inside `link`, if it has one.
    token: Option<&'a str>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    tickets: Option<&'a [engine::outbox::TicketLine]>,
    text: String,
}
/// The parts of a message whose link, `<base>/<page>?token=`, lets the reader `action`.
fn single_use<'a>(
    base: &str,
    page: &str,
    token: &'a str,
    expires_at: chrono::DateTime<chrono::Utc>,
    subject: &str,
    action: &str,
) -> Rendered<'a> {
    let link = format!("{base}/{page}?token={token}");
    let text = format!(
        "Open {link} to {action}. The link works once, until {}.",
        expires_at.to_rfc3339()
    );
    Rendered {
        subject: subject.to_owned(),
        link,
        token: Some(token),
        expires_at: Some(expires_at),
        tickets: None,
        text,
    }
}

/// Tickets issued: their numbers, and the registration's page with their QR codes.
fn tickets_issued<'a>(
    base: &str,
    event_title: &str,
    registration_id: engine::ids::RegistrationId,
    tickets: &'a [engine::outbox::TicketLine],
) -> Rendered<'a> {
    let link = format!("{base}/registrations/{registration_id}");
    let numbers: Vec<&str> = tickets.iter().map(|t| t.number.as_str()).collect();
    let text = format!(
        "Your tickets for {event_title}: {}. Show their QR codes at the entrance: {link}",
        numbers.join(", ")
    );
    Rendered {
        subject: format!("Your tickets for {event_title}"),
        link,
        token: None,
        expires_at: None,
        tickets: Some(tickets),
        text,
    }
}

/// Seats held for a waiting-list place until the offer runs out.
fn waitlist_offer<'a>(
    base: &str,
    registration_id: engine::ids::RegistrationId,
    quantity: u16,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> Rendered<'a> {
    let link = format!("{base}/registrations/{registration_id}");
    let text = format!(
        "Seats came free: {quantity} seat(s) are held for you until {}. Confirm them at \
         {link}; after that they go to the next person waiting.",
        expires_at.to_rfc3339()
    );
    Rendered {
        subject: "Seats are waiting for you".to_owned(),
        link,
        token: None,
        expires_at: Some(expires_at),
        tickets: None,
        text,
    }
}

/// A payment refunded on its own: it came after the seats were gone, or twice.
fn payment_refunded<'a>(
    base: &str,
    registration_id: engine::ids::RegistrationId,
    amount_minor: i64,
    currency: &str,
    cause: engine::message::RefundCause,
) -> Rendered<'a> {
    let link = format!("{base}/registrations/{registration_id}");
    let amount = integrations::money::to_decimal(amount_minor, currency)
        .unwrap_or_else(|_| format!("{amount_minor} (minor units)"));
    let why = match cause {
        engine::message::RefundCause::LatePayment => {
            "Your payment arrived after your hold had ended and the seats were sold to someone else."
        }
        engine::message::RefundCause::DoublePayment => "This registration was paid twice.",
    };
    Rendered {
        subject: "Your payment is being refunded".to_owned(),
        text: format!("{why} We are refunding {amount} {currency} to you in full. Details: {link}"),
        link,
        token: None,
        expires_at: None,
        tickets: None,
    }
}

/// A bank transfer still due, before its deadline.
fn payment_reminder<'a>(
    base: &str,
    registration_id: engine::ids::RegistrationId,
    amount_minor: i64,
    currency: &str,
    reference: Option<&str>,
    deadline: chrono::DateTime<chrono::Utc>,
) -> Rendered<'a> {
    let link = format!("{base}/registrations/{registration_id}");
    let amount = integrations::money::to_decimal(amount_minor, currency)
        .unwrap_or_else(|_| format!("{amount_minor} (minor units)"));
    let quote = reference.map_or_else(String::new, |r| format!(", quoting the reference {r}"));
    Rendered {
        subject: "Your bank transfer is still due".to_owned(),
        text: format!(
            "We have not received your transfer of {amount} {currency} yet. Please pay it by {}{quote}; \
             your seats are held until then. Details: {link}",
            deadline.format("%Y-%m-%d %H:%M UTC")
        ),
        link,
        token: None,
        expires_at: Some(deadline),
        tickets: None,
    }
}

/// An event canceled: to an attendee (tickets revoked), a holder (seats released) or a
/// person on the waiting list (place removed).
fn event_canceled<'a>(
    base: &str,
    event_id: engine::ids::EventId,
    event_title: &str,
    registration_id: Option<engine::ids::RegistrationId>,
    tickets_revoked: bool,
) -> Rendered<'a> {
    let (link, what) = match registration_id {
        Some(id) if tickets_revoked => (
            format!("{base}/registrations/{id}"),
            "your registration is canceled and its tickets are no longer valid",
        ),
        Some(id) => (
            format!("{base}/registrations/{id}"),
            "your held seats are released",
        ),
        None => (
            format!("{base}/events/{event_id}"),
            "your place on the waiting list is removed",
        ),
    };
    let text = format!("{event_title} has been canceled: {what}. Details: {link}");
    Rendered {
        subject: format!("Canceled: {event_title}"),
        link,
        token: None,
        expires_at: None,
        tickets: None,
        text,
    }
}

/// `<path>.1`.
fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

impl MessageSink for FileSink {
    fn deliver<'a>(&'a self, message: &'a OutboxMessage) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut line = serde_json::to_vec(&self.render(message)).map_err(|e| e.to_string())?;
            line.push(b'\n');
            let file = self.file.clone();
            tokio::task::spawn_blocking(move || file.append(&line))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{}: {e}", self.file.path.display()))?;
            tracing::info!(
                id = %message.id,
                kind = message.kind.as_str(),
                to = %mask(&message.to),
                file = %self.file.path.display(),
                "message written to the outbox file"
            );
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[tokio::test]
    async fn lines_carry_the_link_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let sink = FileSink::new(&path, 4096, "https://tickets.example/");
        let kind = MessageKind::VerifyEmail {
            token: "ev1.abc".into(),
            expires_at: Utc::now(),
        };
        let message = OutboxMessage::new("ann@example.com", None, kind, Utc::now());
        sink.deliver(&message).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            line["link"],
            "https://tickets.example/verify-email?token=ev1.abc"
        );
        assert_eq!(line["to"], "ann@example.com");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for _ in 0..20 {
            sink.deliver(&message).await.unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        assert!(rotated(&path).exists());
    }
}
