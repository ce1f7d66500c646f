//! `EventActor`: the single writer of one event's lifecycle, settings and ticket types, and
//! the supervisor of its pools. A failed pool is restarted from durable state (ractor's
//! default would stop this supervisor instead). Idle events passivate themselves.

use super::pool_actor::{PoolActor, PoolArgs, PoolMsg};
use super::{Ctx, EventShared, Gate, PoolHandle, Reply};
use crate::error::{DomainError, EngineError};
use crate::ids::{PoolId, StreamId, TicketTypeId, UserId};
use crate::model::{
    EVENT_MEMBERS_MAX, EventEvent, EventPatch, EventRecord, EventRole, EventStatus, NewTicketType,
    PoolDef, SeatSource, TicketType,
};
use crate::pool::IdempotencyToken;
use crate::ports::{Completion, JournalError, Snapshot, StreamEvent};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

pub(crate) struct EventActor;

/// Window over which pool restarts are counted against `pool_restarts_max`.
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

pub(crate) struct EventArgs {
    pub ctx: Arc<Ctx>,
    pub shared: Arc<EventShared>,
}

pub(crate) enum EventMsg {
    /// Change settings.
    Update(Box<EventPatch>, Reply<EventRecord>),
    /// Publish, cancel or complete.
    Transition(EventStatus, Reply<EventRecord>),
    /// Add a ticket type (and its pool).
    CreateTicketType(
        NewTicketType,
        Option<IdempotencyToken>,
        Reply<(EventRecord, TicketTypeId)>,
    ),
    /// Give an account a role in the event, or take it away.
    SetMember(UserId, Option<EventRole>, Reply<EventRecord>),
    /// Rotate the ticket-signing key.
    RotateTicketKey(Reply<EventRecord>),
    /// Add a check-in list (validated by the caller against the record).
    CreateCheckInList(Box<crate::model::CheckInList>, Reply<EventRecord>),
    /// Timer: passivate if idle.
    PassivateCheck,
    /// The journal refused an append (sequence conflict): restart from durable state.
    Poisoned(String),
}

pub(crate) struct EventActorState {
    record: EventRecord,
    ctx: Arc<Ctx>,
    shared: Arc<EventShared>,
    /// Pool actors by actor id, to know which pool a supervision event is about.
    children: HashMap<ActorId, PoolId>,
    /// When recent pool restarts happened (within `RESTART_WINDOW`).
    restart_times: std::collections::VecDeque<std::time::Instant>,
    stopping: bool,
    /// This copy's incarnation: the journal fences it out if it ever loses a sequence race.
    incarnation: u64,
    /// Itself, for completions that must report back.
    myself: ActorRef<EventMsg>,
    ticker: Option<JoinHandle<()>>,
}

