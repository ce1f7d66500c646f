//! Ports: what the engine needs from durable storage, implemented by the `storage` crate.
//!
//! Writes go through the [`JournalHandle`], a bounded channel to the group-commit writer.
//! An [`AppendRequest`] carries one actor's events with the sequence number its first event
//! must get, an optional snapshot, and a [`Completion`] that the writer calls once the batch
//! holding the events is durable (or failed). Actors never wait for it: they hand the reply
//! port to the completion and go on deciding (pipelining).
//!
//! Reads go through the [`Store`] trait: stream replay for recovery, and the read models
//! (events, registrations, tickets) that the writer updates in the same atomic batch as the
//! events they derive from.

use crate::accounts::{UserEvent, UserRecord};
pub use crate::failure::{Cause, JournalError, StoreError};
use crate::ids::{EventId, PoolId, RegistrationId, StreamId, TicketId, TicketTypeId, UserId};
use crate::message::OutboxMessage;
use crate::model::{Attendee, EventEvent, EventRecord, EventStatus, RegistrationStatus};
use crate::pool::{Admission, PoolEvent, PoolState};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

mod checkin_stats;
pub use checkin_stats::{CheckInStats, STATS_GATES_MAX, STATS_MINUTES_MAX};

/// An event of any stream, as journaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEvent {
    /// An event-stream event.
    Event(EventEvent),
    /// A pool-stream event.
    Pool(PoolEvent),
    /// A user-stream event.
    User(UserEvent),
    /// A ledger-stream event (an organizer's invoices).
    Ledger(crate::invoice::document::LedgerEvent),
    /// A statements-stream event (an event's bank-statement exceptions).
    Statements(crate::statement::StatementEvent),
}

/// A snapshot of an actor's state at the sequence number of the last event of its append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Snapshot {
    /// The event record (also the event read model).
    Event(Box<EventRecord>),
    /// A pool's full state.
    Pool(Box<PoolState>),
    /// A user account (also the user read model).
    User(Box<UserRecord>),
}

/// Called exactly once by the journal writer with the fate of an append.
pub struct Completion(Box<dyn FnOnce(Result<(), JournalError>) + Send>);

impl Completion {
    /// Wraps a callback.
    pub fn new(f: impl FnOnce(Result<(), JournalError>) + Send + 'static) -> Self {
        Self(Box::new(f))
    }

    /// A completion that sends the result on a oneshot channel.
    pub fn channel() -> (Self, oneshot::Receiver<Result<(), JournalError>>) {
        let (tx, rx) = oneshot::channel();
        (Self::new(move |r| drop(tx.send(r))), rx)
    }

