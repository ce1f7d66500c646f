//! The event as an iCalendar object (RFC 5545) attached to confirmation mails: one VEVENT in
//! UTC (`Z` times, so no VTIMEZONE is needed), CRLF line ends, lines folded at 75 octets,
//! text escaped. Its `UID` is the event's, so a calendar updates the entry it already has
//! when a later mail carries a higher `SEQUENCE` (the event's version).

use super::EventFacts;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// The calendar object of `event` (`DTSTAMP` = `stamp`, the message's creation: every
/// attempt of one message carries the same bytes), with `url` and `description`.
pub fn event(
    event: &EventFacts,
    domain: &str,
    stamp: DateTime<Utc>,
    url: &str,
    description: &str,
) -> String {
    let mut lines = vec![
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//regengine//tickets//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}@{domain}", event.id),
        format!("DTSTAMP:{}", utc(stamp)),
        format!("SEQUENCE:{}", event.version),
        format!("DTSTART:{}", utc(event.starts_at)),
        format!("DTEND:{}", utc(event.ends_at)),
        format!("SUMMARY:{}", text(&event.title)),
    ];
    if let Some(venue) = &event.venue {
        lines.push(format!("LOCATION:{}", text(venue)));
    }
    lines.push(format!("URL:{url}"));
    if !description.is_empty() {
        lines.push(format!("DESCRIPTION:{}", text(description)));
    }
    lines.push("END:VEVENT".to_owned());
    lines.push("END:VCALENDAR".to_owned());
    let mut out = String::new();
    for line in lines {
        fold(&line, &mut out);
    }
    out
}

/// A UTC date-time in the basic format: `20300601T180000Z`.
fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A TEXT value: backslash, semicolon, comma and line breaks escaped; other control
/// characters dropped.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `line` with CRLF, folded so that no physical line exceeds 75 octets (never inside a
/// UTF-8 character); continuation lines start with a space.
fn fold(line: &str, out: &mut String) {
    let mut width = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        // The continuation's leading space counts toward its 75.
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        let _ = out.write_char(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> EventFacts {
        let at = Utc.with_ymd_and_hms(2030, 6, 1, 18, 0, 0).unwrap();
        EventFacts {
            id: engine::ids::EventId(uuid::Uuid::nil()),
            title: "Über, Komma; und \\ ein sehr langer Titel, der gefaltet werden muss, \
                    weil er länger als fünfundsiebzig Oktette ist"
                .into(),
            venue: Some("Hall 1\nBack door".into()),
            starts_at: at,
            ends_at: at + chrono::Duration::hours(2),
            version: 3,
            branding: None,
        }
    }

    #[test]
    fn lines_end_in_crlf_fold_at_75_octets_and_text_is_escaped() {
        let at = Utc.with_ymd_and_hms(2030, 5, 1, 12, 0, 0).unwrap();
        let ics = event(
            &sample(),
            "mail.example",
            at,
            "https://f.example/events/x",
            "",
        );
        assert!(ics.ends_with("END:VCALENDAR\r\n"));
        for line in ics.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is {} octets", line.len());
            assert!(!line.contains('\n'));
        }
        let unfolded = ics.replace("\r\n ", "");
        assert!(unfolded.contains("SUMMARY:Über\\, Komma\\; und \\\\ ein sehr langer"));
        assert!(unfolded.contains("LOCATION:Hall 1\\nBack door"));
        assert!(unfolded.contains("DTSTART:20300601T180000Z\r\nDTEND:20300601T200000Z"));
        assert!(unfolded.contains("SEQUENCE:3"));
        assert!(unfolded.contains("DTSTAMP:20300501T120000Z"));
    }
}
