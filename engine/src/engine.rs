//! The engine facade: what the gateway calls. It activates event actors on first use,
//! routes commands to the actor that owns the decision (through its admission gate, with a
//! timeout), and answers queries from the read models and published availability without
//! sending any message.

mod users;
mod vouchers;
mod waitlist;

pub use vouchers::{NewVoucher, normalize_code as normalize_voucher_code};
pub use waitlist::JoinWaitlist;

use crate::actors::event_actor::{EventActor, EventArgs, EventMsg};
use crate::actors::pool_actor::PoolMsg;
use crate::actors::root::{EVENT_ACTOR_PREFIX, RootActor};
use crate::actors::{Availability, Ctx, EventHandle, EventShared, Gate, Registry, call};
use crate::cache::ShardedCache;
use crate::clock::SharedClock;
use crate::config::EngineConfig;
use crate::error::{DomainError, EngineError, EngineResult, FieldError};
use crate::ids::{EventId, RegistrationId, StreamId, TicketId, TicketTypeId, UserId};
use crate::model::{
    Attendee, EventEvent, EventPatch, EventRecord, EventStatus, NewEvent, NewTicketType,
    RegistrationStatus, TicketType,
};
use crate::outbox::{MessageSink, OutboxGauge};
use crate::pool::scan::{Direction, ListRules, ScanResult};
use crate::pool::{
    Admission, GATE_LEN_MAX, HoldCommand, IdempotencyToken, PoolCommand, PoolOutcome, ScanCommand,
};
use crate::ports::{
    EventQuery, JournalHandle, Page, RegistrationView, Snapshot, Store, StreamEvent, TicketRoute,
    TicketView,
};
use ractor::{Actor, ActorRef};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use tokio::sync::{OnceCell, watch};

/// The scope of idempotency keys that belong to no event (event creation).
pub const GLOBAL_SCOPE: EventId = EventId(uuid::Uuid::nil());

/// What a hold answered: the registration, and whether it is an earlier one returned for a
/// retried idempotency key (nothing new was booked).
#[derive(Clone, Debug)]
pub struct Hold {
    /// The registration.
    pub view: RegistrationView,
    /// A retry's answer: the registration was made by an earlier request with the same key.
    pub replayed: bool,
}

/// A request to hold seats, as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct HoldRequest {
    /// The event.
    pub event_id: EventId,
    /// The ticket type.
    pub ticket_type_id: TicketTypeId,
    /// Seats wanted.
    pub quantity: i64,
    /// Attendee name, unvalidated.
    pub attendee_name: String,
    /// Attendee e-mail, unvalidated.
    pub attendee_email: String,
    /// The client's idempotency key and request digest.
    pub idempotency: Option<IdempotencyToken>,
    /// The signed-in account holding the seats.
    pub user_id: Option<UserId>,
    /// A voucher code to redeem, as typed.
    pub voucher: Option<String>,
}

/// A scan, as the gateway parsed it.
#[derive(Clone, Debug)]
pub struct ScanRequest {
    /// The event scanning.
    pub event_id: EventId,
    /// The ticket (from its verified code).
    pub ticket_id: TicketId,
    /// The check-in list (`None`: the default list).
    pub list_id: Option<crate::ids::CheckInListId>,
    /// Entry or exit.
    pub direction: Direction,
    /// The gate.
    pub gate: Option<String>,
    /// For an uploaded offline scan: when it was made.
    pub scanned_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The scanner's nonce (the same nonce is applied once).
    pub nonce: Option<[u8; 16]>,
}

/// Availability of one ticket type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketTypeAvailability {
    /// The ticket type.
    pub ticket_type: TicketType,
    /// Seats of its pool in total.
    pub capacity: u32,
    /// Seats held.
    pub held: u32,
    /// Seats confirmed.
    pub confirmed: u32,
    /// Seats set aside by vouchers.
    pub reserved: u32,
    /// Seats available to anyone.
    pub available: u32,
}

