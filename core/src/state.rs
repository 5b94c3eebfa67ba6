//! Keyed state of stateful operators: value, list, map and aggregating state per key, with TTL.
//!
//! A [`KeyedState`] lives on one data core and holds the state of the keys whose key groups
//! that core owns, stored per key group so that one key group can be snapshotted and restored
//! alone. Pure: no IO and no clock; whatever needs the time takes it as an argument (operators
//! pass the current watermark), so expiry is deterministic and replayable.
//!
//! ```
//! use wire_core::state::{KeyedState, StateDescriptor};
//! use wire_core::Value;
//!
//! let descriptors = vec![StateDescriptor::list("recent").with_ttl(1_000)];
//! let mut state = KeyedState::new(descriptors, 128);
//! for (seller, price) in [(1, 10), (2, 7), (1, 30), (1, 50)] {
//!     let mut key = state.key(&[Value::I64(seller)], 0);
//!     let mut recent = key.list(0);
//!     recent.push(vec![Value::I64(price)]);
//!     recent.retain_last(2);
//! }
//! let prices: Vec<i64> = {
//!     let mut key = state.key(&[Value::I64(1)], 0);
//!     let recent = key.list(0);
//!     recent.iter().filter_map(|row| match row[0] { Value::I64(p) => Some(p), _ => None }).collect()
//! };
//! assert_eq!(prices, [30, 50]);
//! assert_eq!(state.expire(1_000), 2); // both lists were written at 0 and live for 1 s
//! assert!(state.is_empty());
//! ```

pub mod snapshot;

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashSet, VecDeque};
use std::mem::{discriminant, size_of};

use hashbrown::HashTable;

use crate::frontend::expr::Datum;
use crate::operator::agg::{Acc, AggCall, AggKind};
use crate::record::key::{key_group, KeyHasher};
use crate::record::row::{ArchivedRow, AsValueRef, Value, ValueRef};
use crate::record::schema::DataType;
use crate::state::snapshot::{
    corrupt, mismatch, put_bytes, put_len, put_row, put_tagged, put_value, AccRead, Reader, VERSION,
};

/// One row of list or map state: positional values, as in a batch.
pub type Row = Box<[Value]>;

/// What a state holds for each key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StateKind {
    /// One [`Value`], read and written through [`ValueState`].
    Value,
    /// Rows in insertion order, through [`ListState`].
    List,
    /// Rows by a [`Value`] key, ordered by [`total_cmp`], through [`MapState`].
    Map,
    /// Accumulators of these aggregate calls, through [`AggregatingState`].
    Aggregating(Vec<AggCall>),
}

/// Declares one state of an operator: its name, kind and optional time to live.
///
/// The TTL applies to each key's state of this descriptor as a whole (all rows of a list, all
/// entries of a map): it stays visible while `now < last write + ttl` and is removed by
/// [`KeyedState::expire`] after that. Every write refreshes it.
///
/// ```
/// use wire_core::state::{StateDescriptor, StateKind};
///
/// let last = StateDescriptor::value("last_bid").with_ttl(60_000);
/// assert_eq!((last.name(), last.ttl_ms()), ("last_bid", Some(60_000)));
/// assert!(matches!(StateDescriptor::map("by_auction").kind(), StateKind::Map));
/// assert_eq!(StateDescriptor::list("recent").kind().name(), "list");
/// ```
#[derive(Debug, Clone)]
pub struct StateDescriptor {
    name: String,
    kind: StateKind,
    ttl_ms: Option<i64>,
}

/// Why a snapshot cannot be restored. Offsets are byte offsets into the snapshot.
///
/// ```
/// use wire_core::state::{KeyedState, StateDescriptor, StateError};
///
/// let mut state = KeyedState::new(vec![StateDescriptor::value("v")], 4);
/// let error = state.restore_key_group(0, &[1, 2, 3]).unwrap_err();
/// assert!(matches!(error, StateError::Corrupt { offset: 0, .. }), "{error}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The bytes are not a snapshot this build can read: truncated, damaged or not a snapshot.
    #[error("corrupt state snapshot at byte {offset}: {reason}")]
    Corrupt {
        /// Where the problem was found.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// The snapshot is intact but of other state: another key group or other descriptors.
    #[error("state snapshot does not fit at byte {offset}: {reason}")]
    Mismatch {
        /// Where the disagreement was found.
        offset: usize,
        /// What disagrees.
        reason: String,
    },
    /// The key group is not below the maximum parallelism.
    #[error("key group {key_group} is out of range: max parallelism is {max_parallelism}")]
    KeyGroupOutOfRange {
        /// The key group asked for.
        key_group: u32,
        /// The state's maximum parallelism.
        max_parallelism: u32,
    },
}

/// The keyed state of one operator instance on one core, partitioned by key group.
///
/// Looking up a key that exists hashes it and probes a hash table: no allocation. A key with
/// no state left is removed when its [`KeyState`] is dropped or its state expires.
#[derive(Debug)]
pub struct KeyedState {
    descriptors: Box<[StateDescriptor]>,
    max_parallelism: u32,
    /// Indexed by key group; `None` until the key group first holds a key.
    groups: Vec<Option<Box<KeyGroup>>>,
    /// Cells with a TTL by deadline, at most one item per cell; stale items are skipped.
    expiry: BinaryHeap<Reverse<Expiry>>,
    next_serial: u64,
    /// Bytes of keys and cells (inline and heap), kept up to date by every write.
    content_bytes: usize,
    keys: usize,
}

/// The state of one key: the accessors return views of one descriptor's state each.
///
/// Reads and writes happen at the time given to [`KeyedState::key`]. Each accessor panics if
/// descriptor `index` does not exist or is of another kind (a bug in the operator).
///
/// ```
/// use wire_core::state::{KeyedState, StateDescriptor};
/// use wire_core::Value;
///
/// let descriptors = vec![StateDescriptor::value("last"), StateDescriptor::list("all")];
/// let mut state = KeyedState::new(descriptors, 128);
/// let mut key = state.key(&[Value::I64(9)], 0);
/// assert_eq!(key.key(), [Value::I64(9)]);
/// key.value(0).set(Value::I64(1));
/// key.list(1).push(vec![Value::I64(1)]);
/// key.clear();
/// drop(key);
/// assert!(state.is_empty());
/// ```
#[derive(Debug)]
pub struct KeyState<'s> {
    state: &'s mut KeyedState,
    key_group: u32,
    slot: u32,
    now_ms: i64,
}

/// One key's [`StateKind::Value`] state.
///
/// ```
/// use wire_core::state::{KeyedState, StateDescriptor};
/// use wire_core::Value;
///
/// let mut state = KeyedState::new(vec![StateDescriptor::value("last")], 128);
/// let mut key = state.key(&[Value::Str("alice".into())], 0);
/// let mut last = key.value(0);
/// assert_eq!(last.get(), None);
/// last.set(Value::I64(7));
/// assert_eq!(last.get(), Some(&Value::I64(7)));
/// assert_eq!(last.take(), Some(Value::I64(7)));
/// assert_eq!(last.get(), None);
/// ```
#[derive(Debug)]
pub struct ValueState<'a> {
    cell: CellMut<'a>,
}

