//! Per-cycle plugin state: what a plugin's `pre_filter`/`pre_score` computed for the pod being
//! scheduled, kept under the plugin's name for its `filter`/`score` calls. Preemption clones
//! the whole state to try removing victims on one node without touching the others.

use std::any::Any;
use std::collections::HashMap;

/// A value a plugin keeps in the [`CycleState`]; any `Clone` type qualifies.
pub trait StateData: Any + Send + Sync + std::fmt::Debug {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync + std::fmt::Debug> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The state of one scheduling cycle.
#[derive(Debug, Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn StateData>>,
    /// Plugins whose `pre_filter` answered Skip: their filters are not run in this cycle.
    pub skip_filter: Vec<&'static str>,
    /// Plugins whose `pre_score` answered Skip: their scores are not run in this cycle.
    pub skip_score: Vec<&'static str>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self.data.iter().map(|(key, value)| (*key, (**value).clone_data())).collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
        }
    }
}

impl CycleState {
    pub fn insert<T: StateData>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn get<T: StateData>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|value| (**value).as_any().downcast_ref::<T>())
    }

    /// The value a plugin's pre-filter stored, or the error a filter answers when it is
    /// missing (the framework skipped or never ran that pre-filter: a bug, not the pod's fault).
    pub fn require<T: StateData>(&self, key: &'static str) -> Result<&T, super::Status> {
        self.get(key).ok_or_else(|| {
            super::Status::error(format!("reading the pre-filter state of {key}: not found"))
        })
    }

    pub fn get_mut<T: StateData>(&mut self, key: &'static str) -> Option<&mut T> {
        let value: &mut dyn StateData = self.data.get_mut(key)?.as_mut();
        value.as_any_mut().downcast_mut::<T>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_typed_values_and_clones_them() {
        let mut state = CycleState::default();
        state.insert("a", vec![1_u32, 2]);
        assert_eq!(state.get::<Vec<u32>>("a"), Some(&vec![1, 2]));
        assert_eq!(state.get::<String>("a"), None);
        let mut copy = state.clone();
        if let Some(v) = copy.get_mut::<Vec<u32>>("a") {
            v.push(3);
        }
        assert_eq!(state.get::<Vec<u32>>("a").map(Vec::len), Some(2));
        assert_eq!(copy.get::<Vec<u32>>("a").map(Vec::len), Some(3));
    }
}
