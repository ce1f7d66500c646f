//! `PoolActor`: the single writer of one pool. It decides with `PoolState::execute`, hands
//! the events and the caller's reply port to the journal, and goes on with the next message
//! while the batch is flushed: the reply leaves only when the events are durable.
//!
//! Appends are batched per actor turn: the first decision after a flush queues a `Flush`
//! message behind everything already in the mailbox, and every decision until it is handled
//! joins the same append. Under load one append carries hundreds of decisions (one journal
//! request, one sequence check, one completion); when idle, a decision waits only for the
//! `Flush` right behind it.

use super::pool_metrics::{command_kind, count};
use super::{Ctx, EventShared, Reply};
use crate::error::{EngineError, EngineResult};
use crate::ids::{PoolId, StreamId};
use crate::model::{EventStatus, PoolDef};
use crate::outbox::{MessageKind, OutboxMessage};
use crate::pool::scan::ScanNotice;
use crate::pool::{PoolCommand, PoolEvent, PoolOutcome, PoolState};
use crate::ports::{AppendRequest, Completion, JournalError, Snapshot, StreamEvent};
use chrono::{DateTime, Utc};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::task::JoinHandle;

pub(crate) struct PoolActor;

/// The task that sends `ExpireDue` at the next hold deadline.
type ExpiryTimer = JoinHandle<Result<(), ractor::MessagingErr<PoolMsg>>>;

pub(crate) struct PoolArgs {
    pub ctx: Arc<Ctx>,
    pub shared: Arc<EventShared>,
    pub def: PoolDef,
    pub status: EventStatus,
}

pub(crate) enum PoolMsg {
    /// Decide a command and reply once its events are durable.
    Execute(PoolCommand, Reply<PoolOutcome>),
    /// Timer: expire holds whose deadline passed.
    ExpireDue,
    /// The event's status changed.
    SetEventStatus(EventStatus),
    /// The event's cancellation is durable: end its registrations and waiting list.
    CloseCanceled,
    /// Hand the decisions made since the last flush to the journal.
    Flush,
    /// The journal refused an append (sequence conflict): restart from durable state.
    Poisoned(String),
}

/// Decisions made since the last flush, not yet handed to the journal.
#[derive(Default)]
struct Pending {
    events: Vec<PoolEvent>,
    /// Called, in order, when the events are durable (or failed). Answers that only have to
    /// wait behind earlier decisions join here without events.
    done: Vec<Completion>,
    /// Messages committed with the events, besides waiting-list offers (made from the events
    /// in `flush`), with their reserved room in the outbox.
    outbox: Vec<OutboxMessage>,
    reservations: Vec<crate::outbox::Reservation>,
}

pub(crate) struct PoolActorState {
    pool: PoolState,
    status: EventStatus,
    ctx: Arc<Ctx>,
    shared: Arc<EventShared>,
    since_snapshot: u64,
    /// `since_snapshot` at which the snapshot threshold is next checked.
    snapshot_after: u64,
    /// This copy's incarnation: the journal fences it out if it ever loses a sequence race.
    incarnation: u64,
    /// Sequence number of the last event known durable (set by journal completions).
    durable_seq: Arc<AtomicU64>,
    /// The armed expiry timer and its deadline.
    timer: Option<(DateTime<Utc>, ExpiryTimer)>,
    /// Whether the event knows this pool has reminders pending (see `EventShared`).
    reminding: bool,
    /// Decisions waiting for the next `Flush`.
    pending: Pending,
    /// The labels of this pool's per-event series (`super::seat_labels`).
    seat_labels: Vec<metrics::Label>,
}

