//! Event-time timers of a keyed process: per time, the keys to wake when the watermark reaches
//! it. They are not state: a process rebuilds them from its keys' state on restore.

use std::collections::BTreeMap;

use crate::record::row::Value;
use crate::state::{KeyState, KeyedState};

#[derive(Debug, Default)]
pub(super) struct KeyTimers(BTreeMap<i64, Vec<Vec<Value>>>);

impl KeyTimers {
    /// Wakes `key` when the watermark reaches `time`, once however often it is asked.
    pub fn add(&mut self, time: i64, key: &[Value]) {
        let keys = self.0.entry(time).or_default();
        if !keys.iter().any(|k| k[..] == *key) {
            keys.push(key.to_vec());
        }
    }

    /// Removes the earliest timer at or before `watermark`: its time and keys.
    pub fn pop_due(&mut self, watermark: i64) -> Option<(i64, Vec<Vec<Value>>)> {
        let entry = self.0.first_entry()?;
        (*entry.key() <= watermark).then(|| entry.remove_entry())
    }

    /// After a restore of `key_group`: a timer for each of its keys at the time `due` reads
    /// from the key's state (none when it reads none).
    pub fn restore(
        &mut self,
        state: &mut KeyedState,
        key_group: u32,
        watermark: i64,
        due: impl Fn(&mut KeyState<'_>) -> Option<i64>,
    ) {
        for key in super::keys_in_group(state, key_group) {
            if let Some(time) = due(&mut state.key(&key, watermark)) {
                self.add(time, &key);
            }
        }
    }
}