/// Availability of an event, with the version it was published at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventAvailability {
    /// The event.
    pub event_id: EventId,
    /// Its status.
    pub status: EventStatus,
    /// Grows with every change; clients drop snapshots older than one they have.
    pub version: u64,
    /// Per ticket type.
    pub ticket_types: Vec<TicketTypeAvailability>,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    ctx: Arc<Ctx>,
    root: ActorRef<()>,
    incarnation: Arc<AtomicU64>,
    /// E-mail addresses of sign-ups in flight (not durable yet): with the `users_by_email`
    /// read model, this makes e-mail addresses unique.
    signups: Arc<dashmap::DashSet<String>>,
    /// Voucher codes (`event/code`) being created: with the voucher read model, this makes
    /// codes unique per event.
    voucher_codes: Arc<dashmap::DashSet<String>>,
    /// Size of the outbox, and the relay's wake-up.
    outbox: Arc<OutboxGauge>,
    /// Stops the outbox relay.
    relay_stop: Arc<watch::Sender<bool>>,
    /// Routes of tickets scanned or prepared for doors (immutable once issued: never stale).
    routes: Arc<ShardedCache<TicketId, TicketRoute>>,
}

impl Engine {
    /// Starts the engine's root actor over `store` and `journal`, and the outbox relay that
    /// hands queued messages to `sink`.
    pub async fn start(
        config: EngineConfig,
        store: Arc<dyn Store>,
        journal: JournalHandle,
        clock: SharedClock,
        sink: Arc<dyn MessageSink>,
    ) -> Result<Self, EngineError> {
        let pending = store.outbox_len().map_err(storage)?;
        let outbox = Arc::new(OutboxGauge::new(pending, config.outbox.pending_max));
        let (relay_stop, relay_stopped) = watch::channel(false);
        tokio::spawn(crate::outbox::relay(
            store.clone(),
            sink,
            outbox.clone(),
            config.outbox.clone(),
            relay_stopped,
        ));
        let registry: Arc<Registry> = Arc::new(Registry::new());
        let (root, _) = Actor::spawn(None, RootActor, registry.clone())
            .await
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        let routes = Arc::new(ShardedCache::new(
            "ticket_routes",
            config.ticket_routes_cached_max,
        ));
        let ctx = Arc::new(Ctx {
            store,
            journal,
            clock,
            config,
            registry,
            feeds: Arc::new(crate::feeds::UserFeeds::default()),
            outbox: outbox.clone(),
        });
        Ok(Self {
            ctx,
            root,
            incarnation: Arc::new(AtomicU64::new(0)),
            signups: Arc::new(dashmap::DashSet::new()),
            voucher_codes: Arc::new(dashmap::DashSet::new()),
            outbox,
            relay_stop: Arc::new(relay_stop),
            routes,
        })
    }

