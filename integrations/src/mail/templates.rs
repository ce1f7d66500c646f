//! Mail templates (minijinja): one file per message kind and locale,
//! `{kind}.{locale}.jinja`, extending `"_layout"` and filling the blocks `subject`, `text`
//! and `body` (the HTML part's content, inside the layout's frame). Built in for English, German and
//! French; a directory given at start may replace any of them (same names).
//!
//! Every template is checked when loaded: each kind is rendered in each locale with sample
//! messages (with the most and the least facts the kind can have), with undefined variables
//! as errors (allowed only as `{% if %}` conditions), so a typo or a variable the kind does not
//! have stops the server at start rather than a message at send time. Text parts are not
//! escaped; the HTML part is (each file is registered twice, as `.txt` and `.html`).

use super::{Context, Facts, Notice, Rendered};
use chrono::{TimeZone, Utc};
use engine::ids::{EventId, RegistrationId};
use engine::message::{MessageKind, OutboxMessage, RefundCause, TicketLine};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use std::path::Path;

/// The HTML part's escaping: `&`, `<`, `>`, `"` and `'` (enough for text and quoted
/// attributes), leaving `/` alone so links read as written.
const HTML: &str = "mail-html";

fn format_value(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    let io = |e: std::fmt::Error| minijinja::Error::from(e);
    let html = matches!(state.auto_escape(), AutoEscape::Custom(name) if name == HTML);
    match state.auto_escape() {
        AutoEscape::Custom(_) if html && !value.is_safe() => {
            let text = value.to_string();
            let mut escaped = String::with_capacity(text.len());
            for c in text.chars() {
                match c {
                    '&' => escaped.push_str("&amp;"),
                    '<' => escaped.push_str("&lt;"),
                    '>' => escaped.push_str("&gt;"),
                    '"' => escaped.push_str("&quot;"),
                    '\'' => escaped.push_str("&#39;"),
                    c => escaped.push(c),
                }
            }
            out.write_str(&escaped).map_err(io)
        }
        AutoEscape::Custom(_) if html => write!(out, "{value}").map_err(io),
        AutoEscape::None => write!(out, "{value}").map_err(io),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Locales with built-in templates; the first is the fallback.
pub const LOCALES: [&str; 3] = ["en", "de", "fr"];

/// Built-in templates: (name, source).
const BUILT_IN: &[(&str, &str)] = &[
    (
        "_layout",
        include_str!("../../templates/mail/_layout.jinja"),
    ),
    (
        "verify_email.en",
        include_str!("../../templates/mail/verify_email.en.jinja"),
    ),
    (
        "verify_email.de",
        include_str!("../../templates/mail/verify_email.de.jinja"),
    ),
    (
        "verify_email.fr",
        include_str!("../../templates/mail/verify_email.fr.jinja"),
    ),
    (
        "reset_password.en",
        include_str!("../../templates/mail/reset_password.en.jinja"),
    ),
    (
        "reset_password.de",
        include_str!("../../templates/mail/reset_password.de.jinja"),
    ),
    (
        "reset_password.fr",
        include_str!("../../templates/mail/reset_password.fr.jinja"),
    ),
    (
        "tickets.en",
        include_str!("../../templates/mail/tickets.en.jinja"),
    ),
    (
        "tickets.de",
        include_str!("../../templates/mail/tickets.de.jinja"),
    ),
    (
        "tickets.fr",
        include_str!("../../templates/mail/tickets.fr.jinja"),
    ),
    (
        "confirmed.en",
        include_str!("../../templates/mail/confirmed.en.jinja"),
    ),
    (
        "confirmed.de",
        include_str!("../../templates/mail/confirmed.de.jinja"),
    ),
    (
        "confirmed.fr",
        include_str!("../../templates/mail/confirmed.fr.jinja"),
    ),
    (
        "waitlist_offer.en",
        include_str!("../../templates/mail/waitlist_offer.en.jinja"),
    ),
    (
        "waitlist_offer.de",
        include_str!("../../templates/mail/waitlist_offer.de.jinja"),
    ),
    (
        "waitlist_offer.fr",
        include_str!("../../templates/mail/waitlist_offer.fr.jinja"),
    ),
    (
        "payment_refunded.en",
        include_str!("../../templates/mail/payment_refunded.en.jinja"),
    ),
    (
        "payment_refunded.de",
        include_str!("../../templates/mail/payment_refunded.de.jinja"),
    ),
    (
        "payment_refunded.fr",
        include_str!("../../templates/mail/payment_refunded.fr.jinja"),
    ),
    (
        "payment_reminder.en",
        include_str!("../../templates/mail/payment_reminder.en.jinja"),
    ),
    (
        "payment_reminder.de",
        include_str!("../../templates/mail/payment_reminder.de.jinja"),
    ),
    (
        "payment_reminder.fr",
        include_str!("../../templates/mail/payment_reminder.fr.jinja"),
    ),
    (
        "event_canceled.en",
        include_str!("../../templates/mail/event_canceled.en.jinja"),
    ),
    (
        "event_canceled.de",
        include_str!("../../templates/mail/event_canceled.de.jinja"),
    ),
    (
        "event_canceled.fr",
        include_str!("../../templates/mail/event_canceled.fr.jinja"),
    ),
    (
        "event_reminder.en",
        include_str!("../../templates/mail/event_reminder.en.jinja"),
    ),
    (
        "event_reminder.de",
        include_str!("../../templates/mail/event_reminder.de.jinja"),
    ),
    (
        "event_reminder.fr",
        include_str!("../../templates/mail/event_reminder.fr.jinja"),
    ),
    (
        "registration_canceled.en",
        include_str!("../../templates/mail/registration_canceled.en.jinja"),
    ),
    (
        "registration_canceled.de",
        include_str!("../../templates/mail/registration_canceled.de.jinja"),
    ),
    (
        "registration_canceled.fr",
        include_str!("../../templates/mail/registration_canceled.fr.jinja"),
    ),
    (
        "event_changed.en",
        include_str!("../../templates/mail/event_changed.en.jinja"),
    ),
    (
        "event_changed.de",
        include_str!("../../templates/mail/event_changed.de.jinja"),
    ),
    (
        "event_changed.fr",
        include_str!("../../templates/mail/event_changed.fr.jinja"),
    ),
    (
        "payment_due.en",
        include_str!("../../templates/mail/payment_due.en.jinja"),
    ),
    (
        "payment_due.de",
        include_str!("../../templates/mail/payment_due.de.jinja"),
    ),
    (
        "payment_due.fr",
        include_str!("../../templates/mail/payment_due.fr.jinja"),
    ),
    (
        "broadcast.en",
        include_str!("../../templates/mail/broadcast.en.jinja"),
    ),
    (
        "broadcast.de",
        include_str!("../../templates/mail/broadcast.de.jinja"),
    ),
    (
        "broadcast.fr",
        include_str!("../../templates/mail/broadcast.fr.jinja"),
    ),
];

/// The loaded, checked templates.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The built-in templates, each replaced by `{name}.jinja` in `dir` if there is one;
    /// checked by rendering every kind in every locale. The error names the template.
    pub fn load(dir: Option<&Path>) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| format!("template syntax: {e}"))?,
        );
        // `{% extends "_layout" %}` in `x.txt` means `_layout.txt` (and `.html` likewise).
        env.set_path_join_callback(|name, parent| match parent.rsplit_once('.') {
            Some((_, part)) if !name.contains('.') => format!("{name}.{part}").into(),
            _ => name.into(),
        });
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Custom(HTML.into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        for (name, built_in) in BUILT_IN {
            let source = match dir.map(|d| d.join(format!("{name}.jinja"))) {
                Some(path) if path.exists() => std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?,
                _ => (*built_in).to_owned(),
            };
            for part in ["txt", "html"] {
                env.add_template_owned(format!("{name}.{part}"), source.clone())
                    .map_err(|e| format!("template {name}: {e:#}"))?;
            }
        }
        let templates = Self { env };
        templates.check()?;
        Ok(templates)
    }

    /// Renders every kind in every locale with a sample message, once with everything a
    /// message of its kind can have and once with the least it can have (a verification has
    /// no event; a registration may have no venue, no ticket type name, no attendee name).
    fn check(&self) -> Result<(), String> {
        for message in samples() {
            for facts in sample_facts(&message.kind) {
                for locale in LOCALES {
                    self.render_in(
                        &message,
                        &facts,
                        locale,
                        "https://tickets.example",
                        "example",
                    )
                    .map_err(|e| format!("{} ({locale}): {e}", message.kind.as_str()))?;
                }
            }
        }
        Ok(())
    }

    /// `message` rendered in the recipient's locale (its language, if there are templates
    /// for it; else English).
    pub fn render(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        base_url: &str,
        domain: &str,
    ) -> Result<Rendered, String> {
        let locale = pick_locale(facts.locale.as_deref());
        self.render_in(message, facts, locale, base_url, domain)
    }

    /// `message`'s subject, text and link as [`Self::render`] gives them, without rendering
    /// the HTML (the in-app inbox and SMS show no HTML).
    pub fn render_notice(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        base_url: &str,
        domain: &str,
    ) -> Result<Notice, String> {
        let locale = pick_locale(facts.locale.as_deref());
        self.parts(message, facts, locale, (base_url, domain), false)
            .map(|(notice, _)| notice)
    }

    fn render_in(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        locale: &str,
        base_url: &str,
        domain: &str,
    ) -> Result<Rendered, String> {
        let (notice, html) = self.parts(message, facts, locale, (base_url, domain), true)?;
        Ok(Rendered {
            subject: notice.subject,
            text: notice.text,
            html: html.unwrap_or_default(),
            link: notice.link,
        })
    }

    /// The subject, text and link, and the HTML if `html`.
    fn parts(
        &self,
        message: &OutboxMessage,
        facts: &Facts,
        locale: &str,
        (base_url, domain): (&str, &str),
        html: bool,
    ) -> Result<(Notice, Option<String>), String> {
        let context = Context::new(message, facts, locale, base_url, domain);
        let name = format!("{}.{locale}", message.kind.as_str());
        let context = minijinja::Value::from(minijinja::value::Serde(&context));
        let block = |file: &str, part: &str| -> Result<String, String> {
            let template = self
                .env
                .get_template(&format!("{name}.{file}"))
                .map_err(|e| format!("{e:#}"))?;
            template
                .render(minijinja::context! { part => part, ..context.clone() })
                .map_err(|e| format!("{name}, {part}: {e:#}"))
        };
        let subject = block("txt", "subject")?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        if subject.is_empty() {
            return Err(format!("{name}: the subject is empty"));
        }
        let notice = Notice {
            subject,
            text: block("txt", "text")?.trim().to_owned() + "\n",
            link: super::link(base_url, message),
        };
        let html = if html {
            Some(block("html", "html")?)
        } else {
            None
        };
        Ok((notice, html))
    }
}

