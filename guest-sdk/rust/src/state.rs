//! Keyed state that lives in the host: declaring states and side outputs, and
//! the list and map states, whose every access is one host call.
//!
//! On Wasm these are the `state` and `output` imports of the
//! `keyed-process-operator` world. Natively (operator unit tests) they are a
//! per-thread in-memory store with the same behaviour, so a process function
//! can be tested with `cargo test` without a host.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::batch::slice;
use crate::{Context, Error};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Value,
    List,
    Map,
}

/// A declared state's handle.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Declared(pub(crate) u32);

pub(crate) fn declare(
    name: &str,
    kind: Kind,
    ttl: Option<Duration>,
    version: u32,
) -> Result<u32, Error> {
    host::declare(name, kind, ttl.map(|d| d.as_millis() as u64), version).map_err(Error::new)
}

/// How a value state's values cross the boundary (the WIT's
/// `state.value-encoding`). The host stores JSON text either way, so a
/// savepoint does not depend on it: `i64` and `u64` cross as their 8 bytes
/// and the host converts, which spares the module a JSON parse and print
/// per read and write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    S64,
    U64,
}

impl Encoding {
    /// The encoding of a value state of `T`.
    pub(crate) fn of<T: 'static>() -> Encoding {
        let t = std::any::TypeId::of::<T>();
        if t == std::any::TypeId::of::<i64>() {
            Encoding::S64
        } else if t == std::any::TypeId::of::<u64>() {
            Encoding::U64
        } else {
            Encoding::Json
        }
    }

    /// Tells the host how state `handle` crosses (nothing to tell for JSON).
    pub(crate) fn declare(self, handle: u32) -> Result<(), Error> {
        match self {
            Encoding::Json => Ok(()),
            e => host::encode_values(handle, e).map_err(Error::new),
        }
    }

    /// The value of 8 bytes from the host, as `T` (the type this encoding
    /// was chosen for); `None` for anything else, such as the empty span
    /// the host sends for a stored value that is not an integer in range.
    pub(crate) fn read<T: DeserializeOwned>(self, bytes: &[u8]) -> Option<T> {
        use serde::de::IntoDeserializer;
        type E = serde::de::value::Error;
        let word = <[u8; 8]>::try_from(bytes).ok()?;
        match self {
            Encoding::Json => None,
            Encoding::S64 => T::deserialize(IntoDeserializer::<E>::into_deserializer(
                i64::from_le_bytes(word),
            ))
            .ok(),
            Encoding::U64 => T::deserialize(IntoDeserializer::<E>::into_deserializer(
                u64::from_le_bytes(word),
            ))
            .ok(),
        }
    }

    /// The 8 bytes of `value`, a `T` this encoding was chosen for.
    pub(crate) fn write<T: 'static>(self, value: &T) -> Option<[u8; 8]> {
        let any: &dyn std::any::Any = value;
        match self {
            Encoding::Json => None,
            Encoding::S64 => any.downcast_ref::<i64>().map(|v| v.to_le_bytes()),
            Encoding::U64 => any.downcast_ref::<u64>().map(|v| v.to_le_bytes()),
        }
    }

    /// What the host holds when `read` finds no integer, for errors.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Encoding::Json => "JSON text",
            Encoding::S64 => "an integer in the range of i64",
            Encoding::U64 => "an integer in the range of u64",
        }
    }
}

pub(crate) fn side_output(name: &str) -> u32 {
    host::side_output(name)
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(format!(
            "{what} holds a value this operator cannot read: {e}"
        ))
    })
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(Error::from)
}

/// A list of `T` per key (Flink's `ListState`). Declare it with
/// [`Setup::list_state`](crate::Setup::list_state).
pub struct ListState<T> {
    state: Declared,
    _t: PhantomData<fn() -> T>,
}

