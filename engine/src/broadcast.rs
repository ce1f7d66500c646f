//! A manager's message to every attendee of an event, and the notice of a change of the
//! event's time or place: what is stored (with the fan-out's cursor), how it is checked, and
//! the message each recipient gets. `notify::broadcasts` queues them.

use crate::error::{DomainError, FieldError};
use crate::ids::{EventId, RegistrationId, UserId};
use crate::message::{MessageKind, OutboxMessage};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest subject, in characters.
pub const SUBJECT_CHARS_MAX: usize = 200;
/// Longest body, in characters.
pub const BODY_CHARS_MAX: usize = 20_000;

/// A manager's message to every attendee of an event, and how far its fan-out got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Broadcast {
    /// UUIDv7: broadcasts of an event are ordered by it.
    pub id: Uuid,
    pub event_id: EventId,
    /// One line.
    pub subject: String,
    /// Plain text; blank lines separate paragraphs.
    pub body: String,
    pub created_by: UserId,
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// Messages queued so far.
    pub queued: u64,
    /// The fan-out's cursor: the registrations up to it are queued.
    pub after: Option<RegistrationId>,
    /// When the last recipient was queued (none: still queueing).
    #[serde(with = "chrono::serde::ts_milliseconds_option")]
    pub finished_at: Option<DateTime<Utc>>,
    /// None: a manager's message; some: the event's time or place changed, and each attendee
    /// gets an `event_changed` notice (the read model starts it; subject and body are empty).
    #[serde(default)]
    pub change: Option<EventChange>,
}

/// A change of an event its attendees are told of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventChange {
    /// The event's version after the change.
    pub version: u64,
    /// What changed: `starts_at`, `ends_at`, `venue`.
    pub fields: Vec<String>,
}

/// The fields whose change attendees are told of.
pub const NOTIFIED_FIELDS: [&str; 3] = ["starts_at", "ends_at", "venue"];

impl Broadcast {
    /// A new broadcast by `by` at `now`, nothing queued yet.
    pub fn new(
        event_id: EventId,
        subject: String,
        body: String,
        by: UserId,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_id,
            subject,
            body,
            created_by: by,
            created_at: now,
            queued: 0,
            after: None,
            finished_at: None,
            change: None,
        }
    }

    /// The notice of a change of `event` (version `version`, `fields` changed) at `at`; its
    /// id derives from the event and the version (written again, it is the same).
    pub fn event_changed(
        event: EventId,
        version: u64,
        fields: Vec<String>,
        at: DateTime<Utc>,
    ) -> Self {
        let mut input = Vec::with_capacity(24);
        input.extend_from_slice(event.as_bytes());
        input.extend_from_slice(&version.to_be_bytes());
        Self {
            id: crate::ids::derived_id(at, &input),
            event_id: event,
            subject: String::new(),
            body: String::new(),
            created_by: UserId(Uuid::nil()),
            created_at: at,
            queued: 0,
            after: None,
            finished_at: None,
            change: Some(EventChange { version, fields }),
        }
    }

    /// The message to one registration's attendee (the same id whenever it is built).
    pub fn message(
        &self,
        to: &str,
        user_id: Option<UserId>,
        registration_id: RegistrationId,
    ) -> OutboxMessage {
        let mut input = Vec::with_capacity(32);
        input.extend_from_slice(self.id.as_bytes());
        input.extend_from_slice(registration_id.as_bytes());
        let kind = match &self.change {
            None => MessageKind::Broadcast {
                event_id: self.event_id,
                registration_id,
                broadcast_id: self.id,
            },
            Some(change) => MessageKind::EventChanged {
                event_id: self.event_id,
                registration_id,
                version: change.version,
                changed: change.fields.clone(),
            },
        };
        OutboxMessage::derived(&input, to, user_id, kind, self.created_at)
    }
}

/// Checks a broadcast's subject (one line, 1..=200 characters) and body (1..=20,000
/// characters, line breaks allowed); every problem at once.
pub fn validate(subject: &str, body: &str) -> Result<(), DomainError> {
    let mut errors = Vec::new();
    let subject_len = subject.chars().count();
    if subject.trim().is_empty() {
        errors.push(FieldError::new("subject", "must not be empty"));
    } else if subject_len > SUBJECT_CHARS_MAX {
        errors.push(FieldError::new(
            "subject",
            format!("must be at most {SUBJECT_CHARS_MAX} characters"),
        ));
    }
    // A line break in a subject would be a header injection.
    if subject.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "subject",
            "must be one line without control characters",
        ));
    }
    if body.trim().is_empty() {
        errors.push(FieldError::new("body", "must not be empty"));
    } else if body.chars().count() > BODY_CHARS_MAX {
        errors.push(FieldError::new(
            "body",
            format!("must be at most {BODY_CHARS_MAX} characters"),
        ));
    }
    if body.chars().any(crate::model::is_stray_control) {
        errors.push(FieldError::new(
            "body",
            "must not contain control characters other than line breaks and tabs",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_one_line_and_bodies_are_bounded() {
        assert!(validate("Doors at 18:00", "Line one\n\nLine two\twith a tab").is_ok());
        let fields = |r: Result<(), DomainError>| match r {
            Err(DomainError::Validation(errors)) => {
                errors.into_iter().map(|e| e.field).collect::<Vec<_>>()
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(fields(validate("a\r\nBcc: x@y", "b")), ["subject"]);
        assert_eq!(fields(validate(" ", "b")), ["subject"]);
        assert_eq!(fields(validate(&"s".repeat(201), "b")), ["subject"]);
        assert_eq!(fields(validate("s", &"b".repeat(20_001))), ["body"]);
        assert_eq!(fields(validate("s", "bell\u{7}")), ["body"]);
        assert_eq!(fields(validate("", "")), ["subject", "body"]);
    }

    #[test]
    fn a_recipients_message_has_the_same_id_each_time_and_differs_per_recipient() {
        let (event, user) = (EventId(Uuid::now_v7()), UserId(Uuid::now_v7()));
        let b = Broadcast::new(event, "s".into(), "b".into(), user, Utc::now());
        let (r1, r2) = (
            RegistrationId(Uuid::now_v7()),
            RegistrationId(Uuid::now_v7()),
        );
        assert_eq!(b.message("a@x", None, r1).id, b.message("a@x", None, r1).id);
        assert_ne!(b.message("a@x", None, r1).id, b.message("b@x", None, r2).id);
    }
}