    /// Activates every published event (recovering its pools and expiring holds that ran
    /// out while the server was down), and every canceled event not yet over (its pools end
    /// what a crash kept them from ending when it was canceled). Returns how many events were
    /// activated.
    pub async fn recover(&self) -> EngineResult<usize> {
        let mut activated = 0;
        for (status, when) in [
            (EventStatus::Published, None),
            (EventStatus::Canceled, Some(crate::ports::When::Upcoming)),
        ] {
            let mut after = None;
            loop {
                let query = EventQuery {
                    status: Some(status),
                    when,
                    after,
                    limit: 500,
                    ..EventQuery::default()
                };
                let page = self
                    .ctx
                    .store
                    .events(&query, self.ctx.clock.now())
                    .map_err(storage)?;
                for event in &page.items {
                    // One event that cannot be recovered must not keep every other one from
                    // selling: it is logged, counted, and activated again on its next use.
                    match self.handle(event.id).await {
                        Ok(_) => activated += 1,
                        Err(e) => {
                            metrics::counter!("engine_recovery_failures_total").increment(1);
                            tracing::error!(event = %event.id, error = %e, "event not recovered");
                        }
                    }
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        Ok(activated)
    }

    /// Stops every actor. Appends already queued still complete.
    pub async fn shutdown(&self) {
        let _ = self.relay_stop.send(true);
        self.root.stop_children(Some("shutdown".into()));
        self.root.stop(Some("shutdown".into()));
    }

    /// The clock the engine decides with.
    pub fn clock(&self) -> &SharedClock {
        &self.ctx.clock
    }

    /// Changes to `user`'s registrations (their ids), from now on, once durable. The channel is
    /// bounded ([`crate::feeds::FEED_CAPACITY`]): a listener that falls behind gets `Lagged`
    /// and should re-read the registrations.
    pub fn registration_updates(&self, user: UserId) -> crate::feeds::RegistrationFeed {
        self.ctx.feeds.subscribe(user)
    }

    /// Number of active (in-memory) events.
    pub fn active_events(&self) -> usize {
        self.ctx.registry.len()
    }

    // ---- events -------------------------------------------------------------------------

    /// Creates a draft event. A key seen before returns the event it created (or 422 for
    /// another request), durably: the key is recorded in the same batch as the event.
    pub async fn create_event(
        &self,
        new: NewEvent,
        owner: Option<UserId>,
        idempotency: Option<IdempotencyToken>,
    ) -> EngineResult<EventRecord> {
        if let Some(id) = self.idempotent(GLOBAL_SCOPE, idempotency)? {
            return self.event(EventId(id));
        }
        new.validate()?;
        let id = EventId::new();
        let hold_ttl_secs = new
            .hold_ttl_secs
            .unwrap_or(self.ctx.config.hold_ttl_default_secs);
        let event = EventEvent::Created {
            id,
            settings: new,
            hold_ttl_secs,
            at: self.ctx.clock.now(),
            idempotency,
            owner,
        };
        // Created cannot fail to produce a record: it is the Created variant.
        let record = EventRecord::from_created(&event)
            .ok_or_else(|| EngineError::Unavailable("bad event".into()))?;
        self.ctx
            .journal
            .append_and_wait(
                StreamId::Event(id),
                1,
                vec![StreamEvent::Event(event)],
                Some(Snapshot::Event(Box::new(record.clone()))),
                Vec::new(),
            )
            .await
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        metrics::counter!("engine_events_created_total").increment(1);
        Ok(record)
    }

    /// Changes an event's settings.
    pub async fn update_event(&self, id: EventId, patch: EventPatch) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::Update(patch, r)
        })
        .await
    }

