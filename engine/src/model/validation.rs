//! The checks every command's validation is made of: text lengths and control characters,
//! the window of times an event may name, the hold TTL. Each check appends to a list of
//! `FieldError`s, so a command reports all its problems at once.

use super::{EVENT_TIME_MAX, EVENT_TIME_MIN, HOLD_TTL_SECS_MAX, HOLD_TTL_SECS_MIN};
use crate::error::{DomainError, FieldError};
use chrono::{DateTime, Utc};

/// (NUL, BEL, escape sequences, line breaks: they corrupt logs, exports and printed badges).
pub(crate) fn check_text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) {
    check_length(errors, field, value, min, max);
    if value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
}

/// A free text (a description): like [`check_text`], but line breaks and tabs are allowed.
pub(crate) fn check_long_text(
    errors: &mut Vec<FieldError>,
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) {
    check_length(errors, field, value, min, max);
    if value.chars().any(is_stray_control) {
        errors.push(FieldError::new(
            field,
            "must not contain control characters other than line breaks and tabs",
        ));
    }
}

/// A control character other than a line break or a tab: never wanted in stored text.
pub fn is_stray_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\n' | '\r' | '\t')
}

fn check_length(errors: &mut Vec<FieldError>, field: &str, value: &str, min: usize, max: usize) {
    let len = value.chars().count();
    if len < min || value.trim().is_empty() && min > 0 {
        errors.push(FieldError::new(field, "must not be empty"));
    } else if len > max {
        errors.push(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

/// The window of [`EVENT_TIME_MIN`] and [`EVENT_TIME_MAX`].
pub fn event_time_window() -> (DateTime<Utc>, DateTime<Utc>) {
    let parse = |s| {
        DateTime::parse_from_rfc3339(s)
            .expect("constant time")
            .with_timezone(&Utc)
    };
    (parse(EVENT_TIME_MIN), parse(EVENT_TIME_MAX))
}

/// A time an event names must be inside the window.
pub(crate) fn check_event_time(errors: &mut Vec<FieldError>, field: &str, at: DateTime<Utc>) {
    let (min, max) = event_time_window();
    if at < min || at > max {
        errors.push(FieldError::new(
            field,
            format!("must be between {EVENT_TIME_MIN} and {EVENT_TIME_MAX}"),
        ));
    }
}

pub(super) fn check_ttl(errors: &mut Vec<FieldError>, ttl: Option<u32>) {
    if let Some(ttl) = ttl
        && !(HOLD_TTL_SECS_MIN..=HOLD_TTL_SECS_MAX).contains(&ttl)
    {
        errors.push(FieldError::new(
            "hold_ttl_secs",
            format!("must be between {HOLD_TTL_SECS_MIN} and {HOLD_TTL_SECS_MAX}"),
        ));
    }
}

pub(super) fn finish(errors: Vec<FieldError>) -> Result<(), DomainError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(errors))
    }
}