impl Actor for EventActor {
    type Msg = EventMsg;
    type State = EventActorState;
    type Arguments = EventArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<EventMsg>,
        args: EventArgs,
    ) -> Result<EventActorState, ActorProcessingErr> {
        let EventArgs { ctx, shared } = args;
        // The event read model is the stream's snapshot, written with every append; the
        // tail replay below is normally empty.
        let (c, id) = (ctx.clone(), shared.id);
        let record = tokio::task::spawn_blocking(move || -> Result<EventRecord, String> {
            let mut record = c
                .store
                .event(id)
                .map_err(|e| e.to_string())?
                .ok_or("event not found")?;
            c.store
                .replay(StreamId::Event(id), record.version, &mut |seq, e| {
                    if let StreamEvent::Event(e) = e {
                        record.apply(seq, &e);
                    }
                    Ok(())
                })
                .map_err(|e| e.to_string())?;
            Ok(record)
        })
        .await??;
        shared.set_record(record.clone());
        shared
            .availability
            .send_modify(|a| a.status = Some(record.status));
        let mut state = EventActorState {
            record,
            ctx,
            shared,
            children: HashMap::new(),
            restart_times: std::collections::VecDeque::new(),
            stopping: false,
            incarnation: crate::ports::next_incarnation(),
            myself: myself.clone(),
            ticker: None,
        };
        for def in state.record.pools.clone() {
            spawn_pool(&myself, &mut state, def).await?;
        }
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<EventMsg>,
        state: &mut EventActorState,
    ) -> Result<(), ActorProcessingErr> {
        let period =
            (state.ctx.config.passivate_after / 2).max(std::time::Duration::from_millis(10));
        state.ticker = Some(myself.send_interval(period, || EventMsg::PassivateCheck));
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<EventMsg>,
        state: &mut EventActorState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(ticker) = state.ticker.take() {
            ticker.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<EventMsg>,
        msg: EventMsg,
        state: &mut EventActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventMsg::Update(patch, reply) => update(state, *patch, reply).await,
            EventMsg::Transition(to, reply) => transition(state, to, reply).await,
            EventMsg::CreateTicketType(cmd, idempotency, reply) => {
                create_ticket_type(&myself, state, (cmd, idempotency), reply).await?
            }
            EventMsg::SetMember(user, role, reply) => set_member(state, user, role, reply).await,
            EventMsg::RotateTicketKey(reply) => rotate_ticket_key(state, reply).await,
            EventMsg::CreateCheckInList(list, reply) => {
                create_checkin_list(state, *list, reply).await
            }
            EventMsg::PassivateCheck => passivate_if_idle(&myself, state),
            EventMsg::Poisoned(reason) => return Err(reason.into()),
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<EventMsg>,
        evt: SupervisionEvent,
        state: &mut EventActorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_default())
            }
            _ => return Ok(()),
        };
        let Some(pool_id) = state.children.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        // Restarts are counted over a sliding minute: a pool that keeps failing takes its
        // event down (and the registry reactivates it later), an occasional failure does not.
        let now = std::time::Instant::now();
        state
            .restart_times
            .retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        state.restart_times.push_back(now);
        let restarts = state.restart_times.len() as u32;
        metrics::counter!("regengine_engine_actor_restarts_total", "actor" => "pool").increment(1);
        tracing::warn!(event = %state.record.id, pool = %pool_id, reason = %why, restarts, "pool actor stopped; restarting from durable state");
        if restarts > state.ctx.config.pool_restarts_max {
            return Err(format!("pool {pool_id} restarted {} times in a minute", restarts).into());
        }
        let def = state
            .record
            .pool(pool_id)
            .copied()
            .ok_or("restarting an unknown pool")?;
        spawn_pool(&myself, state, def).await
    }
}

async fn spawn_pool(
    myself: &ActorRef<EventMsg>,
    state: &mut EventActorState,
    def: PoolDef,
) -> Result<(), ActorProcessingErr> {
    let args = PoolArgs {
        ctx: state.ctx.clone(),
        shared: state.shared.clone(),
        def,
        status: state.record.status,
    };
    let (actor, _) = Actor::spawn_linked(None, PoolActor, args, myself.get_cell()).await?;
    state.children.insert(actor.get_id(), def.id);
    let gate = Gate::new(state.ctx.config.pool_inflight_max, "pool");
    state.shared.set_pool(def.id, PoolHandle { actor, gate });
    Ok(())
}

/// Applies `event` to the record, journals it with the record as snapshot, and answers
/// `reply` with `map(record)` once durable.
async fn commit<T: Send + 'static>(
    state: &mut EventActorState,
    event: EventEvent,
    map: impl FnOnce(EventRecord) -> T + Send + 'static,
    reply: Reply<T>,
) {
    commit_then(state, event, map, reply, || {}).await
}

async fn commit_then<T: Send + 'static>(
    state: &mut EventActorState,
    event: EventEvent,
    map: impl FnOnce(EventRecord) -> T + Send + 'static,
    reply: Reply<T>,
    on_durable: impl FnOnce() + Send + 'static,
) {
    let seq = state.record.version + 1;
    state.record.apply(seq, &event);
    state.shared.set_record(state.record.clone());
    let record = state.record.clone();
    let me = state.myself.clone();
    let done = Completion::new(move |durable| {
        let answer = match durable {
            Ok(()) => {
                on_durable();
                Ok(map(record))
            }
            Err(JournalError::SequenceConflict { .. }) => {
                let _ = me.cast(EventMsg::Poisoned("sequence conflict".into()));
                Err(EngineError::Unavailable("event restarting".into()))
            }
            Err(e) => Err(EngineError::Journal(e)),
        };
        let _ = reply.send(answer);
    });
    let request = crate::ports::AppendRequest::fenced(
        state.incarnation,
        StreamId::Event(state.record.id),
        seq,
        vec![StreamEvent::Event(event)],
        done,
    )
    .with_snapshot(Some(Snapshot::Event(Box::new(state.record.clone()))));
    state.ctx.journal.append(request).await;
}

