//! The live bus: every state change the pipeline accepts, fanned out to in-process listeners
//! (the API's `GET /api/v1/stream`, webhook rules).
//!
//! A Tokio `broadcast` channel: publishing never waits and costs one `Arc` clone per listener; a
//! listener that falls more than [`LIVE_BUS_CAPACITY`] events behind gets `Lagged` and decides what
//! to do (the stream tells its client and drops it). Ingestion is never slowed by a listener.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::ha::model::State;
use crate::store::origin::Origin;

/// Events a listener may fall behind before it is told it lagged.
pub const LIVE_BUS_CAPACITY: usize = 4096;

/// One accepted state change.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEvent {
    /// The entity.
    pub entity_id: String,
    /// The state held before (none for a new entity).
    pub old_state: Option<Arc<State>>,
    /// The new state (none when the entity was removed).
    pub new_state: Option<Arc<State>>,
    /// When Home Assistant fired the event (the snapshot time for changes seen at connect).
    pub time_fired: DateTime<Utc>,
    /// Who caused the change.
    pub origin: Origin,
}

/// Sender side of the bus; cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveBus {
    sender: broadcast::Sender<Arc<LiveEvent>>,
}

impl Default for LiveBus {
    fn default() -> Self {
        Self::new(LIVE_BUS_CAPACITY)
    }
}

impl LiveBus {
    /// A bus keeping up to `capacity` events for slow listeners.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }

    /// Whether anyone listens (publishing is skipped otherwise).
    pub fn has_listeners(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Publishes an event; never waits.
    pub fn publish(&self, event: LiveEvent) {
        if self.has_listeners() {
            // an error only means every listener left meanwhile
            let _ = self.sender.send(Arc::new(event));
        }
    }

    /// A new listener, receiving events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    /// Current listeners.
    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> LiveEvent {
        LiveEvent {
            entity_id: id.into(),
            old_state: None,
            new_state: None,
            time_fired: Utc::now(),
            origin: Origin::unknown(),
        }
    }

    #[tokio::test]
    async fn listeners_get_events_and_a_slow_one_lags_without_blocking() {
        let bus = LiveBus::new(4);
        bus.publish(event("light.before")); // nobody listens: dropped
        let mut fast = bus.subscribe();
        let mut slow = bus.subscribe();
        for i in 0..10 {
            bus.publish(event(&format!("light.l{i}")));
            assert_eq!(
                fast.recv().await.map(|e| e.entity_id.clone()).ok(),
                Some(format!("light.l{i}"))
            );
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(6))
        ));
        assert_eq!(bus.listeners(), 2);
    }
}