/// Loads a pool from its latest snapshot plus the journal tail.
fn load(ctx: &Ctx, shared: &EventShared, def: PoolDef) -> Result<PoolState, String> {
    // A snapshot is an optimisation: one that cannot be read (or fails its checks) is
    // ignored and the pool is rebuilt from the whole journal.
    let snapshot = ctx
        .store
        .pool_snapshot(def.id)
        .map_err(|e| e.to_string())
        .and_then(|s| match s {
            Some(snapshot)
                if snapshot.pool_id() != def.id || snapshot.counts().capacity != def.capacity =>
            {
                Err(format!(
                    "snapshot is of pool {} with capacity {}",
                    snapshot.pool_id(),
                    snapshot.counts().capacity
                ))
            }
            Some(mut snapshot) => snapshot.restore_derived().map(|()| Some(snapshot)),
            None => Ok(None),
        });
    let mut pool = match snapshot {
        Ok(Some(snapshot)) => snapshot,
        Ok(None) => PoolState::new(shared.id, def.id, def.capacity),
        Err(e) => {
            tracing::warn!(pool = %def.id, error = %e, "pool snapshot unusable; replaying the whole journal");
            PoolState::new(shared.id, def.id, def.capacity)
        }
    };
    let mut replayed = 0u64;
    ctx.store
        .replay(
            StreamId::Pool(def.id),
            pool.seq(),
            &mut |seq, event| match event {
                StreamEvent::Pool(e) => {
                    pool.apply(seq, &e);
                    replayed += 1;
                    Ok(())
                }
                other => Err(crate::ports::StoreError::Inconsistent(format!(
                    "{other:?} in pool {}",
                    def.id
                ))),
            },
        )
        .map_err(|e| e.to_string())?;
    tracing::debug!(pool = %def.id, seq = pool.seq(), replayed, registrations = pool.registration_count(), "pool loaded");
    Ok(pool)
}

impl Actor for PoolActor {
    type Msg = PoolMsg;
    type State = PoolActorState;
    type Arguments = PoolArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<PoolMsg>,
        args: PoolArgs,
    ) -> Result<PoolActorState, ActorProcessingErr> {
        // Appends of an earlier incarnation of this pool may still be in the journal's queue:
        // wait until they are durable so the state loaded below includes them.
        barrier(&args.ctx).await?;
        let (ctx, shared, def) = (args.ctx.clone(), args.shared.clone(), args.def);
        let pool = tokio::task::spawn_blocking(move || load(&ctx, &shared, def)).await??;
        // Everything loaded came from the store: it is durable.
        let seq = pool.seq();
        let seat_labels = super::seat_labels(args.shared.id, pool.pool_id());
        let state = PoolActorState {
            pool,
            status: args.status,
            ctx: args.ctx,
            shared: args.shared,
            since_snapshot: 0,
            snapshot_after: 0,
            incarnation: crate::ports::next_incarnation(),
            durable_seq: Arc::new(AtomicU64::new(seq)),
            timer: None,
            reminding: false,
            pending: Pending::default(),
            seat_labels,
        };
        publish(&state);
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<PoolMsg>,
        state: &mut PoolActorState,
    ) -> Result<(), ActorProcessingErr> {
        // Holds that ran out while the pool was down expire now.
        expire_due(&myself, state).await;
        // A cancellation that was not carried through before a crash is, now — if it is
        // durable (a pool restarted while the cancellation is still being written waits for
        // the event actor's `CloseCanceled`).
        if state.status == EventStatus::Canceled && canceled_durably(state) {
            close_canceled(&myself, state).await;
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<PoolMsg>,
        state: &mut PoolActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, timer)) = state.timer.take() {
            timer.abort();
        }
        // Decisions never handed to the journal are not durable: their callers get no success.
        for done in std::mem::take(&mut state.pending).done {
            done.complete(Err(JournalError::Stopped));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMsg>,
        msg: PoolMsg,
        state: &mut PoolActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PoolMsg::Execute(command, reply) => execute(&myself, state, command, reply).await,
            PoolMsg::ExpireDue => {
                state.timer = None;
                expire_due(&myself, state).await;
            }
            PoolMsg::SetEventStatus(status) => state.status = status,
            PoolMsg::CloseCanceled => close_canceled(&myself, state).await,
            PoolMsg::Flush => flush(state).await,
            PoolMsg::Poisoned(reason) => return Err(reason.into()),
        }
        Ok(())
    }
}

async fn barrier(ctx: &Ctx) -> Result<(), ActorProcessingErr> {
    let (done, rx) = Completion::channel();
    // On a stream of its own: it completes after everything queued before it.
    let request = AppendRequest::barrier(StreamId::Pool(PoolId::new()), done);
    ctx.journal.append(request).await;
    rx.await.unwrap_or(Err(JournalError::Stopped))?;
    Ok(())
}