/// The locale whose templates a recipient gets: the language of `wanted` (`de-AT` → `de`)
/// if there are templates for it, else English.
pub fn pick_locale(wanted: Option<&str>) -> &'static str {
    let language = wanted
        .and_then(|w| w.split(['-', '_']).next())
        .map(str::to_ascii_lowercase);
    LOCALES
        .into_iter()
        .find(|l| Some(*l) == language.as_deref())
        .unwrap_or(LOCALES[0])
}

/// The facts a message of `kind` may come with: the most and the least.
fn sample_facts(kind: &MessageKind) -> Vec<Facts> {
    if kind.registration_id().is_none() && !matches!(kind, MessageKind::EventCanceled { .. }) {
        return vec![Facts::default()];
    }
    let full = full_facts();
    let mut least = full.clone();
    least.attendee_name = None;
    least.refund = None;
    least.ticket_type = None;
    if let Some(event) = &mut least.event {
        event.venue = None;
        event.branding = None;
    }
    vec![full, least]
}

fn full_facts() -> Facts {
    let at = Utc
        .with_ymd_and_hms(2030, 6, 1, 18, 0, 0)
        .single()
        .unwrap_or_default();
    Facts {
        locale: None,
        event: Some(super::EventFacts {
            id: EventId(uuid::Uuid::nil()),
            title: "Sample <Event> & Co".into(),
            venue: Some("Hall 1".into()),
            starts_at: at,
            ends_at: at + chrono::Duration::hours(3),
            version: 1,
            branding: Some(engine::model::EventBranding {
                name: Some("Sample & Brand".into()),
                logo_url: Some("https://cdn.example.com/logo.png".into()),
                color: Some("#7c2d12".into()),
            }),
        }),
        attendee_name: Some("Ann O'Neil".into()),
        tickets: vec![TicketLine {
            number: "A1-000001".into(),
            code: "T1SAMPLE".into(),
        }],
        ticket_type: Some("Standard".into()),
        unsubscribe_url: None,
        broadcast: Some(super::BroadcastFacts {
            subject: "Doors open at 17:00 <early>".into(),
            body: "Dear all,\n\nthe doors open an hour early.\nBring your ticket & a smile.".into(),
        }),
        refund: Some((8_500, "EUR".into())),
        due: Some(super::DueFacts {
            amount_minor: 17_000,
            currency: "EUR".into(),
            quantity: 2,
            held_until: at - chrono::Duration::days(30),
        }),
    }
}