    /// Reports the result.
    pub fn complete(self, result: Result<(), JournalError>) {
        (self.0)(result)
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

/// One actor's events to make durable.
#[derive(Debug)]
pub struct AppendRequest {
    /// The stream (the actor's own).
    pub stream: StreamId,
    /// Incarnation of the writing actor ([`next_incarnation`]; 0 for one-off writes such as
    /// an event's creation). Once an append of an incarnation is refused for a sequence
    /// conflict, every later append of that incarnation to that stream is refused too, so a
    /// stale copy of an actor cannot slip a write in after losing the race.
    pub writer: u64,
    /// Sequence number of the first event; with no events, the stream's next number
    /// (the request is then a barrier that completes after earlier appends).
    pub first_seq: u64,
    /// The events, in order.
    pub events: Vec<StreamEvent>,
    /// State after the last event, when the actor decided to snapshot.
    pub snapshot: Option<Snapshot>,
    /// Messages to send once the events are durable, committed in the same batch (the
    /// transactional outbox; see `outbox`).
    pub outbox: Vec<OutboxMessage>,
    /// Called once the batch is durable or failed.
    pub done: Completion,
}

impl AppendRequest {
    /// Whether the writer is an actor incarnation, fenced on a conflict (see
    /// [`AppendRequest::fenced`]); otherwise an unfenced, optimistic writer.
    pub fn is_fenced(&self) -> bool {
        self.writer != 0
    }

    /// A barrier on `stream`: no events; completes after every earlier append of the stream
    /// (with [`AppendRequest::with_outbox`], it carries messages by themselves).
    pub fn barrier(stream: StreamId, done: Completion) -> Self {
        Self::unfenced(stream, 0, Vec::new(), done)
    }

    /// `events` from the actor incarnation `writer` ([`next_incarnation`]): once one of its
    /// appends is refused for a sequence conflict, every later one is too.
    pub fn fenced(
        writer: u64,
        stream: StreamId,
        first_seq: u64,
        events: Vec<StreamEvent>,
        done: Completion,
    ) -> Self {
        Self {
            stream,
            writer,
            first_seq,
            events,
            snapshot: None,
            outbox: Vec::new(),
            done,
        }
    }

    /// `events` from a writer without an incarnation (a one-off write, or one that retries
    /// on a conflict itself): only the sequence number protects the stream.
    pub fn unfenced(
        stream: StreamId,
        first_seq: u64,
        events: Vec<StreamEvent>,
        done: Completion,
    ) -> Self {
        Self::fenced(0, stream, first_seq, events, done)
    }

    /// With the state after the events, as the stream's snapshot.
    pub fn with_snapshot(mut self, snapshot: Option<Snapshot>) -> Self {
        self.snapshot = snapshot;
        self
    }

    /// With messages committed in the same batch.
    pub fn with_outbox(mut self, outbox: Vec<OutboxMessage>) -> Self {
        self.outbox = outbox;
        self
    }
}

/// A process-unique incarnation number for an actor that writes a stream.
pub fn next_incarnation() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Sending side of the journal's bounded queue.
#[derive(Clone, Debug)]
pub struct JournalHandle {
    tx: mpsc::Sender<AppendRequest>,
}

/// Receiving side, owned by the journal writer.
pub type JournalReceiver = mpsc::Receiver<AppendRequest>;

impl JournalHandle {
    /// A journal queue holding at most `capacity` appends.
    pub fn channel(capacity: usize) -> (Self, JournalReceiver) {
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx }, rx)
    }

    /// Queues an append, waiting while the queue is full. When the journal has stopped,
    /// the completion is called with `Stopped`.
    pub async fn append(&self, request: AppendRequest) {
        if let Err(mpsc::error::SendError(request)) = self.tx.send(request).await {
            request.done.complete(Err(JournalError::Stopped));
        }
    }

    /// Appends and waits until durable.
    pub async fn append_and_wait(
        &self,
        stream: StreamId,
        first_seq: u64,
        events: Vec<StreamEvent>,
        snapshot: Option<Snapshot>,
        outbox: Vec<OutboxMessage>,
    ) -> Result<(), JournalError> {
        let (done, rx) = Completion::channel();
        self.append(
            AppendRequest::unfenced(stream, first_seq, events, done)
                .with_snapshot(snapshot)
                .with_outbox(outbox),
        )
        .await;
        rx.await.unwrap_or(Err(JournalError::Stopped))
    }

    /// Appends queued in the channel, not yet taken by the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// A registration as read by queries (the registration read model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationView {
    pub id: RegistrationId,
    pub event_id: EventId,
    /// The pool the seats come from.
    pub pool_id: PoolId,
    pub ticket_type_id: TicketTypeId,
    /// Seats.
    pub quantity: u16,
    /// Who it is for.
    pub attendee: Attendee,
    /// The signed-in account that holds it.
    #[serde(default)]
    pub user_id: Option<UserId>,
    /// Current status.
    pub status: RegistrationStatus,
    /// When it was created (held).
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// When the hold runs (or ran) out.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub expires_at: DateTime<Utc>,
    /// When the status last changed.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
    /// Tickets, once confirmed.
    pub tickets: Vec<TicketId>,
    /// When the tickets were issued (the confirmation).
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The pool's number of the first ticket (the others follow in seat order).
    #[serde(default)]
    pub first_ticket_number: u64,
    /// What it costs, decided with the hold (`None`: held before prices were recorded).
    #[serde(default)]
    pub price: Option<crate::pricing::Price>,
    /// The waiting-list place it was offered to, if it is an offer.
    #[serde(default)]
    pub waitlist_entry: Option<crate::ids::WaitlistEntryId>,
    /// Its payment, once one was started (the pool's record, applied from the same events).
    #[serde(default)]
    pub payment: Option<crate::pool::payment::Payment>,
}