async fn execute(
    myself: &ActorRef<PoolMsg>,
    state: &mut PoolActorState,
    command: PoolCommand,
    reply: Reply<PoolOutcome>,
) {
    let kind = command_kind(&command);
    let now = state.ctx.clock.now();
    let (events, outcome) = state.pool.execute(command, state.status, now);
    count(kind, &outcome, &state.seat_labels);
    let outcome = outcome.map_err(EngineError::from);
    if events.is_empty() && state.pool.seq() == state.durable_seq.load(Ordering::Acquire) {
        // Nothing new was decided and everything it rests on is durable: answer at once.
        let _ = reply.send(outcome);
        return;
    }
    // New events, or an answer (a refusal such as sold out or already checked in, or a
    // replayed hold) resting on decisions not durable yet: it waits, behind them, for the
    // journal.
    let done = reply_on_durable(myself, reply, outcome);
    let decided = !events.is_empty();
    enqueue(myself, state, events, done);
    if decided {
        publish(state);
        arm_timer(myself, state);
    }
}

async fn expire_due(myself: &ActorRef<PoolMsg>, state: &mut PoolActorState) {
    let now = state.ctx.clock.now();
    let (events, _) = state
        .pool
        .execute(PoolCommand::ExpireDue, state.status, now);
    if !events.is_empty() {
        let expired = events
            .iter()
            .filter(|e| matches!(e, PoolEvent::HoldExpired { .. }))
            .count();
        metrics::counter!("regengine_engine_expiries_total").increment(expired as u64);
        enqueue(myself, state, events, poison_on_conflict(myself));
        publish(state);
    }
    arm_timer(myself, state);
}

/// The completion of decisions nobody waits for (expiries, closing a canceled event): a
/// sequence conflict means another copy of this pool wrote, so this one restarts from
/// durable state.
fn poison_on_conflict(myself: &ActorRef<PoolMsg>) -> Completion {
    let me = myself.clone();
    Completion::new(move |result| {
        if let Err(JournalError::SequenceConflict { .. }) = &result {
            let _ = me.cast(PoolMsg::Poisoned("sequence conflict".into()));
        }
    })
}

/// The event was canceled: cancels every live registration (held seats return, issued
/// tickets go on the revocation list) and empties the waiting list, in one append with a
/// message to each person concerned. Runs once the cancellation is durable, and again at
/// every start of a canceled event's pool, so a crash in between only delays it.
async fn close_canceled(myself: &ActorRef<PoolMsg>, state: &mut PoolActorState) {
    if state.status != EventStatus::Canceled || !state.pool.has_live_registrations() {
        return;
    }
    // The messages are addressed from the registrations' read model: first let everything
    // decided before become durable (and so readable).
    let (done, durable) = Completion::channel();
    enqueue(myself, state, Vec::new(), done);
    flush(state).await;
    if let Err(e) = durable.await.unwrap_or(Err(JournalError::Stopped)) {
        tracing::warn!(pool = %state.pool.pool_id(), error = %e, "closing a canceled event deferred to the next start");
        return;
    }
    let now = state.ctx.clock.now();
    let (events, outcome) = state.pool.execute(
        PoolCommand::CloseCanceledEvent(CLOSE_CHUNK),
        state.status,
        now,
    );
    let Ok(PoolOutcome::Closed {
        registrations,
        waitlist,
    }) = outcome
    else {
        return;
    };
    let messages = cancellation_messages(state, &registrations, &waitlist, now);
    metrics::counter!("regengine_engine_registrations_closed_total")
        .increment(registrations.len() as u64);
    tracing::info!(
        event = %state.shared.id,
        pool = %state.pool.pool_id(),
        registrations = registrations.len(),
        waitlist = waitlist.len(),
        told = messages.len(),
        "canceled event closed"
    );
    match state.ctx.outbox.reserve(messages.len()) {
        Some(room) => {
            state.pending.outbox.extend(messages);
            state.pending.reservations.push(room);
        }
        None if messages.is_empty() => {}
        None => {
            // Canceling does not wait for mail: the registrations end either way, and each
            // person still sees it on their registration.
            metrics::counter!("regengine_outbox_refused_total").increment(messages.len() as u64);
            tracing::warn!(
                event = %state.shared.id,
                untold = messages.len(),
                "outbox full: people of a canceled event not told by message"
            );
        }
    }
    enqueue(myself, state, events, poison_on_conflict(myself));
    publish(state);
    arm_timer(myself, state);
    // A large pool closes over several turns: other messages (reads, refusals) get theirs.
    if state.pool.has_live_registrations() {
        let _ = myself.cast(PoolMsg::CloseCanceled);
    }
}