/// A message of every kind (the check renders each).
fn samples() -> Vec<OutboxMessage> {
    let at = Utc
        .with_ymd_and_hms(2030, 5, 1, 12, 0, 0)
        .single()
        .unwrap_or_default();
    let mut kinds = vec![
        MessageKind::VerifyEmail {
            token: "token".into(),
            expires_at: at,
        },
        MessageKind::ResetPassword {
            token: "token".into(),
            expires_at: at,
        },
    ];
    kinds.extend(registration_kinds(at));
    kinds
        .into_iter()
        .map(|kind| OutboxMessage::new("ann@example.com", None, kind, at))
        .collect()
}

/// A message of every kind about a registration or an event.
fn registration_kinds(at: chrono::DateTime<Utc>) -> Vec<MessageKind> {
    let registration_id = RegistrationId(uuid::Uuid::nil());
    let event_id = EventId(uuid::Uuid::nil());
    vec![
        MessageKind::Tickets {
            event_title: "Sample".into(),
            registration_id,
            tickets: vec![TicketLine {
                number: "A1-000001".into(),
                code: "T1SAMPLE".into(),
            }],
        },
        MessageKind::Confirmed {
            event_id,
            registration_id,
        },
        MessageKind::WaitlistOffer {
            registration_id,
            quantity: 2,
            expires_at: at,
        },
        MessageKind::PaymentRefunded {
            registration_id,
            amount_minor: 8500,
            currency: "EUR".into(),
            cause: RefundCause::LatePayment,
        },
        MessageKind::PaymentReminder {
            registration_id,
            amount_minor: 8500,
            currency: "EUR".into(),
            reference: Some("RF18539007547034".into()),
            deadline: at,
        },
        MessageKind::EventCanceled {
            event_id,
            event_title: "Sample".into(),
            registration_id: Some(registration_id),
            tickets_revoked: true,
        },
        MessageKind::EventReminder {
            event_id,
            registration_id,
            offset_secs: 3_600,
        },
        MessageKind::Broadcast {
            event_id,
            registration_id,
            broadcast_id: uuid::Uuid::nil(),
        },
        MessageKind::EventChanged {
            event_id,
            registration_id,
            version: 4,
            changed: vec!["starts_at".into(), "venue".into()],
        },
        MessageKind::RegistrationCanceled {
            event_id,
            registration_id,
        },
        MessageKind::PaymentDue {
            event_id,
            registration_id,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_templates_load_and_render_every_kind_in_every_locale() {
        let t = Templates::load(None).expect("built-in templates are valid");
        let facts = full_facts();
        for message in samples() {
            let r = t
                .render(&message, &facts, "https://front.example/", "mail.example")
                .unwrap();
            assert!(!r.subject.contains('\n'), "{}", r.subject);
            assert!(r.html.starts_with("<!DOCTYPE html>"), "{}", r.html);
            if let Some(link) = &r.link {
                assert!(link.starts_with("https://front.example/"), "{link}");
                assert!(
                    r.text.contains(link.as_str()),
                    "{}: {}",
                    message.kind.as_str(),
                    r.text
                );
            }
            let notice = t
                .render_notice(&message, &facts, "https://front.example/", "mail.example")
                .unwrap();
            assert_eq!(
                (notice.subject, notice.text, notice.link),
                (r.subject, r.text, r.link),
                "the inbox's and SMS's parts are the mail's"
            );
        }
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = Templates::load(None).unwrap();
        let message = &samples()[3]; // confirmed
        let r = t
            .render(message, &full_facts(), "https://f.example", "m.example")
            .unwrap();
        assert!(
            r.html.contains("Sample &lt;Event&gt; &amp; Co"),
            "{}",
            r.html
        );
        assert!(!r.html.contains("<Event>"));
        assert!(r.text.contains("Sample <Event> & Co"), "{}", r.text);
        assert!(r.subject.contains("Sample <Event> & Co"), "{}", r.subject);
        assert!(
            r.html.contains("cid:ticket-A1-000001@m.example"),
            "{}",
            r.html
        );
    }

    #[test]
    fn the_locale_falls_back_to_the_language_then_english() {
        assert_eq!(pick_locale(Some("de-AT")), "de");
        assert_eq!(pick_locale(Some("FR")), "fr");
        assert_eq!(pick_locale(Some("pt-BR")), "en");
        assert_eq!(pick_locale(None), "en");
        let t = Templates::load(None).unwrap();
        let mut facts = full_facts();
        facts.locale = Some("de-DE".into());
        let r = t
            .render(&samples()[3], &facts, "https://f.example", "m.example")
            .unwrap();
        assert!(r.subject.contains("Bestätigt"), "{}", r.subject);
    }

    #[test]
    fn a_template_with_an_unknown_variable_fails_at_load_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("confirmed.fr.jinja"),
            "{% extends \"_layout\" %}{% block subject %}{{ evnt.title }}{% endblock %}",
        )
        .unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert!(e.contains("confirmed (fr)"), "{e}");
        assert!(e.contains("evnt") || e.contains("undefined"), "{e}");
    }

    #[test]
    fn a_token_template_using_the_event_fails_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verify_email.de.jinja"),
            "{% extends \"_layout\" %}{% block subject %}{{ event.title }}{% endblock %}",
        )
        .unwrap();
        let e = Templates::load(Some(dir.path())).unwrap_err();
        assert!(e.contains("verify_email (de)"), "{e}");
    }

    #[test]
    fn a_replacement_template_is_used() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("verify_email.en.jinja"),
            "{% extends \"_layout\" %}{% block subject %}Hello from us{% endblock %}\
             {% block text %}{{ link }}{% endblock %}{% block body %}<a href=\"{{ link }}\">go</a>{% endblock %}",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let r = t
            .render(&samples()[0], &full_facts(), "https://f.example", "m")
            .unwrap();
        assert_eq!(r.subject, "Hello from us");
    }
}