/// One key's [`StateKind::List`] state: rows in insertion order.
///
/// ```
/// use wire_core::state::{KeyedState, StateDescriptor};
/// use wire_core::Value;
///
/// let mut state = KeyedState::new(vec![StateDescriptor::list("recent")], 128);
/// let mut key = state.key(&[Value::I64(1)], 0);
/// let mut recent = key.list(0);
/// for price in 1..=5 {
///     recent.push(vec![Value::I64(price)]);
/// }
/// recent.retain_last(3);
/// assert_eq!(recent.len(), 3);
/// assert_eq!(recent.get(0), Some(&[Value::I64(3)][..]));
/// assert_eq!(recent.pop_front().as_deref(), Some(&[Value::I64(3)][..]));
/// assert_eq!(recent.iter().count(), 2);
/// ```
#[derive(Debug)]
pub struct ListState<'a> {
    cell: CellMut<'a>,
}

/// One key's [`StateKind::Map`] state: rows by a value key, iterated in [`total_cmp`] order.
///
/// ```
/// use wire_core::state::{KeyedState, StateDescriptor};
/// use wire_core::{Value, ValueRef};
///
/// let mut state = KeyedState::new(vec![StateDescriptor::map("bids")], 128);
/// let mut key = state.key(&[Value::I64(1)], 0);
/// let mut bids = key.map(0);
/// bids.insert(Value::Str("b".into()), vec![Value::I64(20)]);
/// bids.insert(Value::Null, vec![Value::I64(0)]);
/// bids.insert(Value::Str("a".into()), vec![Value::I64(10)]);
/// assert_eq!(bids.get(&ValueRef::Str("a")), Some(&[Value::I64(10)][..]));
/// let keys: Vec<&Value> = bids.iter().map(|(k, _)| k).collect();
/// assert_eq!(keys, [&Value::Null, &Value::Str("a".into()), &Value::Str("b".into())]);
/// assert!(bids.remove(&Value::Null).is_some());
/// assert_eq!(bids.len(), 2);
/// ```
#[derive(Debug)]
pub struct MapState<'a> {
    cell: CellMut<'a>,
}

/// One key's [`StateKind::Aggregating`] state: fed rows with `update`, read with `result`.
///
/// ```
/// use wire_core::operator::agg::compile;
/// use wire_core::frontend::expr::Datum;
/// use wire_core::state::{KeyedState, StateDescriptor};
/// use wire_core::{BatchBuilder, DataType, Field, PartitionId, Schema, StreamId, Value, ValueRef};
///
/// let schema = Schema::new(vec![Field::new("price", DataType::I64)]);
/// let calls = vec![compile("count(*)", &schema).unwrap(), compile("max(price)", &schema).unwrap()];
/// let mut state = KeyedState::new(vec![StateDescriptor::aggregating("stats", calls)], 128);
/// let mut builder = BatchBuilder::new(StreamId(0), PartitionId(0));
/// for price in [5, 9, 2] {
///     builder.push(&[ValueRef::I64(price)]).unwrap();
/// }
/// let batch = builder.finish();
/// let mut key = state.key(&[Value::I64(1)], 0);
/// let mut stats = key.agg(0);
/// assert_eq!(stats.result(0), Datum::I64(0));
/// for row in batch.view().rows() {
///     stats.update(row);
/// }
/// assert_eq!((stats.result(0), stats.result(1)), (Datum::I64(3), Datum::I64(9)));
/// ```
#[derive(Debug)]
pub struct AggregatingState<'a> {
    cell: CellMut<'a>,
    calls: &'a [AggCall],
}

/// The total order of map keys: NULL first, then bools, numbers (`i64` and `f64` compared by
/// exact value, an `i64` before an equal `f64`, NaN after every other number, `-0.0 == 0.0`),
/// timestamps, strings and bytes, each by value.
///
/// ```
/// use std::cmp::Ordering;
/// use wire_core::state::total_cmp;
/// use wire_core::ValueRef;
///
/// assert_eq!(total_cmp(ValueRef::Null, ValueRef::Bool(false)), Ordering::Less);
/// assert_eq!(total_cmp(ValueRef::I64(2), ValueRef::F64(1.5)), Ordering::Greater);
/// assert_eq!(total_cmp(ValueRef::I64(1), ValueRef::F64(1.0)), Ordering::Less);
/// assert_eq!(total_cmp(ValueRef::F64(-0.0), ValueRef::F64(0.0)), Ordering::Equal);
/// assert_eq!(total_cmp(ValueRef::F64(f64::NAN), ValueRef::I64(i64::MAX)), Ordering::Greater);
/// assert_eq!(total_cmp(ValueRef::Timestamp(0), ValueRef::Str("")), Ordering::Less);
/// ```
pub fn total_cmp(a: ValueRef<'_>, b: ValueRef<'_>) -> Ordering {
    use ValueRef as V;
    match (a, b) {
        (V::I64(x), V::I64(y)) | (V::Timestamp(x), V::Timestamp(y)) => x.cmp(&y),
        (V::F64(x), V::F64(y)) => cmp_f64(x, y),
        (V::I64(x), V::F64(y)) => cmp_i64_f64(x, y).then(Ordering::Less),
        (V::F64(x), V::I64(y)) => cmp_i64_f64(y, x).reverse().then(Ordering::Greater),
        (V::Bool(x), V::Bool(y)) => x.cmp(&y),
        (V::Str(x), V::Str(y)) => x.cmp(y),
        (V::Bytes(x), V::Bytes(y)) => x.cmp(y),
        _ => type_rank(a).cmp(&type_rank(b)),
    }
}

/// The hash of a key: the key hash of `key_by`, which also chose the core the row went to.
///
/// ```
/// use wire_core::record::key::key_group;
/// use wire_core::state::{key_hash, KeyedState};
/// use wire_core::{Value, ValueRef};
///
/// let key = [Value::I64(1), Value::Str("eu".into())];
/// assert_eq!(key_hash(&key), key_hash(&[ValueRef::I64(1), ValueRef::Str("eu")]));
/// let state = KeyedState::new(vec![], 128);
/// assert_eq!(state.key_group_of(&key), key_group(key_hash(&key), 128));
/// ```
pub fn key_hash<V: AsValueRef>(key: &[V]) -> u64 {
    let mut hasher = KeyHasher::default();
    for part in key {
        hasher.add(part.as_value());
    }
    hasher.finish()
}

impl StateKind {
    /// The kind's name: `value`, `list`, `map` or `aggregating`.
    pub fn name(&self) -> &'static str {
        match self {
            StateKind::Value => "value",
            StateKind::List => "list",
            StateKind::Map => "map",
            StateKind::Aggregating(_) => "aggregating",
        }
    }
}

impl StateDescriptor {
    /// A [`StateKind::Value`] state called `name`, without TTL.
    pub fn value(name: impl Into<String>) -> StateDescriptor {
        StateDescriptor::new(name, StateKind::Value)
    }

    /// A [`StateKind::List`] state called `name`, without TTL.
    pub fn list(name: impl Into<String>) -> StateDescriptor {
        StateDescriptor::new(name, StateKind::List)
    }

    /// A [`StateKind::Map`] state called `name`, without TTL.
    pub fn map(name: impl Into<String>) -> StateDescriptor {
        StateDescriptor::new(name, StateKind::Map)
    }

    /// A [`StateKind::Aggregating`] state of `calls`, called `name`, without TTL.
    pub fn aggregating(name: impl Into<String>, calls: Vec<AggCall>) -> StateDescriptor {
        StateDescriptor::new(name, StateKind::Aggregating(calls))
    }