/// Registrations and waiting places closed per turn of a canceled event's pool (each turn
/// reads their attendees and reserves outbox room for their messages).
const CLOSE_CHUNK: usize = 500;

/// Whether the store has the event as canceled.
fn canceled_durably(state: &PoolActorState) -> bool {
    matches!(
        state.ctx.store.event(state.shared.id),
        Ok(Some(record)) if record.status == EventStatus::Canceled
    )
}

/// One message per canceled registration (to its attendee, as the read model has it) and per
/// removed waiting-list place.
fn cancellation_messages(
    state: &PoolActorState,
    registrations: &[(crate::ids::RegistrationId, bool)],
    waitlist: &[crate::pool::waitlist::WaitlistEntry],
    now: DateTime<Utc>,
) -> Vec<OutboxMessage> {
    let event_id = state.shared.id;
    let event_title = state.shared.record().title.clone();
    let message = |to: &str, user, registration_id, tickets_revoked| {
        OutboxMessage::new(
            to,
            user,
            MessageKind::EventCanceled {
                event_id,
                event_title: event_title.clone(),
                registration_id,
                tickets_revoked,
            },
            now,
        )
    };
    let mut messages = Vec::with_capacity(registrations.len() + waitlist.len());
    for (id, confirmed) in registrations {
        match state.ctx.store.registration(*id) {
            Ok(Some(view)) => messages.push(message(
                &view.attendee.email,
                view.user_id,
                Some(*id),
                *confirmed,
            )),
            Ok(None) => {
                tracing::warn!(registration = %id, "canceled registration not readable: not told")
            }
            Err(e) => {
                tracing::warn!(registration = %id, error = %e, "canceled registration not readable: not told")
            }
        }
    }
    for entry in waitlist {
        messages.push(message(
            &entry.attendee.email,
            Some(entry.user_id),
            None,
            false,
        ));
    }
    messages
}

/// Adds decided events (possibly none) and their completion to the pending append; the
/// first addition since the last flush queues the `Flush` behind the current mailbox.
fn enqueue(
    myself: &ActorRef<PoolMsg>,
    state: &mut PoolActorState,
    events: Vec<PoolEvent>,
    done: Completion,
) {
    let first = state.pending.done.is_empty();
    state.pending.events.extend(events);
    state.pending.done.push(done);
    if first && myself.cast(PoolMsg::Flush).is_err() {
        // The actor is stopping: `post_stop` fails what is pending.
        tracing::debug!(pool = %state.pool.pool_id(), "flush not queued: pool stopping");
    }
}

