//! The current state of every entity, kept in memory from the snapshot and the live stream.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::ha::model::State;

/// Shared map from entity id to its latest state. The pipeline writes; the API reads.
#[derive(Debug, Clone, Default)]
pub struct CurrentStates {
    inner: Arc<RwLock<HashMap<String, Arc<State>>>>,
}

impl CurrentStates {
    /// The latest state of an entity.
    pub fn get(&self, entity_id: &str) -> Option<Arc<State>> {
        self.read().get(entity_id).cloned()
    }

    /// Stores a state as the entity's latest and returns it shared.
    pub fn insert(&self, state: State) -> Arc<State> {
        let state = Arc::new(state);
        let mut map = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get_mut(&state.entity_id) {
            Some(held) => *held = Arc::clone(&state),
            None => {
                map.insert(state.entity_id.clone(), Arc::clone(&state));
            }
        }
        state
    }

    /// Every current state, in no particular order.
    pub fn all(&self) -> Vec<Arc<State>> {
        self.read().values().cloned().collect()
    }

    /// What `pick` takes from the current states, in no particular order: nothing else is
    /// cloned. The read lock is held meanwhile (ingestion waits to insert): keep `pick` cheap.
    pub fn select<T>(&self, pick: impl FnMut(&Arc<State>) -> Option<T>) -> Vec<T> {
        self.read().values().filter_map(pick).collect()
    }

    /// Forgets an entity (removed from Home Assistant).
    pub fn remove(&self, entity_id: &str) {
        let mut map = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(entity_id);
    }

    /// Every entity id with a state.
    pub fn entity_ids(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// How many entities have a state.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no entity has a state yet.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<State>>> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
