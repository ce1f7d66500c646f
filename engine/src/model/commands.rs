//! Commands that create and change events and ticket types, each validated as a whole
//! (`validate` reports every problem at once) before it reaches an actor.

use super::validation::{check_event_time, check_long_text, check_text, check_ttl, finish};
use super::{
    DESCRIPTION_LEN_MAX, EventRecord, PER_ORDER_MAX, POOL_CAPACITY_MAX, PRICE_MINOR_MAX,
    SHORT_TEXT_LEN_MAX, TITLE_LEN_MAX,
};
use crate::error::{DomainError, FieldError};
use crate::ids::PoolId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A validated command to create an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Title, 1..=200 characters.
    pub title: String,
    /// Description, up to 10,000 characters.
    pub description: String,
    pub venue: Option<String>,
    pub category: Option<String>,
    pub starts_at: DateTime<Utc>,
    /// End, after the start.
    pub ends_at: DateTime<Utc>,
    /// Hold TTL in seconds; the engine default when `None`.
    pub hold_ttl_secs: Option<u32>,
    /// Until then a buyer who cancels a paid registration is refunded in full (none: buyers
    /// cannot cancel paid registrations themselves).
    #[serde(default)]
    pub refund_until: Option<DateTime<Utc>>,
    /// Who bank transfers for this event pay, and their deadline (none: the server's).
    #[serde(default)]
    pub bank_transfer: Option<BankTransferSettings>,
    /// The seller on its invoices, and whether prices include VAT.
    #[serde(default)]
    pub invoicing: Option<InvoiceSettings>,
    /// When attendees are reminded, in seconds before the start (none: the server's
    /// default; empty: never).
    #[serde(default)]
    pub reminder_offsets_secs: Option<Vec<u32>>,
    /// How its messages look (none: plain).
    #[serde(default)]
    pub branding: Option<EventBranding>,
    /// The language of its messages to people who chose none (guests); none: English.
    #[serde(default)]
    pub locale: Option<String>,
}

/// How an event's messages look: the name and logo above them and the colour of their
/// headings and buttons.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBranding {
    /// The name shown above the message (the organizer's or the series' brand), 1..=100
    /// characters; none: the event's title.
    #[serde(default)]
    pub name: Option<String>,
    /// An `https` URL of the logo image, up to 500 characters.
    #[serde(default)]
    pub logo_url: Option<String>,
    /// The accent colour, `#rrggbb`.
    #[serde(default)]
    pub color: Option<String>,
}

/// Longest logo URL.
pub const LOGO_URL_LEN_MAX: usize = 500;

impl EventBranding {
    fn check(&self, errors: &mut Vec<FieldError>) {
        if let Some(name) = &self.name {
            check_text(errors, "branding.name", name, 1, 100);
        }
        if let Some(url) = &self.logo_url {
            let ok = url.len() <= LOGO_URL_LEN_MAX
                && url.strip_prefix("https://").is_some_and(|rest| {
                    !rest.is_empty()
                        && !rest.starts_with('/')
                        && rest.chars().all(|c| {
                            c.is_ascii_graphic()
                                && !matches!(c, '"' | '\\' | '<' | '>' | '\'' | '`')
                        })
                });
            if !ok {
                errors.push(FieldError::new(
                    "branding.logo_url",
                    "must be an https URL of at most 500 characters, without spaces or quotes",
                ));
            }
        }
        if let Some(color) = &self.color {
            let ok = color.len() == 7
                && color.starts_with('#')
                && color[1..].chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                errors.push(FieldError::new("branding.color", "must be #rrggbb"));
            }
        }
    }
}

/// A language tag (`de`, `fr-CH`, `pt-BR`): a 2–3 letter language and up to three subtags
/// of 1–8 letters or digits, at most 35 characters.
pub fn valid_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&language.len())
        && language.chars().all(|c| c.is_ascii_alphabetic())
        && parts.enumerate().all(|(i, p)| {
            i < 3 && (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric())
        })
}

