//! Groups stored as columns: a hash index of group ids over a key column, and accumulators in
//! one column per aggregate call, each indexed by group id.
//!
//! A group costs what its key and accumulators take as plain numbers wherever they are plain
//! numbers: a one-`i64` (or timestamp) key is an `i64` in a `Vec<i64>`, a `count` an `i64`, and
//! a `sum`/`min`/`max`/`first`/`last` of integers an `i64` and a bit. Nothing is allocated per
//! group. A column that meets a value it cannot hold (a second key part, a NULL key, a float sum)
//! becomes a column of general values once, keeping what it held: the layout follows the
//! data, so no plan has to predict it.
//!
//! The key hash is not stored: the index recomputes it from the key when it grows, and
//! snapshots recompute it to place a group in its key group (hashing one `i64` costs a few
//! nanoseconds, less than reading a stored hash back from memory at random).

use std::borrow::Cow;

use hashbrown::HashTable;
use wire_core::frontend::expr::Datum;
use wire_core::operator::agg::Acc;
use wire_core::record::key::key_part_eq;
use wire_core::state::key_hash;
use wire_core::{AsValueRef, Value, ValueRef};

use super::table::Key;
use super::to_value;

/// One bit per group.
#[derive(Debug, Default)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn get(&self, id: u32) -> bool {
        let id = id as usize;
        self.0
            .get(id / 64)
            .is_some_and(|word| word >> (id % 64) & 1 == 1)
    }

    pub(crate) fn set(&mut self, id: u32, on: bool) {
        let id = id as usize;
        if id / 64 >= self.0.len() {
            if !on {
                return;
            }
            self.0.resize(id / 64 + 1, 0);
        }
        let bit = 1u64 << (id % 64);
        if on {
            self.0[id / 64] |= bit;
        } else {
            self.0[id / 64] &= !bit;
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.0.capacity() * size_of::<u64>()
    }
}

/// Which one-number key a key column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
    I64,
    Timestamp,
}

impl Number {
    fn of(value: ValueRef<'_>) -> Option<(Number, i64)> {
        match value {
            ValueRef::I64(v) => Some((Number::I64, v)),
            ValueRef::Timestamp(v) => Some((Number::Timestamp, v)),
            _ => None,
        }
    }

    fn value(self, v: i64) -> Value {
        match self {
            Number::I64 => Value::I64(v),
            Number::Timestamp => Value::Timestamp(v),
        }
    }
}

/// The groups' keys, by group id. A free id's entry is whatever its last group left.
#[derive(Debug)]
enum KeyColumn {
    /// Every key is one number of one type (`kind` is `None` until the first key).
    Numbers {
        kind: Option<Number>,
        keys: Vec<i64>,
    },
    /// Any keys.
    Values(Vec<Key>),
}

impl KeyColumn {
    fn len(&self) -> usize {
        match self {
            KeyColumn::Numbers { keys, .. } => keys.len(),
            KeyColumn::Values(keys) => keys.len(),
        }
    }

    /// Whether group `id`'s key is `key` (as keys compare: [`key_part_eq`]).
    fn equals<V: AsValueRef>(&self, id: u32, key: &[V]) -> bool {
        match self {
            KeyColumn::Numbers { kind, keys } => match (key, kind) {
                ([one], Some(kind)) => {
                    Number::of(one.as_value()) == Some((*kind, keys[id as usize]))
                }
                _ => false,
            },
            KeyColumn::Values(keys) => {
                let stored = &keys[id as usize];
                key.len() == stored.len()
                    && key
                        .iter()
                        .zip(stored.iter())
                        .all(|(a, b)| key_part_eq(a.as_value(), b.as_ref()))
            }
        }
    }

    fn hash(&self, id: u32) -> u64 {
        self.with(id, key_hash)
    }

    /// Calls `f` with group `id`'s key.
    fn with<R>(&self, id: u32, f: impl FnOnce(&[Value]) -> R) -> R {
        match self {
            KeyColumn::Numbers { kind, keys } => {
                let kind = kind.unwrap_or(Number::I64);
                f(std::slice::from_ref(&kind.value(keys[id as usize])))
            }
            KeyColumn::Values(keys) => f(&keys[id as usize]),
        }
    }