/// What a new hold starts from: the fields the hold decides. Everything else about its
/// registration view follows from being new ([`RegistrationView::held`]).
#[derive(Clone, Debug)]
pub struct NewHold {
    pub id: RegistrationId,
    pub event_id: EventId,
    pub pool_id: PoolId,
    pub ticket_type_id: TicketTypeId,
    pub quantity: u16,
    pub attendee: Attendee,
    pub user_id: Option<UserId>,
    pub expires_at: DateTime<Utc>,
    /// When it was held.
    pub at: DateTime<Utc>,
    pub price: Option<crate::pricing::Price>,
    /// The waiting-list place, when the hold is that place's offer.
    pub waitlist_entry: Option<crate::ids::WaitlistEntryId>,
}

impl RegistrationView {
    /// The view of a hold just made: held, no tickets, created and updated at `hold.at`. The
    /// engine answers a hold with it, and the read model stores the same.
    pub fn held(hold: NewHold) -> Self {
        Self {
            id: hold.id,
            event_id: hold.event_id,
            pool_id: hold.pool_id,
            ticket_type_id: hold.ticket_type_id,
            quantity: hold.quantity,
            attendee: hold.attendee,
            user_id: hold.user_id,
            status: RegistrationStatus::Held,
            created_at: hold.at,
            expires_at: hold.expires_at,
            updated_at: hold.at,
            tickets: Vec::new(),
            confirmed_at: None,
            first_ticket_number: 0,
            price: hold.price,
            waitlist_entry: hold.waitlist_entry,
            payment: None,
        }
    }
}

/// Where a waiting-list place stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistStatus {
    /// In line.
    Waiting,
    /// Seats are reserved for it (a held registration).
    Offered,
    /// The offer was confirmed.
    Claimed,
    /// The offer ran out; the seats went on.
    Passed,
    /// The offer was canceled by its holder.
    Declined,
    /// It left the line.
    Left,
}

impl WaitlistStatus {
    /// The API name.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitlistStatus::Waiting => "waiting",
            WaitlistStatus::Offered => "offered",
            WaitlistStatus::Claimed => "claimed",
            WaitlistStatus::Passed => "passed",
            WaitlistStatus::Declined => "declined",
            WaitlistStatus::Left => "left",
        }
    }
}

/// A waiting-list place as read by queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitlistView {
    pub id: crate::ids::WaitlistEntryId,
    pub event_id: EventId,
    /// The pool whose seats it waits for.
    pub pool_id: PoolId,
    /// Who waits.
    pub user_id: UserId,
    /// For which ticket type.
    pub ticket_type_id: TicketTypeId,
    /// Seats wanted.
    pub quantity: u16,
    /// Where it stands.
    pub status: WaitlistStatus,
    /// The registration offered to it.
    pub registration_id: Option<RegistrationId>,
    /// When it joined.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub joined_at: DateTime<Utc>,
    /// When an offer runs out.
    #[serde(default, with = "chrono::serde::ts_milliseconds_option")]
    pub offer_expires_at: Option<DateTime<Utc>>,
    /// When it last changed.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
}

/// A ticket as read by queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    pub id: TicketId,
    /// The registration it belongs to.
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    pub pool_id: PoolId,
    pub ticket_type_id: TicketTypeId,
    /// Seat index in the registration.
    pub index: u16,
    /// The pool's sequence number of the ticket (1, 2, ...; see `gateway::ticket_code` for
    /// the printed form).
    #[serde(default)]
    pub number: u64,
    /// When it was issued.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub issued_at: DateTime<Utc>,
    /// First admission, if any.
    pub admission: Option<Admission>,
}

/// Where a ticket's scans go: what of it never changes once issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketRoute {
    /// The ticket.
    pub id: TicketId,
    pub registration_id: RegistrationId,
    pub event_id: EventId,
    /// The pool that decides its scans.
    pub pool_id: PoolId,
    pub ticket_type_id: TicketTypeId,
    /// Its seat index in the registration.
    pub index: u16,
}

impl From<&TicketView> for TicketRoute {
    fn from(t: &TicketView) -> Self {
        Self {
            id: t.id,
            registration_id: t.registration_id,
            event_id: t.event_id,
            pool_id: t.pool_id,
            ticket_type_id: t.ticket_type_id,
            index: t.index,
        }
    }
}

