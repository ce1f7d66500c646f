//! Domain records and commands of events and ticket types, with their validation.
//!
//! Validation lives in the constructors (`NewEvent::validate`, ...): a command that
//! reaches an actor is already known to be well-formed, and every problem of a command
//! is reported at once as a list of `FieldError`s.

use crate::error::{DomainError, FieldError};
use crate::ids::{EventId, PoolId, TicketTypeId, UserId};
pub use crate::values::{EventStatus, IdempotencyToken, RegistrationStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest title of an event or name of a ticket type, in characters.
pub const TITLE_LEN_MAX: usize = 200;
/// Longest event description, in characters.
pub const DESCRIPTION_LEN_MAX: usize = 10_000;
/// Longest venue, category, gate or attendee name, in characters.
pub const SHORT_TEXT_LEN_MAX: usize = 200;
/// Longest e-mail address (RFC 5321 path limit).
pub const EMAIL_LEN_MAX: usize = 254;
/// Shortest and longest hold TTL an event may configure, in seconds.
pub const HOLD_TTL_SECS_MIN: u32 = 1;
/// Upper bound of a hold TTL: one day.
pub const HOLD_TTL_SECS_MAX: u32 = 86_400;
/// Largest capacity of one pool.
pub const POOL_CAPACITY_MAX: u32 = 10_000_000;
/// Largest `max_per_order` of a ticket type.
pub const PER_ORDER_MAX: u16 = 100;
/// Largest price of one ticket in minor units (10 billion major units of a 2-decimal currency).
pub const PRICE_MINOR_MAX: i64 = 1_000_000_000_000;
/// Earliest time an event (or a ticket type's sales window) may name: years before are typos
/// or probes (year 0, the Unix epoch), never a real event.
pub const EVENT_TIME_MIN: &str = "2000-01-01T00:00:00Z";
/// Latest: far enough for any real booking, and every time keeps a four-digit year (RFC 3339
/// has no room for year 10000).
pub const EVENT_TIME_MAX: &str = "2199-12-31T23:59:59Z";

/// A ticket type: what a buyer picks. It draws seats from one pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketType {
    /// Its id.
    pub id: TicketTypeId,
    /// Display name.
    pub name: String,
    /// Price of one seat in minor units of `currency`.
    pub price_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// The pool the seats come from.
    pub pool_id: PoolId,
    /// Most seats one registration may hold.
    pub max_per_order: u16,
    /// Most live seats (held + confirmed) one account may have of this ticket type.
    #[serde(default)]
    pub max_per_account: Option<u16>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Fewest seats one registration may hold (default 1).
    #[serde(default = "one")]
    pub min_per_order: u16,
    /// No holds before (sales start).
    #[serde(default)]
    pub sales_start: Option<DateTime<Utc>>,
    /// No holds from then on (sales end).
    #[serde(default)]
    pub sales_end: Option<DateTime<Utc>>,
}

fn one() -> u16 {
    1
}

impl TicketType {
    /// Whether it may be bought at `now`, and if not, why.
    pub fn on_sale(&self, now: DateTime<Utc>) -> Result<(), DomainError> {
        if let Some(start) = self.sales_start
            && now < start
        {
            return Err(DomainError::NotOnSale {
                reason: "not_started",
                at: start,
            });
        }
        if let Some(end) = self.sales_end
            && now >= end
        {
            return Err(DomainError::NotOnSale {
                reason: "ended",
                at: end,
            });
        }
        Ok(())
    }
}

impl EventRecord {
    /// Whether `tt` may be bought at `now`: its own sales window, and never once the event
    /// has ended (a published event from the past sells nothing).
    pub fn on_sale(&self, tt: &TicketType, now: DateTime<Utc>) -> Result<(), DomainError> {
        tt.on_sale(now)?;
        if now >= self.ends_at {
            return Err(DomainError::NotOnSale {
                reason: "ended",
                at: self.ends_at,
            });
        }
        Ok(())
    }
}

/// A pool (quota) of seats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDef {
    /// Its id.
    pub id: PoolId,
    /// Seats it can give out in total (held + confirmed).
    pub capacity: u32,
}

/// The durable state of an event: written by its `EventActor`, read by queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Its id.
    pub id: EventId,
    /// Title.
    pub title: String,
    /// Free text.
    pub description: String,
    /// Where it happens.
    pub venue: Option<String>,
    /// A category for filtering (`music`, `conference`, ...).
    pub category: Option<String>,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// How long a hold lasts before it expires, in seconds.
    pub hold_ttl_secs: u32,
    /// Lifecycle status.
    pub status: EventStatus,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// Ticket types, in creation order.
    pub ticket_types: Vec<TicketType>,
    /// Pools, in creation order.
    pub pools: Vec<PoolDef>,
    /// The sequence number of the last journaled event of its stream.
    pub version: u64,
    /// The account that created it (organizer or admin); it manages the event.
    #[serde(default)]
    pub owner: Option<UserId>,
    /// Accounts with a role in this event (co-organizers and scanning staff), sorted by id.
    #[serde(default)]
    pub members: Vec<(UserId, EventRole)>,
    /// Id of the event's current ticket-signing key (1, 2, ...): ticket codes are signed with
    /// it, and only codes signed with it are accepted; rotating it re-keys every ticket.
    #[serde(default = "first_ticket_key")]
    pub ticket_key: u8,
    /// Check-in lists (besides the default list: every ticket type, any gate, no re-entry).
    #[serde(default)]
    pub checkin_lists: Vec<CheckInList>,
}