fn check_look(
    errors: &mut Vec<FieldError>,
    branding: Option<&EventBranding>,
    locale: Option<&String>,
) {
    if let Some(branding) = branding {
        branding.check(errors);
    }
    if let Some(locale) = locale
        && !valid_locale(locale)
    {
        errors.push(FieldError::new(
            "locale",
            "must be a language tag such as de or fr-CH",
        ));
    }
}

/// Most reminders per event.
pub const REMINDERS_MAX: usize = 5;
/// Earliest and latest reminder before the start.
pub const REMINDER_OFFSET_SECS: std::ops::RangeInclusive<u32> = 60..=30 * 86_400;

/// Reminder offsets: at most five, each a minute to thirty days, all different.
fn check_reminders(errors: &mut Vec<FieldError>, offsets: Option<&Vec<u32>>) {
    let Some(offsets) = offsets else {
        return;
    };
    let field = "reminder_offsets_secs";
    if offsets.len() > REMINDERS_MAX {
        errors.push(FieldError::new(field, "must have at most 5 entries"));
    }
    if offsets.iter().any(|o| !REMINDER_OFFSET_SECS.contains(o)) {
        errors.push(FieldError::new(
            field,
            "each must be 60..=2592000 (a minute to 30 days)",
        ));
    }
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != offsets.len() {
        errors.push(FieldError::new(field, "must not repeat an offset"));
    }
}

/// An event's invoicing settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceSettings {
    /// The seller's (legal) name, 1..=140 characters.
    pub seller_name: String,
    /// The seller's postal address, at most 6 lines of 1..=140 characters.
    pub seller_address: Vec<String>,
    /// The seller's VAT identification number, up to 32 characters (may be empty).
    pub seller_vat_id: String,
    /// Whether ticket prices include VAT (gross) or VAT is added to them (net).
    pub prices_include_vat: bool,
}

impl InvoiceSettings {
    fn check(&self, errors: &mut Vec<FieldError>) {
        check_text(errors, "invoicing.seller_name", &self.seller_name, 1, 140);
        if self.seller_address.len() > 6 {
            errors.push(FieldError::new(
                "invoicing.seller_address",
                "must have at most 6 lines",
            ));
        }
        for line in &self.seller_address {
            check_text(errors, "invoicing.seller_address", line, 1, 140);
        }
        check_text(
            errors,
            "invoicing.seller_vat_id",
            &self.seller_vat_id,
            0,
            32,
        );
    }
}

/// An event's bank-transfer settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankTransferSettings {
    /// The payee's name, 1..=140 characters.
    pub payee: String,
    /// IBAN: 15..=34 letters and digits, country code and check digits first.
    pub iban: String,
    /// BIC: 8 or 11 letters and digits, or empty.
    pub bic: String,
    /// The seats are held this long from the start of the transfer, 1..=720 hours.
    pub deadline_hours: u32,
}

impl BankTransferSettings {
    fn check(&self, errors: &mut Vec<FieldError>) {
        check_text(errors, "bank_transfer.payee", &self.payee, 1, 140);
        let iban_ok = (15..=34).contains(&self.iban.len())
            && self
                .iban
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
            && self.iban.as_bytes()[..2].iter().all(u8::is_ascii_uppercase)
            && self.iban.as_bytes()[2..4].iter().all(u8::is_ascii_digit);
        if !iban_ok {
            errors.push(FieldError::new(
                "bank_transfer.iban",
                "must be an IBAN: 15 to 34 upper-case letters and digits, country and check digits first",
            ));
        }
        let bic_ok = self.bic.is_empty()
            || ([8, 11].contains(&self.bic.len())
                && self
                    .bic
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
        if !bic_ok {
            errors.push(FieldError::new(
                "bank_transfer.bic",
                "must be 8 or 11 upper-case letters and digits, or empty",
            ));
        }
        if !(1..=720).contains(&self.deadline_hours) {
            errors.push(FieldError::new(
                "bank_transfer.deadline_hours",
                "must be between 1 and 720",
            ));
        }
    }
}

/// A validated partial update of an event. `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub venue: Option<String>,
    pub category: Option<String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// In seconds, `HOLD_TTL_SECS_MIN..=HOLD_TTL_SECS_MAX`.
    pub hold_ttl_secs: Option<u32>,
    /// The buyers' refund window's end.
    #[serde(default)]
    pub refund_until: Option<DateTime<Utc>>,
    /// The event's bank-transfer settings.
    #[serde(default)]
    pub bank_transfer: Option<BankTransferSettings>,
    /// The event's invoicing settings.
    #[serde(default)]
    pub invoicing: Option<InvoiceSettings>,
    /// When attendees are reminded, in seconds before the start (empty: never).
    #[serde(default)]
    pub reminder_offsets_secs: Option<Vec<u32>>,
    /// How its messages look (replaces the whole branding).
    #[serde(default)]
    pub branding: Option<EventBranding>,
    /// The language of its messages to people who chose none.
    #[serde(default)]
    pub locale: Option<String>,
}

