//! `lookup:` — a lookup join: each record is enriched with the rows of a
//! PostgreSQL table whose key columns equal fields of the record (Flink's
//! lookup join, `FOR SYSTEM_TIME AS OF proc_time`).
//!
//! The keys a batch needs and the cache does not hold are fetched in one
//! query (at most `capacity` keys per query), bounded by `timeout` and tried
//! again `retries` times with a doubling backoff when the server is
//! unreachable; the batch waits for its queries, so records leave in input
//! order and no record is in flight at a barrier or watermark. A record
//! whose lookup fails for good goes to the dead-letter sink with the error.
//!
//! The cache (Flink's `lookup.partial-cache.*`) holds up to `max_rows` keys,
//! each for `expire_after_write` after it was fetched, and by default also
//! keys the table does not have (`cache_missing`). Per record, a lookup the
//! cache answers is a hit, one that needs the table a miss (counted once
//! per key and batch: the other records of the batch with that key are
//! answered by the same query, as hits).
//!
//! Output: per matching row one record, the input's fields and the row's
//! columns (under `as`, when given, as an object); with `join: left`, a
//! record without a match keeps going with nulls.

use super::db;
use crate::error::{PlanError, RuntimeError};
use crate::json::{self, Pointer};
use crate::runtime::kind::InnerOrLeft;
use crate::runtime::kind::{OperatorKind, PlanContext, Planned, error, field};
use crate::runtime::{Batch, NodeInfo, NodeMetrics, Operator, OperatorFactory, Output, Subtask};
use crate::units::Dur;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LookupSpec {
    /// Where the table is: `postgres` (the only kind today).
    #[serde(rename = "type")]
    kind: String,
    url: String,
    table: String,
    /// Key column → JSON pointer of the record field it must equal.
    key: BTreeMap<String, String>,
    /// The columns to fetch (default: every column but the key's).
    #[serde(default)]
    columns: Option<Vec<String>>,
    /// Put the row's columns under this field (default: beside the
    /// record's own fields).
    #[serde(default, rename = "as")]
    name: Option<String>,
    #[serde(default)]
    join: InnerOrLeft,
    #[serde(default = "default_capacity")]
    capacity: usize,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default)]
    cache: Option<CacheSpec>,
}

fn default_capacity() -> usize {
    1000
}

fn default_retries() -> u32 {
    3
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct CacheSpec {
    max_rows: usize,
    #[serde(default)]
    expire_after_write: Option<Dur>,
    #[serde(default = "yes")]
    cache_missing: bool,
}

fn yes() -> bool {
    true
}

struct Settings {
    url: String,
    table: String,
    key_fields: Vec<Pointer>,
    /// `SELECT key texts…, row as JSON … WHERE (keys) IN (unnest($1…))`.
    query: String,
    /// The field the row goes under (`as`), or none: its columns go beside
    /// the record's own fields.
    merged: Option<String>,
    join: InnerOrLeft,
    capacity: usize,
    timeout: Duration,
    retries: u32,
    cache: Option<CacheSpec>,
}

pub struct LookupFactory(Arc<Settings>);

impl OperatorFactory for LookupFactory {
    fn kind(&self) -> &'static str {
        "lookup"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(Lookup {
            s: self.0.clone(),
            info: subtask.info.clone(),
            client: None,
            cache: HashMap::new(),
            order: VecDeque::new(),
        })
    }
}

/// The rows of one key (JSON objects), and when they were fetched.
type Cached = (Arc<Vec<Vec<u8>>>, Instant);

pub struct Lookup {
    s: Arc<Settings>,
    info: Arc<NodeInfo>,
    client: Option<Client>,
    cache: HashMap<Vec<u8>, Cached>,
    /// Cached keys, oldest first (the first to go when the cache is full).
    order: VecDeque<Vec<u8>>,
}

/// The lookup key of a record: the key fields' values as text, each ended
/// by a NUL; `false` when one is missing or null (no row can match). A
/// record that is not a JSON object is an error: the join adds fields to it.
fn key_of(fields: &[Pointer], value: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
    out.clear();
    let v = value.trim_ascii();
    if v.first() != Some(&b'{') || v.last() != Some(&b'}') {
        return Err("not a JSON object (a lookup join adds the row's fields to the record)".into());
    }
    let pointers: smallvec::SmallVec<[&Pointer; 4]> = fields.iter().collect();
    let mut found: smallvec::SmallVec<[Option<&[u8]>; 4]> = smallvec::smallvec![None; fields.len()];
    json::find_many(value, &pointers, &mut found).map_err(|e| e.to_string())?;
    for raw in found {
        match raw {
            None | Some(b"null") => return Ok(false),
            Some(raw) if raw.first() == Some(&b'"') => {
                json::unescape_into(&raw[1..raw.len() - 1], out)
            }
            Some(raw) => out.extend_from_slice(raw),
        }
        out.push(0);
    }
    Ok(true)
}