/// Hands the pending decisions to the journal as one append (a snapshot when due), or as a
/// barrier when only answers are waiting. Waits only for queue space.
async fn flush(state: &mut PoolActorState) {
    let Pending {
        events,
        done,
        outbox: committed,
        reservations,
    } = std::mem::take(&mut state.pending);
    if done.is_empty() {
        return;
    }
    let stream = StreamId::Pool(state.pool.pool_id());
    let done = Completion::new(move |result| {
        for d in done {
            d.complete(result.clone());
        }
    });
    if events.is_empty() {
        // A barrier: completes after every earlier append of this pool (messages queued
        // without events, if ever, go with it).
        let done = Completion::new(move |result| {
            if result.is_ok() {
                for r in reservations {
                    r.commit();
                }
            }
            done.complete(result);
        });
        let request = AppendRequest::barrier(stream, done).with_outbox(committed);
        state.ctx.journal.append(request).await;
        return;
    }
    let first_seq = state.pool.seq() + 1 - events.len() as u64;
    let (last_seq, durable) = (state.pool.seq(), state.durable_seq.clone());
    // Accounts listening for their registrations hear of these changes once durable.
    let touched: Vec<_> = if state.ctx.feeds.active() {
        events.iter().filter_map(PoolEvent::account).collect()
    } else {
        Vec::new()
    };
    // The event's scanners hear of decided scans once durable (only when someone listens).
    let scans: Vec<ScanNotice> = if state.shared.scans.receiver_count() > 0 {
        events.iter().filter_map(scan_notice).collect()
    } else {
        Vec::new()
    };
    let (mut outbox, reservation) = offer_messages(state, &events);
    outbox.extend(committed);
    let ctx = state.ctx.clone();
    let shared = state.shared.clone();
    let done = Completion::new(move |result| {
        if result.is_ok() {
            if let Some(r) = reservation {
                r.commit();
            }
            for r in reservations {
                r.commit();
            }
            durable.fetch_max(last_seq, Ordering::AcqRel);
            for (user, registration) in touched {
                ctx.feeds.publish(user, registration);
            }
            for notice in scans {
                let _ = shared.scans.send(notice);
            }
        }
        done.complete(result);
    });
    let snapshot = snapshot_due(state, events.len());
    let events = events.into_iter().map(StreamEvent::Pool).collect();
    let request = AppendRequest::fenced(state.incarnation, stream, first_seq, events, done)
        .with_snapshot(snapshot)
        .with_outbox(outbox);
    state.ctx.journal.append(request).await;
}

/// Waiting-list offers are also sent as messages, committed with the offer, with their room
/// in the outbox. A full outbox does not stop an offer (it is pushed on the account's feed
/// all the same): no messages then.
fn offer_messages(
    state: &PoolActorState,
    events: &[PoolEvent],
) -> (Vec<OutboxMessage>, Option<crate::outbox::Reservation>) {
    let now = state.ctx.clock.now();
    let outbox: Vec<OutboxMessage> = events
        .iter()
        .filter_map(|e| {
            offer_message(e, now)
                .or_else(|| refund_message(&state.pool, e, now))
                .or_else(|| reminder_message(&state.pool, e, now))
        })
        .collect();
    if outbox.is_empty() {
        return (outbox, None);
    }
    match state.ctx.outbox.reserve(outbox.len()) {
        Some(room) => (outbox, Some(room)),
        None => {
            metrics::counter!("regengine_outbox_refused_total").increment(outbox.len() as u64);
            (Vec::new(), None)
        }
    }
}

/// The pool's state as a snapshot, when one is due after `added` more events. A snapshot's
/// cost grows with the pool: one is due after max(snapshot_every_events, weight / 2) events,
/// so snapshotting costs a bounded amount per event. The weight is counted only when the
/// smaller bound is reached.
fn snapshot_due(state: &mut PoolActorState, added: usize) -> Option<Snapshot> {
    state.since_snapshot += added as u64;
    if state.since_snapshot < state.snapshot_after {
        return None;
    }
    let every = state.ctx.config.snapshot_every_events;
    let due = every.max(state.pool.weight() as u64 / 2);
    if state.since_snapshot >= due {
        state.since_snapshot = 0;
        state.snapshot_after = every;
        Some(Snapshot::Pool(Box::new(state.pool.clone())))
    } else {
        state.snapshot_after = due;
        None
    }
}

fn offer_message(event: &PoolEvent, now: DateTime<Utc>) -> Option<OutboxMessage> {
    match event {
        PoolEvent::WaitlistOffered {
            registration_id,
            user_id,
            quantity,
            attendee,
            expires_at,
            ..
        } => Some(OutboxMessage::new(
            &attendee.email,
            Some(*user_id),
            MessageKind::WaitlistOffer {
                registration_id: *registration_id,
                quantity: *quantity,
                expires_at: *expires_at,
            },
            now,
        )),
        _ => None,
    }
}

/// A payment still due is reminded to the buyer: what to pay, the reference, the deadline.
fn reminder_message(
    pool: &crate::pool::PoolState,
    event: &PoolEvent,
    now: DateTime<Utc>,
) -> Option<OutboxMessage> {
    let PoolEvent::PaymentReminded {
        registration_id,
        deadline,
        ..
    } = event
    else {
        return None;
    };
    let payment = pool.payment(*registration_id)?;
    if payment.buyer_email.is_empty() {
        return None;
    }
    Some(OutboxMessage::new(
        &payment.buyer_email,
        payment.account.map(|(user, _)| user),
        MessageKind::PaymentReminder {
            registration_id: *registration_id,
            amount_minor: payment.amount_minor,
            currency: payment.currency.clone(),
            reference: payment.provider_ref.clone(),
            deadline: *deadline,
        },
        now,
    ))
}

