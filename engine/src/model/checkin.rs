//! Check-in lists of an event: which ticket types enter, at which gates, when.

use super::{EventRecord, validation::check_text};
use crate::error::FieldError;
use crate::ids::TicketTypeId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most check-in lists per event.
pub const CHECKIN_LISTS_MAX: usize = 50;
/// Most gates per check-in list.
pub const LIST_GATES_MAX: usize = 100;

/// A check-in list: which ticket types enter, at which gates, when, and whether a ticket may
/// enter again after an exit. A ticket is admitted once per list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInList {
    pub id: crate::ids::CheckInListId,
    /// Name (1 to 200 characters).
    pub name: String,
    /// Ticket types admitted (empty: all).
    pub ticket_types: Vec<TicketTypeId>,
    /// Gates that scan on it (empty: any).
    pub gates: Vec<String>,
    /// Whether a ticket that exited may enter again.
    pub allow_reentry: bool,
    /// No admission before.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub opens_at: Option<DateTime<Utc>>,
    /// No admission after.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub closes_at: Option<DateTime<Utc>>,
}

impl CheckInList {
    /// A validated new list of `event` (its ticket types must exist).
    pub fn new(
        event: &EventRecord,
        name: &str,
        ticket_types: Vec<TicketTypeId>,
        gates: Vec<String>,
        allow_reentry: bool,
        opens_at: Option<DateTime<Utc>>,
        closes_at: Option<DateTime<Utc>>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = name.trim();
        check_text(&mut errors, "name", name, 1, 200);
        if ticket_types
            .iter()
            .any(|t| !event.ticket_types.iter().any(|tt| tt.id == *t))
        {
            errors.push(FieldError::new("ticket_types", "unknown ticket type"));
        }
        let gates: Vec<String> = gates.iter().map(|g| g.trim().to_owned()).collect();
        if gates.len() > LIST_GATES_MAX
            || gates
                .iter()
                .any(|g| g.is_empty() || g.chars().count() > crate::values::GATE_LEN_MAX)
        {
            errors.push(FieldError::new(
                "gates",
                format!(
                    "at most {LIST_GATES_MAX} gates of 1 to {} characters",
                    crate::values::GATE_LEN_MAX
                ),
            ));
        }
        if let (Some(o), Some(c)) = (opens_at, closes_at)
            && c <= o
        {
            errors.push(FieldError::new("closes_at", "must be after opens_at"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            id: crate::ids::CheckInListId::new(),
            name: name.to_owned(),
            ticket_types,
            gates,
            allow_reentry,
            opens_at: opens_at
                .map(|t| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)),
            closes_at: closes_at
                .map(|t| DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)),
        })
    }

    /// The rules a pool decides a scan on this list with.
    pub fn rules(&self) -> crate::values::ListRules {
        crate::values::ListRules {
            id: Some(self.id),
            ticket_types: self.ticket_types.clone(),
            gates: self.gates.clone(),
            allow_reentry: self.allow_reentry,
            opens_at: self.opens_at,
            closes_at: self.closes_at,
        }
    }
}