impl EventPatch {
    /// The names of the settings it changes.
    pub fn fields(&self) -> Vec<String> {
        let set = [
            ("title", self.title.is_some()),
            ("description", self.description.is_some()),
            ("venue", self.venue.is_some()),
            ("category", self.category.is_some()),
            ("starts_at", self.starts_at.is_some()),
            ("ends_at", self.ends_at.is_some()),
            ("hold_ttl_secs", self.hold_ttl_secs.is_some()),
            ("refund_until", self.refund_until.is_some()),
            ("bank_transfer", self.bank_transfer.is_some()),
            ("invoicing", self.invoicing.is_some()),
            (
                "reminder_offsets_secs",
                self.reminder_offsets_secs.is_some(),
            ),
            ("branding", self.branding.is_some()),
            ("locale", self.locale.is_some()),
        ];
        set.into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(name, _)| name.to_owned())
            .collect()
    }
}

/// A validated command to create a ticket type, with a new pool or a shared one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicketType {
    pub name: String,
    /// Price per seat in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency code, upper case.
    pub currency: String,
    /// Where the seats come from.
    pub seats: SeatSource,
    /// Most seats per registration.
    pub max_per_order: u16,
    /// Most live seats per account.
    pub max_per_account: Option<u16>,
    /// Fewest seats per registration.
    pub min_per_order: u16,
    pub sales_start: Option<DateTime<Utc>>,
    pub sales_end: Option<DateTime<Utc>>,
    /// VAT rate in basis points (1900 is 19 %).
    pub vat_rate_bp: u16,
}

/// Where a new ticket type's seats come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeatSource {
    /// A new pool of this capacity.
    NewPool {
        /// Capacity of the new pool.
        capacity: u32,
    },
    /// An existing pool of the same event, shared with other ticket types.
    SharedPool(PoolId),
}

impl NewEvent {
    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        check_text(&mut errors, "title", &self.title, 1, TITLE_LEN_MAX);
        check_long_text(
            &mut errors,
            "description",
            &self.description,
            0,
            DESCRIPTION_LEN_MAX,
        );
        if let Some(venue) = &self.venue {
            check_text(&mut errors, "venue", venue, 0, SHORT_TEXT_LEN_MAX);
        }
        if let Some(category) = &self.category {
            check_text(&mut errors, "category", category, 1, SHORT_TEXT_LEN_MAX);
        }
        check_event_time(&mut errors, "starts_at", self.starts_at);
        check_event_time(&mut errors, "ends_at", self.ends_at);
        if self.ends_at <= self.starts_at {
            errors.push(FieldError::new("ends_at", "must be after starts_at"));
        }
        check_ttl(&mut errors, self.hold_ttl_secs);
        check_refund_until(&mut errors, self.refund_until, self.ends_at);
        if let Some(bank) = &self.bank_transfer {
            bank.check(&mut errors);
        }
        if let Some(invoicing) = &self.invoicing {
            invoicing.check(&mut errors);
        }
        check_reminders(&mut errors, self.reminder_offsets_secs.as_ref());
        check_look(&mut errors, self.branding.as_ref(), self.locale.as_ref());
        finish(errors)
    }
}

