//! Per-account feeds of registration changes: what the `registrations:{user}` WebSocket topic
//! pushes. A pool actor publishes the registrations its append touched, per account, once the
//! append is durable (never a change that a crash could still undo). A feed exists only while
//! someone listens (the last [`RegistrationFeed`] dropped removes it); each is a bounded
//! broadcast channel, and a listener that falls behind is told it lagged (and re-reads its
//! registrations) instead of holding memory.

use crate::ids::{RegistrationId, UserId};
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Changes queued per feed before a slow listener lags.
pub const FEED_CAPACITY: usize = 64;

/// The live feeds, by account.
#[derive(Debug, Default)]
pub(crate) struct UserFeeds {
    senders: DashMap<UserId, broadcast::Sender<RegistrationId>>,
}

impl UserFeeds {
    /// A listener for `user`'s registration changes.
    pub(crate) fn subscribe(self: &Arc<Self>, user: UserId) -> RegistrationFeed {
        let rx = self
            .senders
            .entry(user)
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .subscribe();
        RegistrationFeed {
            rx,
            user,
            feeds: self.clone(),
        }
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

/// One listener's changes to one account's registrations (their ids).
#[derive(Debug)]
pub struct RegistrationFeed {
    rx: broadcast::Receiver<RegistrationId>,
    user: UserId,
    feeds: Arc<UserFeeds>,
}

impl RegistrationFeed {
    /// The next changed registration; `Lagged` when changes were dropped for this slow
    /// listener (re-read the registrations), `Closed` never while the engine runs.
    pub async fn recv(&mut self) -> Result<RegistrationId, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl Drop for RegistrationFeed {
    fn drop(&mut self) {
        // The last listener takes the feed with it (checked under the map's shard lock, so a
        // concurrent subscribe either finds the feed alive or creates a new one).
        self.feeds
            .senders
            .remove_if(&self.user, |_, tx| tx.receiver_count() <= 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_their_own_changes_and_idle_feeds_go() {
        let feeds = Arc::new(UserFeeds::default());
        let (ann, bob) = (UserId::new(), UserId::new());
        assert!(!feeds.active());
        let mut first = feeds.subscribe(ann);
        let second = feeds.subscribe(ann);
        let reg = RegistrationId::new();
        feeds.publish(bob, RegistrationId::new());
        feeds.publish(ann, reg);
        assert_eq!(first.rx.try_recv().unwrap(), reg);
        assert!(first.rx.try_recv().is_err());
        drop(first);
        assert!(feeds.active(), "one listener is left");
        drop(second);
        assert!(!feeds.active(), "the last listener removed the feed");
    }
}