/// Most accounts with a role in one event.
pub const EVENT_MEMBERS_MAX: usize = 1_000;

/// Most check-in lists per event.
pub const CHECKIN_LISTS_MAX: usize = 50;
/// Most gates per check-in list.
pub const LIST_GATES_MAX: usize = 100;

/// A check-in list: which ticket types enter, at which gates, when, and whether a ticket may
/// enter again after an exit. A ticket is admitted once per list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckInList {
    /// Its id.
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

fn first_ticket_key() -> u8 {
    1
}

/// A role an account holds in one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventRole {
    /// Manages the event like its owner.
    Organizer,
    /// Checks tickets in at this event, nothing else.
    Staff,
}

impl EventRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventRole::Organizer => "organizer",
            EventRole::Staff => "staff",
        }
    }
}

impl EventRecord {
    /// The role `user` holds in this event, if any (the owner counts as an organizer).
    pub fn role_of(&self, user: UserId) -> Option<EventRole> {
        if self.owner == Some(user) {
            return Some(EventRole::Organizer);
        }
        self.members
            .binary_search_by_key(&user, |(u, _)| *u)
            .ok()
            .map(|i| self.members[i].1)
    }

    /// The ticket type with this id.
    pub fn ticket_type(&self, id: TicketTypeId) -> Option<&TicketType> {
        self.ticket_types.iter().find(|t| t.id == id)
    }

    /// The pool with this id.
    pub fn pool(&self, id: PoolId) -> Option<&PoolDef> {
        self.pools.iter().find(|p| p.id == id)
    }
}

/// A validated command to create an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Title, 1..=200 characters.
    pub title: String,
    /// Description, up to 10,000 characters.
    pub description: String,
    /// Venue.
    pub venue: Option<String>,
    /// Category.
    pub category: Option<String>,
    /// Start.
    pub starts_at: DateTime<Utc>,
    /// End, after the start.
    pub ends_at: DateTime<Utc>,
    /// Hold TTL in seconds; the engine default when `None`.
    pub hold_ttl_secs: Option<u32>,
}

/// A validated partial update of an event. `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventPatch {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New venue.
    pub venue: Option<String>,
    /// New category.
    pub category: Option<String>,
    /// New start.
    pub starts_at: Option<DateTime<Utc>>,
    /// New end.
    pub ends_at: Option<DateTime<Utc>>,
    /// New hold TTL.
    pub hold_ttl_secs: Option<u32>,
}

/// A validated command to create a ticket type, with a new pool or a shared one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTicketType {
    /// Name.
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
    /// Sales start.
    pub sales_start: Option<DateTime<Utc>>,
    /// Sales end.
    pub sales_end: Option<DateTime<Utc>>,
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

/// The person a registration is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendee {
    /// Full name.
    pub name: String,
    /// E-mail address, stored lower-cased.
    pub email: String,
}

/// A one-line text: between `min` and `max` characters, none of them a control character
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

fn check_ttl(errors: &mut Vec<FieldError>, ttl: Option<u32>) {
    if let Some(ttl) = ttl
        && !(HOLD_TTL_SECS_MIN..=HOLD_TTL_SECS_MAX).contains(&ttl)
    {
        errors.push(FieldError::new(
            "hold_ttl_secs",
            format!("must be between {HOLD_TTL_SECS_MIN} and {HOLD_TTL_SECS_MAX}"),
        ));
    }
}

fn finish(errors: Vec<FieldError>) -> Result<(), DomainError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(errors))
    }
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
        finish(errors)
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
        if let (Some(start), Some(end)) = (self.sales_start, self.sales_end)
            && end <= start
        {
            errors.push(FieldError::new("sales_end", "must be after sales_start"));
        }
        finish(errors)
    }
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