impl Lookup {
    fn cached(&self, key: &[u8]) -> Option<Arc<Vec<Vec<u8>>>> {
        let (rows, at) = self.cache.get(key)?;
        let expire = self.s.cache.as_ref()?.expire_after_write;
        if expire.is_some_and(|e| at.elapsed() >= e.0) {
            return None;
        }
        Some(rows.clone())
    }

    fn remember(&mut self, key: Vec<u8>, rows: Arc<Vec<Vec<u8>>>) {
        let Some(c) = &self.s.cache else { return };
        if c.max_rows == 0 || (rows.is_empty() && !c.cache_missing) {
            return;
        }
        if self
            .cache
            .insert(key.clone(), (rows, Instant::now()))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.cache.len() > c.max_rows {
            match self.order.pop_front() {
                Some(old) => {
                    self.cache.remove(&old);
                }
                None => break,
            }
        }
    }

    /// Fetches the rows of `keys` (at most `capacity`), trying again while
    /// the server is unreachable or slow.
    async fn fetch(&mut self, keys: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>, String> {
        let arity = self.s.key_fields.len();
        let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(keys.len()); arity];
        for k in keys {
            for (i, part) in k.split(|&b| b == 0).take(arity).enumerate() {
                columns[i].push(String::from_utf8_lossy(part).into_owned());
            }
        }
        let what = format!(
            "looking up {} at {}",
            self.s.table,
            db::redacted(&self.s.url)
        );
        let mut wait = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let r = tokio::time::timeout(self.s.timeout, self.query(&columns)).await;
            let e = match r {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(e)) if !db::retryable(&e) => {
                    return Err(format!("{what}: {}", db::describe(&e)));
                }
                Ok(Err(e)) => db::describe(&e),
                Err(_) => format!("no answer within {:?}", self.s.timeout),
            };
            self.client = None;
            attempt += 1;
            if attempt > self.s.retries {
                return Err(format!("{what}: {e} (after {attempt} attempts)"));
            }
            tracing::warn!("{what}: {e} (attempt {attempt}; retrying in {wait:?})");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn query(
        &mut self,
        columns: &[Vec<String>],
    ) -> Result<HashMap<Vec<u8>, Vec<Vec<u8>>>, tokio_postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(db::connect(&self.s.url).await?);
        }
        let client = self.client.as_ref().expect("connected");
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = client.query(&self.s.query, &params).await?;
        let arity = columns.len();
        let mut found: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
        for row in rows {
            let mut key = Vec::new();
            for i in 0..arity {
                key.extend_from_slice(row.get::<_, String>(i).as_bytes());
                key.push(0);
            }
            let doc: String = row.get(arity);
            found.entry(key).or_default().push(doc.into_bytes());
        }
        Ok(found)
    }

    /// The record (a JSON object: [`key_of`] checked) with a row's columns
    /// (or, `None`, with nulls).
    fn joined(&self, value: &[u8], row: Option<&[u8]>, out: &mut Vec<u8>) {
        out.clear();
        let body = value.trim_ascii_end();
        let body = &body[..body.len() - 1]; // without the closing brace
        out.extend_from_slice(body);
        let empty = body.trim_ascii_end().ends_with(b"{");
        match &self.s.merged {
            Some(name) => {
                if !empty {
                    out.push(b',');
                }
                json::write_str(out, name.as_bytes());
                out.push(b':');
                out.extend_from_slice(row.unwrap_or(b"null"));
            }
            None => {
                // The row's own fields, without its braces.
                let inner = row.map(|r| &r[1..r.len() - 1]).unwrap_or(b"");
                if !inner.trim_ascii().is_empty() {
                    if !empty {
                        out.push(b',');
                    }
                    out.extend_from_slice(inner);
                }
            }
        }
        out.push(b'}');
    }
}