impl<T> ListState<T> {
    pub(crate) fn new(state: Declared) -> Self {
        ListState {
            state,
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// The current key's elements, in the order they were added.
    pub fn get(&self, ctx: &Context<'_>) -> Result<Vec<T>, Error> {
        let list = host::list_get(self.state.0, ctx.key_index());
        list.spans
            .iter()
            .map(|s| decode("a list state", slice(&list.data, *s)))
            .collect()
    }

    /// Appends an element for the current key.
    pub fn add(&self, ctx: &mut Context<'_>, value: &T) -> Result<(), Error> {
        host::list_add(self.state.0, ctx.key_index(), &encode(value)?);
        Ok(())
    }

    /// Replaces the current key's elements.
    pub fn update(&self, ctx: &mut Context<'_>, values: &[T]) -> Result<(), Error> {
        let mut list = crate::batch::ByteListBuilder::with_capacity(values.len(), 0);
        for v in values {
            list.push_json(v)?;
        }
        host::list_update(self.state.0, ctx.key_index(), &list.finish());
        Ok(())
    }

    /// Removes the current key's list.
    pub fn clear(&self, ctx: &mut Context<'_>) {
        host::clear(self.state.0, ctx.key_index());
    }
}

/// A map from `K` to `V` per key (Flink's `MapState`). Declare it with
/// [`Setup::map_state`](crate::Setup::map_state). User keys are stored as
/// their JSON text; `entries` returns them in the order of those bytes.
pub struct MapState<K, V> {
    state: Declared,
    _t: PhantomData<fn() -> (K, V)>,
}

impl<K, V> MapState<K, V> {
    pub(crate) fn new(state: Declared) -> Self {
        MapState {
            state,
            _t: PhantomData,
        }
    }
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// The value under `key` for the current key.
    pub fn get(&self, ctx: &Context<'_>, key: &K) -> Result<Option<V>, Error> {
        match host::map_get(self.state.0, ctx.key_index(), &encode(key)?) {
            None => Ok(None),
            Some(v) => decode("a map state", &v).map(Some),
        }
    }

    /// Whether there is a value under `key`.
    pub fn contains(&self, ctx: &Context<'_>, key: &K) -> Result<bool, Error> {
        Ok(host::map_get(self.state.0, ctx.key_index(), &encode(key)?).is_some())
    }

    pub fn put(&self, ctx: &mut Context<'_>, key: &K, value: &V) -> Result<(), Error> {
        host::map_put(
            self.state.0,
            ctx.key_index(),
            &encode(key)?,
            &encode(value)?,
        );
        Ok(())
    }

    pub fn remove(&self, ctx: &mut Context<'_>, key: &K) -> Result<(), Error> {
        host::map_remove(self.state.0, ctx.key_index(), &encode(key)?);
        Ok(())
    }

    /// All entries of the current key.
    pub fn entries(&self, ctx: &Context<'_>) -> Result<Vec<(K, V)>, Error> {
        let (keys, values) = host::map_entries(self.state.0, ctx.key_index());
        keys.spans
            .iter()
            .zip(&values.spans)
            .map(|(k, v)| {
                Ok((
                    decode("a map state key", slice(&keys.data, *k))?,
                    decode("a map state", slice(&values.data, *v))?,
                ))
            })
            .collect()
    }

    /// Removes all entries of the current key.
    pub fn clear(&self, ctx: &mut Context<'_>) {
        host::clear(self.state.0, ctx.key_index());
    }
}

#[cfg(target_arch = "wasm32")]
mod host {
    use super::Kind;
    use crate::batch::ByteList;
    use crate::bindings::process::sluice::operator::{output, state};

    pub fn declare(
        name: &str,
        kind: Kind,
        ttl_ms: Option<u64>,
        version: u32,
    ) -> Result<u32, String> {
        state::declare(&state::StateDescriptor {
            name: name.to_owned(),
            kind: match kind {
                Kind::Value => state::StateKind::Value,
                Kind::List => state::StateKind::List,
                Kind::Map => state::StateKind::Map,
            },
            ttl_ms,
            version,
        })
    }

    pub fn encode_values(s: u32, encoding: super::Encoding) -> Result<(), String> {
        state::encode_values(
            s,
            match encoding {
                super::Encoding::Json => state::ValueEncoding::Bytes,
                super::Encoding::S64 => state::ValueEncoding::S64,
                super::Encoding::U64 => state::ValueEncoding::U64,
            },
        )
    }

    pub fn side_output(name: &str) -> u32 {
        output::side_output(name)
    }

    pub fn list_get(s: u32, key: u32) -> ByteList {
        state::list_get(s, key)
    }

    pub fn list_add(s: u32, key: u32, element: &[u8]) {
        state::list_add(s, key, element)
    }

    pub fn list_update(s: u32, key: u32, elements: &ByteList) {
        state::list_update(s, key, elements)
    }

    pub fn map_get(s: u32, key: u32, user_key: &[u8]) -> Option<Vec<u8>> {
        state::map_get(s, key, user_key)
    }

    pub fn map_put(s: u32, key: u32, user_key: &[u8], value: &[u8]) {
        state::map_put(s, key, user_key, value)
    }

    pub fn map_remove(s: u32, key: u32, user_key: &[u8]) {
        state::map_remove(s, key, user_key)
    }

    pub fn map_entries(s: u32, key: u32) -> (ByteList, ByteList) {
        state::map_entries(s, key)
    }

    pub fn clear(s: u32, key: u32) {
        state::clear(s, key)
    }
}

/// The native stand-in: one store per thread, keyed by handle and key index.
#[cfg(not(target_arch = "wasm32"))]
mod host {
    use super::Kind;
    use crate::batch::{ByteList, ByteListBuilder, slice};
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Default)]
    struct Store {
        declared: Vec<(String, Kind, u32)>,
        sides: Vec<String>,
        lists: HashMap<(u32, u32), Vec<Vec<u8>>>,
        maps: HashMap<(u32, u32), BTreeMap<Vec<u8>, Vec<u8>>>,
    }

