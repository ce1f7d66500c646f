//! `RootActor`: supervises the event actors. When one stops (passivated or failed), its
//! registry entry is removed so the next caller activates it again from durable state.

use super::Registry;
use crate::ids::EventId;
use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::sync::Arc;

pub(crate) struct RootActor;

/// Name prefix of event actors: `event:{id}:{incarnation}`.
pub(crate) const EVENT_ACTOR_PREFIX: &str = "event:";

impl Actor for RootActor {
    type Msg = ();
    type State = Arc<Registry>;
    type Arguments = Arc<Registry>;

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        registry: Arc<Registry>,
    ) -> Result<Arc<Registry>, ActorProcessingErr> {
        Ok(registry)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        evt: SupervisionEvent,
        registry: &mut Arc<Registry>,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match evt {
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(err.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let Some(event_id) = cell
            .get_name()
            .and_then(|n| {
                n.strip_prefix(EVENT_ACTOR_PREFIX)
                    .and_then(|r| r.split(':').next())
                    .map(str::to_owned)
            })
            .and_then(|s| s.parse().ok())
            .map(EventId)
        else {
            return Ok(());
        };
        if let Some(reason) = failure {
            metrics::counter!("regengine_engine_actor_restarts_total", "actor" => "event")
                .increment(1);
            tracing::error!(event = %event_id, %reason, "event actor failed; it will be activated again on next use");
        }
        let dead = cell.get_id();
        registry.remove_if(&event_id, |_, entry| {
            entry.get().is_some_and(|h| h.actor.get_id() == dead)
        });
        Ok(())
    }
}