    /// Becomes a column of any keys.
    fn generalise(&mut self) {
        if let KeyColumn::Numbers { kind, keys } = self {
            let kind = kind.unwrap_or(Number::I64);
            let values = keys.iter().map(|&v| Key::One(kind.value(v))).collect();
            *self = KeyColumn::Values(values);
        }
    }

    /// Stores `key` as group `id`'s (a new id is the column's length).
    fn put(&mut self, id: u32, key: Key) {
        if let (KeyColumn::Numbers { kind, keys }, [one]) = (&mut *self, &*key) {
            if let Some((number, v)) = Number::of(one.as_ref()) {
                if kind.is_none_or(|kind| kind == number) {
                    *kind = Some(number);
                    put_at(keys, id, v);
                    return;
                }
            }
        }
        self.generalise();
        if let KeyColumn::Values(keys) = self {
            put_at(keys, id, key);
        }
    }

    fn bytes(&self) -> usize {
        match self {
            KeyColumn::Numbers { keys, .. } => keys.capacity() * size_of::<i64>(),
            KeyColumn::Values(keys) => keys.capacity() * size_of::<Key>(),
        }
    }
}

/// Sets `column[id]`, pushing when `id` is the column's length.
pub(crate) fn put_at<T>(column: &mut Vec<T>, id: u32, value: T) {
    let id = id as usize;
    if id == column.len() {
        column.push(value);
    } else {
        column[id] = value;
    }
}

/// Groups by key, named by stable `u32` ids (a removed group's id is reused).
#[derive(Debug)]
pub(crate) struct FlatGroups {
    index: HashTable<u32>,
    keys: KeyColumn,
    live: Bits,
    free: Vec<u32>,
}

impl Default for FlatGroups {
    fn default() -> Self {
        FlatGroups {
            index: HashTable::new(),
            keys: KeyColumn::Numbers {
                kind: None,
                keys: Vec::new(),
            },
            live: Bits::default(),
            free: Vec::new(),
        }
    }
}

impl FlatGroups {
    /// The id of the group of `key` (with hash `hash`, the key hash of `key_by`), added if new,
    /// and whether it was added.
    pub(crate) fn find_or_insert(&mut self, hash: u64, key: &[Datum<'_>]) -> (u32, bool) {
        let keys = &self.keys;
        if let Some(&id) = self.index.find(hash, |&id| keys.equals(id, key)) {
            return (id, false);
        }
        let key = key.iter().map(to_value).collect();
        (self.insert_new(hash, key), true)
    }

    /// The id of the group of `key` (with hash `hash`), if there is one.
    pub(crate) fn find(&self, hash: u64, key: &[Datum<'_>]) -> Option<u32> {
        let keys = &self.keys;
        self.index.find(hash, |&id| keys.equals(id, key)).copied()
    }

    /// The id of group `key` (from a snapshot), if there is one.
    pub(crate) fn find_owned(&self, hash: u64, key: &[Value]) -> Option<u32> {
        let keys = &self.keys;
        self.index.find(hash, |&id| keys.equals(id, key)).copied()
    }

    /// Adds group `key` (with hash `hash`), which is not present; its id. The caller sets
    /// the group's columns at that id.
    pub(crate) fn insert_new(&mut self, hash: u64, key: Key) -> u32 {
        let id = self.free.pop().unwrap_or(self.keys.len() as u32);
        self.keys.put(id, key);
        self.live.set(id, true);
        let keys = &self.keys;
        self.index.insert_unique(hash, id, |&id| keys.hash(id));
        id
    }

    /// Removes group `id`; its key and key hash.
    pub(crate) fn remove(&mut self, id: u32) -> Option<(u64, Key)> {
        if !self.live.get(id) {
            return None;
        }
        let hash = self.keys.hash(id);
        let key = self.keys.with(id, |key| key.iter().cloned().collect());
        self.unlink(id, hash);
        Some((hash, key))
    }

    /// Removes group `id` without building its key for the caller; whether it existed.
    pub(crate) fn discard(&mut self, id: u32) -> bool {
        if !self.live.get(id) {
            return false;
        }
        self.unlink(id, self.keys.hash(id));
        true
    }

    /// Takes live group `id` (with key hash `hash`) out of the index and frees its id.
    fn unlink(&mut self, id: u32, hash: u64) {
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
        self.live.set(id, false);
        self.free.push(id);
    }

    /// Whether group `id` exists.
    pub(crate) fn is_live(&self, id: u32) -> bool {
        self.live.get(id)
    }

    /// Calls `f` with group `id`'s key.
    pub(crate) fn with_key<R>(&self, id: u32, f: impl FnOnce(&[Value]) -> R) -> R {
        self.keys.with(id, f)
    }

    /// Group `id`'s key hash.
    pub(crate) fn hash(&self, id: u32) -> u64 {
        self.keys.hash(id)
    }

    /// The ids of every group.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids_from(0)
    }

    /// The ids of every group from `first` on.
    pub(crate) fn ids_from(&self, first: u32) -> impl Iterator<Item = u32> + '_ {
        (first..self.keys.len() as u32).filter(|&id| self.live.get(id))
    }

