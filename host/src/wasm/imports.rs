//! The host's side of the WIT imports: what a guest's calls to `logging`,
//! `state`, `output`, `http` and `fields` do. Each reaches its part of the store's
//! data ([`StoreData`]).

use super::keyed::{ListBuilder, ValueEncoding, items};
use super::logging::emit;
use super::sandbox::StoreData;
use super::sluice::operator::fields;
use super::sluice::operator::http::{self, Request, Response};
use super::sluice::operator::logging::{self, Level};
use super::sluice::operator::{broadcast_state, keyed, output, state as wit_state};
use super::types;
use crate::state::{Descriptor, Kind};

impl logging::Host for StoreData {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        emit(&self.logs, level, "", &message);
        Ok(())
    }
}

/// `types` has no functions; guests still import the instance.
impl types::Host for StoreData {}

/// Nor has `keyed`.
impl keyed::Host for StoreData {}

impl broadcast_state::Host for StoreData {
    fn declare(&mut self, name: String) -> wasmtime::Result<Result<u32, String>> {
        if !self.keyed.opening {
            return Ok(Err("broadcast states can only be declared in `open`".into()));
        }
        Ok(Ok(self.keyed.broadcast.declare(name)))
    }

    fn get(&mut self, s: u32, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.keyed.broadcast.map(s)?.get(&key).cloned())
    }

    fn put(&mut self, s: u32, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.broadcast_write(s, "put")?.insert(key, value);
        Ok(())
    }

    fn remove(&mut self, s: u32, key: Vec<u8>) -> wasmtime::Result<()> {
        self.broadcast_write(s, "remove")?.remove(&key);
        Ok(())
    }

    fn entries(
        &mut self,
        s: u32,
    ) -> wasmtime::Result<(broadcast_state::ByteList, broadcast_state::ByteList)> {
        let mut keys = ListBuilder::default();
        let mut values = ListBuilder::default();
        for (k, v) in self.keyed.broadcast.map(s)?.iter() {
            keys.push(k);
            values.push(v);
        }
        Ok((keys.finish(), values.finish()))
    }
}

impl StoreData {
    /// Broadcast state `s`, to change: refused (a trap, and the reason
    /// kept for the operator's error) outside `process-broadcast`.
    fn broadcast_write(
        &mut self,
        s: u32,
        what: &str,
    ) -> wasmtime::Result<&mut std::collections::BTreeMap<Vec<u8>, Vec<u8>>> {
        let access = &mut self.keyed.access;
        if !access.writable {
            let name = self.keyed.broadcast.names.get(s as usize);
            let message = format!(
                "a {what} on broadcast state `{}` while processing keyed records; only `process-broadcast` (the broadcast input) may change broadcast state",
                name.map_or("?", |n| n.as_str())
            );
            access.refused = Some(message.clone());
            return Err(wasmtime::Error::msg(message));
        }
        self.keyed.broadcast.map(s)
    }
}

impl http::Host for StoreData {
    async fn fetch(&mut self, request: Request) -> wasmtime::Result<Result<Response, String>> {
        self.network.send(request).await
    }
}

impl wit_state::Host for StoreData {
    fn declare(&mut self, d: wit_state::StateDescriptor) -> wasmtime::Result<Result<u32, String>> {
        let call = &mut self.keyed;
        if !call.opening {
            return Ok(Err("states can only be declared in `open`".into()));
        }
        let kind = match d.kind {
            wit_state::StateKind::Value => Kind::Value,
            wit_state::StateKind::List => Kind::List,
            wit_state::StateKind::Map => Kind::Map,
        };
        Ok(call
            .state()?
            .declare(Descriptor {
                name: d.name,
                kind,
                ttl_ms: d.ttl_ms,
                version: d.version,
            })
            .map_err(|e| e.to_string()))
    }

