//! Per-account feeds: what the `registrations:{user}` and `notifications:{user}` WebSocket
//! topics push. A pool actor publishes the registrations its append touched, per account, once
//! the append is durable (never a change that a crash could still undo); the in-app channel
//! publishes the changes of an account's inbox once they are written. A feed exists only while
//! someone listens (the last [`Feed`] dropped removes it); each is a bounded broadcast
//! channel, and a listener that falls behind is told it lagged (and re-reads) instead of
//! holding memory.

use crate::ids::{RegistrationId, UserId};
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Changes queued per feed before a slow listener lags.
pub const FEED_CAPACITY: usize = 64;

/// The live feeds of changes of type `T`, by account.
#[derive(Debug)]
pub struct UserFeeds<T> {
    senders: DashMap<UserId, broadcast::Sender<T>>,
}

impl<T> Default for UserFeeds<T> {
    fn default() -> Self {
        Self {
            senders: DashMap::new(),
        }
    }
}

impl<T: Clone> UserFeeds<T> {
    /// A listener for `user`'s changes.
    pub fn subscribe(self: &Arc<Self>, user: UserId) -> Feed<T> {
        let rx = self
            .senders
            .entry(user)
            .or_insert_with(|| broadcast::channel(FEED_CAPACITY).0)
            .subscribe();
        Feed {
            rx,
            user,
            feeds: self.clone(),
        }
    }

    /// Whether anyone may be listening (publishers skip all work when nobody is).
    pub fn active(&self) -> bool {
        !self.senders.is_empty()
    }

    /// Tells `user`'s listeners about `change` (made durable before).
    pub fn publish(&self, user: UserId, change: T) {
        let gone = match self.senders.get(&user) {
            Some(tx) => tx.send(change).is_err(),
            None => return,
        };
        if gone {
            // Nobody listens any more: drop the feed (unless someone subscribed meanwhile).
            self.senders
                .remove_if(&user, |_, tx| tx.receiver_count() == 0);
        }
    }
}

/// One listener's changes of one account.
#[derive(Debug)]
pub struct Feed<T> {
    rx: broadcast::Receiver<T>,
    user: UserId,
    feeds: Arc<UserFeeds<T>>,
}

/// A listener to an account's registration changes (their ids).
pub type RegistrationFeed = Feed<RegistrationId>;

impl<T: Clone> Feed<T> {
    /// The next change; `Lagged` when changes were dropped for this slow listener (re-read),
    /// `Closed` never while the publisher runs.
    pub async fn recv(&mut self) -> Result<T, broadcast::error::RecvError> {
        self.rx.recv().await
    }
}

impl<T> Drop for Feed<T> {
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
        let feeds = Arc::new(UserFeeds::<RegistrationId>::default());
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