    /// The same state with a time to live of `ttl_ms` (in the caller's time, e.g. event time).
    ///
    /// Panics unless `ttl_ms` is positive; validate user-given TTLs before.
    pub fn with_ttl(mut self, ttl_ms: i64) -> StateDescriptor {
        assert!(
            ttl_ms > 0,
            "state `{}` needs a positive TTL, got {ttl_ms}",
            self.name
        );
        self.ttl_ms = Some(ttl_ms);
        self
    }

    /// The state's name, unique among an operator's states.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the state holds per key.
    pub fn kind(&self) -> &StateKind {
        &self.kind
    }

    /// The time to live, if any.
    pub fn ttl_ms(&self) -> Option<i64> {
        self.ttl_ms
    }

    fn new(name: impl Into<String>, kind: StateKind) -> StateDescriptor {
        StateDescriptor {
            name: name.into(),
            kind,
            ttl_ms: None,
        }
    }
}

impl KeyedState {
    /// Empty state of `descriptors` (addressed by index from then on) for keys hashing into
    /// `max_parallelism` key groups (at least 1).
    ///
    /// ```
    /// use wire_core::state::{KeyedState, StateDescriptor};
    /// use wire_core::Value;
    ///
    /// let mut state = KeyedState::new(vec![StateDescriptor::value("v")], 128);
    /// state.key(&[Value::I64(1)], 0).value(0).set(Value::Bool(true));
    /// state.key(&[Value::I64(2)], 0); // a key without state is not kept
    /// assert_eq!(state.len(), 1);
    /// let group = state.key_group_of(&[Value::I64(1)]);
    /// assert_eq!(state.key_groups().collect::<Vec<_>>(), [group]);
    /// ```
    pub fn new(descriptors: Vec<StateDescriptor>, max_parallelism: u32) -> KeyedState {
        let max_parallelism = max_parallelism.max(1);
        KeyedState {
            descriptors: descriptors.into(),
            max_parallelism,
            groups: (0..max_parallelism).map(|_| None).collect(),
            expiry: BinaryHeap::new(),
            next_serial: 0,
            content_bytes: 0,
            keys: 0,
        }
    }

    /// The descriptors, in index order.
    pub fn descriptors(&self) -> &[StateDescriptor] {
        &self.descriptors
    }

    /// The number of key groups keys hash into.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// The key group of `key` (values, datums or archived values, in key order).
    pub fn key_group_of<V: AsValueRef>(&self, key: &[V]) -> u32 {
        key_group(key_hash(key), self.max_parallelism)
    }

