//! What an issued document says, as journaled in its organizer's ledger stream (a leaf: the
//! ports name these types).

use crate::ids::{EventId, RegistrationId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Domain events of an organizer's ledger stream (`StreamId::Ledger`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerEvent {
    /// A document was issued; its number is the event's sequence number in the stream.
    Issued(Box<Document>),
}

/// Who sells or buys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub name: String,
    /// Postal address lines (may be empty).
    pub address: Vec<String>,
    /// VAT identification number (may be empty).
    pub vat_id: String,
    /// E-mail address (may be empty).
    pub email: String,
}

impl Party {
    /// Checks a buyer's billing details (`field` names them in errors): a name of 1..=140
    /// characters, at most 6 address lines of 1..=140, a VAT id of at most 32.
    pub fn check_billing(&self, field: &str) -> Result<(), crate::error::DomainError> {
        use crate::error::FieldError;
        let mut errors = Vec::new();
        let mut text = |name: &str, value: &str, min: usize, max: usize| {
            let n = value.trim().chars().count();
            if n < min || n > max || value.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    format!("must be {min} to {max} characters, without control characters"),
                ));
            }
        };
        text("name", &self.name, 1, 140);
        for line in &self.address {
            text("address", line, 1, 140);
        }
        text("vat_id", &self.vat_id, 0, 32);
        if self.address.len() > 6 {
            errors.push(FieldError::new(
                format!("{field}.address"),
                "must have at most 6 lines",
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(crate::error::DomainError::Validation(errors))
        }
    }
}

/// An invoice, or a credit note that corrects one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    Invoice,
    /// Refunds `corrects`, the number of the invoice it credits.
    CreditNote {
        corrects: u64,
    },
}

/// One line of a document. Amounts are signed minor units (a discount or a credit is
/// negative), stated gross or net as the document's `prices_include_vat` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub description: String,
    pub quantity: i64,
    pub unit_minor: i64,
    /// `quantity × unit_minor`.
    pub amount_minor: i64,
    /// Basis points: 1900 is 19 %.
    pub vat_rate_bp: u16,
}

/// The VAT of one rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VatRow {
    pub rate_bp: u16,
    pub net_minor: i64,
    pub vat_minor: i64,
    /// `net_minor + vat_minor`.
    pub gross_minor: i64,
}

/// An issued document, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Its number in the organizer's ledger: 1, 2, 3, … without gaps.
    pub number: u64,
    /// Whose ledger (the event's owner; the nil id for events without one).
    pub organizer: UserId,
    pub kind: DocumentKind,
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    pub event_title: String,
    pub event_starts_at: DateTime<Utc>,
    pub issued_at: DateTime<Utc>,
    pub seller: Party,
    pub buyer: Party,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether line amounts include VAT.
    pub prices_include_vat: bool,
    pub lines: Vec<Line>,
    /// One row per VAT rate.
    pub vat: Vec<VatRow>,
    pub net_minor: i64,
    pub vat_minor: i64,
    /// What the buyer paid (an invoice) or gets back (a credit note, negative).
    pub gross_minor: i64,
    /// How it was paid (`stripe`, `paypal`, `bank_transfer`, `manual`), if it was.
    pub paid_by: Option<String>,
}

impl Document {
    /// The number as printed: `INV-000042` (invoices and credit notes share the sequence).
    pub fn display_number(&self) -> String {
        display_number(self.number)
    }

    /// The title of its kind.
    pub fn title(&self) -> &'static str {
        match self.kind {
            DocumentKind::Invoice => "Invoice",
            DocumentKind::CreditNote { .. } => "Credit note",
        }
    }
}

/// A ledger number as printed.
pub fn display_number(number: u64) -> String {
    format!("INV-{number:06}")
}