#[async_trait]
impl Operator for Lookup {
    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        // The records' keys; what the cache does not know is fetched.
        let mut keys: Vec<Option<Vec<u8>>> = Vec::with_capacity(batch.len());
        let mut answers: HashMap<Vec<u8>, Arc<Vec<Vec<u8>>>> = HashMap::new();
        let mut wanted: Vec<Vec<u8>> = Vec::new();
        let mut wanted_set: std::collections::HashSet<Vec<u8>> = Default::default();
        let (mut hits, mut misses) = (0u64, 0u64);
        let mut k = Vec::new();
        for r in batch.iter() {
            match key_of(&self.s.key_fields, r.value(), &mut k) {
                Ok(true) => {
                    if answers.contains_key(&k) || wanted_set.contains(&k) {
                        hits += 1;
                    } else if let Some(rows) = self.cached(&k) {
                        hits += 1;
                        answers.insert(k.clone(), rows);
                    } else {
                        misses += 1;
                        wanted_set.insert(k.clone());
                        wanted.push(k.clone());
                    }
                    keys.push(Some(k.clone()));
                }
                Ok(false) => keys.push(None),
                Err(e) => {
                    out.dead_letter(r, &e)?;
                    keys.push(None);
                }
            }
        }
        NodeMetrics::add(&self.info.metrics.cache_hits, hits);
        NodeMetrics::add(&self.info.metrics.cache_misses, misses);
        let mut failed: HashMap<Vec<u8>, String> = HashMap::new();
        for chunk in wanted.chunks(self.s.capacity.max(1)) {
            match self.fetch(chunk).await {
                Ok(mut found) => {
                    for key in chunk {
                        let rows = Arc::new(found.remove(key).unwrap_or_default());
                        self.remember(key.clone(), rows.clone());
                        answers.insert(key.clone(), rows);
                    }
                }
                Err(e) => {
                    for key in chunk {
                        failed.insert(key.clone(), e.clone());
                    }
                }
            }
        }
        let mut rows = Batch::with_capacity(batch.len(), batch.data.len() * 2);
        let mut buf = Vec::new();
        for (r, key) in batch.iter().zip(&keys) {
            let matched = match key {
                Some(key) => {
                    if let Some(e) = failed.get(key) {
                        out.dead_letter(r, e)?;
                        continue;
                    }
                    answers.get(key).cloned()
                }
                None => None,
            };
            let matched = matched.filter(|m| !m.is_empty());
            match matched {
                Some(found) => {
                    for row in found.iter() {
                        self.joined(r.value(), Some(row), &mut buf);
                        rows.push_record_with_value(r, &buf);
                    }
                }
                None if self.s.join == InnerOrLeft::Left => {
                    self.joined(r.value(), None, &mut buf);
                    rows.push_record_with_value(r, &buf);
                }
                None => {}
            }
        }
        if !rows.is_empty() {
            out.emit(rows);
        }
        Ok(())
    }
}

/// `lookup:` in a spec.
pub struct LookupKind;

impl OperatorKind for LookupKind {
    fn tag(&self) -> &'static str {
        "lookup"
    }

    fn what(&self) -> &'static str {
        "a lookup join"
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let tag = self.tag();
        let spec = field::<LookupSpec>(cx, tag)?.expect("the planner saw the tag");
        if spec.kind != "postgres" {
            return Err(error(
                cx,
                &format!("{tag}.type"),
                format!(
                    "unknown lookup table type `{}` (available: postgres)",
                    spec.kind
                ),
            ));
        }
        if spec.key.is_empty() {
            return Err(error(
                cx,
                &format!("{tag}.key"),
                "name at least one key column and its field",
            ));
        }
        let mut key_fields = Vec::new();
        for (col, p) in &spec.key {
            key_fields
                .push(Pointer::parse(p).map_err(|m| error(cx, &format!("{tag}.key.{col}"), m))?);
        }
        let url = spec.url.clone();
        let table = spec.table.clone();
        let key_cols: Vec<String> = spec.key.keys().cloned().collect();
        let fetched = spec.columns.clone();
        let described = db::block_on(async move {
            let client = db::connect(&url).await.map_err(|e| {
                format!(
                    "cannot connect to {}: {}",
                    db::redacted(&url),
                    db::describe(&e)
                )
            })?;
            db::columns(&client, &table).await
        })
        .map_err(|m| error(cx, tag, m))?;
        let (quoted, all) = described;
        let type_of = |c: &str| all.iter().find(|(n, _)| n == c).map(|(_, t)| t.clone());
        let mut unnest = Vec::new();
        for (i, c) in key_cols.iter().enumerate() {
            let t = type_of(c).ok_or_else(|| {
                error(
                    cx,
                    &format!("{tag}.key"),
                    format!("table {quoted} has no column `{c}`"),
                )
            })?;
            unnest.push(format!("${}::text[]::{t}[]", i + 1));
        }
        let columns: Vec<String> = match fetched {
            Some(cols) => {
                for c in &cols {
                    if type_of(c).is_none() {
                        return Err(error(
                            cx,
                            &format!("{tag}.columns"),
                            format!("table {quoted} has no column `{c}`"),
                        ));
                    }
                }
                cols
            }
            None => all
                .iter()
                .map(|(n, _)| n.clone())
                .filter(|n| !key_cols.contains(n))
                .collect(),
        };
        if columns.is_empty() {
            return Err(error(cx, &format!("{tag}.columns"), "no column to fetch"));
        }
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let query = format!(
            "SELECT {keys}, json_build_object({cols})::text FROM {quoted} WHERE ({key_list}) IN (SELECT * FROM unnest({unnest}))",
            keys = key_cols
                .iter()
                .map(|c| format!("{}::text", q(c)))
                .collect::<Vec<_>>()
                .join(", "),
            cols = columns
                .iter()
                .map(|c| format!("{}, {}", lit(c), q(c)))
                .collect::<Vec<_>>()
                .join(", "),
            key_list = key_cols.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
            unnest = unnest.join(", "),
        );
        let timeout = spec.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(5));
        Ok(Planned::new(Arc::new(LookupFactory(Arc::new(Settings {
            url: spec.url,
            table: quoted,
            key_fields,
            query,
            merged: spec.name,
            join: spec.join,
            capacity: spec.capacity,
            timeout,
            retries: spec.retries,
            cache: spec.cache,
        })))))
    }
}