    /// The state of `key` at time `now_ms`: reads see what has not expired by then, writes are
    /// stamped with it (never earlier than the previous write).
    pub fn key<V: AsValueRef>(&mut self, key: &[V], now_ms: i64) -> KeyState<'_> {
        let hash = key_hash(key);
        let group_index = key_group(hash, self.max_parallelism);
        let group = self.groups[group_index as usize].get_or_insert_with(Box::default);
        let slot = match group.find(hash, |stored| key_eq(stored, key)) {
            Some(slot) => slot,
            None => {
                let key: Row = key.iter().map(|v| to_value(v.as_value())).collect();
                let entry = Entry::new(hash, self.next_serial, key, &self.descriptors);
                self.next_serial += 1;
                self.content_bytes += entry.bytes();
                self.keys += 1;
                group.insert(entry)
            }
        };
        KeyState {
            state: self,
            key_group: group_index,
            slot,
            now_ms,
        }
    }

    /// Keys holding state.
    pub fn len(&self) -> usize {
        self.keys
    }

    /// Whether no key holds state.
    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    /// Every key holding state, grouped by key group (in no particular order within one).
    pub fn keys(&self) -> impl Iterator<Item = &[Value]> + '_ {
        self.groups
            .iter()
            .flatten()
            .flat_map(|group| group.entries().map(|entry| &*entry.key))
    }

    /// The key groups holding state, ascending.
    pub fn key_groups(&self) -> impl Iterator<Item = u32> + '_ {
        (0u32..)
            .zip(&self.groups)
            .filter(|(_, group)| group.as_ref().is_some_and(|g| g.len() > 0))
            .map(|(index, _)| index)
    }

    /// Removes every state whose TTL ran out by `now_ms` (`last write + ttl <= now_ms`) and
    /// every key left without state; returns how many states (key × descriptor) expired.
    ///
    /// Costs O(log n) per due queue item, never a scan of all state: each state with a TTL
    /// has one item in a deadline-ordered queue, re-queued when a later write moved it on.
    ///
    /// ```
    /// use wire_core::state::{KeyedState, StateDescriptor};
    /// use wire_core::Value;
    ///
    /// let mut state = KeyedState::new(vec![StateDescriptor::value("v").with_ttl(10)], 128);
    /// state.key(&[Value::I64(1)], 0).value(0).set(Value::I64(1));
    /// state.key(&[Value::I64(1)], 5).value(0).set(Value::I64(2)); // refreshed until 15
    /// assert_eq!(state.key(&[Value::I64(1)], 14).value(0).get(), Some(&Value::I64(2)));
    /// assert_eq!(state.key(&[Value::I64(1)], 15).value(0).get(), None); // invisible...
    /// assert_eq!(state.expire(10), 0);
    /// assert_eq!(state.expire(15), 1); // ...and now gone
    /// assert!(state.is_empty());
    /// ```
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let mut expired = 0;
        while let Some(Reverse(item)) = self.expiry.peek() {
            if item.deadline_ms > now_ms {
                break;
            }
            if let Some(Reverse(item)) = self.expiry.pop() {
                expired += usize::from(self.expire_item(item, now_ms));
            }
        }
        expired
    }

    /// Approximate bytes the whole backend occupies: keys, state, tables and the expiry queue.
    ///
    /// ```
    /// use wire_core::state::{KeyedState, StateDescriptor};
    /// use wire_core::Value;
    ///
    /// let mut state = KeyedState::new(vec![StateDescriptor::list("rows")], 128);
    /// let empty = state.approx_bytes();
    /// state.key(&[Value::I64(1)], 0).list(0).push(vec![Value::Str("x".repeat(1000))]);
    /// assert!(state.approx_bytes() >= empty + 1000);
    /// state.key(&[Value::I64(1)], 0).list(0).clear();
    /// assert!(state.approx_bytes() < empty + 1000); // the key is gone, its table slot stays
    /// ```
    pub fn approx_bytes(&self) -> usize {
        let groups: usize = self
            .groups
            .iter()
            .flatten()
            .map(|group| group.overhead_bytes())
            .sum();
        size_of::<KeyedState>()
            + self.content_bytes
            + groups
            + self.groups.capacity() * size_of::<Option<Box<KeyGroup>>>()
            + self.expiry.capacity() * size_of::<Reverse<Expiry>>()
            + self.descriptors.len() * size_of::<StateDescriptor>()
    }

    /// The state of key group `key_group` as self-describing little-endian bytes: a version
    /// byte, the key group, the descriptors' names and kinds, every key with its states and
    /// their last write times, and a CRC32C of all of it.
    ///
    /// Panics if `key_group` is not below [`KeyedState::max_parallelism`].
    ///
    /// ```
    /// use wire_core::state::{KeyedState, StateDescriptor};
    /// use wire_core::Value;
    ///
    /// let descriptors = || vec![StateDescriptor::value("v")];
    /// let mut state = KeyedState::new(descriptors(), 8);
    /// state.key(&[Value::I64(42)], 0).value(0).set(Value::Str("kept".into()));
    /// let group = state.key_group_of(&[Value::I64(42)]);
    /// let bytes = state.snapshot_key_group(group);
    ///
    /// let mut restored = KeyedState::new(descriptors(), 8);
    /// restored.restore_key_group(group, &bytes).unwrap();
    /// let mut key = restored.key(&[Value::I64(42)], 0);
    /// assert_eq!(key.value(0).get(), Some(&Value::Str("kept".into())));
    /// ```
    pub fn snapshot_key_group(&self, key_group: u32) -> Vec<u8> {
        assert!(
            key_group < self.max_parallelism,
            "key group {key_group} is out of range: max parallelism is {}",
            self.max_parallelism
        );
        let group = self.groups[key_group as usize].as_deref();
        let mut out = Vec::new();
        put_header(&mut out, key_group, &self.descriptors);
        let count = group.map_or(0, KeyGroup::len);
        put_len(&mut out, count);
        for entry in group.into_iter().flat_map(KeyGroup::entries) {
            put_entry(&mut out, entry, &self.descriptors);
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Replaces the state of key group `key_group` with a snapshot of it. On error the state
    /// is unchanged; corrupt bytes never panic.
    ///
    /// ```
    /// use wire_core::state::{KeyedState, StateDescriptor, StateError};
    /// use wire_core::Value;
    ///
    /// let mut state = KeyedState::new(vec![StateDescriptor::value("v")], 8);
    /// state.key(&[Value::I64(1)], 0).value(0).set(Value::I64(1));
    /// let group = state.key_group_of(&[Value::I64(1)]);
    /// let mut bytes = state.snapshot_key_group(group);
    /// bytes[10] ^= 0x40;
    /// let error = state.restore_key_group(group, &bytes).unwrap_err();
    /// assert!(matches!(error, StateError::Corrupt { .. }), "{error}");
    /// assert_eq!(state.len(), 1);
    /// ```
    pub fn restore_key_group(&mut self, key_group: u32, bytes: &[u8]) -> Result<(), StateError> {
        if key_group >= self.max_parallelism {
            return Err(StateError::KeyGroupOutOfRange {
                key_group,
                max_parallelism: self.max_parallelism,
            });
        }
        let mut reader = Reader::new(snapshot::checked(bytes)?);
        read_header(&mut reader, key_group, &self.descriptors)?;
        let count = reader.count("key")?;
        let mut group = KeyGroup::default();
        for _ in 0..count {
            let at = reader.offset();
            let entry = read_entry(&mut reader, &self.descriptors)?;
            let found = crate::record::key::key_group(entry.hash, self.max_parallelism);
            if found != key_group {
                let reason = format!("the key belongs to key group {found}, not {key_group}");
                return Err(StateError::Mismatch { offset: at, reason });
            }
            if group
                .find(entry.hash, |stored| key_eq(stored, &entry.key))
                .is_some()
            {
                return Err(corrupt(at, "the key appears twice".into()));
            }
            group.insert(entry);
        }
        reader.finish()?;
        self.install(key_group, group);
        Ok(())
    }

    /// Puts a decoded key group in place of the current one, fixing counters and the queue.
    fn install(&mut self, key_group: u32, mut group: KeyGroup) {
        if let Some(old) = self.groups[key_group as usize].take() {
            for entry in old.entries() {
                self.content_bytes = self.content_bytes.saturating_sub(entry.bytes());
                self.keys -= 1;
            }
        }
        for (slot, entry) in (0u32..).zip(&mut group.slots) {
            let Some(entry) = entry else { continue };
            entry.serial = self.next_serial;
            self.next_serial += 1;
            self.content_bytes += entry.bytes();
            self.keys += 1;
            for ((index, cell), descriptor) in
                (0u32..).zip(&mut *entry.cells).zip(&*self.descriptors)
            {
                if let (Some(ttl), false) = (descriptor.ttl_ms, cell.data.is_empty()) {
                    cell.queued = true;
                    self.expiry.push(Reverse(Expiry {
                        deadline_ms: cell.written_ms.saturating_add(ttl),
                        serial: entry.serial,
                        key_group,
                        slot,
                        index,
                    }));
                }
            }
        }
        self.groups[key_group as usize] = (group.len() > 0).then(|| Box::new(group));
    }

    /// Handles one due queue item; true if it expired a state.
    fn expire_item(&mut self, item: Expiry, now_ms: i64) -> bool {
        let Some(group) = self.groups[item.key_group as usize].as_deref_mut() else {
            return false;
        };
        let Some(Some(entry)) = group.slots.get_mut(item.slot as usize) else {
            return false;
        };
        let ttl = self.descriptors[item.index as usize].ttl_ms;
        let (Some(ttl), true) = (ttl, entry.serial == item.serial) else {
            return false;
        };
        let cell = &mut entry.cells[item.index as usize];
        if cell.data.is_empty() {
            cell.queued = false;
            return false;
        }
        let deadline_ms = cell.written_ms.saturating_add(ttl);
        if deadline_ms > now_ms {
            self.expiry.push(Reverse(Expiry {
                deadline_ms,
                ..item
            }));
            return false;
        }
        self.content_bytes = self.content_bytes.saturating_sub(cell.bytes);
        cell.clear();
        cell.queued = false;
        if entry.cells.iter().all(|cell| cell.data.is_empty()) {
            if let Some(entry) = group.remove(item.slot) {
                self.content_bytes = self.content_bytes.saturating_sub(entry.bytes());
                self.keys -= 1;
            }
        }
        true
    }
}

impl KeyState<'_> {
    /// The key, as stored.
    pub fn key(&self) -> &[Value] {
        &self.entry().key
    }

    /// The key group of the key.
    pub fn key_group(&self) -> u32 {
        self.key_group
    }

    /// The [`StateKind::Value`] state of descriptor `index`.
    pub fn value(&mut self, index: usize) -> ValueState<'_> {
        ValueState {
            cell: self.cell(index, "value").0,
        }
    }

    /// The [`StateKind::List`] state of descriptor `index`.
    pub fn list(&mut self, index: usize) -> ListState<'_> {
        ListState {
            cell: self.cell(index, "list").0,
        }
    }

    /// The [`StateKind::Map`] state of descriptor `index`.
    pub fn map(&mut self, index: usize) -> MapState<'_> {
        MapState {
            cell: self.cell(index, "map").0,
        }
    }

    /// The [`StateKind::Aggregating`] state of descriptor `index`.
    pub fn agg(&mut self, index: usize) -> AggregatingState<'_> {
        let (cell, kind) = self.cell(index, "aggregating");
        let calls = match kind {
            StateKind::Aggregating(calls) => calls.as_slice(),
            _ => &[],
        };
        AggregatingState { cell, calls }
    }

    /// Removes all of the key's state (the key itself goes when this is dropped).
    pub fn clear(&mut self) {
        for index in 0..self.state.descriptors.len() {
            self.cell(index, "").0.clear();
        }
    }

    fn entry(&self) -> &Entry {
        self.state.groups[self.key_group as usize]
            .as_deref()
            .and_then(|group| group.slots.get(self.slot as usize)?.as_ref())
            .expect("a key state's entry exists while the key state does")
    }

    /// The cell of descriptor `index`, checked to be of kind `wanted` (any kind if empty).
    fn cell(&mut self, index: usize, wanted: &str) -> (CellMut<'_>, &StateKind) {
        let KeyedState {
            descriptors,
            groups,
            expiry,
            content_bytes,
            ..
        } = &mut *self.state;
        let descriptor = &descriptors[index];
        let kind = descriptor.kind.name();
        assert!(
            wanted.is_empty() || kind == wanted,
            "state {index} (`{}`) is {kind} state, not {wanted} state",
            descriptor.name
        );
        let entry = groups[self.key_group as usize]
            .as_deref_mut()
            .and_then(|group| group.slots.get_mut(self.slot as usize)?.as_mut())
            .expect("a key state's entry exists while the key state does");
        let at = Expiry {
            deadline_ms: 0,
            serial: entry.serial,
            key_group: self.key_group,
            slot: self.slot,
            index: index as u32,
        };
        let cell = CellMut {
            cell: &mut entry.cells[index],
            ttl_ms: descriptor.ttl_ms,
            now_ms: self.now_ms,
            content_bytes,
            expiry,
            at,
        };
        (cell, &descriptor.kind)
    }
}

