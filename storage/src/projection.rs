//! Read models derived from pool events, computed by the writer for the batch that holds
//! the events, so a registration is readable exactly when its hold is acknowledged.

use crate::codec::{decode, encode, encode_compact};

mod event_effects;
mod invoices;
mod notifications;
mod payments;
mod statements;
mod webhooks;
use crate::error::err;
use crate::keys;
use crate::store::Db;
use chrono::{DateTime, Utc};
use engine::accounts::UserEvent;
use engine::ids::{EventId, PoolId, RegistrationId, TicketId, UserId, WaitlistEntryId};
use engine::model::EventEvent;
use engine::model::RegistrationStatus;
use engine::pool::{Admission, IdempotencyToken, PoolEvent};
use engine::ports::StoreError;
use engine::ports::{
    CheckInStats, NewHold, RegistrationView, Revocation, Store, TicketView, VoucherView,
    WaitlistStatus, WaitlistView,
};
use fjall::OwnedWriteBatch;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Debug;
use std::hash::Hash;

/// The row `id` from the overlay, loading it from `keyspace` on first use in this batch.
fn cached<'a, K, V>(
    map: &'a mut HashMap<K, V>,
    keyspace: &fjall::Keyspace,
    id: K,
    key: &[u8],
) -> Result<&'a mut V, StoreError>
where
    K: Eq + Hash + Debug,
    V: serde::de::DeserializeOwned,
{
    match map.entry(id) {
        Entry::Occupied(e) => Ok(e.into_mut()),
        Entry::Vacant(e) => {
            let bytes = keyspace.get(key).map_err(err)?;
            let bytes = bytes.ok_or_else(|| {
                StoreError::Inconsistent(format!("read model row {:?} missing", e.key()))
            })?;
            Ok(e.insert(decode(&bytes)?))
        }
    }
}

/// The event of each pool the writer has projected (a pool never changes events), so a scan
/// needs no read to find its event. Bounded: emptied when full, then learned again.
#[derive(Default)]
pub struct PoolEvents(HashMap<PoolId, EventId>);

/// Pools whose event `PoolEvents` remembers.
const POOL_EVENTS_MAX: usize = 100_000;

impl PoolEvents {
    fn learn(&mut self, pool: PoolId, event: EventId) {
        if self.0.len() >= POOL_EVENTS_MAX && !self.0.contains_key(&pool) {
            self.0.clear();
        }
        self.0.insert(pool, event);
    }
}

/// Rows changed by one batch, written at its end. Rows not yet in the overlay are read from
/// the database (usually from the memtable: they were written moments ago).
#[derive(Default)]
pub struct Overlay {
    registrations: HashMap<RegistrationId, RegistrationView>,
    tickets: HashMap<TicketId, TicketView>,
    /// Tickets' new first admissions (`Store::ticket` prefers them to the row's own).
    admissions: HashMap<TicketId, Admission>,
    /// Index keys to insert: (registration or e-mail index, key).
    by_event: Vec<[u8; 32]>,
    by_email: Vec<Vec<u8>>,
    by_user: Vec<[u8; 32]>,
    /// Idempotency index rows: key, then registration id + request digest.
    idempotency: Vec<([u8; 32], [u8; 32])>,
    /// E-mail index rows of new accounts: e-mail, user id.
    users_by_email: Vec<(Vec<u8>, [u8; 16])>,
    /// Payments' provider references → registration ids.
    payment_refs: Vec<(Vec<u8>, [u8; 16])>,
    /// Provider jobs written (`Some`) or done (`None`), in order.
    provider_jobs: Vec<(uuid::Uuid, Option<engine::payment::ProviderJob>)>,
    /// Invoice jobs written: job id, registration.
    invoice_jobs: Vec<(uuid::Uuid, RegistrationId)>,
    /// Documents issued.
    documents: Vec<engine::invoice::Document>,
    /// Webhook deliveries decided in this batch.
    hooks: Vec<engine::webhooks::LogEntry>,
    /// Reminder schedule entries added (with their start) or removed.
    schedule: Vec<(crate::schedule::Key, Option<DateTime<Utc>>)>,
    /// Fan-outs to every attendee this batch starts (an event's change).
    fanouts: Vec<engine::notify::broadcasts::Broadcast>,
    /// Event records as this batch's event-stream events leave them (schedule, webhooks).
    event_records: HashMap<EventId, engine::model::EventRecord>,
    /// Messages decided by the read model, with their deliveries.
    notices: Vec<(engine::outbox::OutboxMessage, Vec<engine::notify::Delivery>)>,
    /// Statement exceptions recorded or resolved in this batch, by key.
    statement_exceptions: HashMap<Vec<u8>, engine::statement::Exception>,
    /// Revocations to insert, and each touched event's latest version (loaded on first use).
    revocations: Vec<(EventId, Revocation)>,
    revocation_heads: HashMap<EventId, u64>,
    /// Check-in statistics of the events scanned in this batch (loaded on first use).
    checkin_stats: HashMap<EventId, CheckInStats>,
    /// Vouchers changed in this batch, by (event, code).
    vouchers: HashMap<(EventId, String), VoucherView>,
    /// Waiting-list places changed in this batch.
    waitlist: HashMap<WaitlistEntryId, WaitlistView>,
}