/// A refund nobody asked for (a late or second payment) is told to the buyer.
fn refund_message(
    pool: &crate::pool::PoolState,
    event: &PoolEvent,
    now: DateTime<Utc>,
) -> Option<OutboxMessage> {
    let PoolEvent::RefundRequested {
        registration_id,
        refund,
        ..
    } = event
    else {
        return None;
    };
    if refund.reason != crate::payment::RefundReason::RefundDue {
        return None;
    }
    let payment = pool.payment(*registration_id)?;
    if payment.buyer_email.is_empty() {
        return None;
    }
    let second = payment
        .captures
        .first()
        .is_some_and(|c| c.provider_ref != refund.provider_ref);
    Some(OutboxMessage::new(
        &payment.buyer_email,
        payment.account.map(|(user, _)| user),
        MessageKind::PaymentRefunded {
            registration_id: *registration_id,
            amount_minor: refund.amount_minor,
            currency: payment.currency.clone(),
            cause: if second {
                crate::message::RefundCause::DoublePayment
            } else {
                crate::message::RefundCause::LatePayment
            },
        },
        now,
    ))
}

fn scan_notice(event: &PoolEvent) -> Option<ScanNotice> {
    match event {
        PoolEvent::Scanned {
            ticket_id,
            list,
            direction,
            admission,
            offline,
            result,
            ..
        } => Some(ScanNotice {
            ticket_id: *ticket_id,
            list: *list,
            direction: *direction,
            admission: admission.clone(),
            result: result.clone(),
            offline: *offline,
        }),
        _ => None,
    }
}

/// A completion that answers the caller with `result` once durable, or with the failure.
fn reply_on_durable(
    myself: &ActorRef<PoolMsg>,
    reply: Reply<PoolOutcome>,
    result: EngineResult<PoolOutcome>,
) -> Completion {
    let me = myself.clone();
    Completion::new(move |durable| {
        let answer = match durable {
            Ok(()) => result,
            Err(JournalError::SequenceConflict { .. }) => {
                let _ = me.cast(PoolMsg::Poisoned("sequence conflict".into()));
                Err(EngineError::Unavailable("pool restarting".into()))
            }
            Err(e) => Err(EngineError::Journal(e)),
        };
        // The caller may have timed out and gone; nothing to do then.
        let _ = reply.send(answer);
    })
}

/// Publishes the pool's counts to readers if they changed.
fn publish(state: &PoolActorState) {
    let id = state.pool.pool_id();
    let counts = state.pool.counts();
    let changed = state.shared.availability.send_if_modified(|a| {
        if a.pools.get(&id) == Some(&counts) {
            return false;
        }
        a.pools.insert(id, counts);
        a.version += 1;
        true
    });
    if changed {
        super::set_available_seats(&state.seat_labels, counts.available());
    }
}

/// Keeps one timer armed for the earliest hold deadline (or reminder).
fn arm_timer(myself: &ActorRef<PoolMsg>, state: &mut PoolActorState) {
    // A pool with reminders pending keeps its event active: a passivated pool has no timer.
    let reminding = state.pool.has_reminders();
    if reminding != state.reminding {
        state.reminding = reminding;
        let id = state.pool.pool_id();
        let mut pools = state
            .shared
            .reminding_pools
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if reminding {
            pools.insert(id);
        } else {
            pools.remove(&id);
        }
    }
    let Some(next) = state.pool.next_expiry() else {
        return;
    };
    if let Some((deadline, _)) = &state.timer
        && *deadline <= next
    {
        return;
    }
    if let Some((_, old)) = state.timer.take() {
        old.abort();
    }
    let delay = (next - state.ctx.clock.now()).to_std().unwrap_or_default()
        + std::time::Duration::from_millis(1);
    let handle = myself.send_after(delay, || PoolMsg::ExpireDue);
    state.timer = Some((next, handle));
}
