//! A hash table of groups keyed by a composite key, looked up with the key's datums straight
//! from a row (no owned key is built unless the group is new).
//!
//! Groups live in a slab and are named by a stable `u32` id, so timers and "touched" lists
//! can refer to a group without holding its key. The hash is the key hash of `key_by`
//! (`wire_core::record::key::KeyHasher`), which also decided the core the row was sent to.

use hashbrown::HashTable;
use wire_core::frontend::expr::Datum;
use wire_core::Value;

use super::{datum_eq, to_value};

/// A group's key values, in group-by order: one inline (the common case: no allocation, and
/// no pointer to follow when a lookup compares keys), or several boxed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    One(Value),
    Many(Box<[Value]>),
}

// A one-value key is stored in the slot itself, at the size of one value.
const _: () = assert!(size_of::<Key>() == size_of::<Value>());

impl std::ops::Deref for Key {
    type Target = [Value];

    fn deref(&self) -> &[Value] {
        match self {
            Key::One(value) => std::slice::from_ref(value),
            Key::Many(values) => values,
        }
    }
}

impl From<Box<[Value]>> for Key {
    fn from(values: Box<[Value]>) -> Key {
        if values.len() == 1 {
            values.into_vec().into_iter().collect()
        } else {
            Key::Many(values)
        }
    }
}

impl FromIterator<Value> for Key {
    fn from_iter<I: IntoIterator<Item = Value>>(values: I) -> Key {
        let mut values = values.into_iter();
        match (values.next(), values.next()) {
            (Some(one), None) => Key::One(one),
            (None, _) => Key::Many(Box::default()),
            (Some(first), Some(second)) => {
                let all: Vec<Value> = [first, second].into_iter().chain(values).collect();
                Key::Many(all.into_boxed_slice())
            }
        }
    }
}

/// One group: its key and state.
#[derive(Debug)]
pub(crate) struct Group<V> {
    /// The key hash.
    pub(crate) hash: u64,
    /// The key values, in group-by order.
    pub(crate) key: Key,
    /// The operator's state for the group.
    pub(crate) value: V,
}

/// Groups by key.
#[derive(Debug)]
pub(crate) struct GroupTable<V> {
    index: HashTable<u32>,
    slots: Slab<Option<Group<V>>>,
    free: Vec<u32>,
}

impl<V> Default for GroupTable<V> {
    fn default() -> Self {
        GroupTable {
            index: HashTable::new(),
            slots: Slab::default(),
            free: Vec::new(),
        }
    }
}

/// Slots in each chunk of a [`Slab`] after the first.
const CHUNK: usize = 4096;

/// An array that grows a chunk at a time. The first chunk grows like a `Vec` (a small table
/// stays small); later ones are allocated whole. A doubling `Vec` of groups (joins keep 88
/// bytes a slot) held its old and new arrays at once while it grew, and up to half of it
/// idle after: q3's join sides were 15.7 MB of a 37.5 MB heap at its peak.
#[derive(Debug)]
struct Slab<T> {
    /// Every chunk but the last is full.
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { chunks: Vec::new() }
    }
}

impl<T> Slab<T> {
    fn get(&self, at: usize) -> Option<&T> {
        self.chunks.get(at / CHUNK)?.get(at % CHUNK)
    }

    fn get_mut(&mut self, at: usize) -> Option<&mut T> {
        self.chunks.get_mut(at / CHUNK)?.get_mut(at % CHUNK)
    }

    /// Appends `value`; its index.
    fn push(&mut self, value: T) -> usize {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { CHUNK });
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        (self.chunks.len() - 1) * CHUNK + self.chunks.last().map_or(0, Vec::len) - 1
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    fn capacity(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum()
    }
}

impl<T> std::ops::Index<usize> for Slab<T> {
    type Output = T;