/// A revoked ticket, as scanners catch up on them: each event's revocations are numbered
/// 1, 2, 3, ... (`version`) in the order they happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Its place in the event's revocation list.
    pub version: u64,
    pub ticket_id: TicketId,
    /// Its registration (canceled).
    pub registration_id: RegistrationId,
    /// When.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub revoked_at: DateTime<Utc>,
}

/// Filters of the event list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this status.
    pub status: Option<EventStatus>,
    /// Case-insensitive substring of title, description, venue.
    pub text: Option<String>,
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
    /// Exactly this category.
    pub category: Option<String>,
    /// Upcoming (ends in the future) or past (ended).
    pub when: Option<When>,
    /// Paging cursor: events after this id.
    pub after: Option<EventId>,
    /// Page size.
    pub limit: usize,
}

/// Time filter of the event list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Not yet ended.
    Upcoming,
    /// Ended.
    Past,
}

impl EventQuery {
    /// Whether `event` passes the filters at time `now` (the cursor is applied by the store).
    pub fn matches(&self, event: &EventRecord, now: DateTime<Utc>) -> bool {
        let text_ok = self.text.as_deref().is_none_or(|q| {
            let q = q.to_lowercase();
            event.title.to_lowercase().contains(&q)
                || event.description.to_lowercase().contains(&q)
                || event
                    .venue
                    .as_deref()
                    .is_some_and(|v| v.to_lowercase().contains(&q))
        });
        self.status.is_none_or(|s| s == event.status)
            && text_ok
            && self.from.is_none_or(|from| event.starts_at >= from)
            && self.to.is_none_or(|to| event.starts_at < to)
            && self
                .category
                .as_deref()
                .is_none_or(|c| event.category.as_deref() == Some(c))
            && self.when.is_none_or(|w| match w {
                When::Upcoming => event.ends_at > now,
                When::Past => event.ends_at <= now,
            })
    }
}

/// A page of results and the cursor for the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

/// A voucher as read by queries (its uses follow the registrations that redeemed it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoucherView {
    pub event_id: EventId,
    /// The pool it is decided in.
    pub pool_id: PoolId,
    /// What it does, its uses and whether it is active.
    pub voucher: crate::pool::voucher::Voucher,
    /// When it was created.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub updated_at: DateTime<Utc>,
}

