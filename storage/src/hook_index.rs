//! The organizer webhook endpoints by scope, in memory (`HookIndex`): loaded when the store
//! opens, changed with every endpoint write, asked by the read model per happening which
//! enabled endpoints want it (and not at all while none is enabled).

use engine::ids::{EventId, UserId};
use engine::webhooks::{Endpoint, HookType, HookTypes, Scope};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};
use uuid::Uuid;

/// Events whose owner the index remembers (cleared when full, then learned again).
const OWNERS_MAX: usize = 100_000;

/// A scope's endpoints: id, the types it wants, whether it is enabled.
type ScopeList = Vec<(Uuid, HookTypes, bool)>;

/// The endpoints by scope, in memory (loaded at open, changed with every write).
#[derive(Debug, Default)]
pub(crate) struct HookIndex {
    by_scope: RwLock<HashMap<Scope, ScopeList>>,
    /// Enabled endpoints: the read model skips all of this at 0.
    enabled: AtomicUsize,
    /// Enabled organizer-wide endpoints: an event's owner is looked up only if there are.
    organizer_wide: AtomicUsize,
    /// Each event's owner, as the read model found it.
    owners: Mutex<HashMap<EventId, Option<UserId>>>,
    /// Where the log's pruning stopped last (endpoint + message).
    prune_cursor: Mutex<Option<[u8; 32]>>,
}

impl HookIndex {
    pub(crate) fn take_prune_cursor(&self) -> Option<[u8; 32]> {
        self.prune_cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    pub(crate) fn set_prune_cursor(&self, cursor: Option<[u8; 32]>) {
        *self.prune_cursor.lock().unwrap_or_else(|e| e.into_inner()) = cursor;
    }

    /// Whether any organizer-wide endpoint is enabled.
    pub(crate) fn organizer_wide(&self) -> bool {
        self.organizer_wide.load(Ordering::Relaxed) > 0
    }

    /// Whether any endpoint is enabled.
    pub(crate) fn active(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn put(&self, endpoint: &Endpoint) {
        let mut by_scope = self.by_scope.write().unwrap_or_else(|e| e.into_inner());
        Self::remove_from(&mut by_scope, endpoint.id);
        by_scope.entry(endpoint.scope).or_default().push((
            endpoint.id,
            endpoint.types,
            endpoint.enabled,
        ));
        self.recount(&by_scope);
    }

    pub(crate) fn remove(&self, id: Uuid) {
        let mut by_scope = self.by_scope.write().unwrap_or_else(|e| e.into_inner());
        Self::remove_from(&mut by_scope, id);
        self.recount(&by_scope);
    }

    fn remove_from(by_scope: &mut HashMap<Scope, ScopeList>, id: Uuid) {
        by_scope.retain(|_, list| {
            list.retain(|(e, _, _)| *e != id);
            !list.is_empty()
        });
    }

    fn recount(&self, by_scope: &HashMap<Scope, ScopeList>) {
        let count = |organizer_only: bool| {
            by_scope
                .iter()
                .filter(|(scope, _)| !organizer_only || matches!(scope, Scope::Organizer(_)))
                .flat_map(|(_, list)| list)
                .filter(|(_, _, enabled)| *enabled)
                .count()
        };
        self.enabled.store(count(false), Ordering::Relaxed);
        self.organizer_wide.store(count(true), Ordering::Relaxed);
    }

    /// The enabled endpoints of `event` (and of its owner) that want `kind`.
    pub(crate) fn targets(
        &self,
        event: EventId,
        owner: Option<UserId>,
        kind: HookType,
    ) -> Vec<Uuid> {
        let by_scope = self.by_scope.read().unwrap_or_else(|e| e.into_inner());
        let scopes = [Some(Scope::Event(event)), owner.map(Scope::Organizer)];
        scopes
            .into_iter()
            .flatten()
            .filter_map(|scope| by_scope.get(&scope))
            .flatten()
            .filter(|(_, types, enabled)| *enabled && types.wants(kind))
            .map(|(id, _, _)| *id)
            .collect()
    }

    /// The ids of a scope's endpoints.
    pub(crate) fn of_scope(&self, scope: Scope) -> Vec<Uuid> {
        let by_scope = self.by_scope.read().unwrap_or_else(|e| e.into_inner());
        by_scope
            .get(&scope)
            .map(|list| list.iter().map(|(id, _, _)| *id).collect())
            .unwrap_or_default()
    }

    pub(crate) fn all(&self) -> Vec<Uuid> {
        let by_scope = self.by_scope.read().unwrap_or_else(|e| e.into_inner());
        by_scope.values().flatten().map(|(id, _, _)| *id).collect()
    }

    /// The owner of `event`, if remembered (`Some(None)`: it has none).
    pub(crate) fn owner(&self, event: EventId) -> Option<Option<UserId>> {
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        owners.get(&event).copied()
    }

    /// Remembers an event's owner (its creation was just projected).
    pub(crate) fn learn_owner(&self, event: EventId, owner: Option<UserId>) {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        if owners.len() >= OWNERS_MAX {
            owners.clear();
        }
        owners.insert(event, owner);
    }
}