/// Changes the event's settings (a patch that changes nothing is answered at once).
async fn update(state: &mut EventActorState, patch: EventPatch, reply: Reply<EventRecord>) {
    if let Err(e) = patch.validate(&state.record) {
        let _ = reply.send(Err(e.into()));
        return;
    }
    if patch.is_empty() {
        let _ = reply.send(Ok(state.record.clone()));
        return;
    }
    let at = state.ctx.clock.now();
    commit(state, EventEvent::Updated { patch, at }, move |r| r, reply).await;
}

/// Gives `user` a role in the event, or takes it away (`None`). The owner's role is fixed;
/// members are bounded by `EVENT_MEMBERS_MAX`.
async fn set_member(
    state: &mut EventActorState,
    user: UserId,
    role: Option<EventRole>,
    reply: Reply<EventRecord>,
) {
    let current = state
        .record
        .members
        .iter()
        .find(|(u, _)| *u == user)
        .map(|m| m.1);
    if current == role {
        let _ = reply.send(Ok(state.record.clone()));
        return;
    }
    if state.record.owner == Some(user) {
        let _ = reply.send(Err(DomainError::Validation(vec![
            crate::error::FieldError::new("user_id", "the owner's role cannot change"),
        ])
        .into()));
        return;
    }
    if current.is_none() && state.record.members.len() >= EVENT_MEMBERS_MAX {
        let _ = reply.send(Err(DomainError::LimitReached("members per event").into()));
        return;
    }
    let at = state.ctx.clock.now();
    commit(
        state,
        EventEvent::MemberSet { user, role, at },
        move |r| r,
        reply,
    )
    .await;
}

/// Moves the ticket-signing key to the next id (at most 255 rotations).
async fn rotate_ticket_key(state: &mut EventActorState, reply: Reply<EventRecord>) {
    let Some(key) = state.record.ticket_key.checked_add(1) else {
        let _ = reply.send(Err(DomainError::LimitReached("ticket key rotations").into()));
        return;
    };
    let at = state.ctx.clock.now();
    commit(
        state,
        EventEvent::TicketKeyRotated { key, at },
        move |r| r,
        reply,
    )
    .await;
}

/// Adds a check-in list, up to `CHECKIN_LISTS_MAX` per event.
async fn create_checkin_list(
    state: &mut EventActorState,
    list: crate::model::CheckInList,
    reply: Reply<EventRecord>,
) {
    if state.record.checkin_lists.len() >= crate::model::CHECKIN_LISTS_MAX {
        let _ = reply.send(Err(
            DomainError::LimitReached("check-in lists per event").into()
        ));
        return;
    }
    let at = state.ctx.clock.now();
    commit(
        state,
        EventEvent::CheckInListCreated { list, at },
        move |r| r,
        reply,
    )
    .await;
}

async fn transition(state: &mut EventActorState, to: EventStatus, reply: Reply<EventRecord>) {
    let action = match to {
        EventStatus::Published => "publish",
        EventStatus::Canceled => "cancel",
        EventStatus::Completed => "complete",
        EventStatus::Draft => "revert to draft",
    };
    if let Err(e) = state.record.check_transition(to, action) {
        let _ = reply.send(Err(e.into()));
        return;
    }
    if to == EventStatus::Published
        && let Some(problem) = unpublishable(&state.record, state.ctx.clock.now())
    {
        let _ = reply.send(Err(DomainError::Validation(vec![problem]).into()));
        return;
    }
    let at = state.ctx.clock.now();
    let event = match to {
        EventStatus::Published => EventEvent::Published { at },
        EventStatus::Canceled => EventEvent::Canceled { at },
        _ => EventEvent::Completed { at },
    };
    let pools: Vec<_> = state
        .shared
        .pool_handles()
        .into_iter()
        .map(|p| p.actor)
        .collect();
    let shared = state.shared.clone();
    let told = pools.clone();
    let tell = move || {
        shared.availability.send_modify(|a| {
            a.status = Some(to);
            a.version += 1;
        });
        for pool in &told {
            let _ = pool.cast(PoolMsg::SetEventStatus(to));
        }
    };
    if to == EventStatus::Published {
        // Pools open for sale only once the publication is durable.
        commit_then(state, event, |r| r, reply, tell).await;
    } else if to == EventStatus::Canceled {
        // Pools refuse new holds and confirmations at once; once the cancellation is durable
        // (never before: a crash must not leave registrations canceled for a live event) they
        // end what is open.
        tell();
        let close = move || {
            for pool in &pools {
                let _ = pool.cast(PoolMsg::CloseCanceled);
            }
        };
        commit_then(state, event, |r| r, reply, close).await;
    } else {
        // Closing is safe before durability: refusing more never loses an acknowledgement.
        tell();
        commit(state, event, |r| r, reply).await;
    }
}

