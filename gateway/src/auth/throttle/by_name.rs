//! Counting state shared by name across configurations: every configuration the process
//! builds asks for the state of a name (an authentication profile, a mail flow policy)
//! and gets the one earlier configurations still use, so a reload keeps what was counted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// States by name. Weak references: the state of a name no running configuration uses
/// any more goes away.
#[derive(Debug)]
pub(crate) struct ByName<T> {
    states: Arc<Mutex<HashMap<String, Weak<T>>>>,
}

impl<T> Clone for ByName<T> {
    fn clone(&self) -> Self {
        Self {
            states: self.states.clone(),
        }
    }
}

impl<T> Default for ByName<T> {
    fn default() -> Self {
        Self {
            states: Arc::default(),
        }
    }
}

impl<T> ByName<T> {
    /// The state of `name`: the one in use, else a new one from `make`.
    pub(crate) fn get(&self, name: &str, make: impl FnOnce() -> T) -> Arc<T> {
        let mut states = super::lock(&self.states);
        if let Some(s) = states.get(name).and_then(Weak::upgrade) {
            return s;
        }
        let s = Arc::new(make());
        states.retain(|_, w| w.strong_count() > 0);
        states.insert(name.to_owned(), Arc::downgrade(&s));
        s
    }
}