    /// Gives `user` a role in an event (co-organizer or staff), or removes it (`None`).
    pub async fn set_event_member(
        &self,
        id: EventId,
        user: UserId,
        role: Option<crate::model::EventRole>,
    ) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::SetMember(user, role, r)
        })
        .await
    }

    /// Rotates the event's ticket-signing key: every ticket's code changes, and codes signed
    /// with an older key are refused from now on.
    pub async fn rotate_ticket_key(&self, id: EventId) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::RotateTicketKey(r)
        })
        .await
    }

    /// Publishes, cancels or completes an event.
    pub async fn transition_event(
        &self,
        id: EventId,
        to: EventStatus,
    ) -> EngineResult<EventRecord> {
        let h = self.handle(id).await?;
        call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::Transition(to, r)
        })
        .await
    }

    /// Adds a ticket type to an event.
    pub async fn create_ticket_type(
        &self,
        id: EventId,
        new: NewTicketType,
        idempotency: Option<IdempotencyToken>,
    ) -> EngineResult<(EventRecord, TicketType)> {
        if let Some(tt) = self.idempotent(id, idempotency)? {
            let record = self.event(id)?;
            let ticket_type = record
                .ticket_type(TicketTypeId(tt))
                .cloned()
                .ok_or(DomainError::TicketTypeNotFound)?;
            return Ok((record, ticket_type));
        }
        new.validate()?;
        let h = self.handle(id).await?;
        let (record, tt) = call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::CreateTicketType(new, idempotency, r)
        })
        .await?;
        let ticket_type = record
            .ticket_type(tt)
            .cloned()
            .ok_or(DomainError::TicketTypeNotFound)?;
        Ok((record, ticket_type))
    }

    /// An event, from its read model.
    pub fn event(&self, id: EventId) -> EngineResult<EventRecord> {
        self.ctx
            .store
            .event(id)
            .map_err(storage)?
            .ok_or(DomainError::EventNotFound.into())
    }

    /// Events passing `query`.
    pub fn events(&self, query: &EventQuery) -> EngineResult<Page<EventRecord, EventId>> {
        self.ctx
            .store
            .events(query, self.ctx.clock.now())
            .map_err(storage)
    }

    /// Current availability of an event's ticket types. Sends no message.
    pub async fn availability(&self, id: EventId) -> EngineResult<EventAvailability> {
        let h = self.handle(id).await?;
        let snapshot = h.shared.availability.borrow().clone();
        Ok(availability_view(&h.shared.record(), &snapshot))
    }

    /// A receiver that changes whenever the event's availability does. Holding it keeps the
    /// event active.
    pub async fn subscribe(&self, id: EventId) -> EngineResult<AvailabilityFeed> {
        let h = self.handle(id).await?;
        Ok(AvailabilityFeed {
            rx: h.shared.availability.subscribe(),
            shared: Arc::downgrade(&h.shared),
        })
    }

    /// Every scan decided at the event from now on (once durable), for scanners that keep
    /// their local state current. Bounded: a listener that falls behind gets `Lagged`. Ends
    /// (`Closed`) when the event is passivated or restarts: subscribe again.
    pub async fn subscribe_scans(
        &self,
        id: EventId,
    ) -> EngineResult<tokio::sync::broadcast::Receiver<crate::pool::scan::ScanNotice>> {
        let h = self.handle(id).await?;
        Ok(h.shared.scans.subscribe())
    }

    // ---- registrations ------------------------------------------------------------------

    /// Holds seats. Returns the registration and whether it is an earlier one returned for a
    /// retried idempotency key.
    pub async fn hold(&self, req: HoldRequest) -> EngineResult<Hold> {
        let h = self.handle(req.event_id).await?;
        // A key seen before (durably, for any ticket type of this event) answers with its
        // registration, or 422 if the request differs. Concurrent first uses of one key are
        // decided by the pool's own map (same ticket type) or the gateway's in-flight marker.
        if let Some(id) = self.idempotent(req.event_id, req.idempotency)? {
            return Ok(Hold {
                view: self.registration(RegistrationId(id))?,
                replayed: true,
            });
        }
        let record = h.shared.record();
        let (hold, pool_id) = self.hold_command(&record, req)?;
        let command = PoolCommand::Hold(Box::new(hold.clone()));
        let outcome = self.call_pool(&h, pool_id, command).await;
        let outcome = self.explain_voucher_refusal(outcome, &hold)?;
        self.held(outcome, hold, pool_id)
    }

    /// Validates a hold request against the event (every problem at once) and makes the
    /// pool's command; with the ticket type's pool.
    fn hold_command(
        &self,
        record: &EventRecord,
        req: HoldRequest,
    ) -> EngineResult<(HoldCommand, crate::ids::PoolId)> {
        let mut errors = Vec::new();
        let ticket_type = record.ticket_type(req.ticket_type_id);
        match ticket_type {
            None => errors.push(FieldError::new(
                "ticket_type_id",
                "no such ticket type in this event",
            )),
            Some(tt)
                if req.quantity < i64::from(tt.min_per_order)
                    || req.quantity > i64::from(tt.max_per_order) =>
            {
                errors.push(FieldError::new(
                    "quantity",
                    format!(
                        "must be between {} and {} (the ticket type's min_per_order and \
                         max_per_order)",
                        tt.min_per_order, tt.max_per_order
                    ),
                ))
            }
            Some(_) => {}
        }
        let voucher = match &req.voucher {
            None => None,
            Some(code) => {
                let code = vouchers::normalize_code(code);
                if code.is_none() {
                    errors.push(FieldError::new("voucher", "not a voucher code"));
                }
                code
            }
        };
        let attendee = Attendee::new(&req.attendee_name, &req.attendee_email).map_err(|mut e| {
            errors.append(&mut e);
            errors.clone()
        });
        let (Some(tt), Ok(attendee), true) = (ticket_type, attendee, errors.is_empty()) else {
            return Err(DomainError::Validation(errors).into());
        };
        record.on_sale(tt, self.ctx.clock.now())?;
        let hold = HoldCommand {
            registration_id: RegistrationId::new(),
            event_id: req.event_id,
            ticket_type_id: tt.id,
            // Checked above against max_per_order, which is at most PER_ORDER_MAX.
            quantity: req.quantity as u16,
            attendee,
            user_id: req.user_id,
            max_per_account: tt.max_per_account,
            ttl: chrono::Duration::seconds(i64::from(record.hold_ttl_secs)),
            idempotency: req.idempotency,
            unit_price_minor: tt.price_minor,
            currency: tt.currency.clone(),
            voucher,
        };
        Ok((hold, tt.pool_id))
    }

    /// A voucher code the pool does not know may be one another pool of the event knows: it
    /// is then for other ticket types, and the refusal says so.
    fn explain_voucher_refusal(
        &self,
        outcome: EngineResult<PoolOutcome>,
        hold: &HoldCommand,
    ) -> EngineResult<PoolOutcome> {
        match (outcome, &hold.voucher) {
            (
                Err(EngineError::Domain(DomainError::VoucherNotValid { reason: "unknown" })),
                Some(code),
            ) if self
                .ctx
                .store
                .voucher(hold.event_id, code)
                .map_err(storage)?
                .is_some() =>
            {
                Err(DomainError::VoucherNotValid {
                    reason: "wrong_ticket_type",
                }
                .into())
            }
            (outcome, _) => outcome,
        }
    }

    /// The answer to a decided hold: a replay's registration as it is now, or the new one as
    /// the read model got it in the same durable batch.
    fn held(
        &self,
        outcome: PoolOutcome,
        hold: HoldCommand,
        pool_id: crate::ids::PoolId,
    ) -> EngineResult<Hold> {
        match outcome {
            PoolOutcome::Held {
                registration_id,
                replayed: true,
                ..
            } => Ok(Hold {
                view: self.registration(registration_id)?,
                replayed: true,
            }),
            PoolOutcome::Held {
                registration_id,
                status,
                expires_at,
                at,
                replayed: false,
                price,
            } => {
                let view = RegistrationView {
                    id: registration_id,
                    event_id: hold.event_id,
                    pool_id,
                    ticket_type_id: hold.ticket_type_id,
                    quantity: hold.quantity,
                    attendee: hold.attendee,
                    user_id: hold.user_id,
                    status,
                    created_at: at,
                    expires_at,
                    updated_at: at,
                    tickets: vec![],
                    confirmed_at: None,
                    first_ticket_number: 0,
                    price,
                    waitlist_entry: None,
                };
                Ok(Hold {
                    view,
                    replayed: false,
                })
            }
            _ => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// Confirms a hold; issues one ticket per seat. Confirming a confirmed registration
    /// returns it unchanged.
    pub async fn confirm(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        let view = match self
            .registration_command(id, PoolCommand::Confirm(id))
            .await
        {
            Err(EngineError::Domain(DomainError::InvalidRegistrationState {
                status: RegistrationStatus::Confirmed,
                ..
            })) => self.registration(id),
            other => other.and_then(|_| self.registration(id)),
        }?;
        // A cancel that came right after the confirm (or after the earlier confirm this one
        // repeats) won: the caller is not handed tickets that are already revoked.
        if view.status != RegistrationStatus::Confirmed {
            return Err(DomainError::InvalidRegistrationState {
                status: view.status,
                action: "confirm",
            }
            .into());
        }
        Ok(view)
    }

    /// Cancels a hold or a confirmed registration; its seats return to the pool.
    pub async fn cancel_registration(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        self.registration_command(id, PoolCommand::Cancel(id))
            .await?;
        self.registration(id)
    }

    async fn registration_command(
        &self,
        id: RegistrationId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let reg = self.registration(id)?;
        let action = match command {
            PoolCommand::Confirm(_) => "confirm",
            _ => "cancel",
        };
        let result = self.pool_command(reg.event_id, reg.pool_id, command).await;
        match result {
            // The pool forgets terminal registrations; the read model (updated with the same
            // durable batch) knows which terminal status it reached.
            Err(EngineError::Domain(DomainError::RegistrationNotFound)) => {
                let status = self.registration(id)?.status;
                Err(DomainError::InvalidRegistrationState { status, action }.into())
            }
            other => other,
        }
    }

    /// Adds a check-in list to an event (managers decide who may; the list's ticket types
    /// must be the event's).
    pub async fn create_checkin_list(
        &self,
        id: EventId,
        new: impl FnOnce(&EventRecord) -> Result<crate::model::CheckInList, Vec<FieldError>>,
    ) -> EngineResult<(EventRecord, crate::model::CheckInList)> {
        let h = self.handle(id).await?;
        let list = new(&h.shared.record()).map_err(DomainError::Validation)?;
        let list_id = list.id;
        let record = call(&h.actor, &h.gate, self.ctx.config.call_timeout, |r| {
            EventMsg::CreateCheckInList(Box::new(list), r)
        })
        .await?;
        let list = record
            .checkin_lists
            .iter()
            .find(|l| l.id == list_id)
            .cloned()
            .ok_or_else(|| EngineError::Unavailable("list not recorded".into()))?;
        Ok((record, list))
    }

    /// Scans a ticket in or out on a check-in list (the default list without `list_id`): the
    /// ticket's pool decides, exactly once per ticket and list. A duplicate is an answer
    /// (`ScanResult::Duplicate`, with the admission that stands), not an error.
    pub async fn scan(
        &self,
        req: ScanRequest,
    ) -> EngineResult<(TicketRoute, ScanResult, Admission)> {
        if let Some(g) = &req.gate
            && (g.trim().is_empty() || g.chars().count() > GATE_LEN_MAX)
        {
            return Err(DomainError::Validation(vec![FieldError::new(
                "gate",
                format!("must be 1 to {GATE_LEN_MAX} characters"),
            )])
            .into());
        }
        let ticket = self.ticket_route(req.ticket_id)?;
        if ticket.event_id != req.event_id {
            return Err(DomainError::WrongEvent.into());
        }
        let h = self.handle(req.event_id).await?;
        let rules = match req.list_id {
            None => ListRules::default_list(),
            Some(id) => h
                .shared
                .record()
                .checkin_lists
                .iter()
                .find(|l| l.id == id)
                .map(crate::model::CheckInList::rules)
                .ok_or(DomainError::CheckInListNotFound)?,
        };
        let command = PoolCommand::Scan(Box::new(ScanCommand {
            registration_id: ticket.registration_id,
            ticket_id: req.ticket_id,
            ticket_index: ticket.index,
            ticket_type_id: ticket.ticket_type_id,
            list: rules,
            direction: req.direction,
            gate: req.gate,
            scanned_at: req.scanned_at,
            nonce: req.nonce,
        }));
        let result = self.call_pool(&h, ticket.pool_id, command).await;
        match result {
            Ok(PoolOutcome::Scanned { result, first }) => Ok((ticket, result, first)),
            // The pool forgets canceled registrations: a ticket it does not know, of a
            // registration the read model shows canceled, is a revoked ticket.
            Err(EngineError::Domain(DomainError::TicketNotFound))
                if self.registration(ticket.registration_id)?.status
                    == RegistrationStatus::Canceled =>
            {
                Err(DomainError::TicketRevoked.into())
            }
            Err(e) => Err(e),
            _ => Err(EngineError::Unavailable("unexpected outcome".into())),
        }
    }

    /// A registration, from its read model.
    pub fn registration(&self, id: RegistrationId) -> EngineResult<RegistrationView> {
        self.ctx
            .store
            .registration(id)
            .map_err(storage)?
            .ok_or(DomainError::RegistrationNotFound.into())
    }

    /// Registrations of an event.
    pub fn registrations_by_event(
        &self,
        event: EventId,
        status: Option<RegistrationStatus>,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.event(event)?;
        self.ctx
            .store
            .registrations_by_event(event, status, after, limit)
            .map_err(storage)
    }

    /// Registrations for an attendee e-mail.
    pub fn registrations_by_email(
        &self,
        email: &str,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.ctx
            .store
            .registrations_by_email(&email.trim().to_lowercase(), after, limit)
            .map_err(storage)
    }

    /// Registrations held by a signed-in account, by id order.
    pub fn registrations_by_user(
        &self,
        user: UserId,
        after: Option<RegistrationId>,
        limit: usize,
    ) -> EngineResult<Page<RegistrationView, RegistrationId>> {
        self.ctx
            .store
            .registrations_by_user(user, after, limit)
            .map_err(storage)
    }

    /// A ticket, from its read model.
    pub fn ticket(&self, id: TicketId) -> EngineResult<TicketView> {
        self.ctx
            .store
            .ticket(id)
            .map_err(storage)?
            .ok_or(DomainError::TicketNotFound.into())
    }

    /// Where a ticket's scans go: from memory when known, else from its read model.
    pub fn ticket_route(&self, id: TicketId) -> EngineResult<TicketRoute> {
        let spread = id.as_bytes()[15];
        if let Some(route) = self.routes.get(spread, &id) {
            return Ok(route);
        }
        let route = TicketRoute::from(&self.ticket(id)?);
        self.routes.put(spread, id, route);
        Ok(route)
    }

    /// Keeps the routes of a confirmed registration's tickets in memory (doors prep), so
    /// their scans read nothing from the store.
    pub fn remember_routes(&self, registration: &RegistrationView) {
        for (index, &id) in registration.tickets.iter().enumerate() {
            let route = TicketRoute {
                id,
                registration_id: registration.id,
                event_id: registration.event_id,
                pool_id: registration.pool_id,
                ticket_type_id: registration.ticket_type_id,
                // At most PER_ORDER_MAX (100) tickets per registration.
                index: index as u16,
            };
            self.routes.put(id.as_bytes()[15], id, route);
        }
    }

    /// An event's record: the active event's, in memory (no store read, no decoding), else the
    /// read model's. Scanning checks the scanner's rights with it per scan.
    pub fn event_record(&self, id: EventId) -> EngineResult<Arc<EventRecord>> {
        match self.active(id) {
            Some(h) => Ok(h.shared.record()),
            None => self.event(id).map(Arc::new),
        }
    }

    /// The id of the event's current ticket-signing key (`None` for an unknown event): from
    /// the active event's record in memory, else from the store. Scanning asks this per scan.
    pub fn ticket_key(&self, id: EventId) -> EngineResult<Option<u8>> {
        match self.event_record(id) {
            Ok(record) => Ok(Some(record.ticket_key)),
            Err(EngineError::Domain(DomainError::EventNotFound)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The event's check-in statistics (admissions, duplicates, exits, per gate, per minute).
    pub fn checkin_stats(&self, event: EventId) -> EngineResult<crate::ports::CheckInStats> {
        self.ctx.store.checkin_stats(event).map_err(storage)
    }

    /// The event's revoked tickets after version `since` (at most `limit`), with the latest
    /// version.
    pub fn revocations(
        &self,
        event: EventId,
        since: u64,
        limit: usize,
    ) -> EngineResult<(Vec<crate::ports::Revocation>, u64)> {
        self.ctx
            .store
            .revocations(event, since, limit)
            .map_err(storage)
    }

    /// What an idempotency key created before in `scope` (an event, or [`GLOBAL_SCOPE`]):
    /// `Some(id)` for the same request, 422 for another request, `None` for a new key.
    fn idempotent(
        &self,
        scope: EventId,
        token: Option<IdempotencyToken>,
    ) -> EngineResult<Option<uuid::Uuid>> {
        let Some(token) = token else { return Ok(None) };
        match self
            .ctx
            .store
            .idempotent(scope, token.key)
            .map_err(storage)?
        {
            Some((_, request)) if request != token.request => {
                Err(DomainError::IdempotencyMismatch.into())
            }
            Some((id, _)) => Ok(Some(id)),
            None => Ok(None),
        }
    }

    // ---- activation ---------------------------------------------------------------------

    /// The active handle of an event, activating it from durable state on first use.
    /// The event's handle if it is active (in memory).
    fn active(&self, id: EventId) -> Option<EventHandle> {
        let cell = self.ctx.registry.get(&id).map(|e| e.value().clone())?;
        cell.get().cloned()
    }

    /// Sends `command` to the pool `pool_id` of the active event `h` and waits for its
    /// answer, which leaves once what it rests on is durable.
    async fn call_pool(
        &self,
        h: &EventHandle,
        pool_id: crate::ids::PoolId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let pool = h
            .shared
            .pool(pool_id)
            .ok_or_else(|| EngineError::Unavailable("pool restarting".into()))?;
        call(&pool.actor, &pool.gate, self.ctx.config.call_timeout, |r| {
            PoolMsg::Execute(command, r)
        })
        .await
    }

    /// Sends `command` to a pool of an event (activating it if needed); see `call_pool`.
    async fn pool_command(
        &self,
        event_id: EventId,
        pool_id: crate::ids::PoolId,
        command: PoolCommand,
    ) -> EngineResult<PoolOutcome> {
        let h = self.handle(event_id).await?;
        self.call_pool(&h, pool_id, command).await
    }

    async fn handle(&self, id: EventId) -> EngineResult<EventHandle> {
        let now_ms = self.ctx.clock.now().timestamp_millis();
        if let Some(h) = self.active(id) {
            h.shared.last_used_ms.store(now_ms, Ordering::Relaxed);
            return Ok(h);
        }
        if self.ctx.registry.len() >= self.ctx.config.events_active_max {
            return Err(EngineError::Overloaded);
        }
        let cell = self
            .ctx
            .registry
            .entry(id)
            .or_insert_with(|| Arc::new(OnceCell::new()))
            .value()
            .clone();
        let result = cell.get_or_try_init(|| self.activate(id)).await.cloned();
        match result {
            Ok(h) => {
                h.shared.last_used_ms.store(now_ms, Ordering::Relaxed);
                Ok(h)
            }
            Err(e) => {
                self.ctx
                    .registry
                    .remove_if(&id, |_, c| Arc::ptr_eq(c, &cell) && c.get().is_none());
                Err(e)
            }
        }
    }

    async fn activate(&self, id: EventId) -> EngineResult<EventHandle> {
        let record = self.event(id)?;
        let shared = Arc::new(EventShared {
            id,
            record: std::sync::RwLock::new(Arc::new(record)),
            pools: std::sync::RwLock::new(HashMap::new()),
            availability: watch::Sender::new(Availability::default()),
            last_used_ms: AtomicI64::new(self.ctx.clock.now().timestamp_millis()),
            scans: tokio::sync::broadcast::Sender::new(crate::pool::scan::SCAN_FEED_CAPACITY),
        });
        let name = format!(
            "{EVENT_ACTOR_PREFIX}{id}:{}",
            self.incarnation.fetch_add(1, Ordering::Relaxed)
        );
        let args = EventArgs {
            ctx: self.ctx.clone(),
            shared: shared.clone(),
        };
        let (actor, _) = Actor::spawn_linked(Some(name), EventActor, args, self.root.get_cell())
            .await
            .map_err(|e| EngineError::Unavailable(format!("activating event {id}: {e}")))?;
        metrics::counter!("engine_activations_total").increment(1);
        let gate = Gate::new(self.ctx.config.event_inflight_max, "event");
        Ok(EventHandle {
            actor,
            gate,
            shared,
        })
    }
}

/// Availability changes of one event, for push to subscribers.
///
/// The feed holds the event's shared state weakly: when the event actor stops (it failed,
/// or the server is shutting down) the feed ends, and the subscriber subscribes again.
pub struct AvailabilityFeed {
    rx: watch::Receiver<Availability>,
    shared: std::sync::Weak<EventShared>,
}

impl AvailabilityFeed {
    /// The current availability, or `None` if the event stopped.
    pub fn current(&mut self) -> Option<EventAvailability> {
        let shared = self.shared.upgrade()?;
        let snapshot = self.rx.borrow_and_update().clone();
        Some(availability_view(&shared.record(), &snapshot))
    }

    /// Waits for the next change. `false` when the event stopped.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

fn availability_view(record: &EventRecord, snapshot: &Availability) -> EventAvailability {
    let ticket_types = record
        .ticket_types
        .iter()
        .map(|tt| {
            let counts = snapshot.pools.get(&tt.pool_id).copied().unwrap_or_else(|| {
                crate::pool::PoolCounts {
                    capacity: record.pool(tt.pool_id).map_or(0, |p| p.capacity),
                    ..Default::default()
                }
            });
            TicketTypeAvailability {
                ticket_type: tt.clone(),
                capacity: counts.capacity,
                held: counts.held,
                confirmed: counts.confirmed,
                reserved: counts.reserved,
                available: counts.available(),
            }
        })
        .collect();
    EventAvailability {
        event_id: record.id,
        status: snapshot.status.unwrap_or(record.status),
        version: snapshot.version,
        ticket_types,
    }
}

fn storage(e: crate::ports::StoreError) -> EngineError {
    EngineError::Storage(e.0)
}
