//! The person a registration is for, and what passes for an e-mail address.

use super::{EMAIL_LEN_MAX, SHORT_TEXT_LEN_MAX, validation::check_text};
use crate::error::FieldError;
use serde::{Deserialize, Serialize};

/// The person a registration is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Full name.
    pub name: String,
    /// E-mail address, stored lower-cased.
    pub email: String,
}

impl Attendee {
    /// Validates and normalises (trims, lower-cases the e-mail).
    pub fn new(name: &str, email: &str) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = name.trim();
        check_text(&mut errors, "attendee.name", name, 1, SHORT_TEXT_LEN_MAX);
        let email = normalize_email(email, "attendee.email", &mut errors);
        if errors.is_empty() {
            Ok(Self {
                name: name.to_owned(),
                email,
            })
        } else {
            Err(errors)
        }
    }
}

/// Trims and lower-cases an e-mail address, reporting `field` if it is not plausible.
pub fn normalize_email(email: &str, field: &str, errors: &mut Vec<FieldError>) -> String {
    let email = email.trim().to_lowercase();
    if !is_plausible_email(&email) {
        errors.push(FieldError::new(field, "must be an e-mail address"));
    }
    email
}

/// A deliberately simple check: one `@`, a non-empty local part, a dotted domain, no spaces.
fn is_plausible_email(email: &str) -> bool {
    if email.len() > EMAIL_LEN_MAX || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }
        None => false,
    }
}