impl Drop for KeyState<'_> {
    /// Removes the key if it holds no state, so reads of absent keys leave nothing behind.
    fn drop(&mut self) {
        let state = &mut *self.state;
        let Some(group) = state.groups[self.key_group as usize].as_deref_mut() else {
            return;
        };
        let empty = group
            .slots
            .get(self.slot as usize)
            .and_then(Option::as_ref)
            .is_some_and(|entry| entry.cells.iter().all(|cell| cell.data.is_empty()));
        if empty {
            if let Some(entry) = group.remove(self.slot) {
                state.content_bytes = state.content_bytes.saturating_sub(entry.bytes());
                state.keys -= 1;
            }
        }
    }
}

impl ValueState<'_> {
    /// The value, unless none was set or it expired.
    pub fn get(&self) -> Option<&Value> {
        match self.cell.read()? {
            Data::Value(value) => value.as_ref(),
            _ => None,
        }
    }

    /// Sets the value.
    pub fn set(&mut self, value: Value) {
        self.cell.begin_write();
        let added = value_heap_bytes(&value);
        if let Data::Value(held) = &mut self.cell.cell.data {
            let removed = held.replace(value).map_or(0, |old| value_heap_bytes(&old));
            self.cell.resize(removed, added);
        }
    }

    /// Removes the value and returns it (if it was visible).
    pub fn take(&mut self) -> Option<Value> {
        let live = self.cell.read().is_some();
        let taken = match &mut self.cell.cell.data {
            Data::Value(held) => held.take(),
            _ => None,
        };
        self.cell
            .resize(taken.as_ref().map_or(0, value_heap_bytes), 0);
        taken.filter(|_| live)
    }

    /// Removes the value.
    pub fn clear(&mut self) {
        self.cell.clear();
    }
}

impl ListState<'_> {
    /// Rows held (0 once expired).
    pub fn len(&self) -> usize {
        self.rows().map_or(0, VecDeque::len)
    }

    /// Whether no row is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Row `index` in insertion order.
    pub fn get(&self, index: usize) -> Option<&[Value]> {
        self.rows()?.get(index).map(|row| &**row)
    }

    /// The rows in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = &[Value]> + '_ {
        self.rows().into_iter().flatten().map(|row| &**row)
    }

    /// Appends a row.
    pub fn push(&mut self, row: impl Into<Row>) {
        let row = row.into();
        self.cell.begin_write();
        let added = row_bytes(&row);
        if let Data::List(rows) = &mut self.cell.cell.data {
            rows.push_back(row);
            self.cell.resize(0, added);
        }
    }

    /// Inserts a row at `index` (at most `len()`), shifting later rows back.
    pub fn insert(&mut self, index: usize, row: impl Into<Row>) {
        let row = row.into();
        self.cell.begin_write();
        let added = row_bytes(&row);
        if let Data::List(rows) = &mut self.cell.cell.data {
            rows.insert(index.min(rows.len()), row);
            self.cell.resize(0, added);
        }
    }

    /// Removes and returns the oldest row.
    pub fn pop_front(&mut self) -> Option<Row> {
        if self.is_empty() {
            return None;
        }
        self.cell.begin_write();
        let Data::List(rows) = &mut self.cell.cell.data else {
            return None;
        };
        let row = rows.pop_front()?;
        self.cell.resize(row_bytes(&row), 0);
        Some(row)
    }

    /// Removes and returns the row at `index` (in insertion order), if there is one.
    pub fn remove(&mut self, index: usize) -> Option<Row> {
        if index >= self.len() {
            return None;
        }
        self.cell.begin_write();
        let Data::List(rows) = &mut self.cell.cell.data else {
            return None;
        };
        let row = rows.remove(index)?;
        self.cell.resize(row_bytes(&row), 0);
        Some(row)
    }

    /// Keeps only the newest `n` rows.
    pub fn retain_last(&mut self, n: usize) {
        if self.len() <= n {
            return;
        }
        self.cell.begin_write();
        let Data::List(rows) = &mut self.cell.cell.data else {
            return;
        };
        let removed: usize = rows
            .drain(..rows.len() - n)
            .map(|row| row_bytes(&row))
            .sum();
        self.cell.resize(removed, 0);
    }

    /// Removes every row.
    pub fn clear(&mut self) {
        self.cell.clear();
    }

    fn rows(&self) -> Option<&VecDeque<Row>> {
        match self.cell.read()? {
            Data::List(rows) => Some(rows),
            _ => None,
        }
    }
}

impl MapState<'_> {
    /// Entries held (0 once expired).
    pub fn len(&self) -> usize {
        self.entries().map_or(0, BTreeMap::len)
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row under `key`, looked up without allocating.
    pub fn get(&self, key: &impl AsValueRef) -> Option<&[Value]> {
        let probe = key.as_value();
        let row = self.entries()?.get(&probe as &dyn OrderedValue)?;
        Some(&**row)
    }

    /// Whether `key` has a row.
    pub fn contains_key(&self, key: &impl AsValueRef) -> bool {
        self.get(key).is_some()
    }

    /// The entries in [`total_cmp`] order of their keys.
    pub fn iter(&self) -> impl Iterator<Item = (&Value, &[Value])> + '_ {
        self.entries()
            .into_iter()
            .flatten()
            .map(|(key, row)| (&key.0, &**row))
    }

    /// Puts `row` under `key`, returning the row it replaces.
    pub fn insert(&mut self, key: Value, row: impl Into<Row>) -> Option<Row> {
        let row = row.into();
        self.cell.begin_write();
        let Data::Map(entries) = &mut self.cell.cell.data else {
            return None;
        };
        let added_row = row_bytes(&row);
        let key_bytes = map_key_bytes(&key);
        let old = entries.insert(MapKey(key), row);
        match &old {
            Some(old) => self.cell.resize(row_bytes(old), added_row),
            None => self.cell.resize(0, key_bytes + added_row),
        }
        old
    }

    /// Removes the row under `key` and returns it.
    pub fn remove(&mut self, key: &impl AsValueRef) -> Option<Row> {
        let probe = key.as_value();
        self.entries()?.get(&probe as &dyn OrderedValue)?;
        self.cell.begin_write();
        let Data::Map(entries) = &mut self.cell.cell.data else {
            return None;
        };
        let (key, row) = entries.remove_entry(&probe as &dyn OrderedValue)?;
        self.cell.resize(map_key_bytes(&key.0) + row_bytes(&row), 0);
        Some(row)
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.cell.clear();
    }

    fn entries(&self) -> Option<&BTreeMap<MapKey, Row>> {
        match self.cell.read()? {
            Data::Map(entries) => Some(entries),
            _ => None,
        }
    }
}