    /// Groups held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Makes room for `more` groups.
    pub(crate) fn reserve(&mut self, more: usize) {
        let keys = &self.keys;
        self.index.reserve(more, |&id| keys.hash(id));
        match &mut self.keys {
            KeyColumn::Numbers { keys, .. } => keys.reserve(more),
            KeyColumn::Values(keys) => keys.reserve(more),
        }
    }

    /// Bytes the table's arrays take at their capacity (a key's own heap memory, as a
    /// string's, not counted).
    pub(crate) fn footprint_bytes(&self) -> usize {
        // A hashbrown bucket holds the u32 and one control byte.
        self.index.capacity() * (size_of::<u32>() + 1)
            + self.keys.bytes()
            + self.live.bytes()
            + self.free.capacity() * size_of::<u32>()
    }
}

/// One aggregate call's accumulators, by group id.
#[derive(Debug)]
pub(crate) enum AccColumn {
    /// `Acc::Count`.
    Counts(Vec<i64>),
    /// `Acc::Value` holding NULL (bit clear) or one number type (`kind`, `None` while every
    /// value is NULL).
    Numbers {
        kind: Option<Number>,
        values: Vec<i64>,
        set: Bits,
    },
    /// Any accumulators.
    Accs(Vec<Acc>),
}

impl AccColumn {
    /// A column for accumulators shaped like `init`.
    pub(crate) fn for_acc(init: &Acc) -> AccColumn {
        match init {
            Acc::Count(_) => AccColumn::Counts(Vec::new()),
            Acc::Value(Value::Null) => AccColumn::Numbers {
                kind: None,
                values: Vec::new(),
                set: Bits::default(),
            },
            _ => AccColumn::Accs(Vec::new()),
        }
    }