/// Durable reads. Implementations are synchronous and fast (point reads and short scans);
/// long replays are run by callers on blocking threads.
pub trait Store: Send + Sync + 'static {
    /// The event read model (also the event stream's latest snapshot).
    fn event(&self, id: EventId) -> Result<Option<EventRecord>, StoreError>;
    /// Events passing `query`, ordered by id (creation time).
    fn events(
        &self,
        query: &EventQuery,
        now: DateTime<Utc>,
    ) -> Result<Page<EventRecord, EventId>, StoreError>;
    /// The latest snapshot of a pool.
    fn pool_snapshot(&self, id: PoolId) -> Result<Option<PoolState>, StoreError>;
    /// Calls `f` with every event of `stream` whose sequence number is above `after_seq`, in order.
    fn replay(
        &self,
        stream: StreamId,
        after_seq: u64,
        f: &mut dyn FnMut(u64, StreamEvent) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;
    /// The registration read model.
    fn registration(&self, id: RegistrationId) -> Result<Option<RegistrationView>, StoreError>;
    /// Registrations of an event, by id order, optionally of one status.
    fn registrations_by_event(
        &self,
        event: EventId,
        status: Option<RegistrationStatus>,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError>;
    /// Registrations held by a signed-in account, by id order.
    fn registrations_by_user(
        &self,
        user: UserId,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError>;
    /// Registrations for an attendee e-mail (lower-case), by id order.
    fn registrations_by_email(
        &self,
        email: &str,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> Result<Page<RegistrationView, RegistrationId>, StoreError>;
    /// What an idempotency key (digest) created in `scope` (the event, or the nil id for
    /// event creation): the id of the registration, ticket type or event, with the digest of
    /// the request that created it. Written in the same batch as what it created.
    fn idempotent(
        &self,
        scope: EventId,
        key: [u8; 16],
    ) -> Result<Option<(uuid::Uuid, [u8; 16])>, StoreError>;
    /// The ticket read model.
    fn ticket(&self, id: TicketId) -> Result<Option<TicketView>, StoreError>;
    /// A user account (the user stream's snapshot, written with its events).
    fn user(&self, id: UserId) -> Result<Option<UserRecord>, StoreError>;
    /// The account of a normalised e-mail address.
    fn user_by_email(&self, email: &str) -> Result<Option<UserId>, StoreError>;
    /// The event's check-in statistics.
    fn checkin_stats(&self, event: EventId) -> Result<CheckInStats, StoreError>;
    /// A waiting-list place.
    fn waitlist_entry(
        &self,
        id: crate::ids::WaitlistEntryId,
    ) -> Result<Option<WaitlistView>, StoreError>;
    /// The event's voucher `code`.
    fn voucher(&self, event: EventId, code: &str) -> Result<Option<VoucherView>, StoreError>;
    /// The event's vouchers in code order, after `after`.
    fn vouchers(
        &self,
        event: EventId,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VoucherView, String>, StoreError>;
    /// The event's revocations after `since` (at most `limit`, in version order), and the
    /// event's latest revocation version.
    fn revocations(
        &self,
        event: EventId,
        since: u64,
        limit: usize,
    ) -> Result<(Vec<Revocation>, u64), StoreError>;
    /// The oldest `limit` messages of the outbox, each with its id (a message that cannot be
    /// decoded comes back as its error, so the relay can set it aside).
    #[allow(clippy::type_complexity)]
    fn outbox(
        &self,
        limit: usize,
    ) -> Result<Vec<(uuid::Uuid, Result<OutboxMessage, StoreError>)>, StoreError>;
    /// How many messages the outbox holds (counted once, at start).
    fn outbox_len(&self) -> Result<usize, StoreError>;
    /// Provider calls to make (refunds decided and not yet answered, payments to cancel), at
    /// most `limit`.
    fn provider_jobs(&self, limit: usize) -> Result<Vec<crate::payment::ProviderJob>, StoreError>;
    /// Removes a done provider job that no pool decision records (a cancellation).
    fn provider_job_done(&self, id: uuid::Uuid) -> Result<(), StoreError>;
    /// The registration whose payment the provider knows as `reference`.
    fn registration_by_payment_ref(
        &self,
        provider: crate::payment::Provider,
        reference: &str,
    ) -> Result<Option<RegistrationId>, StoreError>;
    /// Removes a delivered message (not in the journal's batch: a removal lost in a crash
    /// only sends the message again).
    fn outbox_remove(&self, id: uuid::Uuid) -> Result<(), StoreError>;
    /// Moves a message the relay gave up on from the outbox to the dead letters (atomically).
    fn outbox_dead_letter(&self, id: uuid::Uuid) -> Result<(), StoreError>;
    /// Replaces a message in the outbox by its deliveries (and keeps the message for them),
    /// atomically: a crash repeats the whole fan-out or none of it.
    fn fan_out(
        &self,
        message: &OutboxMessage,
        deliveries: &[crate::notify::Delivery],
    ) -> Result<(), StoreError>;
    /// Queued deliveries of `channel` due by `until`, earliest first, at most `limit`, each
    /// with its message (or the error reading it); messages in `skip` (in flight) are passed
    /// over without being read.
    #[allow(clippy::type_complexity)]
    fn deliveries_due(
        &self,
        channel: crate::notify::Channel,
        until: DateTime<Utc>,
        limit: usize,
        skip: &std::collections::HashSet<uuid::Uuid>,
    ) -> Result<Vec<(crate::notify::Delivery, Result<OutboxMessage, StoreError>)>, StoreError>;
    /// When the channel's earliest queued delivery is due.
    fn next_delivery_due(
        &self,
        channel: crate::notify::Channel,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// How many deliveries of `channel` are queued, and when the oldest message among the
    /// next due was created.
    fn delivery_backlog(
        &self,
        channel: crate::notify::Channel,
    ) -> Result<(usize, Option<DateTime<Utc>>), StoreError>;
    /// Records a delivery's new state if the stored row is still `before` (as the caller read
    /// it; its queue entry is replaced); `false` when someone changed it first (nothing
    /// written). A finished delivery drops the message once none of its deliveries needs it
    /// (a dead one keeps it, for a replay).
    fn delivery_update(
        &self,
        before: &crate::notify::Delivery,
        after: &crate::notify::Delivery,
    ) -> Result<bool, StoreError>;
    /// Removes up to `limit` deliveries that finished (sent, skipped, ...) before `before`;
    /// how many.
    fn prune_deliveries(&self, before: DateTime<Utc>, limit: usize) -> Result<usize, StoreError>;
    /// The reminder schedule's earliest entry.
    fn next_reminder(&self) -> Result<Option<crate::notify::ScheduledReminder>, StoreError>;
    /// Queues the reminders of up to `limit` of the event's confirmed registrations after the
    /// entry's cursor (deliveries on `channels`, planned `now`), and moves the cursor past
    /// them, or removes the entry once none is left, in one write; how many were queued.
    fn reminder_step(
        &self,
        reminder: &crate::notify::ScheduledReminder,
        limit: usize,
        channels: crate::notify::Channels,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;
    /// Removes an entry from the schedule.
    fn reminder_drop(&self, reminder: &crate::notify::ScheduledReminder) -> Result<(), StoreError>;
    /// The oldest broadcast still queueing its messages.
    fn next_broadcast(&self) -> Result<Option<crate::broadcast::Broadcast>, StoreError>;
    /// Queues the broadcast's messages to up to `limit` of the event's confirmed
    /// registrations after its cursor (deliveries on `channels`, planned `now`) and moves the
    /// cursor past them, or finishes the broadcast once none is left, in one write; how many
    /// were queued.
    fn broadcast_step(
        &self,
        broadcast: &crate::broadcast::Broadcast,
        limit: usize,
        channels: crate::notify::Channels,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError>;
    /// One broadcast of an event.
    fn broadcast(
        &self,
        event: EventId,
        id: uuid::Uuid,
    ) -> Result<Option<crate::broadcast::Broadcast>, StoreError>;
    /// One delivery.
    fn delivery(
        &self,
        message: uuid::Uuid,
        channel: crate::notify::Channel,
    ) -> Result<Option<crate::notify::Delivery>, StoreError>;
    /// A message kept for its deliveries.
    fn notify_message(&self, id: uuid::Uuid) -> Result<Option<OutboxMessage>, StoreError>;
    /// Dead deliveries after `after` (message id, channel), in message order, at most `limit`.
    fn dead_deliveries(
        &self,
        after: Option<(uuid::Uuid, crate::notify::Channel)>,
        limit: usize,
    ) -> Result<Vec<crate::notify::Delivery>, StoreError>;
    /// Removes a dead delivery (and its message, once nothing else needs it).
    fn delivery_discard(
        &self,
        message: uuid::Uuid,
        channel: crate::notify::Channel,
    ) -> Result<bool, StoreError>;
    /// The last number of an organizer's ledger (0: nothing issued yet).
    fn ledger_head(&self, organizer: UserId) -> Result<u64, StoreError>;
    /// The documents issued for a registration, in number order.
    fn documents(
        &self,
        registration: RegistrationId,
    ) -> Result<Vec<crate::invoice::document::Document>, StoreError>;
    /// An organizer's documents numbered after `after`, in number order, at most `limit`.
    fn ledger(
        &self,
        organizer: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::invoice::document::Document>, StoreError>;
    /// Invoice jobs (registrations that may be due a document), oldest first, at most `limit`:
    /// each job's id and registration.
    fn invoice_jobs(&self, limit: usize) -> Result<Vec<(uuid::Uuid, RegistrationId)>, StoreError>;
    /// Removes a job the invoice relay has done.
    fn invoice_job_done(&self, id: uuid::Uuid) -> Result<(), StoreError>;
    /// The last sequence number of an event's statements stream (0: none).
    fn statements_head(&self, event: EventId) -> Result<u64, StoreError>;
    /// One statement exception of an event, by its line id.
    fn statement_exception(
        &self,
        event: EventId,
        line_id: &str,
    ) -> Result<Option<crate::statement::Exception>, StoreError>;
    /// An event's statement exceptions, in line-id order.
    fn statement_exceptions(
        &self,
        event: EventId,
    ) -> Result<Vec<crate::statement::Exception>, StoreError>;
}