impl AggregatingState<'_> {
    /// The aggregate calls, in result order.
    pub fn calls(&self) -> &[AggCall] {
        self.calls
    }

    /// Feeds `row` to every call (each applies its filter first).
    pub fn update(&mut self, row: &ArchivedRow) {
        self.cell.begin_write();
        let calls = self.calls;
        let Data::Agg(slots) = &mut self.cell.cell.data else {
            return;
        };
        let (slots, before) = match slots {
            Some(slots) => {
                let before = slots_bytes(calls, slots);
                (slots, before)
            }
            None => (slots.insert(calls.iter().map(Slot::new).collect()), 0),
        };
        for (call, slot) in calls.iter().zip(slots.iter_mut()) {
            slot.update(call, row);
        }
        let after = slots_bytes(calls, slots);
        self.cell.resize(before, after);
    }

    /// The result of call `index` (as for no rows once the state expired or was cleared).
    ///
    /// Panics if there is no call `index`.
    pub fn result(&self, index: usize) -> Datum<'_> {
        let call = &self.calls[index];
        match self.cell.read() {
            Some(Data::Agg(Some(slots))) => slots[index].result(call),
            _ => empty_result(call),
        }
    }

    /// Forgets every row fed so far.
    pub fn clear(&mut self) {
        self.cell.clear();
    }
}

// Storage.

/// The keys of one key group, in a slab indexed by a hash table of slot numbers.
#[derive(Debug, Default)]
struct KeyGroup {
    index: HashTable<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
}

/// One key and its states, one cell per descriptor.
#[derive(Debug)]
struct Entry {
    hash: u64,
    /// Unique per entry ever created, so queue items of a removed key never match a new one.
    serial: u64,
    key: Row,
    cells: Box<[Cell]>,
}

/// One key's state of one descriptor.
#[derive(Debug)]
struct Cell {
    data: Data,
    /// The time of the last write.
    written_ms: i64,
    /// Heap bytes of `data`, kept in step with `KeyedState::content_bytes`.
    bytes: usize,
    /// Whether the expiry queue holds an item for this cell.
    queued: bool,
}

#[derive(Debug)]
enum Data {
    Value(Option<Value>),
    List(VecDeque<Row>),
    Map(BTreeMap<MapKey, Row>),
    /// `None` until the first row.
    Agg(Option<Box<[Slot]>>),
}

/// The accumulator of one aggregate call.
#[derive(Debug)]
enum Slot {
    Acc(Acc),
    /// `count(distinct x)` of a type other than `i64` and `timestamp`. Kept here rather than
    /// in `Acc::DistinctBytes` because snapshots must list the set's members, which that
    /// type keeps private.
    Distinct(DistinctSet),
}

/// A set of canonical value bytes (as `agg` builds them), so equal values count once.
#[derive(Debug, Default)]
struct DistinctSet {
    keys: HashSet<Box<[u8]>>,
    key_bytes: usize,
    scratch: Vec<u8>,
}

/// A map key ordered by [`total_cmp`].
#[derive(Debug, Clone)]
struct MapKey(Value);

/// Due time of one cell with a TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Expiry {
    deadline_ms: i64,
    serial: u64,
    key_group: u32,
    slot: u32,
    index: u32,
}

/// The one cell a state view reads and writes, with everything a write must keep in step.
#[derive(Debug)]
struct CellMut<'a> {
    cell: &'a mut Cell,
    ttl_ms: Option<i64>,
    now_ms: i64,
    content_bytes: &'a mut usize,
    expiry: &'a mut BinaryHeap<Reverse<Expiry>>,
    at: Expiry,
}

impl KeyGroup {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn entries(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.slots.iter().flatten()
    }

    fn find(&self, hash: u64, eq: impl Fn(&[Value]) -> bool) -> Option<u32> {
        let slots = &self.slots;
        let found = self.index.find(hash, |&slot| {
            slots[slot as usize]
                .as_ref()
                .is_some_and(|entry| entry.hash == hash && eq(&entry.key))
        });
        found.copied()
    }

    fn insert(&mut self, entry: Entry) -> u32 {
        let hash = entry.hash;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&slot| {
            slots[slot as usize].as_ref().map_or(0, |entry| entry.hash)
        });
        slot
    }

    fn remove(&mut self, slot: u32) -> Option<Entry> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        if let Ok(found) = self.index.find_entry(entry.hash, |&other| other == slot) {
            found.remove();
        }
        self.free.push(slot);
        Some(entry)
    }

    /// Bytes of the table itself beyond its entries' own.
    fn overhead_bytes(&self) -> usize {
        size_of::<KeyGroup>()
            + self.slots.capacity().saturating_sub(self.len()) * size_of::<Option<Entry>>()
            + self.index.capacity().saturating_sub(self.len()) * (size_of::<u32>() + 1)
            + self.free.capacity() * size_of::<u32>()
    }
}

impl Entry {
    fn new(hash: u64, serial: u64, key: Row, descriptors: &[StateDescriptor]) -> Entry {
        let cells = descriptors.iter().map(|d| Cell::new(&d.kind)).collect();
        Entry {
            hash,
            serial,
            key,
            cells,
        }
    }

    /// Bytes of the entry: its slot, index slot, key and cells with their data.
    fn bytes(&self) -> usize {
        let cells: usize = self.cells.iter().map(|cell| cell.bytes).sum();
        size_of::<Option<Entry>>()
            + size_of::<u32>()
            + 1
            + row_bytes(&self.key)
            + self.cells.len() * size_of::<Cell>()
            + cells
    }
}

impl Cell {
    fn new(kind: &StateKind) -> Cell {
        let data = match kind {
            StateKind::Value => Data::Value(None),
            StateKind::List => Data::List(VecDeque::new()),
            StateKind::Map => Data::Map(BTreeMap::new()),
            StateKind::Aggregating(_) => Data::Agg(None),
        };
        Cell {
            data,
            written_ms: i64::MIN,
            bytes: 0,
            queued: false,
        }
    }

    fn clear(&mut self) {
        match &mut self.data {
            Data::Value(value) => *value = None,
            Data::List(rows) => *rows = VecDeque::new(),
            Data::Map(entries) => entries.clear(),
            Data::Agg(slots) => *slots = None,
        }
        self.bytes = 0;
    }
}

impl Data {
    fn is_empty(&self) -> bool {
        match self {
            Data::Value(value) => value.is_none(),
            Data::List(rows) => rows.is_empty(),
            Data::Map(entries) => entries.is_empty(),
            Data::Agg(slots) => slots.is_none(),
        }
    }

    /// Heap bytes of the data, as the writes count them.
    fn bytes(&self, kind: &StateKind) -> usize {
        match (self, kind) {
            (Data::Value(value), _) => value.as_ref().map_or(0, value_heap_bytes),
            (Data::List(rows), _) => rows.iter().map(|row| row_bytes(row)).sum(),
            (Data::Map(entries), _) => entries
                .iter()
                .map(|(key, row)| map_key_bytes(&key.0) + row_bytes(row))
                .sum(),
            (Data::Agg(Some(slots)), StateKind::Aggregating(calls)) => slots_bytes(calls, slots),
            (Data::Agg(_), _) => 0,
        }
    }
}