    fn index(&self, at: usize) -> &T {
        &self.chunks[at / CHUNK][at % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, at: usize) -> &mut T {
        &mut self.chunks[at / CHUNK][at % CHUNK]
    }
}

/// The hash of a key given as datums: the key hash of `key_by`.
pub(crate) use wire_core::state::key_hash;

impl<V> GroupTable<V> {
    /// The id of the group of `key` (with hash `hash`), created with `init` if new, and
    /// whether it was created.
    pub(crate) fn find_or_insert(
        &mut self,
        hash: u64,
        key: &[Datum<'_>],
        init: impl FnOnce() -> V,
    ) -> (u32, bool) {
        self.find_or_insert_by(
            hash,
            |stored| keys_equal(key, stored),
            || key.iter().map(to_value).collect(),
            init,
        )
    }

    fn find_or_insert_by(
        &mut self,
        hash: u64,
        eq: impl Fn(&[Value]) -> bool,
        make_key: impl FnOnce() -> Key,
        init: impl FnOnce() -> V,
    ) -> (u32, bool) {
        let slots = &self.slots;
        let found = self.index.find(hash, |&id| {
            slots[id as usize]
                .as_ref()
                .is_some_and(|g| g.hash == hash && eq(&g.key))
        });
        if let Some(&id) = found {
            return (id, false);
        }
        let group = Group {
            hash,
            key: make_key(),
            value: init(),
        };
        (self.insert_new(group), true)
    }

    /// Adds a group restored from a snapshot (its key must not be present yet); its id.
    pub(crate) fn insert_owned(&mut self, key: Box<[Value]>, value: V) -> u32 {
        let hash = key_hash(&key);
        self.insert_new(Group {
            hash,
            key: key.into(),
            value,
        })
    }

    /// Adds `group`, whose key is not present; its id.
    fn insert_new(&mut self, group: Group<V>) -> u32 {
        let hash = group.hash;
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(group);
                id
            }
            None => self.slots.push(Some(group)) as u32,
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, id, |&id| {
            slots[id as usize].as_ref().map_or(0, |g| g.hash)
        });
        id
    }

    /// The id of the group of `key`, if there is one.
    pub(crate) fn find(&self, hash: u64, key: &[Datum<'_>]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(hash, |&id| {
                slots[id as usize]
                    .as_ref()
                    .is_some_and(|g| g.hash == hash && keys_equal(key, &g.key))
            })
            .copied()
    }

    /// The group `id`, if it exists.
    pub(crate) fn get(&self, id: u32) -> Option<&Group<V>> {
        self.slots.get(id as usize)?.as_ref()
    }

    /// The group `id`, mutably, if it exists.
    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut Group<V>> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    /// Removes group `id` and returns it.
    pub(crate) fn remove(&mut self, id: u32) -> Option<Group<V>> {
        let group = self.slots.get_mut(id as usize)?.take()?;
        if let Ok(entry) = self.index.find_entry(group.hash, |&other| other == id) {
            entry.remove();
        }
        self.free.push(id);
        Some(group)
    }

    /// Every group with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Group<V>)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_ref().map(|g| (id as u32, g)))
    }

    /// Groups held.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Bytes the table's own arrays take at their capacity (slots, index, free list): an
    /// estimate of the state's memory that costs nothing to read. Heap memory a key or a
    /// value owns (strings, lists) is not counted.
    pub(crate) fn footprint_bytes(&self) -> usize {
        let slot = std::mem::size_of::<Option<Group<V>>>();
        // A hashbrown bucket holds the u32 and one control byte.
        let bucket = std::mem::size_of::<u32>() + 1;
        self.slots.capacity() * slot
            + self.index.capacity() * bucket
            + self.free.capacity() * std::mem::size_of::<u32>()
    }
}

fn keys_equal(key: &[Datum<'_>], stored: &[Value]) -> bool {
    key.len() == stored.len() && key.iter().zip(stored).all(|(d, v)| datum_eq(d, v))
}