/// Why the event cannot be published now, if it cannot.
fn unpublishable(
    record: &EventRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<crate::error::FieldError> {
    if record.ends_at <= now {
        return Some(crate::error::FieldError::new(
            "ends_at",
            "the event has already ended: a past event cannot be published",
        ));
    }
    record.ticket_types.is_empty().then(|| {
        crate::error::FieldError::new(
            "ticket_types",
            "an event needs at least one ticket type to be published",
        )
    })
}

async fn create_ticket_type(
    myself: &ActorRef<EventMsg>,
    state: &mut EventActorState,
    (cmd, idempotency): (NewTicketType, Option<IdempotencyToken>),
    reply: Reply<(EventRecord, TicketTypeId)>,
) -> Result<(), ActorProcessingErr> {
    if let Err(e) = cmd.validate() {
        let _ = reply.send(Err(e.into()));
        return Ok(());
    }
    if matches!(
        state.record.status,
        EventStatus::Canceled | EventStatus::Completed
    ) {
        let _ = reply.send(Err(DomainError::EventNotOpen(state.record.status).into()));
        return Ok(());
    }
    if state.record.ticket_types.len() >= state.ctx.config.ticket_types_per_event_max {
        let _ = reply.send(Err(
            DomainError::LimitReached("ticket types per event").into()
        ));
        return Ok(());
    }
    let (pool_id, new_pool) = match cmd.seats {
        SeatSource::NewPool { capacity } => {
            let pool = PoolDef {
                id: PoolId::new(),
                capacity,
            };
            (pool.id, Some(pool))
        }
        SeatSource::SharedPool(id) if state.record.pool(id).is_some() => (id, None),
        SeatSource::SharedPool(_) => {
            let _ = reply.send(Err(DomainError::PoolNotFound.into()));
            return Ok(());
        }
    };
    let at = state.ctx.clock.now();
    let ticket_type = TicketType {
        id: TicketTypeId::new(),
        name: cmd.name,
        price_minor: cmd.price_minor,
        currency: cmd.currency,
        pool_id,
        max_per_order: cmd.max_per_order,
        max_per_account: cmd.max_per_account,
        created_at: at,
        min_per_order: cmd.min_per_order,
        sales_start: cmd.sales_start,
        sales_end: cmd.sales_end,
        vat_rate_bp: cmd.vat_rate_bp,
    };
    let id = ticket_type.id;
    // The pool actor starts now; clients learn the ticket type only once it is durable.
    if let Some(def) = new_pool {
        spawn_pool(myself, state, def).await?;
    }
    commit(
        state,
        EventEvent::TicketTypeCreated {
            ticket_type,
            new_pool,
            at,
            idempotency,
        },
        move |r| (r, id),
        reply,
    )
    .await;
    Ok(())
}

fn passivate_if_idle(myself: &ActorRef<EventMsg>, state: &mut EventActorState) {
    let idle_ms = state.ctx.clock.now().timestamp_millis()
        - state.shared.last_used_ms.load(Ordering::Relaxed);
    let idle = idle_ms >= state.ctx.config.passivate_after.as_millis() as i64
        && state.shared.availability.receiver_count() == 0
        && state.shared.scans.receiver_count() == 0
        && state
            .shared
            .reminding_pools
            .lock()
            .map_or(true, |pools| pools.is_empty())
        && state
            .shared
            .pool_handles()
            .iter()
            .all(|p| p.gate.inflight() == 0);
    if !idle {
        state.shared.republish_series(state.ctx.store.as_ref());
        return;
    }
    tracing::debug!(event = %state.record.id, "passivating idle event");
    let my_id = myself.get_id();
    state.ctx.registry.remove_if(&state.record.id, |_, cell| {
        cell.get().is_some_and(|h| h.actor.get_id() == my_id)
    });
    state.stopping = true;
    myself.stop_children(Some("passivated".into()));
    myself.stop(Some("passivated".into()));
}
