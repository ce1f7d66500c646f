//! Bank-statement exceptions: credits of an uploaded statement that were not applied (no or an
//! unknown reference, another amount or currency than due), kept per event in its statements
//! stream (`StreamId::Statements`) until a manager resolves each: **apply** it to a
//! registration (its amount covers what is due: the registration is paid, an excess is listed
//! to be paid back by hand), **refund** it (the money goes back by hand), or **ignore** it (not
//! a payment for this event). Nothing is applied without a manager's decision.

use crate::ids::{RegistrationId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Why a credit was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionReason {
    /// No valid `RF` reference, or one of no payment of this event.
    Unmatched,
    /// Less than due.
    Partial,
    /// More than due.
    Over,
    /// Another currency than due.
    Currency,
    /// The registration's payment refused it (see the registration).
    NotPayable,
}

impl ExceptionReason {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionReason::Unmatched => "unmatched",
            ExceptionReason::Partial => "partial",
            ExceptionReason::Over => "over",
            ExceptionReason::Currency => "currency",
            ExceptionReason::NotPayable => "not_payable",
        }
    }
}

/// A manager's decision on an exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Apply,
    Refund,
    Ignore,
}

impl Action {
    /// Its name in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Refund => "refund",
            Action::Ignore => "ignore",
        }
    }
}

/// How an exception was resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub action: Action,
    /// The registration it paid (apply).
    pub registration_id: Option<RegistrationId>,
    /// Money to pay back by hand: all of it (refund), or what exceeded the amount due (apply).
    pub to_refund_minor: i64,
    /// The manager's note (up to 500 characters).
    pub note: String,
    pub by: UserId,
    pub at: DateTime<Utc>,
}

/// A credit of a statement that was not applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    /// The bank's id of the line (or a digest of it): the same line uploaded again is the same
    /// exception.
    pub line_id: String,
    pub reason: ExceptionReason,
    /// The `RF` reference found in the remittance text.
    pub reference: Option<String>,
    /// The registration the reference names, if any.
    pub registration_id: Option<RegistrationId>,
    pub amount_minor: i64,
    pub currency: String,
    /// What the registration's payment is due, when one was found.
    pub expected_minor: Option<i64>,
    /// The payer's name and the booking date, as the statement has them.
    pub name: String,
    pub date: String,
    pub recorded_at: DateTime<Utc>,
    /// Set once a manager resolved it.
    pub resolution: Option<Resolution>,
}

/// Domain events of an event's statements stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StatementEvent {
    /// A credit was listed for a manager.
    ExceptionRecorded(Box<Exception>),
    /// A manager resolved one.
    ExceptionResolved {
        line_id: String,
        resolution: Resolution,
    },
}