    thread_local! {
        static STORE: RefCell<Store> = RefCell::default();
    }

    fn with<R>(f: impl FnOnce(&mut Store) -> R) -> R {
        STORE.with(|s| f(&mut s.borrow_mut()))
    }

    pub fn declare(
        name: &str,
        kind: Kind,
        _ttl_ms: Option<u64>,
        version: u32,
    ) -> Result<u32, String> {
        with(
            |s| match s.declared.iter().position(|(n, _, _)| n == name) {
                Some(i) if s.declared[i].1 == kind && s.declared[i].2 == version => Ok(i as u32),
                Some(_) => Err(format!(
                    "state `{name}` is already declared as another kind or version"
                )),
                None => {
                    s.declared.push((name.to_owned(), kind, version));
                    Ok(s.declared.len() as u32 - 1)
                }
            },
        )
    }

    /// Natively the operator's tests give value states' bytes themselves;
    /// a state must be a declared value state, as on the host.
    pub fn encode_values(st: u32, _encoding: super::Encoding) -> Result<(), String> {
        with(|s| match s.declared.get(st as usize) {
            Some((_, Kind::Value, _)) => Ok(()),
            _ => Err(format!("state #{st} is not a declared value state")),
        })
    }

    pub fn side_output(name: &str) -> u32 {
        with(|s| match s.sides.iter().position(|n| n == name) {
            Some(i) => i as u32 + 1,
            None => {
                s.sides.push(name.to_owned());
                s.sides.len() as u32
            }
        })
    }

    pub fn list_get(st: u32, key: u32) -> ByteList {
        with(|s| {
            let mut b = ByteListBuilder::with_capacity(0, 0);
            for e in s.lists.get(&(st, key)).into_iter().flatten() {
                b.push_bytes(e);
            }
            b.finish()
        })
    }

    pub fn list_add(st: u32, key: u32, element: &[u8]) {
        with(|s| s.lists.entry((st, key)).or_default().push(element.to_vec()))
    }

    pub fn list_update(st: u32, key: u32, elements: &ByteList) {
        let items = elements
            .spans
            .iter()
            .map(|sp| slice(&elements.data, *sp).to_vec())
            .collect();
        with(|s| s.lists.insert((st, key), items));
    }

    pub fn map_get(st: u32, key: u32, user_key: &[u8]) -> Option<Vec<u8>> {
        with(|s| {
            s.maps
                .get(&(st, key))
                .and_then(|m| m.get(user_key).cloned())
        })
    }

    pub fn map_put(st: u32, key: u32, user_key: &[u8], value: &[u8]) {
        with(|s| {
            s.maps
                .entry((st, key))
                .or_default()
                .insert(user_key.to_vec(), value.to_vec())
        });
    }

    pub fn map_remove(st: u32, key: u32, user_key: &[u8]) {
        with(|s| s.maps.get_mut(&(st, key)).map(|m| m.remove(user_key)));
    }

    pub fn map_entries(st: u32, key: u32) -> (ByteList, ByteList) {
        with(|s| {
            let mut k = ByteListBuilder::with_capacity(0, 0);
            let mut v = ByteListBuilder::with_capacity(0, 0);
            for (uk, uv) in s.maps.get(&(st, key)).into_iter().flatten() {
                k.push_bytes(uk);
                v.push_bytes(uv);
            }
            (k.finish(), v.finish())
        })
    }

    pub fn clear(st: u32, key: u32) {
        with(|s| {
            s.lists.remove(&(st, key));
            s.maps.remove(&(st, key));
        })
    }
}