/// Domain events of an event stream. Applied by `EventRecord::apply` both live and on replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventEvent {
    /// The event was created as a draft.
    Created {
        /// Its id.
        id: EventId,
        /// Its settings.
        settings: NewEvent,
        /// The TTL in force (settings or engine default).
        hold_ttl_secs: u32,
        /// When.
        at: DateTime<Utc>,
        /// The client's idempotency key, if it sent one.
        #[serde(default)]
        idempotency: Option<IdempotencyToken>,
        /// Who created it.
        #[serde(default)]
        owner: Option<UserId>,
    },
    /// Settings changed.
    Updated {
        /// What changed.
        patch: EventPatch,
        /// When.
        at: DateTime<Utc>,
    },
    /// An account was given a role in the event (or a new one), or lost it (`role: None`).
    MemberSet {
        /// The account.
        user: UserId,
        /// Its role from now on; none removes it.
        role: Option<EventRole>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The ticket-signing key was rotated: codes signed with older keys stop working.
    TicketKeyRotated {
        /// The new key's id.
        key: u8,
        /// When.
        at: DateTime<Utc>,
    },
    /// A check-in list was created.
    CheckInListCreated {
        /// The list.
        list: CheckInList,
        /// When.
        at: DateTime<Utc>,
    },
    /// Put on sale.
    Published {
        /// When.
        at: DateTime<Utc>,
    },
    /// Called off.
    Canceled {
        /// When.
        at: DateTime<Utc>,
    },
    /// Over.
    Completed {
        /// When.
        at: DateTime<Utc>,
    },
    /// A ticket type was added, with its new pool if it did not share one.
    TicketTypeCreated {
        /// The ticket type.
        ticket_type: TicketType,
        /// The pool created for it, if any.
        new_pool: Option<PoolDef>,
        /// When.
        at: DateTime<Utc>,
        /// The client's idempotency key, if it sent one.
        #[serde(default)]
        idempotency: Option<IdempotencyToken>,
    },
}

impl EventRecord {
    /// The record an event stream starts with, from its first event.
    pub fn from_created(event: &EventEvent) -> Option<Self> {
        match event {
            EventEvent::Created {
                id,
                settings,
                hold_ttl_secs,
                at,
                owner,
                ..
            } => Some(EventRecord {
                id: *id,
                title: settings.title.clone(),
                description: settings.description.clone(),
                venue: settings.venue.clone(),
                category: settings.category.clone(),
                starts_at: settings.starts_at,
                ends_at: settings.ends_at,
                hold_ttl_secs: *hold_ttl_secs,
                status: EventStatus::Draft,
                created_at: *at,
                updated_at: *at,
                ticket_types: Vec::new(),
                pools: Vec::new(),
                version: 1,
                owner: *owner,
                members: Vec::new(),
                ticket_key: 1,
                checkin_lists: Vec::new(),
            }),
            _ => None,
        }
    }

    /// Applies a later event of the stream (sequence `seq`).
    pub fn apply(&mut self, seq: u64, event: &EventEvent) {
        match event {
            EventEvent::Created { .. } => {}
            EventEvent::Updated { patch, at } => {
                let p = patch.clone();
                if let Some(v) = p.title {
                    self.title = v;
                }
                if let Some(v) = p.description {
                    self.description = v;
                }
                if let Some(v) = p.venue {
                    self.venue = Some(v);
                }
                if let Some(v) = p.category {
                    self.category = Some(v);
                }
                if let Some(v) = p.starts_at {
                    self.starts_at = v;
                }
                if let Some(v) = p.ends_at {
                    self.ends_at = v;
                }
                if let Some(v) = p.hold_ttl_secs {
                    self.hold_ttl_secs = v;
                }
                self.updated_at = *at;
            }
            EventEvent::MemberSet { user, role, at } => {
                match (self.members.binary_search_by_key(user, |(u, _)| *u), role) {
                    (Ok(i), Some(role)) => self.members[i].1 = *role,
                    (Ok(i), None) => {
                        self.members.remove(i);
                    }
                    (Err(i), Some(role)) => self.members.insert(i, (*user, *role)),
                    (Err(_), None) => {}
                }
                self.updated_at = *at;
            }
            EventEvent::TicketKeyRotated { key, at } => {
                self.ticket_key = *key;
                self.updated_at = *at;
            }
            EventEvent::CheckInListCreated { list, at } => {
                self.checkin_lists.push(list.clone());
                self.updated_at = *at;
            }
            EventEvent::Published { at } => self.transition(EventStatus::Published, *at),
            EventEvent::Canceled { at } => self.transition(EventStatus::Canceled, *at),
            EventEvent::Completed { at } => self.transition(EventStatus::Completed, *at),
            EventEvent::TicketTypeCreated {
                ticket_type,
                new_pool,
                at,
                ..
            } => {
                if let Some(pool) = new_pool {
                    self.pools.push(*pool);
                }
                self.ticket_types.push(ticket_type.clone());
                self.updated_at = *at;
            }
        }
        self.version = seq;
    }

    fn transition(&mut self, to: EventStatus, at: DateTime<Utc>) {
        self.status = to;
        self.updated_at = at;
    }

    /// Whether the lifecycle allows `to` from the current status.
    pub fn check_transition(
        &self,
        to: EventStatus,
        action: &'static str,
    ) -> Result<(), DomainError> {
        let allowed = matches!(
            (self.status, to),
            (EventStatus::Draft, EventStatus::Published)
                | (EventStatus::Draft, EventStatus::Canceled)
                | (EventStatus::Published, EventStatus::Canceled)
                | (EventStatus::Published, EventStatus::Completed)
        );
        if allowed {
            Ok(())
        } else {
            Err(DomainError::InvalidTransition {
                from: self.status,
                action,
            })
        }
    }
}
