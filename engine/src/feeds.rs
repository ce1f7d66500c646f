//! Per-account feeds of registration changes: what the `registrations:{user}` WebSocket topic
//! pushes. A pool actor publishes the registrations its append touched, per account, once the
//! append is durable (never a change that a crash could still undo). A feed exists only while
//! someone listens; each is a bounded broadcast channel, and a listener that falls behind is
//! told it lagged (and re-reads its registrations) instead of holding memory.

use crate::ids::{RegistrationId, UserId};
use dashmap::DashMap;
use tokio::sync::broadcast;

/// Changes queued per feed before a slow listener lags.
pub const FEED_CAPACITY: usize = 64;

/// Feeds beyond which `subscribe` sweeps feeds nobody listens to any more.
const SWEEP_ABOVE: usize = 1024;

/// The live feeds, by account.
#[derive(Debug, Default)]
pub(crate) struct UserFeeds {
    senders: DashMap<UserId, broadcast::Sender<RegistrationId>>,
}

impl UserFeeds {
    /// A listener for `user`'s registration changes.
    pub(crate) fn subscribe(&self, user: UserId) -> broadcast::Receiver<RegistrationId> {
        if self.senders.len() > SWEEP_ABOVE {
            self.senders.retain(|_, tx| tx.receiver_count() > 0);
        }
        self.senders
            .entry(user)
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .subscribe()
    }

    /// Whether anyone may be listening (pool actors skip all work when nobody is).
    pub(crate) fn active(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Tells `user`'s listeners that `registration` changed (durably).
    pub(crate) fn publish(&self, user: UserId, registration: RegistrationId) {
        let gone = match self.senders.get(&user) {
            Some(tx) => tx.send(registration).is_err(),
            None => return,
        };
        if gone {
            // Nobody listens any more: drop the feed (unless someone subscribed meanwhile).
            self.senders
                .remove_if(&user, |_, tx| tx.receiver_count() == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_their_own_changes_and_idle_feeds_go() {
        let feeds = UserFeeds::default();
        let (ann, bob) = (UserId::new(), UserId::new());
        assert!(!feeds.active());
        let mut rx = feeds.subscribe(ann);
        let reg = RegistrationId::new();
        feeds.publish(bob, RegistrationId::new());
        feeds.publish(ann, reg);
        assert_eq!(rx.try_recv().unwrap(), reg);
        assert!(rx.try_recv().is_err());
        drop(rx);
        feeds.publish(ann, reg);
        assert!(!feeds.active());
    }
}