impl Overlay {
    fn registration<'a>(
        &'a mut self,
        db: &Db,
        id: RegistrationId,
    ) -> Result<&'a mut RegistrationView, StoreError> {
        cached(
            &mut self.registrations,
            &db.registrations,
            id,
            id.as_bytes(),
        )
    }

    fn ticket<'a>(&'a mut self, db: &Db, id: TicketId) -> Result<&'a mut TicketView, StoreError> {
        cached(&mut self.tickets, &db.tickets, id, id.as_bytes())
    }

    /// The event of a ticket, without taking its row into the batch (it is not rewritten).
    fn ticket_event(&self, db: &Db, id: TicketId) -> Result<EventId, StoreError> {
        if let Some(ticket) = self.tickets.get(&id) {
            return Ok(ticket.event_id);
        }
        let bytes =
            db.tickets.get(id.as_bytes()).map_err(err)?.ok_or_else(|| {
                StoreError::Inconsistent(format!("read model row {id:?} missing"))
            })?;
        Ok(decode::<TicketView>(&bytes)?.event_id)
    }

    fn voucher<'a>(
        &'a mut self,
        db: &Db,
        event: EventId,
        code: &str,
    ) -> Result<&'a mut VoucherView, StoreError> {
        cached(
            &mut self.vouchers,
            &db.vouchers,
            (event, code.to_owned()),
            &keys::voucher(&event, code),
        )
    }

    /// Moves the waiting-list place a registration was offered to (if it was) to `status`.
    fn offer_ended(
        &mut self,
        db: &Db,
        id: RegistrationId,
        status: WaitlistStatus,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.registration(db, id)?.waitlist_entry {
            let place = cached(&mut self.waitlist, &db.waitlist, entry, entry.as_bytes())?;
            place.status = status;
            place.updated_at = at;
        }
        Ok(())
    }

    /// Records a new held registration and its indexes.
    fn new_registration(&mut self, view: RegistrationView) {
        if let Some(user) = &view.user_id {
            self.by_user.push(keys::reg_by_user(user, &view.id));
        }
        self.by_event
            .push(keys::reg_by_event(&view.event_id, &view.id));
        self.by_email
            .push(keys::reg_by_email(&view.attendee.email, &view.id));
        self.registrations.insert(view.id, view);
    }

    /// Gives back the voucher uses of a registration that ended (expired or canceled).
    fn release_voucher(
        &mut self,
        db: &Db,
        id: RegistrationId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, id)?;
        let (event, quantity) = (view.event_id, u32::from(view.quantity));
        if let Some(code) = view.price.as_ref().and_then(|p| p.voucher.clone()) {
            let voucher = self.voucher(db, event, &code)?;
            voucher.voucher.uses = voucher.voucher.uses.saturating_sub(quantity);
            voucher.updated_at = at;
        }
        Ok(())
    }

    /// Records the idempotency keys of an event stream's creations (event, ticket type).
    pub fn project_event(&mut self, event_id: EventId, event: &EventEvent) {
        let (scope, id, token) = match event {
            EventEvent::Created {
                id,
                idempotency: Some(token),
                ..
            } => (EventId(uuid::Uuid::nil()), id.0, token),
            EventEvent::TicketTypeCreated {
                ticket_type,
                idempotency: Some(token),
                ..
            } => (event_id, ticket_type.id.0, token),
            _ => return,
        };
        self.remember(&scope, id, token);
    }

    fn remember(&mut self, scope: &EventId, id: uuid::Uuid, token: &IdempotencyToken) {
        let mut value = [0u8; 32];
        value[..16].copy_from_slice(id.as_bytes());
        value[16..].copy_from_slice(&token.request);
        self.idempotency
            .push((keys::idempotency(scope, &token.key), value));
    }

    /// Indexes a new account by its e-mail address.
    pub fn project_user(&mut self, user_id: UserId, event: &UserEvent) {
        if let UserEvent::Registered { email, .. } = event {
            self.users_by_email
                .push((email.as_bytes().to_vec(), *user_id.as_bytes()));
        }
    }

    /// Applies one pool event to the read models (and decides its webhook deliveries).
    pub fn project(
        &mut self,
        db: &Db,
        pools: &mut PoolEvents,
        pool_id: PoolId,
        event: PoolEvent,
    ) -> Result<(), StoreError> {
        let hook = if db.hooks.active() {
            webhooks::pending(&event)
        } else {
            None
        };
        self.project_pool(db, pools, pool_id, event)?;
        if let Some(hook) = hook {
            self.pool_hook(db, pools, pool_id, hook)?;
        }
        Ok(())
    }

    fn project_pool(
        &mut self,
        db: &Db,
        pools: &mut PoolEvents,
        pool_id: PoolId,
        event: PoolEvent,
    ) -> Result<(), StoreError> {
        match event {
            PoolEvent::SeatsHeld { .. } => self.seats_held(db, pools, pool_id, event)?,
            PoolEvent::WaitlistJoined {
                event_id,
                entry,
                at,
            } => self.waitlist_joined(pool_id, event_id, entry, at),
            PoolEvent::WaitlistLeft { entry_id, at } => self.waitlist_left(db, entry_id, at)?,
            PoolEvent::WaitlistOffered { .. } => self.waitlist_offered(db, pool_id, event)?,
            PoolEvent::VoucherCreated {
                event_id,
                voucher,
                at,
            } => self.voucher_created(db, pool_id, event_id, voucher, at)?,
            PoolEvent::VoucherDeactivated { event_id, code, at } => {
                self.voucher_deactivated(db, event_id, &code, at)?;
            }
            PoolEvent::HoldExpired {
                registration_id,
                at,
                ..
            } => self.hold_expired(db, registration_id, at)?,
            PoolEvent::RegistrationCanceled {
                registration_id,
                at,
                ..
            } => self.registration_canceled(db, registration_id, at)?,
            PoolEvent::RegistrationConfirmed {
                registration_id,
                tickets,
                first_number,
                at,
                ..
            } => {
                self.registration_confirmed(
                    db,
                    pool_id,
                    registration_id,
                    &tickets,
                    first_number,
                    at,
                )?;
                self.invoice_job(db, registration_id)?;
                self.confirmation_notice(db, registration_id)?;
            }
            PoolEvent::AttendeeCheckedIn {
                ticket_id,
                admission,
                ..
            } => {
                self.ticket(db, ticket_id)?.admission = Some(admission);
            }
            PoolEvent::Scanned { .. } => self.scanned(db, pools, pool_id, event)?,
            PoolEvent::PaymentDue {
                registration_id,
                at,
            } => self.payment_due_notice(db, registration_id, at)?,
            PoolEvent::PaymentStarted { .. }
            | PoolEvent::PaymentReminded { .. }
            | PoolEvent::PaymentPending { .. }
            | PoolEvent::PaymentReported { .. }
            | PoolEvent::SeatsRetaken { .. }
            | PoolEvent::RefundRequested { .. }
            | PoolEvent::RefundSettled { .. } => {
                let id = event.payment_registration().expect("a payment event");
                self.payment_projected(db, id, &event)?;
            }
        }
        Ok(())
    }

    /// A hold: its registration, the voucher use it spends, and its idempotency row.
    fn seats_held(
        &mut self,
        db: &Db,
        pools: &mut PoolEvents,
        pool_id: PoolId,
        event: PoolEvent,
    ) -> Result<(), StoreError> {
        let PoolEvent::SeatsHeld {
            registration_id,
            event_id,
            ticket_type_id,
            quantity,
            attendee,
            user_id,
            expires_at,
            at,
            idempotency,
            voucher,
            price,
            ..
        } = event
        else {
            return Ok(());
        };
        pools.learn(pool_id, event_id);
        if let Some(code) = &voucher {
            let v = self.voucher(db, event_id, code)?;
            v.voucher.uses += u32::from(quantity);
            v.updated_at = at;
        }
        if let Some(token) = idempotency {
            let mut value = [0u8; 32];
            value[..16].copy_from_slice(registration_id.as_bytes());
            value[16..].copy_from_slice(&token.request);
            self.idempotency
                .push((keys::idempotency(&event_id, &token.key), value));
        }
        self.new_registration(RegistrationView::held(NewHold {
            id: registration_id,
            event_id,
            pool_id,
            ticket_type_id,
            quantity,
            attendee,
            user_id,
            expires_at,
            at,
            price,
            waitlist_entry: None,
        }));
        Ok(())
    }

    fn waitlist_left(
        &mut self,
        db: &Db,
        entry_id: engine::ids::WaitlistEntryId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let place = self.place(db, entry_id)?;
        place.status = WaitlistStatus::Left;
        place.updated_at = at;
        Ok(())
    }

    fn voucher_deactivated(
        &mut self,
        db: &Db,
        event_id: EventId,
        code: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let v = self.voucher(db, event_id, code)?;
        v.voucher.active = false;
        v.updated_at = at;
        Ok(())
    }

    fn waitlist_joined(
        &mut self,
        pool_id: PoolId,
        event_id: EventId,
        entry: engine::pool::waitlist::WaitlistEntry,
        at: DateTime<Utc>,
    ) {
        self.waitlist.insert(
            entry.id,
            WaitlistView {
                id: entry.id,
                event_id,
                pool_id,
                user_id: entry.user_id,
                ticket_type_id: entry.ticket_type_id,
                quantity: entry.quantity,
                status: WaitlistStatus::Waiting,
                registration_id: None,
                joined_at: at,
                offer_expires_at: None,
                updated_at: at,
            },
        );
    }

    /// A waiting-list place offered seats: the place says so, and the offer is a hold.
    fn waitlist_offered(
        &mut self,
        db: &Db,
        pool_id: PoolId,
        event: PoolEvent,
    ) -> Result<(), StoreError> {
        let PoolEvent::WaitlistOffered {
            registration_id,
            event_id,
            entry_id,
            user_id,
            ticket_type_id,
            quantity,
            attendee,
            price,
            expires_at,
            at,
        } = event
        else {
            return Ok(());
        };
        let place = self.place(db, entry_id)?;
        place.status = WaitlistStatus::Offered;
        place.registration_id = Some(registration_id);
        place.offer_expires_at = Some(expires_at);
        place.updated_at = at;
        self.new_registration(RegistrationView::held(NewHold {
            id: registration_id,
            event_id,
            pool_id,
            ticket_type_id,
            quantity,
            attendee,
            user_id: Some(user_id),
            expires_at,
            at,
            price: Some(price),
            waitlist_entry: Some(entry_id),
        }));
        Ok(())
    }

    /// A scan: the event's check-in statistics, and the ticket's first admission.
    fn scanned(
        &mut self,
        db: &Db,
        pools: &mut PoolEvents,
        pool_id: PoolId,
        event: PoolEvent,
    ) -> Result<(), StoreError> {
        let PoolEvent::Scanned {
            ticket_id,
            admission,
            result,
            superseded,
            first_on_ticket,
            ..
        } = event
        else {
            return Ok(());
        };
        let event_id = match pools.0.get(&pool_id) {
            Some(event) => *event,
            None => {
                let event = self.ticket_event(db, ticket_id)?;
                pools.learn(pool_id, event);
                event
            }
        };
        let stats = match self.checkin_stats.entry(event_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(db.checkin_stats(event_id)?),
        };
        stats.count(&result, &admission, superseded.as_ref());
        self.first_admission(db, ticket_id, admission, &result, first_on_ticket)
    }

    /// A waiting-list place, from this batch or the read model.
    fn place<'a>(
        &'a mut self,
        db: &Db,
        entry_id: WaitlistEntryId,
    ) -> Result<&'a mut WaitlistView, StoreError> {
        cached(
            &mut self.waitlist,
            &db.waitlist,
            entry_id,
            entry_id.as_bytes(),
        )
    }

    /// A new voucher's row. Codes are unique per event (the facade claims them); should two
    /// pools ever create one code, the first row stands rather than be overwritten.
    fn voucher_created(
        &mut self,
        db: &Db,
        pool_id: PoolId,
        event_id: EventId,
        voucher: engine::pool::voucher::VoucherDef,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = (event_id, voucher.code.clone());
        let existing = match self.vouchers.get(&key) {
            Some(v) => Some(v.pool_id),
            None => db
                .vouchers
                .get(keys::voucher(&event_id, &voucher.code))
                .map_err(err)?
                .map(|bytes| decode::<VoucherView>(&bytes).map(|v| v.pool_id))
                .transpose()?,
        };
        if let Some(first) = existing {
            tracing::error!(%event_id, code = %voucher.code, %first, second = %pool_id,
                "voucher code created in two pools; the read model keeps the first");
            return Ok(());
        }
        self.vouchers.insert(
            key,
            VoucherView {
                event_id,
                pool_id,
                voucher: engine::pool::voucher::Voucher {
                    def: voucher,
                    uses: 0,
                    active: true,
                },
                created_at: at,
                updated_at: at,
            },
        );
        Ok(())
    }

    /// A canceled registration: its voucher use and waiting-list offer end, and a confirmed
    /// one's tickets go on its event's revocation list.
    /// A hold ran out: its voucher use and its waiting-list offer end, its unfinished payment
    /// is canceled at the provider.
    fn hold_expired(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        view.status = RegistrationStatus::Expired;
        view.updated_at = at;
        self.cancel_unpaid(registration_id)?;
        self.release_voucher(db, registration_id, at)?;
        self.offer_ended(db, registration_id, WaitlistStatus::Passed, at)
    }

    fn registration_canceled(
        &mut self,
        db: &Db,
        registration_id: RegistrationId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.release_voucher(db, registration_id, at)?;
        self.cancellation_notice(db, registration_id, at)?;
        if self.registration(db, registration_id)?.status == RegistrationStatus::Held {
            self.offer_ended(db, registration_id, WaitlistStatus::Declined, at)?;
            self.cancel_unpaid(registration_id)?;
        }
        let view = self.registration(db, registration_id)?;
        view.status = RegistrationStatus::Canceled;
        view.updated_at = at;
        let (event_id, tickets) = (view.event_id, view.tickets.clone());
        if tickets.is_empty() {
            return Ok(());
        }
        let head = match self.revocation_heads.entry(event_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(db.revocation_head(&event_id)?),
        };
        for ticket_id in tickets {
            *head += 1;
            self.revocations.push((
                event_id,
                Revocation {
                    version: *head,
                    ticket_id,
                    registration_id,
                    revoked_at: at,
                },
            ));
        }
        Ok(())
    }

    /// A confirmed registration and its tickets' rows.
    fn registration_confirmed(
        &mut self,
        db: &Db,
        pool_id: PoolId,
        registration_id: RegistrationId,
        tickets: &[TicketId],
        first_number: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let view = self.registration(db, registration_id)?;
        view.status = RegistrationStatus::Confirmed;
        view.updated_at = at;
        view.tickets = tickets.to_vec();
        view.confirmed_at = Some(at);
        view.first_ticket_number = first_number;
        self.offer_ended(db, registration_id, WaitlistStatus::Claimed, at)?;
        let view = self.registration(db, registration_id)?;
        let (event_id, ticket_type_id) = (view.event_id, view.ticket_type_id);
        for (index, &id) in tickets.iter().enumerate() {
            self.tickets.insert(
                id,
                TicketView {
                    id,
                    registration_id,
                    event_id,
                    pool_id,
                    ticket_type_id,
                    // At most PER_ORDER_MAX (100) tickets per registration.
                    index: index as u16,
                    number: first_number + index as u64,
                    issued_at: at,
                    admission: None,
                },
            );
        }
        Ok(())
    }

    /// A scan's effect on its ticket's first admission.
    fn first_admission(
        &mut self,
        db: &Db,
        ticket_id: TicketId,
        admission: Admission,
        result: &engine::pool::scan::ScanResult,
        first_on_ticket: Option<bool>,
    ) -> Result<(), StoreError> {
        match first_on_ticket {
            // The pool knows every admission of the ticket: the first one is written blind,
            // without reading the ticket.
            Some(true) => {
                self.admissions.insert(ticket_id, admission);
            }
            Some(false) => {}
            // Journals from before the pool said: compare with the row (earlier wins).
            None => {
                let ticket = self.ticket(db, ticket_id)?;
                if *result == engine::pool::scan::ScanResult::Admitted
                    && ticket
                        .admission
                        .as_ref()
                        .is_none_or(|first| admission.at < first.at)
                {
                    ticket.admission = Some(admission);
                }
            }
        }
        Ok(())
    }

    /// The check-in statistics this batch changed (for the metrics, once it is durable).
    pub fn checkin_stats(&self) -> Vec<(EventId, CheckInStats)> {
        self.checkin_stats
            .iter()
            .map(|(event, stats)| (*event, stats.clone()))
            .collect()
    }

    /// Adds every changed row to the write batch.
    pub fn write(mut self, db: &Db, batch: &mut OwnedWriteBatch) -> Result<(), StoreError> {
        self.write_invoices(db, batch)?;
        self.write_notices(db, batch)?;
        self.write_hooks(db, batch)?;
        self.write_schedule(db, batch)?;
        for (key, row) in self.statement_exceptions.drain() {
            batch.insert(&db.statement_exceptions, key, encode(&row)?);
        }
        for (id, view) in &self.registrations {
            batch.insert(
                &db.registrations,
                id.as_bytes().to_vec(),
                encode_compact(view)?,
            );
        }
        for (id, view) in &self.tickets {
            batch.insert(&db.tickets, id.as_bytes().to_vec(), encode_compact(view)?);
        }
        for (id, first) in &self.admissions {
            batch.insert(
                &db.ticket_admissions,
                id.as_bytes().to_vec(),
                encode_compact(first)?,
            );
        }
        for key in self.by_event {
            batch.insert(&db.reg_by_event, key.to_vec(), Vec::<u8>::new());
        }
        for (key, value) in self.idempotency {
            batch.insert(&db.idempotency, key.to_vec(), value.to_vec());
        }
        for key in self.by_email {
            batch.insert(&db.reg_by_email, key, Vec::<u8>::new());
        }
        for key in self.by_user {
            batch.insert(&db.reg_by_user, key.to_vec(), Vec::<u8>::new());
        }
        for (email, id) in self.users_by_email {
            batch.insert(&db.users_by_email, email, id.to_vec());
        }
        for (reference, id) in self.payment_refs {
            batch.insert(&db.payment_refs, reference, id.to_vec());
        }
        for (id, job) in self.provider_jobs {
            match job {
                Some(job) => batch.insert(&db.provider_jobs, id.as_bytes().to_vec(), encode(&job)?),
                None => batch.remove(&db.provider_jobs, id.as_bytes().to_vec()),
            }
        }
        for (event, stats) in &self.checkin_stats {
            batch.insert(
                &db.checkin_stats,
                event.as_bytes().to_vec(),
                encode_compact(stats)?,
            );
        }
        for (id, view) in &self.waitlist {
            batch.insert(&db.waitlist, id.as_bytes().to_vec(), encode_compact(view)?);
        }
        for ((event, code), view) in &self.vouchers {
            batch.insert(
                &db.vouchers,
                keys::voucher(event, code),
                encode_compact(view)?,
            );
        }
        for (event, revocation) in self.revocations {
            batch.insert(
                &db.revocations,
                keys::revocation(&event, revocation.version).to_vec(),
                encode_compact(&revocation)?,
            );
        }
        Ok(())
    }
}