impl CellMut<'_> {
    /// The data, unless it expired by now (empty data reads as empty either way).
    fn read(&self) -> Option<&Data> {
        alive(self.cell.written_ms, self.ttl_ms, self.now_ms).then_some(&self.cell.data)
    }

    /// Prepares a write: drops expired data, stamps the time and queues the cell's expiry.
    fn begin_write(&mut self) {
        if !alive(self.cell.written_ms, self.ttl_ms, self.now_ms) {
            self.clear();
        }
        self.cell.written_ms = self.cell.written_ms.max(self.now_ms);
        if let (Some(ttl), false) = (self.ttl_ms, self.cell.queued) {
            self.cell.queued = true;
            self.expiry.push(Reverse(Expiry {
                deadline_ms: self.cell.written_ms.saturating_add(ttl),
                ..self.at
            }));
        }
    }

    fn resize(&mut self, removed: usize, added: usize) {
        self.cell.bytes = (self.cell.bytes + added).saturating_sub(removed);
        *self.content_bytes = (*self.content_bytes + added).saturating_sub(removed);
    }

    fn clear(&mut self) {
        let bytes = self.cell.bytes;
        self.cell.clear();
        *self.content_bytes = self.content_bytes.saturating_sub(bytes);
    }
}

impl Slot {
    fn new(call: &AggCall) -> Slot {
        match call.new_acc() {
            Acc::DistinctBytes(_) => Slot::Distinct(DistinctSet::default()),
            acc => Slot::Acc(acc),
        }
    }

    fn update(&mut self, call: &AggCall, row: &ArchivedRow) {
        match self {
            Slot::Acc(acc) => call.update(acc, row),
            Slot::Distinct(set) => {
                if call
                    .filter()
                    .is_some_and(|filter| !filter.eval_predicate(row))
                {
                    return;
                }
                let Some(arg) = call.arg() else { return };
                let value = arg.eval(row);
                if value != Datum::Null {
                    set.insert(&value.as_value_ref());
                }
            }
        }
    }

    fn result(&self, call: &AggCall) -> Datum<'_> {
        match self {
            Slot::Acc(acc) => call.result(acc),
            Slot::Distinct(set) => Datum::I64(set.keys.len() as i64),
        }
    }

    fn bytes(&self, call: &AggCall) -> usize {
        match self {
            Slot::Acc(acc) => call.acc_bytes(acc),
            Slot::Distinct(set) => {
                let slots = set.keys.capacity() + set.keys.capacity() / 7;
                size_of::<Slot>()
                    + slots * (size_of::<Box<[u8]>>() + 1)
                    + set.key_bytes
                    + set.scratch.capacity()
            }
        }
    }
}

impl DistinctSet {
    fn insert(&mut self, value: &ValueRef<'_>) {
        self.scratch.clear();
        canonical(value, &mut self.scratch);
        if !self.keys.contains(self.scratch.as_slice()) {
            self.key_bytes += self.scratch.len();
            self.keys.insert(Box::from(self.scratch.as_slice()));
        }
    }
}

/// A value usable to look up a [`MapKey`] by reference, so lookups need no owned key.
trait OrderedValue {
    fn value_ref(&self) -> ValueRef<'_>;
}

impl OrderedValue for MapKey {
    fn value_ref(&self) -> ValueRef<'_> {
        self.0.as_ref()
    }
}

impl OrderedValue for ValueRef<'_> {
    fn value_ref(&self) -> ValueRef<'_> {
        *self
    }
}

impl<'a> Borrow<dyn OrderedValue + 'a> for MapKey {
    fn borrow(&self) -> &(dyn OrderedValue + 'a) {
        self
    }
}

impl PartialEq for dyn OrderedValue + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn OrderedValue + '_ {}

impl PartialOrd for dyn OrderedValue + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn OrderedValue + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        total_cmp(self.value_ref(), other.value_ref())
    }
}

impl PartialEq for MapKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for MapKey {}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MapKey {
    fn cmp(&self, other: &Self) -> Ordering {
        total_cmp(self.0.as_ref(), other.0.as_ref())
    }
}

// Helpers.

/// Whether state written at `written_ms` is still visible at `now_ms`.
fn alive(written_ms: i64, ttl_ms: Option<i64>, now_ms: i64) -> bool {
    ttl_ms.is_none_or(|ttl| now_ms < written_ms.saturating_add(ttl))
}

/// Key equality as the key hash sees it ([`crate::record::key::key_eq`]).
fn key_eq<V: AsValueRef>(stored: &[Value], key: &[V]) -> bool {
    crate::record::key::key_eq(
        stored.iter().map(Value::as_ref),
        key.iter().map(AsValueRef::as_value),
    )
}

/// An owned copy of `value`.
pub(crate) fn to_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::I64(v) => Value::I64(v),
        ValueRef::F64(v) => Value::F64(v),
        ValueRef::Bool(v) => Value::Bool(v),
        ValueRef::Str(v) => Value::Str(v.to_owned()),
        ValueRef::Bytes(v) => Value::Bytes(v.to_vec()),
        ValueRef::Timestamp(v) => Value::Timestamp(v),
    }
}

fn empty_result(call: &AggCall) -> Datum<'static> {
    match call.kind() {
        AggKind::CountStar | AggKind::Count | AggKind::CountDistinct => Datum::I64(0),
        _ => Datum::Null,
    }
}

fn value_heap_bytes(value: &Value) -> usize {
    match value {
        Value::Str(text) => text.capacity(),
        Value::Bytes(bytes) => bytes.capacity(),
        _ => 0,
    }
}

fn row_bytes(row: &[Value]) -> usize {
    let heap: usize = row.iter().map(value_heap_bytes).sum();
    size_of::<Row>() + std::mem::size_of_val(row) + heap
}

/// Bytes a map key adds besides its row: the key and a share of the B-tree's node.
fn map_key_bytes(key: &Value) -> usize {
    size_of::<MapKey>() + value_heap_bytes(key) + size_of::<usize>()
}