    /// Group `id`'s accumulator.
    pub(crate) fn get(&self, id: u32) -> Cow<'_, Acc> {
        let i = id as usize;
        match self {
            AccColumn::Counts(counts) => Cow::Owned(Acc::Count(counts[i])),
            AccColumn::Numbers { kind, values, set } => Cow::Owned(Acc::Value(match kind {
                Some(kind) if set.get(id) => kind.value(values[i]),
                _ => Value::Null,
            })),
            AccColumn::Accs(accs) => Cow::Borrowed(&accs[i]),
        }
    }

    /// Sets group `id`'s accumulator (a new id is the column's length).
    pub(crate) fn put(&mut self, id: u32, acc: Acc) {
        if let Err(acc) = self.store(id, acc) {
            self.generalise();
            if let AccColumn::Accs(accs) = self {
                put_at(accs, id, acc);
            }
        }
    }

    /// Stores `acc` as group `id`'s if the column holds its kind; gives it back otherwise.
    fn store(&mut self, id: u32, acc: Acc) -> Result<(), Acc> {
        match (self, acc) {
            (AccColumn::Counts(counts), Acc::Count(n)) => put_at(counts, id, n),
            (AccColumn::Numbers { values, set, .. }, Acc::Value(Value::Null)) => {
                set.set(id, false);
                put_at(values, id, 0);
            }
            (AccColumn::Numbers { kind, values, set }, Acc::Value(value)) => {
                match Number::of(value.as_ref()) {
                    Some((number, v)) if kind.is_none_or(|kind| kind == number) => {
                        *kind = Some(number);
                        set.set(id, true);
                        put_at(values, id, v);
                    }
                    _ => return Err(Acc::Value(value)),
                }
            }
            (AccColumn::Accs(accs), acc) => put_at(accs, id, acc),
            (_, acc) => return Err(acc),
        }
        Ok(())
    }

    /// Changes group `id`'s accumulator with `f`.
    pub(crate) fn update(&mut self, id: u32, f: impl FnOnce(&mut Acc)) {
        let i = id as usize;
        let changed = match self {
            AccColumn::Accs(accs) => {
                f(&mut accs[i]);
                return;
            }
            AccColumn::Counts(counts) => {
                let mut acc = Acc::Count(counts[i]);
                f(&mut acc);
                match acc {
                    Acc::Count(n) => {
                        counts[i] = n;
                        return;
                    }
                    other => other,
                }
            }
            AccColumn::Numbers { kind, values, set } => {
                let mut acc = Acc::Value(match *kind {
                    Some(kind) if set.get(id) => kind.value(values[i]),
                    _ => Value::Null,
                });
                f(&mut acc);
                match acc {
                    Acc::Value(Value::Null) => {
                        set.set(id, false);
                        return;
                    }
                    Acc::Value(value) => match Number::of(value.as_ref()) {
                        Some((number, v)) if kind.is_none_or(|kind| kind == number) => {
                            *kind = Some(number);
                            values[i] = v;
                            set.set(id, true);
                            return;
                        }
                        _ => Acc::Value(value),
                    },
                    other => other,
                }
            }
        };
        self.generalise();
        self.put(id, changed);
    }

    /// Becomes a column of any accumulators.
    fn generalise(&mut self) {
        let len = self.len();
        if !matches!(self, AccColumn::Accs(_)) {
            let accs = (0..len as u32)
                .map(|id| self.get(id).into_owned())
                .collect();
            *self = AccColumn::Accs(accs);
        }
    }

    /// Makes room for `more` accumulators.
    pub(crate) fn reserve(&mut self, more: usize) {
        match self {
            AccColumn::Counts(counts) => counts.reserve(more),
            AccColumn::Numbers { values, .. } => values.reserve(more),
            AccColumn::Accs(accs) => accs.reserve(more),
        }
    }

    fn len(&self) -> usize {
        match self {
            AccColumn::Counts(counts) => counts.len(),
            AccColumn::Numbers { values, .. } => values.len(),
            AccColumn::Accs(accs) => accs.len(),
        }
    }

    /// Bytes the column takes at its capacity (an accumulator's own heap memory, as a
    /// distinct set's, not counted).
    pub(crate) fn footprint_bytes(&self) -> usize {
        match self {
            AccColumn::Counts(counts) => counts.capacity() * size_of::<i64>(),
            AccColumn::Numbers { values, set, .. } => {
                values.capacity() * size_of::<i64>() + set.bytes()
            }
            AccColumn::Accs(accs) => accs.capacity() * size_of::<Acc>(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(key: &[Datum<'_>]) -> u64 {
        key_hash(key)
    }

    #[test]
    fn number_keys_stay_numbers_until_another_key_arrives() {
        let mut groups = FlatGroups::default();
        let mut ids = Vec::new();
        for k in 0..1000i64 {
            let key = [Datum::I64(k)];
            let (id, new) = groups.find_or_insert(hash_of(&key), &key);
            assert!(new);
            ids.push(id);
        }
        assert!(matches!(groups.keys, KeyColumn::Numbers { .. }));
        let key = [Datum::I64(7)];
        assert_eq!(groups.find_or_insert(hash_of(&key), &key), (ids[7], false));
        // A NULL key and a string key turn the column general; every group keeps its id.
        let null = [Datum::Null];
        let (null_id, new) = groups.find_or_insert(hash_of(&null), &null);
        assert!(new);
        assert!(matches!(groups.keys, KeyColumn::Values(_)));
        let text = [Datum::Str("7".into())];
        let (text_id, _) = groups.find_or_insert(hash_of(&text), &text);
        assert_ne!(text_id, ids[7]);
        for k in 0..1000i64 {
            let key = [Datum::I64(k)];
            assert_eq!(
                groups.find_or_insert(hash_of(&key), &key),
                (ids[k as usize], false)
            );
        }
        assert_eq!(
            groups.find_or_insert(hash_of(&null), &null),
            (null_id, false)
        );
        assert_eq!(groups.len(), 1002);
    }

    #[test]
    fn removed_ids_are_reused_and_lookups_find_the_new_group() {
        let mut groups = FlatGroups::default();
        let one = [Datum::Timestamp(1)];
        let two = [Datum::Timestamp(2)];
        let (a, _) = groups.find_or_insert(hash_of(&one), &one);
        let (hash, key) = groups.remove(a).unwrap();
        assert_eq!(hash, hash_of(&one));
        assert_eq!(&*key, &[Value::Timestamp(1)]);
        assert!(groups.remove(a).is_none(), "removed twice");
        let (b, new) = groups.find_or_insert(hash_of(&two), &two);
        assert!(new);
        assert_eq!(a, b, "the free id is reused");
        assert_eq!(
            groups.find_owned(hash_of(&one), &[Value::Timestamp(1)]),
            None
        );
        assert_eq!(
            groups.find_owned(hash_of(&two), &[Value::Timestamp(2)]),
            Some(b)
        );
        // A timestamp key is not an integer key.
        assert_eq!(
            groups.find_owned(hash_of(&[Datum::I64(2)]), &[Value::I64(2)]),
            None
        );
        assert_eq!(groups.ids().collect::<Vec<_>>(), vec![b]);
    }

    #[test]
    fn a_count_column_turns_general_when_an_update_leaves_another_accumulator() {
        let mut column = AccColumn::for_acc(&Acc::Count(0));
        column.put(0, Acc::Count(0));
        column.put(1, Acc::Count(4));
        column.update(0, |acc| *acc = Acc::Count(9));
        assert!(matches!(column, AccColumn::Counts(_)));
        column.update(1, |acc| *acc = Acc::Value(Value::I64(1)));
        assert!(matches!(column, AccColumn::Accs(_)));
        let got: Vec<String> = (0..2).map(|id| format!("{:?}", column.get(id))).collect();
        assert_eq!(got, ["Count(9)", "Value(I64(1))"]);
    }

    #[test]
    fn a_number_column_holds_nulls_and_turns_general_for_another_type() {
        let mut column = AccColumn::for_acc(&Acc::Value(Value::Null));
        column.put(0, Acc::Value(Value::Null));
        column.put(1, Acc::Value(Value::I64(5)));
        column.update(0, |acc| *acc = Acc::Value(Value::I64(-3)));
        assert!(matches!(column, AccColumn::Numbers { .. }));
        assert_eq!(format!("{:?}", column.get(0)), "Value(I64(-3))");
        column.put(2, Acc::Value(Value::Null));
        column.put(3, Acc::Value(Value::Null));
        column.update(3, |acc| *acc = Acc::Value(Value::F64(0.5)));
        assert!(matches!(column, AccColumn::Accs(_)));
        let got: Vec<String> = (0..4).map(|id| format!("{:?}", column.get(id))).collect();
        assert_eq!(
            got,
            [
                "Value(I64(-3))",
                "Value(I64(5))",
                "Value(Null)",
                "Value(F64(0.5))"
            ]
        );
    }
}