    fn encode_values(
        &mut self,
        s: u32,
        encoding: wit_state::ValueEncoding,
    ) -> wasmtime::Result<Result<(), String>> {
        let call = &mut self.keyed;
        if !call.opening {
            return Ok(Err("value encodings can only be set in `open`".into()));
        }
        let Some(slot) = call.state()?.value_slot(s) else {
            return Ok(Err(format!("state #{s} is not a declared value state")));
        };
        let slot = slot as usize;
        if call.encodings.len() <= slot {
            call.encodings.resize(slot + 1, None);
        }
        call.encodings[slot] = ValueEncoding::of(encoding);
        Ok(Ok(()))
    }

    fn list_get(&mut self, s: u32, key: u32) -> wasmtime::Result<wit_state::ByteList> {
        let mut list = ListBuilder::default();
        self.keyed.access(key, |st, kg, k| {
            st.list_get(s, kg, k, &mut |e| list.push(e))
        })?;
        Ok(list.finish())
    }

    fn list_add(&mut self, s: u32, key: u32, element: Vec<u8>) -> wasmtime::Result<()> {
        self.keyed
            .access(key, |st, kg, k| st.list_add(s, kg, k, &element))
    }

    fn list_update(
        &mut self,
        s: u32,
        key: u32,
        elements: wit_state::ByteList,
    ) -> wasmtime::Result<()> {
        let elements = items(&elements)?;
        self.keyed.access(key, |st, kg, k| {
            st.list_update(s, kg, k, elements.into_iter())
        })
    }

    fn map_get(
        &mut self,
        s: u32,
        key: u32,
        user_key: Vec<u8>,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        let mut out = Vec::new();
        let found = self
            .keyed
            .access(key, |st, kg, k| st.map_get(s, kg, k, &user_key, &mut out))?;
        Ok(found.then_some(out))
    }

    fn map_put(
        &mut self,
        s: u32,
        key: u32,
        user_key: Vec<u8>,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        self.keyed
            .access(key, |st, kg, k| st.map_put(s, kg, k, &user_key, &value))
    }

    fn map_remove(&mut self, s: u32, key: u32, user_key: Vec<u8>) -> wasmtime::Result<()> {
        self.keyed
            .access(key, |st, kg, k| st.map_remove(s, kg, k, &user_key))
    }

    fn map_entries(
        &mut self,
        s: u32,
        key: u32,
    ) -> wasmtime::Result<(wit_state::ByteList, wit_state::ByteList)> {
        let mut keys = ListBuilder::default();
        let mut values = ListBuilder::default();
        self.keyed.access(key, |st, kg, k| {
            st.map_entries(s, kg, k, &mut |uk, v| {
                keys.push(uk);
                values.push(v);
            })
        })?;
        Ok((keys.finish(), values.finish()))
    }

    fn clear(&mut self, s: u32, key: u32) -> wasmtime::Result<()> {
        self.keyed.access(key, |st, kg, k| st.clear(s, kg, k))
    }
}

impl output::Host for StoreData {
    fn side_output(&mut self, name: String) -> wasmtime::Result<u32> {
        let sides = &mut self.keyed.side_outputs;
        let i = match sides.iter().position(|n| *n == name) {
            Some(i) => i,
            None => {
                sides.push(name);
                sides.len() - 1
            }
        };
        Ok(i as u32 + 1)
    }
}

impl fields::Host for StoreData {
    fn project(&mut self, names: Vec<String>) -> wasmtime::Result<Result<(), String>> {
        let uid = &self.uid;
        match self.fields.project(names.clone()) {
            Ok(()) => {
                tracing::debug!(operator = %uid, ?names, "the host finds the module's fields");
                Ok(Ok(()))
            }
            Err(e) => {
                tracing::debug!(operator = %uid, ?names, "the host does not find the module's fields: {e}");
                Ok(Err(e))
            }
        }
    }

    fn found(&mut self) -> wasmtime::Result<Vec<u32>> {
        Ok(self.fields.take_found())
    }
}