fn slots_bytes(calls: &[AggCall], slots: &[Slot]) -> usize {
    let accs: usize = calls.iter().zip(slots).map(|(c, s)| s.bytes(c)).sum();
    size_of::<Box<[Slot]>>() + accs
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares an integer and a float exactly (no rounding of large integers); NaN is greatest.
fn cmp_i64_f64(i: i64, f: f64) -> Ordering {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f.is_nan() || f >= TWO_POW_63 {
        return Ordering::Less;
    }
    if f < -TWO_POW_63 {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // `whole` is an integer in [-2^63, 2^63), so the cast is exact.
    i.cmp(&(whole as i64)).then(if f > whole {
        Ordering::Less
    } else if f < whole {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

fn type_rank(value: ValueRef<'_>) -> u8 {
    match value {
        ValueRef::Null => 0,
        ValueRef::Bool(_) => 1,
        ValueRef::I64(_) | ValueRef::F64(_) => 2,
        ValueRef::Timestamp(_) => 3,
        ValueRef::Str(_) => 4,
        ValueRef::Bytes(_) => 5,
    }
}

/// Appends the canonical bytes of a value, as `agg` keys its distinct sets: the row format's
/// type tag, then the value, with `-0.0` as `0.0` and every NaN as one NaN.
fn canonical(value: &ValueRef<'_>, out: &mut Vec<u8>) {
    match *value {
        ValueRef::Null => out.push(0),
        ValueRef::I64(v) => put_tagged(out, 1, v.to_le_bytes()),
        ValueRef::F64(v) => {
            let bits = crate::record::key::canonical_f64_bits(v);
            put_tagged(out, 2, bits.to_le_bytes());
        }
        ValueRef::Bool(v) => out.extend_from_slice(&[3, u8::from(v)]),
        ValueRef::Str(v) => {
            out.push(4);
            out.extend_from_slice(v.as_bytes());
        }
        ValueRef::Bytes(v) => {
            out.push(5);
            out.extend_from_slice(v);
        }
        ValueRef::Timestamp(v) => put_tagged(out, 6, v.to_le_bytes()),
    }
}

// Snapshot encoding: `crate::state::snapshot`.

fn kind_tag(kind: &StateKind) -> u8 {
    match kind {
        StateKind::Value => 0,
        StateKind::List => 1,
        StateKind::Map => 2,
        StateKind::Aggregating(_) => 3,
    }
}

fn put_header(out: &mut Vec<u8>, key_group: u32, descriptors: &[StateDescriptor]) {
    out.push(VERSION);
    out.extend_from_slice(&key_group.to_le_bytes());
    put_len(out, descriptors.len());
    for descriptor in descriptors {
        put_bytes(out, descriptor.name.as_bytes());
        out.push(kind_tag(&descriptor.kind));
        if let StateKind::Aggregating(calls) = &descriptor.kind {
            put_len(out, calls.len());
        }
    }
}

fn put_entry(out: &mut Vec<u8>, entry: &Entry, descriptors: &[StateDescriptor]) {
    put_row(out, &entry.key);
    for (cell, descriptor) in entry.cells.iter().zip(descriptors) {
        if cell.data.is_empty() {
            out.push(0);
            continue;
        }
        out.push(1);
        out.extend_from_slice(&cell.written_ms.to_le_bytes());
        match (&cell.data, &descriptor.kind) {
            (Data::Value(value), _) => put_value(out, value.as_ref().unwrap_or(&Value::Null)),
            (Data::List(rows), _) => {
                put_len(out, rows.len());
                rows.iter().for_each(|row| put_row(out, row));
            }
            (Data::Map(entries), _) => {
                put_len(out, entries.len());
                for (key, row) in entries {
                    put_value(out, &key.0);
                    put_row(out, row);
                }
            }
            (Data::Agg(slots), _) => {
                for slot in slots.iter().flatten() {
                    match slot {
                        Slot::Acc(acc) => snapshot::put_acc(out, acc),
                        Slot::Distinct(set) => {
                            snapshot::put_distinct_bytes(out, set.keys.iter().map(|key| &**key))
                        }
                    }
                }
            }
        }
    }
}

fn read_header(
    reader: &mut Reader<'_>,
    key_group: u32,
    descriptors: &[StateDescriptor],
) -> Result<(), StateError> {
    reader.u8("version")?;
    let at = reader.offset();
    let found = reader.u32("key group")?;
    if found != key_group {
        let reason = format!("the snapshot is of key group {found}, not {key_group}");
        return Err(mismatch(at, reason));
    }
    let at = reader.offset();
    let count = reader.count("descriptor")?;
    if count != descriptors.len() {
        let reason = format!("{count} states in the snapshot, {} here", descriptors.len());
        return Err(mismatch(at, reason));
    }
    for descriptor in descriptors {
        let at = reader.offset();
        let name = reader.bytes("state name")?;
        let tag = reader.u8("state kind")?;
        let calls = match tag {
            3 => Some(reader.u32("call count")? as usize),
            _ => None,
        };
        let wanted_calls = match &descriptor.kind {
            StateKind::Aggregating(calls) => Some(calls.len()),
            _ => None,
        };
        if name != descriptor.name.as_bytes()
            || tag != kind_tag(&descriptor.kind)
            || calls != wanted_calls
        {
            let found = String::from_utf8_lossy(name);
            let reason = format!(
                "the snapshot has state `{found}` (kind {tag}), here it is `{}` ({})",
                descriptor.name,
                descriptor.kind.name()
            );
            return Err(mismatch(at, reason));
        }
    }
    Ok(())
}

fn read_entry(
    reader: &mut Reader<'_>,
    descriptors: &[StateDescriptor],
) -> Result<Entry, StateError> {
    let key = reader.row()?;
    let cells = descriptors
        .iter()
        .map(|descriptor| read_cell(reader, &descriptor.kind))
        .collect::<Result<_, _>>()?;
    Ok(Entry {
        hash: key_hash(&key),
        serial: 0,
        key,
        cells,
    })
}

fn read_cell(reader: &mut Reader<'_>, kind: &StateKind) -> Result<Cell, StateError> {
    let at = reader.offset();
    match reader.u8("state flag")? {
        0 => return Ok(Cell::new(kind)),
        1 => {}
        flag => return Err(corrupt(at, format!("state flag {flag} is not 0 or 1"))),
    }
    let written_ms = reader.i64("write time")?;
    let data = match kind {
        StateKind::Value => Data::Value(Some(reader.value()?)),
        StateKind::List => {
            let count = reader.count("row")?;
            Data::List((0..count).map(|_| reader.row()).collect::<Result<_, _>>()?)
        }
        StateKind::Map => Data::Map(read_map(reader)?),
        StateKind::Aggregating(calls) => Data::Agg(Some(
            calls
                .iter()
                .map(|call| read_slot(reader, call))
                .collect::<Result<_, _>>()?,
        )),
    };
    if data.is_empty() {
        return Err(corrupt(at, "a state marked present holds nothing".into()));
    }
    let bytes = data.bytes(kind);
    Ok(Cell {
        data,
        written_ms,
        bytes,
        queued: false,
    })
}

fn read_map(reader: &mut Reader<'_>) -> Result<BTreeMap<MapKey, Row>, StateError> {
    let count = reader.count("map entry")?;
    let mut entries = BTreeMap::new();
    for _ in 0..count {
        let at = reader.offset();
        let key = reader.value()?;
        let row = reader.row()?;
        if entries.insert(MapKey(key), row).is_some() {
            return Err(corrupt(at, "the map key appears twice".into()));
        }
    }
    Ok(entries)
}

fn read_slot(reader: &mut Reader<'_>, call: &AggCall) -> Result<Slot, StateError> {
    let at = reader.offset();
    let slot = match reader.acc_any()? {
        AccRead::Acc(acc) => Slot::Acc(acc),
        AccRead::DistinctBytes(keys) => {
            let key_bytes = keys.iter().map(|key| key.len()).sum();
            Slot::Distinct(DistinctSet {
                keys,
                key_bytes,
                scratch: Vec::new(),
            })
        }
    };
    if !slot_fits(&slot, call) {
        let reason = format!("the accumulator does not fit `{}`", call.source());
        return Err(mismatch(at, reason));
    }
    Ok(slot)
}

/// Whether `slot` is the kind of accumulator `call` makes, holding a value of its type.
fn slot_fits(slot: &Slot, call: &AggCall) -> bool {
    match (slot, Slot::new(call)) {
        (Slot::Distinct(_), Slot::Distinct(_)) => true,
        (Slot::Acc(Acc::Value(value)), Slot::Acc(Acc::Value(_))) => {
            value_type(value).is_none_or(|ty| ty == call.data_type())
        }
        (Slot::Acc(acc), Slot::Acc(fresh)) => discriminant(acc) == discriminant(&fresh),
        _ => false,
    }
}

fn value_type(value: &Value) -> Option<DataType> {
    Some(match value {
        Value::Null => return None,
        Value::I64(_) => DataType::I64,
        Value::F64(_) => DataType::F64,
        Value::Bool(_) => DataType::Bool,
        Value::Str(_) => DataType::String,
        Value::Bytes(_) => DataType::Bytes,
        Value::Timestamp(_) => DataType::Timestamp,
    })
}

#[cfg(test)]
mod tests;