/// A refund window ends at a valid time, at the latest when the event does.
fn check_refund_until(
    errors: &mut Vec<FieldError>,
    until: Option<DateTime<Utc>>,
    ends_at: DateTime<Utc>,
) {
    if let Some(at) = until {
        check_event_time(errors, "refund_until", at);
        if at > ends_at {
            errors.push(FieldError::new("refund_until", "must not be after ends_at"));
        }
    }
}

impl EventPatch {
    /// Checks the fields it sets, and the start/end order against the current record.
    pub fn validate(&self, current: &EventRecord) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        if let Some(title) = &self.title {
            check_text(&mut errors, "title", title, 1, TITLE_LEN_MAX);
        }
        if let Some(description) = &self.description {
            check_long_text(
                &mut errors,
                "description",
                description,
                0,
                DESCRIPTION_LEN_MAX,
            );
        }
        if let Some(venue) = &self.venue {
            check_text(&mut errors, "venue", venue, 0, SHORT_TEXT_LEN_MAX);
        }
        if let Some(category) = &self.category {
            check_text(&mut errors, "category", category, 1, SHORT_TEXT_LEN_MAX);
        }
        if let Some(at) = self.starts_at {
            check_event_time(&mut errors, "starts_at", at);
        }
        if let Some(at) = self.ends_at {
            check_event_time(&mut errors, "ends_at", at);
        }
        let starts = self.starts_at.unwrap_or(current.starts_at);
        let ends = self.ends_at.unwrap_or(current.ends_at);
        if ends <= starts {
            errors.push(FieldError::new("ends_at", "must be after starts_at"));
        }
        check_ttl(&mut errors, self.hold_ttl_secs);
        check_refund_until(&mut errors, self.refund_until, ends);
        if let Some(bank) = &self.bank_transfer {
            bank.check(&mut errors);
        }
        if let Some(invoicing) = &self.invoicing {
            invoicing.check(&mut errors);
        }
        check_reminders(&mut errors, self.reminder_offsets_secs.as_ref());
        check_look(&mut errors, self.branding.as_ref(), self.locale.as_ref());
        finish(errors)
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == EventPatch::default()
    }
}

impl NewTicketType {
    /// Checks every field; all problems are reported together.
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut errors = Vec::new();
        check_text(&mut errors, "name", &self.name, 1, TITLE_LEN_MAX);
        if !(0..=PRICE_MINOR_MAX).contains(&self.price_minor) {
            errors.push(FieldError::new(
                "price_minor",
                format!("must be between 0 and {PRICE_MINOR_MAX}"),
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.push(FieldError::new(
                "currency",
                "must be an ISO 4217 code of three upper-case letters",
            ));
        }
        if let SeatSource::NewPool { capacity } = self.seats
            && !(1..=POOL_CAPACITY_MAX).contains(&capacity)
        {
            errors.push(FieldError::new(
                "capacity",
                format!("must be between 1 and {POOL_CAPACITY_MAX}"),
            ));
        }
        if !(1..=PER_ORDER_MAX).contains(&self.max_per_order) {
            errors.push(FieldError::new(
                "max_per_order",
                format!("must be between 1 and {PER_ORDER_MAX}"),
            ));
        }
        if self.max_per_account == Some(0) {
            errors.push(FieldError::new("max_per_account", "must be at least 1"));
        }
        if self.min_per_order < 1 || self.min_per_order > self.max_per_order {
            errors.push(FieldError::new(
                "min_per_order",
                "must be between 1 and max_per_order",
            ));
        }
        for (field, at) in [
            ("sales_start", self.sales_start),
            ("sales_end", self.sales_end),
        ] {
            if let Some(at) = at {
                check_event_time(&mut errors, field, at);
            }
        }
        if self.vat_rate_bp > crate::pricing::VAT_RATE_BP_MAX {
            errors.push(FieldError::new(
                "vat_rate_bp",
                format!(
                    "must be between 0 and {} (basis points: 1900 is 19 %)",
                    crate::pricing::VAT_RATE_BP_MAX
                ),
            ));
        }
        if let (Some(start), Some(end)) = (self.sales_start, self.sales_end)
            && end <= start
        {
            errors.push(FieldError::new("sales_end", "must be after sales_start"));
        }
        finish(errors)
    }
}
