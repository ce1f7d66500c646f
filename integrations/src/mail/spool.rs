//! The development transport: each rendered message appended as one JSON line to a private
//! file (mode 0600), with its link and token. Tests read their verification and reset links
//! from it; developers `tail -f` it. The file is rotated beyond a configured size, so it is
//! bounded too. Each line is fsynced before the delivery counts as sent.

use super::{Facts, Rendered};
use engine::message::{MessageKind, OutboxMessage, TicketLine};
use engine::notify::{SendError, Sent};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Appends messages to a JSON-lines file.
pub struct Spool {
    file: Arc<SpoolFile>,
}

/// The file, written on blocking threads.
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
    subject: &'a str,
    link: Option<&'a str>,
    /// The single-use token of a link, if the message has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Ticket numbers and codes, for ticket messages.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tickets: &'a [TicketLine],
    created_at: chrono::DateTime<chrono::Utc>,
    text: &'a str,
}

impl Spool {
    /// A spool writing to `path`, rotated beyond `bytes_max`.
    pub fn new(path: &Path, bytes_max: u64) -> Self {
        Self {
            file: Arc::new(SpoolFile {
                path: path.to_owned(),
                bytes_max,
                lock: Mutex::new(()),
            }),
        }
    }

    /// Appends `message` as rendered.
    pub async fn append(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        rendered: &Rendered,
    ) -> Result<Sent, SendError> {
        let (token, expires_at) = match &message.kind {
            MessageKind::VerifyEmail { token, expires_at }
            | MessageKind::ResetPassword { token, expires_at } => {
                (Some(token.as_str()), Some(*expires_at))
            }
            MessageKind::WaitlistOffer { expires_at, .. } => (None, Some(*expires_at)),
            MessageKind::PaymentReminder { deadline, .. } => (None, Some(*deadline)),
            MessageKind::PaymentDue { .. } => (None, facts.due.as_ref().map(|d| d.held_until)),
            _ => (None, None),
        };
        let line = Line {
            id: message.id,
            kind: message.kind.as_str(),
            to: &message.to,
            user_id: message.user_id.map(|u| u.0),
            subject: &rendered.subject,
            link: rendered.link.as_deref(),
            token,
            expires_at,
            tickets: super::tickets(message, facts),
            created_at: message.created_at,
            text: &rendered.text,
        };
        let mut bytes =
            serde_json::to_vec(&line).map_err(|e| SendError::Permanent(e.to_string()))?;
        bytes.push(b'\n');
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || file.append(&bytes))
            .await
            .map_err(|e| SendError::Retry(e.to_string()))?
            .map_err(|e| SendError::Retry(format!("{}: {e}", self.file.path.display())))?;
        Ok(Sent::default())
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
        // On disk before the delivery counts as sent (at least once, across a power loss).
        file.sync_data()
    }
}

/// `<path>.1`.
fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::templates::Templates;
    use chrono::Utc;

    #[tokio::test]
    async fn lines_carry_the_link_and_the_file_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.jsonl");
        let spool = Spool::new(&path, 4096);
        let kind = MessageKind::VerifyEmail {
            token: "ev1.abc".into(),
            expires_at: Utc::now(),
        };
        let message = OutboxMessage::new("ann@example.com", None, kind, Utc::now());
        let templates = Templates::load(None).unwrap();
        let facts = Facts::default();
        let rendered = templates
            .render(&message, &facts, "https://tickets.example/", "m.example")
            .unwrap();
        spool.append(&message, &facts, &rendered).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            line["link"],
            "https://tickets.example/verify-email?token=ev1.abc"
        );
        assert_eq!(line["token"], "ev1.abc");
        assert_eq!(line["to"], "ann@example.com");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        for _ in 0..20 {
            spool.append(&message, &facts, &rendered).await.unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 4096);
        assert!(rotated(&path).exists());
    }
}
