//! Sources: what every connector implements, and what they all share.
//!
//! A connector implements [`Source`]: it registers its splits and, when
//! polled, pushes raw records into a [`SourceOutput`]. Everything else is
//! common and lives in `SourceOutput`: checking the record format, reading
//! the event time, generating per-split watermarks, cutting batches (when
//! full, at every watermark, and after the buffer timeout when input is
//! slow), and setting malformed records aside.

use super::batch::{
    Batch, MEMBER_ABSENT, MEMBER_ESCAPED, MEMBERS_UNREAD, MemberRequest, Members, Origin, RowKind,
};
use super::keys::KeySelector;
use super::operator::Output;
use super::{Message, PositionKind};
use crate::error::RuntimeError;
use crate::json::{self, Pointer};
use crate::time::Clock;
use crate::time::watermark::{SourceWatermarks, Watermark, WatermarkStrategy};
use std::sync::Arc;
use std::time::Duration;

/// What a poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourcePoll {
    /// More records are ready: poll again.
    More,
    /// Nothing now; poll again within this long.
    Wait(Duration),
    /// All splits are done.
    Finished,
}

pub trait Source: Send {
    /// Registers the splits this subtask reads (`out.add_split`) and opens
    /// them.
    fn open(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError>;

    /// Pushes the records available now into `out`, stopping when
    /// `out.is_full()`.
    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError>;

    /// Where each of the subtask's splits is, by split name, just after the
    /// last record pushed: what a checkpoint stores.
    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value>;

    /// The checkpoint that stored `positions` (from [`Source::snapshot`])
    /// is complete. (Kafka commits them to its consumer group, for
    /// monitoring; recovery reads positions from checkpoints only.)
    fn checkpoint_complete(&mut self, _positions: &Positions) {}

    /// Whether a barrier may pass now: false while the source has pushed
    /// part of a unit that must stay whole in one checkpoint (a database
    /// transaction); barriers then wait for the rest of it.
    fn at_boundary(&self) -> bool {
        true
    }

    /// Positions from a snapshot (of every split of the source, whichever
    /// subtask read it): called before `open`; the subtask resumes its
    /// splits from there.
    fn restore(
        &mut self,
        positions: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RuntimeError>;
}

/// Positions by split name.
pub type Positions = serde_json::Map<String, serde_json::Value>;

/// How record values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON document per record, checked.
    Json,
    /// One JSON document per record, checked by every operator that reads
    /// it rather than by the source: what `sluice sql` reads its tables as
    /// (its `sql` operator reads each record whole, and sets aside the ones
    /// that are not JSON), so that a record is scanned once, not twice.
    JsonUnchecked,
    /// Bytes as they are.
    Raw,
    /// Debezium's change events (`{"before", "after", "op"}`, optionally
    /// inside `{"schema", "payload"}`): each becomes the changelog records
    /// of its row (`c`/`r` an insert of `after`, `u` an update-before of
    /// `before` and an update-after of `after`, `d` a delete of `before`);
    /// tombstones (empty or `null` values) are skipped.
    DebeziumJson,
}

impl Format {
    /// Whether record values are JSON documents.
    pub fn is_json(self) -> bool {
        matches!(
            self,
            Format::Json | Format::JsonUnchecked | Format::DebeziumJson
        )
    }
}

/// The rows of one Debezium change event, with their changelog kinds; no
/// rows for a tombstone.
pub fn debezium_rows(value: &[u8]) -> Result<Vec<(RowKind, Vec<u8>)>, String> {
    use serde_json::Value;
    let trimmed = value.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Ok(Vec::new());
    }
    let doc: Value = serde_json::from_slice(value).map_err(|e| format!("not JSON: {e}"))?;
    let envelope = match &doc {
        Value::Object(m) if m.contains_key("schema") && m.contains_key("payload") => &m["payload"],
        _ => &doc,
    };
    if envelope.is_null() {
        return Ok(Vec::new());
    }
    let op = envelope
        .get("op")
        .and_then(Value::as_str)
        .ok_or("a Debezium change event has an `op` (c, r, u or d)")?;
    let image = |name: &str| -> Result<Vec<u8>, String> {
        match envelope.get(name) {
            Some(v @ Value::Object(_)) => Ok(serde_json::to_vec(v).expect("JSON")),
            _ => Err(format!(
                "the `{name}` of a Debezium `{op}` event is missing or not an object{}",
                if name == "before" {
                    " (for PostgreSQL, the table needs REPLICA IDENTITY FULL to give the row before an update or delete)"
                } else {
                    ""
                }
            )),
        }
    };
    Ok(match op {
        "c" | "r" => vec![(RowKind::Insert, image("after")?)],
        "u" => vec![
            (RowKind::UpdateBefore, image("before")?),
            (RowKind::UpdateAfter, image("after")?),
        ],
        "d" => vec![(RowKind::Delete, image("before")?)],
        other => return Err(format!("unknown Debezium `op` `{other}` (c, r, u or d)")),
    })
}

/// Makes a source node's readers, one per subtask (connectors implement it).
pub trait SourceFactory: Send + Sync {
    /// The number of splits, when known before the job starts: a source
    /// runs with at most this many subtasks unless its spec says otherwise.
    fn splits(&self) -> Option<usize>;

    fn format(&self) -> Format;

    /// Whether records come with timestamps of their own (Kafka's), which
    /// can be the event time.
    fn record_timestamps(&self) -> bool {
        false
    }

    fn create(&self, subtask: u32, parallelism: u32) -> Box<dyn Source>;

    /// Whether its records are a changelog (updates and deletes).
    fn emits_changelog(&self) -> bool {
        self.format() == Format::DebeziumJson
    }

    /// Releases what the source holds outside the job (a replication slot),
    /// when a job is cancelled with `--drop-slot`.
    fn release(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A source's event-time settings.
#[derive(Debug, Clone)]
pub struct EventTime {
    /// Where the event time is: a field of the value, or (none) the
    /// timestamp the source read with the record (Kafka's).
    pub timestamp: Option<Pointer>,
    pub strategy: WatermarkStrategy,
}

/// A split, as known to [`SourceOutput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitId {
    local: usize,
    global: u32,
}

/// Collects what a source reads and turns it into messages.
pub struct SourceOutput {
    out: Output,
    format: Format,
    event_time: Option<Option<Pointer>>,
    /// Checks JSON records and finds their event time, if it is a field,
    /// and the fields of `key`.
    checker: json::Checker,
    /// The key of the one edge this source's records take, a key-hash one:
    /// set as each record's key here, from the check's scan, rather than
    /// read again by the router (see [`SourceOutput::with_key`]).
    key: Option<KeySelector>,
    key_buf: Vec<u8>,
    watermarks: Option<SourceWatermarks>,
    clock: Arc<dyn Clock>,
    batch: Batch,
    batch_size: usize,
    buffer_timeout_ms: i64,
    /// Processing time of the first record of the current batch.
    batch_started_ms: i64,
    now_ms: i64,
    messages: Vec<Message>,
    buffered: usize,
    scratch: Batch,
    /// Split names, by local split index.
    names: Vec<String>,
    /// Watermark generators' progress from a snapshot, by split name.
    restored: Positions,
    pace: Option<Pace>,
    /// The watermark waiting to follow the current batch
    /// (`Emit::PerEventDeferred`).
    deferred: Option<i64>,
    /// The request of the operator this source feeds for the members it
    /// reads (see [`Members`]), and the names once asked for and taken up.
    members: Option<Arc<MemberRequest>>,
    member_names: Option<Arc<[Box<[u8]>]>>,
    /// The current record's pairs, as [`Members::found`] holds them.
    member_found: Vec<u32>,
}

/// `found`, each member of the record `value` as its raw text and whether
/// it is a string with escapes, or `None`, as [`Members::found`] holds it
/// for one record.
fn member_pairs<'v>(
    value: &[u8],
    found: impl Iterator<Item = Option<(&'v [u8], bool)>>,
    out: &mut Vec<u32>,
) {
    out.clear();
    // The same records the operator's own scan would leave to the module.
    let object = value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !object || value.len() >= MEMBER_ESCAPED as usize {
        unread_pairs(found.count(), out);
        return;
    }
    for f in found {
        match f {
            Some((raw, escaped)) => {
                let start = raw.as_ptr() as usize - value.as_ptr() as usize;
                let len = raw.len() as u32 | if escaped { MEMBER_ESCAPED } else { 0 };
                out.extend_from_slice(&[start as u32, len]);
            }
            None => out.extend_from_slice(&[MEMBER_ABSENT, 0]),
        }
    }
}

/// Each found value's text, and whether it is a string with escapes.
fn escapes<'v>(found: &[Option<&'v [u8]>]) -> impl Iterator<Item = Option<(&'v [u8], bool)>> {
    found
        .iter()
        .map(|f| f.map(|raw| (raw, raw.first() == Some(&b'"') && raw.contains(&b'\\'))))
}

/// `n` pairs of a record whose members its reader finds itself.
fn unread_pairs(n: usize, out: &mut Vec<u32>) {
    out.clear();
    for _ in 0..n {
        out.extend_from_slice(&[MEMBERS_UNREAD.0, MEMBERS_UNREAD.1]);
    }
}

/// A pace a source task keeps (`sluice run --source-rate`): at most `rate`
/// records per second since it started, passed on about every 10 ms.
struct Pace {
    rate: f64,
    /// When the first record was read.
    started: Option<std::time::Instant>,
    pushed: u64,
    per_poll: usize,
}

impl SourceOutput {
    pub fn new(
        out: Output,
        format: Format,
        event_time: Option<EventTime>,
        clock: Arc<dyn Clock>,
        batch_size: usize,
        buffer_timeout: Duration,
    ) -> SourceOutput {
        let now_ms = clock.now_ms();
        let (event_time, watermarks) = match event_time {
            Some(et) => (
                Some(et.timestamp),
                Some(SourceWatermarks::new(et.strategy, now_ms)),
            ),
            None => (None, None),
        };
        let field = event_time.iter().flatten().cloned().collect();
        SourceOutput {
            out,
            format,
            checker: json::Checker::new(field),
            key: None,
            key_buf: Vec::new(),
            event_time,
            watermarks,
            clock,
            batch: Batch::with_capacity(batch_size, batch_size * 128),
            batch_size: batch_size.max(1),
            buffer_timeout_ms: buffer_timeout.as_millis() as i64,
            batch_started_ms: now_ms,
            now_ms,
            messages: Vec::new(),
            buffered: 0,
            scratch: Batch::default(),
            names: Vec::new(),
            restored: Positions::new(),
            pace: None,
            deferred: None,
            members: None,
            member_names: None,
            member_found: Vec::new(),
        }
    }

    /// The watermark generators' progress per split, from a snapshot's
    /// [`SourceOutput::split_progress`].
    pub(crate) fn restore(&mut self, progress: Positions) {
        self.restored = progress;
    }

    /// The highest event time seen per split (what the watermark generator
    /// needs to go on where it stopped), by split name.
    pub(crate) fn split_progress(&self) -> Positions {
        let mut m = Positions::new();
        if let Some(w) = &self.watermarks {
            for (i, name) in self.names.iter().enumerate() {
                m.insert(name.clone(), w.split_max(i).into());
            }
        }
        m
    }

    /// Ends the current batch so that a barrier can follow it.
    pub(crate) fn cut_for_barrier(&mut self) {
        self.cut();
    }

    /// Registers a split the subtask starts reading.
    pub fn add_split(&mut self, name: String, kind: PositionKind) -> SplitId {
        let global = self.out.info().splits.register(name.clone(), kind);
        self.add_registered(name, global)
    }

    /// Registers a split that is partition `partition` of Kafka topic `topic`.
    pub fn add_partition(&mut self, name: String, topic: &str, partition: i32) -> SplitId {
        let global = self
            .out
            .info()
            .splits
            .register_partition(name.clone(), topic, partition);
        self.add_registered(name, global)
    }

    fn add_registered(&mut self, name: String, global: u32) -> SplitId {
        let local = match &mut self.watermarks {
            Some(w) => {
                let i = w.add_split(self.now_ms);
                if let Some(max) = self.restored.get(&name).and_then(|v| v.as_i64()) {
                    w.set_split_max(i, max);
                }
                i
            }
            None => 0,
        };
        self.names.push(name);
        SplitId { local, global }
    }

    /// The split has no more records.
    pub fn finish_split(&mut self, split: SplitId) {
        if let Some(w) = &mut self.watermarks {
            w.finish_split(split.local);
        }
    }

    /// Whether the source should stop pushing and let the records go: a
    /// batch's worth of records, or as many messages (a watermark per
    /// record cuts a batch per record: what goes on at once is still about
    /// half a batch of records, so that an operator that takes a burst in
    /// one call, as a Wasm process function does, gets a burst).
    #[inline]
    pub fn is_full(&self) -> bool {
        self.buffered >= self.batch_size
            || self.messages.len() >= self.batch_size
            || self.paced_out()
    }

    /// Whether this poll has read as much as the pace allows.
    fn paced_out(&self) -> bool {
        self.pace
            .as_ref()
            .is_some_and(|p| self.buffered >= p.per_poll)
    }

    /// Sets each record's key to its `key` fields (what a key-hash router
    /// would read), found by the scan that checks the record: for a source
    /// whose records all go through one key-hash router, which then takes
    /// the keys as they are ([`crate::runtime::router::Router::take_keys_as_set`]).
    /// A record without the key goes to the dead-letter output with the
    /// router's message, after its event time has counted for the
    /// watermark, as it would there. Only a checked format reads the key
    /// here: `false` (and nothing changed) for the others.
    pub fn with_key(&mut self, key: &KeySelector) -> bool {
        if !matches!(self.format, Format::Json | Format::DebeziumJson) {
            return false;
        }
        let mut pointers: Vec<Pointer> = self.event_time.iter().flatten().cloned().collect();
        pointers.extend(key.pointers().iter().cloned());
        if pointers.len() > 64 {
            return false;
        }
        self.checker = json::Checker::new(pointers);
        self.key = Some(key.clone());
        true
    }

    /// Makes the source find, as it reads each record, the members that
    /// the operator it feeds asks for through `request`, from the first
    /// batch that starts after the request (see [`Members`]). Only a JSON
    /// source finds them: `false` (and nothing changed) for the others. A
    /// checked one finds them in its check, beside the key it reads for a
    /// router ([`SourceOutput::with_key`]); an unchecked one scans each
    /// record for them and its event time at once, which moves that scan
    /// from the operator's thread to the source's.
    pub fn with_members(&mut self, request: Arc<MemberRequest>) -> bool {
        if !matches!(self.format, Format::Json | Format::JsonUnchecked) {
            return false;
        }
        self.members = Some(request);
        true
    }

    /// Before the first record of a batch: takes up the members asked for,
    /// if they are new.
    #[inline]
    fn take_up_members(&mut self) {
        if self.member_names.is_none() && self.members.is_some() && self.batch.is_empty() {
            self.take_up_asked_members();
        }
    }

    #[cold]
    fn take_up_asked_members(&mut self) {
        let Some(names) = self.members.as_ref().and_then(|r| r.names()).cloned() else {
            return;
        };
        // The checker's pointers: the event time's, the key's, the
        // members'. An unchecked source checks with it only where it finds
        // members.
        let mut pointers: Vec<Pointer> = self.event_time.iter().flatten().cloned().collect();
        pointers.extend(self.key.iter().flat_map(|k| k.pointers().iter().cloned()));
        pointers.extend(names.iter().map(|n| Pointer::member(n)));
        if pointers.len() > 64 {
            self.members = None;
            return;
        }
        self.checker = json::Checker::new(pointers);
        tracing::debug!(
            members = names.len(),
            "the source finds the members its operator reads as it reads records"
        );
        self.member_names = Some(names);
    }

    /// Paces the source at `rate` records per second (none: as fast as it
    /// can).
    pub fn with_pace(mut self, rate: Option<f64>) -> SourceOutput {
        self.pace = rate.filter(|r| *r > 0.0).map(|rate| Pace {
            rate,
            started: None,
            pushed: 0,
            per_poll: ((rate / 100.0) as usize).max(1),
        });
        self
    }

    /// How long to wait before reading on, to keep the pace.
    pub fn pace_wait(&self) -> Option<Duration> {
        let p = self.pace.as_ref()?;
        let due = Duration::from_secs_f64(p.pushed as f64 / p.rate);
        due.checked_sub(p.started?.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Adds a record read from `split` at `position` (line number, sequence
    /// number). A malformed record goes to the dead-letter output (or stops
    /// the job when there is none).
    #[inline]
    pub fn push(
        &mut self,
        split: SplitId,
        key: Option<&[u8]>,
        value: &[u8],
        position: u64,
    ) -> Result<(), RuntimeError> {
        self.push_record(split, key, value, None, [], position)
    }

    /// [`SourceOutput::push`] for a record that comes with a timestamp
    /// (the event time when the source's `event_time` names no field) and
    /// headers.
    #[inline]
    pub fn push_record<'h>(
        &mut self,
        split: SplitId,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        position: u64,
    ) -> Result<(), RuntimeError> {
        let origin = Origin {
            split: split.global,
            position,
        };
        if self.format == Format::DebeziumJson {
            return self.push_change_event(split, key, value, timestamp, headers, origin);
        }
        self.push_row(
            split,
            key,
            value,
            timestamp,
            headers,
            origin,
            RowKind::Insert,
        )
    }

    /// Adds a changelog row of the given kind, with its timestamp, read
    /// from `split` at `position`.
    pub fn push_change(
        &mut self,
        split: SplitId,
        value: &[u8],
        timestamp: Option<i64>,
        kind: RowKind,
        position: u64,
    ) -> Result<(), RuntimeError> {
        let origin = Origin {
            split: split.global,
            position,
        };
        self.push_row(split, None, value, timestamp, [], origin, kind)
    }

    /// A Debezium change event: its rows, or the event to the dead-letter
    /// output when it is not one.
    #[cold]
    fn push_change_event<'h>(
        &mut self,
        split: SplitId,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        origin: Origin,
    ) -> Result<(), RuntimeError> {
        let headers: Vec<(&[u8], &[u8])> = headers.into_iter().collect();
        match debezium_rows(value) {
            Ok(rows) => {
                for (kind, row) in rows {
                    self.push_row(
                        split,
                        key,
                        &row,
                        timestamp,
                        headers.iter().copied(),
                        origin,
                        kind,
                    )?;
                }
                Ok(())
            }
            Err(reason) => self.reject(key, value, timestamp, headers, origin, &reason),
        }
    }

    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn push_row<'h>(
        &mut self,
        split: SplitId,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        origin: Origin,
        kind: RowKind,
    ) -> Result<(), RuntimeError> {
        self.take_up_members();
        let (ts, keyed) = match self.check(value, timestamp) {
            Ok(checked) => checked,
            Err(reason) => return self.reject(key, value, timestamp, headers, origin, &reason),
        };
        // A deferred watermark goes before a record that is not later.
        if let Some(t) = self.deferred
            && ts.is_none_or(|ts| ts <= t)
        {
            self.cut();
        }
        match keyed {
            Ok(found) => {
                if self.batch.is_empty() {
                    self.batch_started_ms = self.now_ms;
                }
                let key = if found { Some(&self.key_buf[..]) } else { key };
                self.batch
                    .push_with_headers(key, value, ts, origin, headers);
                if let Some(names) = &self.member_names {
                    let members = self.batch.members.get_or_insert_with(|| Members {
                        names: names.clone(),
                        found: Vec::with_capacity(self.batch_size * 2 * names.len()),
                    });
                    members.found.extend_from_slice(&self.member_found);
                }
                if kind != RowKind::Insert {
                    self.batch.set_last_kind(kind);
                }
            }
            Err(reason) => self.reject(key, value, ts, headers, origin, &reason)?,
        }
        self.buffered += 1;
        if let Some(p) = &mut self.pace {
            p.started.get_or_insert_with(std::time::Instant::now);
            p.pushed += 1;
        }
        if let (Some(w), Some(ts)) = (&mut self.watermarks, ts)
            && let Some(wm) = w.on_record(split.local, ts, self.now_ms)
        {
            match wm {
                Watermark::Time(t) if w.defers() => self.deferred = Some(t),
                _ => {
                    self.cut();
                    self.messages.push(Message::Watermark(wm));
                }
            }
        }
        if self.batch.len() >= self.batch_size || self.paced_out() {
            self.cut();
        }
        Ok(())
    }

    /// Sends a record the source cannot pass on to the dead-letter output
    /// (or stops the job when there is none).
    fn reject<'h>(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        timestamp: Option<i64>,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        origin: Origin,
        reason: &str,
    ) -> Result<(), RuntimeError> {
        self.scratch.clear();
        self.scratch
            .push_with_headers(key, value, timestamp, origin, headers);
        self.out.dead_letter(self.scratch.get(0), reason)
    }

    /// Checks the format and reads the event time (the record's own
    /// `timestamp`, unless the event time is a field of the value), and,
    /// with a [`SourceOutput::with_key`], the key into `key_buf`: `Ok(true)`,
    /// or the router's message for a record without it (`Ok(false)`: no
    /// key read here).
    #[inline]
    #[allow(clippy::type_complexity)]
    fn check(
        &mut self,
        value: &[u8],
        timestamp: Option<i64>,
    ) -> Result<(Option<i64>, Result<bool, String>), String> {
        let event_time = |found: Result<Option<&[u8]>, json::JsonError>, p: &Pointer| match found {
            Ok(Some(raw)) => json::parse_i64(raw).map(Some).ok_or_else(|| {
                format!(
                    "event time at {p} is not an integer number of epoch milliseconds: {}",
                    String::from_utf8_lossy(raw)
                )
            }),
            Ok(None) => Err(format!("no event time at {p}")),
            Err(e) => Err(e.to_string()),
        };
        let unkeyed = |ts: Option<i64>| (ts, Ok(false));
        match (self.format, &self.event_time) {
            (_, Some(None)) if timestamp.is_none() => {
                Err("the record has no timestamp to take the event time from".into())
            }
            (Format::Raw, _) => Ok(unkeyed(timestamp)),
            (Format::JsonUnchecked, None | Some(None)) if self.member_names.is_none() => {
                Ok(unkeyed(timestamp))
            }
            // Up to the event time only: the reader checks the rest.
            (Format::JsonUnchecked, Some(Some(p))) if self.member_names.is_none() => {
                event_time(json::find_fast(value, p), p).map(unkeyed)
            }
            // Asked for members: one check finds them and the event time.
            // A record it refuses is left to the reader, whose own scan
            // says what is wrong with it.
            (Format::JsonUnchecked, event) => {
                let n = self.member_names.as_ref().map_or(0, |n| n.len());
                let field = usize::from(matches!(event, Some(Some(_))));
                let mut found = json::Slots::<_, 8>::new(None, field + n);
                let found = found.slice();
                let checked = self.checker.find(value, found).is_ok();
                if checked {
                    member_pairs(value, escapes(&found[field..]), &mut self.member_found);
                } else {
                    unread_pairs(n, &mut self.member_found);
                }
                let ts = match event {
                    Some(Some(p)) if checked => event_time(Ok(found[0]), p)?,
                    Some(Some(p)) => event_time(json::find_fast(value, p), p)?,
                    _ => timestamp,
                };
                Ok(unkeyed(ts))
            }
            // The checker's pointers: the event time's, if it is a field,
            // then the key's.
            (Format::Json | Format::DebeziumJson, event) => {
                let field = usize::from(matches!(event, Some(Some(_))));
                let keys = self.key.as_ref().map_or(0, |k| k.pointers().len());
                let members = self.member_names.as_ref().map_or(0, |n| n.len());
                let mut found = json::Slots::<_, 8>::new(None, field + keys + members);
                let found = found.slice();
                self.checker.find(value, found).map_err(|e| e.to_string())?;
                if members > 0 {
                    member_pairs(
                        value,
                        escapes(&found[field + keys..]),
                        &mut self.member_found,
                    );
                }
                let ts = match event {
                    Some(Some(p)) => event_time(Ok(found[0]), p)?,
                    _ => timestamp,
                };
                let keyed = match &self.key {
                    None => Ok(false),
                    Some(key) => key
                        .assemble(&found[field..field + keys], &mut self.key_buf)
                        .map(|()| true)
                        .map_err(|reason| format!("key_by {}: {reason}", key.describe())),
                };
                Ok((ts, keyed))
            }
        }
    }

    /// Ends the current batch, and sends the watermark deferred with it.
    fn cut(&mut self) {
        if !self.batch.is_empty() {
            // The next batch will likely be like this one: small when the
            // watermark cuts often, full otherwise.
            let (records, bytes) = (self.batch.len(), self.batch.data.len());
            let full = std::mem::replace(&mut self.batch, Batch::with_capacity(records, bytes));
            self.messages.push(Message::Batch(full));
        }
        if let Some(t) = self.deferred.take() {
            self.messages.push(Message::Watermark(Watermark::Time(t)));
        }
    }

    /// Reads the clock; called by the task before each poll.
    pub(crate) fn begin_poll(&mut self) {
        self.now_ms = self.clock.now_ms();
    }

    /// Between polls: periodic watermarks, idleness and the buffer timeout.
    /// Returns how long the partial batch may still wait, if there is one.
    pub(crate) fn tick(&mut self, waiting: bool) -> Option<Duration> {
        self.now_ms = self.clock.now_ms();
        let marks = match &mut self.watermarks {
            Some(w) => w.on_tick(self.now_ms),
            None => Vec::new(),
        };
        if !marks.is_empty() {
            self.cut();
            self.messages
                .extend(marks.into_iter().map(Message::Watermark));
        }
        if self.batch.is_empty() {
            return None;
        }
        let age = self.now_ms - self.batch_started_ms;
        if waiting && age >= self.buffer_timeout_ms {
            self.cut();
            None
        } else {
            Some(Duration::from_millis(
                (self.buffer_timeout_ms - age).max(0) as u64
            ))
        }
    }

    /// End of input: the last batch, the final watermark.
    pub(crate) fn finish(&mut self) {
        self.cut();
        if self.watermarks.is_some() {
            self.messages.push(Message::Watermark(Watermark::Time(
                crate::time::MAX_WATERMARK,
            )));
        }
    }

    /// Messages for the main output, in order.
    pub(crate) fn take_messages(&mut self) -> std::vec::Drain<'_, Message> {
        self.buffered = 0;
        self.messages.drain(..)
    }

    /// The output collecting dead letters.
    pub(crate) fn output(&mut self) -> &mut Output {
        &mut self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{NodeInfo, Splits};
    use crate::time::ManualClock;
    use crate::time::watermark::{Emit, StrategyKind};

    fn output(dead: bool, event_time: bool, batch_size: usize) -> (SourceOutput, Arc<ManualClock>) {
        output_emitting(dead, event_time.then_some(Emit::PerEvent), batch_size)
    }

    fn output_emitting(
        dead: bool,
        emit: Option<Emit>,
        batch_size: usize,
    ) -> (SourceOutput, Arc<ManualClock>) {
        output_as(Format::Json, dead, emit, batch_size)
    }

    fn output_as(
        format: Format,
        dead: bool,
        emit: Option<Emit>,
        batch_size: usize,
    ) -> (SourceOutput, Arc<ManualClock>) {
        let clock = ManualClock::new(0);
        let info = Arc::new(NodeInfo {
            uid: "src".into(),
            has_dead_letter: dead,
            splits: Arc::new(Splits::default()),
            metrics: Arc::new(crate::runtime::NodeMetrics::new(1)),
            changelog: false,
        });
        let et = emit.map(|emit| EventTime {
            timestamp: Some(Pointer::parse("/ts").unwrap()),
            strategy: WatermarkStrategy::new(
                StrategyKind::BoundedOutOfOrderness,
                10,
                emit,
                200,
                None,
            ),
        });
        let out = SourceOutput::new(
            Output::new(info),
            format,
            et,
            clock.clone(),
            batch_size,
            Duration::from_millis(100),
        );
        (out, clock)
    }

    fn kinds(out: &mut SourceOutput) -> Vec<String> {
        out.take_messages()
            .map(|m| match m {
                Message::Batch(b) => format!("b{}", b.len()),
                Message::Watermark(Watermark::Time(t)) => format!("w{t}"),
                Message::Watermark(Watermark::Idle) => "idle".into(),
                Message::EndOfInput => "end".into(),
                Message::LatencyMarker(_) => "marker".into(),
                Message::Barrier(b) => format!("barrier{}", b.id),
            })
            .collect()
    }

    #[test]
    fn a_paced_source_passes_small_batches_on_at_its_rate() {
        let (out, _) = output(false, false, 100);
        let mut out = out.with_pace(Some(200.0));
        let s = out.add_split("f".into(), PositionKind::Line);
        assert_eq!(out.pace_wait(), None, "the pace starts at the first record");
        out.push(s, None, b"{}", 1).unwrap();
        out.push(s, None, b"{}", 2).unwrap();
        // 200 records/s: 2 per 10 ms poll, then wait up to 10 ms.
        assert!(out.is_full());
        let wait = out.pace_wait().expect("ahead of the pace");
        assert!(wait <= Duration::from_millis(10), "{wait:?}");
        assert_eq!(kinds(&mut out), ["b2"]);
        std::thread::sleep(Duration::from_millis(11));
        assert_eq!(out.pace_wait(), None);
    }

    /// Asked for members, a source finds them from its next batch on, where
    /// the transform's own scan (`json::locate_members`) would; a record it
    /// rejects adds nothing, and one that is not an object is left unread.
    #[test]
    fn a_source_asked_for_members_finds_them_as_it_checks_records() {
        let batches = |out: &mut SourceOutput| -> Vec<Batch> {
            out.take_messages()
                .filter_map(|m| match m {
                    Message::Batch(b) => Some(b),
                    _ => None,
                })
                .collect()
        };
        let (mut out, _) = output(true, false, 100);
        let request = Arc::new(MemberRequest::default());
        assert!(out.with_members(request.clone()));
        let s = out.add_split("f".into(), PositionKind::Line);
        out.push(s, None, br#"{"a":1}"#, 1).unwrap();
        out.cut_for_barrier();
        let names: Vec<Box<[u8]>> = vec![b"b"[..].into(), b"a"[..].into()];
        request.ask(&names);
        // The request is taken up as the next batch starts.
        out.push(s, None, br#"{"a":2}"#, 2).unwrap();
        out.cut_for_barrier();
        let values = [
            r#"{"a":1,"b":"x\"y"}"#,
            r#" { "b" : [1,{"a":2}] , "c":3 } "#,
            r#"{"a":true,"a":false}"#,
            r#"{"b":"plain","a":{"b":1}}"#,
            "{oops",
            r#"[1,2]"#,
        ];
        for (i, v) in values.iter().enumerate() {
            out.push(s, None, v.as_bytes(), 3 + i as u64).unwrap();
        }
        out.cut_for_barrier();
        let got = batches(&mut out);
        assert_eq!(got.len(), 3);
        assert!(got[0].members.is_none());
        assert!(
            got[1]
                .members
                .as_ref()
                .is_some_and(|m| m.describe(&got[1], &names))
        );
        let b = &got[2];
        assert_eq!(b.len(), 5, "the broken record went to the dead letters");
        let members = b.members.as_ref().expect("members");
        assert!(members.describe(b, &names), "members of every record");
        let found = &members.found[..];
        let mut expected = Vec::new();
        let mut located = [None; 2];
        for r in b.iter().take(4) {
            assert!(json::locate_members(r.value(), &names, &mut located));
            for l in located {
                expected.extend_from_slice(&match l {
                    Some(l) => {
                        let len = (l.end - l.start) as u32;
                        [
                            l.start as u32,
                            len | if l.escaped { MEMBER_ESCAPED } else { 0 },
                        ]
                    }
                    None => [MEMBER_ABSENT, 0],
                });
            }
        }
        for _ in &names {
            expected.extend_from_slice(&[MEMBERS_UNREAD.0, MEMBERS_UNREAD.1]);
        }
        assert_eq!(found, expected);
        assert_eq!(&found[..2], [11, 6 | MEMBER_ESCAPED], "b of the first");
        // Other names, or a record added after the source: not these.
        assert!(!members.describe(b, &names[..1]));
        let mut more = b.clone();
        more.push(None, b"{}", None, Origin::NONE);
        assert!(!members.describe(&more, &names));
    }

    /// An unchecked JSON source (a SQL table's) asked for members scans
    /// each record for them, finding what the operator's own scan
    /// (`json::find_members`) would, and reads the event time in the same
    /// scan, whether the operator reads that member too or not. A record
    /// the scan refuses is left unread, for the operator's scan to name
    /// what is wrong with it.
    #[test]
    fn an_unchecked_source_finds_the_members_and_the_event_time_in_one_scan() {
        for read in [["b", "a"], ["ts", "a"]] {
            let names: Vec<Box<[u8]>> = read.iter().map(|n| n.as_bytes().into()).collect();
            let (mut out, _) = output_as(Format::JsonUnchecked, true, Some(Emit::PerEvent), 100);
            let request = Arc::new(MemberRequest::default());
            assert!(out.with_members(request.clone()));
            request.ask(&names);
            let s = out.add_split("f".into(), PositionKind::Line);
            let values = [
                r#"{"a":1,"b":"x\"y","ts":5}"#,
                r#" { "ts" : 7, "b" : "plain" , "a":{"b":1} } "#,
                r#"{"a":true,"a":false,"ts":9,"ts":1}"#,
                // Not JSON past the event time: kept, its members unread.
                r#"{"a":2,"ts":11,"b":}"#,
                // No event time: rejected.
                r#"{"a":3}"#,
                r#"[1,2]"#,
            ];
            for (i, v) in values.iter().enumerate() {
                out.push(s, None, v.as_bytes(), 1 + i as u64).unwrap();
            }
            out.cut_for_barrier();
            // (timestamp, the pairs as the operator reads them, or `None`:
            // unread) of each record, over the batches the watermarks cut.
            let mut got = Vec::new();
            for m in out.take_messages() {
                let Message::Batch(b) = m else { continue };
                let members = b.members.as_ref().expect("members");
                assert!(members.describe(&b, &names), "{read:?}");
                for (i, r) in b.iter().enumerate() {
                    let read = members.of_record(i).map(|pairs| {
                        pairs
                            .chunks_exact(2)
                            .map(|p| crate::runtime::batch::member_at(r.value(), p[0], p[1]))
                            .map(|m| m.map(|m| (m.raw.to_vec(), m.text.map(<[u8]>::to_vec))))
                            .collect::<Vec<_>>()
                    });
                    got.push((r.timestamp(), read));
                }
            }
            let mut expected = Vec::new();
            for (v, ts) in values.iter().zip([5, 7, 9]) {
                let mut found = [None; 2];
                json::find_members(v.as_bytes(), &names, &mut found).unwrap();
                let found = found
                    .iter()
                    .map(|m| m.map(|m| (m.raw.to_vec(), m.text.map(<[u8]>::to_vec))))
                    .collect();
                expected.push((Some(ts), Some(found)));
            }
            expected.push((Some(11), None));
            assert_eq!(
                got, expected,
                "{read:?}: two records went to the dead letters"
            );
        }
    }

    #[test]
    fn cuts_batches_at_each_watermark_advance() {
        let (mut out, _) = output(true, true, 100);
        let s = out.add_split("f".into(), PositionKind::Line);
        for (i, ts) in [100, 90, 95, 120, 110].iter().enumerate() {
            out.push(s, None, format!("{{\"ts\":{ts}}}").as_bytes(), i as u64 + 1)
                .unwrap();
        }
        out.finish();
        assert_eq!(
            kinds(&mut out),
            ["b1", "w89", "b3", "w109", "b1", &format!("w{}", i64::MAX)]
        );
    }

    #[test]
    fn a_watermark_per_record_still_lets_half_a_batch_go_at_once() {
        let (mut out, _) = output(true, true, 100);
        let s = out.add_split("f".into(), PositionKind::Line);
        let mut pushed = 0;
        while !out.is_full() {
            pushed += 1;
            out.push(
                s,
                None,
                format!("{{\"ts\":{}}}", pushed * 10).as_bytes(),
                pushed,
            )
            .unwrap();
        }
        // Each record cut a batch and sent a watermark: 100 messages.
        assert_eq!(pushed, 50);
        let messages = kinds(&mut out);
        assert_eq!(messages.len(), 100);
        assert_eq!(messages[..4], ["b1", "w-1", "b1", "w9"]);
    }

    #[test]
    fn deferred_watermarks_wait_with_the_batch_until_a_record_is_not_later() {
        let (mut out, _) = output_emitting(true, Some(Emit::PerEventDeferred), 100);
        let s = out.add_split("f".into(), PositionKind::Line);
        let mut position = 0;
        let mut push = |out: &mut SourceOutput, ts: i64| {
            position += 1;
            out.push(s, None, format!("{{\"ts\":{ts}}}").as_bytes(), position)
                .unwrap();
        };
        // 89, 109 and 119 wait; 115 is not later than 119, so the batch
        // and 119 go before it (89 and 109 are never sent: 119 says more).
        for ts in [100, 120, 130, 115, 140] {
            push(&mut out, ts);
        }
        // A barrier takes the waiting watermark with the batch.
        out.cut_for_barrier();
        push(&mut out, 160);
        push(&mut out, 150);
        out.finish();
        assert_eq!(
            kinds(&mut out),
            [
                "b3",
                "w119",
                "b2",
                "w129",
                "b2",
                "w149",
                &format!("w{}", i64::MAX)
            ]
        );
    }

    #[test]
    fn malformed_records_go_to_the_dead_letter_output_in_order() {
        let (mut out, _) = output(true, true, 100);
        let s = out.add_split("f".into(), PositionKind::Line);
        out.push(s, None, b"{\"ts\":1}", 1).unwrap();
        out.push(s, None, b"{\"ts\":\"x\"}", 2).unwrap();
        out.push(s, None, b"{\"nots\":1}", 3).unwrap();
        out.push(s, None, b"{\"ts\":", 4).unwrap();
        let dead: Vec<_> = out.output().drain().collect();
        assert_eq!(dead.len(), 1);
        let reasons: Vec<String> = dead[0]
            .1
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(r.value()).unwrap();
                format!(
                    "{} {}",
                    v["origin"].as_str().unwrap(),
                    v["error"].as_str().unwrap()
                )
            })
            .collect();
        assert!(
            reasons[0].starts_with("f:2 event time at /ts is not an integer"),
            "{reasons:?}"
        );
        assert_eq!(reasons[1], "f:3 no event time at /ts");
        assert!(reasons[2].starts_with("f:4 invalid JSON"), "{reasons:?}");

        let (mut strict, _) = output(false, false, 100);
        let s = strict.add_split("g".into(), PositionKind::Line);
        let e = strict.push(s, None, b"nope", 7).unwrap_err().to_string();
        assert!(e.contains("g:7") && e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn a_source_sets_the_key_its_key_hash_router_would_read() {
        let (mut out, _) = output(true, true, 100);
        let key = KeySelector::new(vec![Pointer::parse("/k").unwrap()]);
        assert!(out.with_key(&key));
        let s = out.add_split("f".into(), PositionKind::Line);
        out.push(s, Some(b"kafka"), br#"{"k":"a","ts":100}"#, 1)
            .unwrap();
        // No key: the router's message, and its event time still counts.
        out.push(s, Some(b"kafka"), br#"{"ts":130}"#, 2).unwrap();
        out.push(s, None, br#"{"ts":125,"k":[1, 2]}"#, 3).unwrap();
        out.push(s, None, br#"{"ts":126,"k":"b""#, 4).unwrap();
        out.finish();
        let mut keys = Vec::new();
        let mut marks = Vec::new();
        for m in out.take_messages() {
            match m {
                Message::Batch(b) => keys.extend(b.iter().map(|r| r.key().unwrap().to_vec())),
                Message::Watermark(Watermark::Time(t)) => marks.push(t),
                _ => {}
            }
        }
        assert_eq!(keys, [&br#""a""#[..], b"[1, 2]"]);
        assert_eq!(marks, [89, 119, i64::MAX]);
        let dead: Vec<_> = out
            .output()
            .drain()
            .flat_map(|(_, b)| {
                b.iter()
                    .map(|r| serde_json::from_slice::<serde_json::Value>(r.value()).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(dead.len(), 2, "{dead:?}");
        assert_eq!(dead[0]["error"], "key_by /k: no key field at /k");
        assert_eq!(dead[0]["origin"], "f:2");
        assert!(dead[0]["key"].to_string().contains("kafka"), "{}", dead[0]);
        assert!(
            dead[1]["error"].as_str().unwrap().contains("JSON"),
            "{}",
            dead[1]
        );

        // Unchecked and raw records are left to the router.
        for format in [Format::JsonUnchecked, Format::Raw] {
            let (mut out, _) = output(true, false, 100);
            out.format = format;
            assert!(!out.with_key(&key));
        }
    }

    /// Beside the key it reads for its router, a checked source finds the
    /// members the operator behind the router asks for.
    #[test]
    fn a_source_finds_the_members_beside_the_key() {
        let (mut out, _) = output(true, false, 100);
        let key = KeySelector::new(vec![Pointer::parse("/k").unwrap()]);
        assert!(out.with_key(&key));
        let request = Arc::new(MemberRequest::default());
        assert!(out.with_members(request.clone()));
        let names: Vec<Box<[u8]>> = vec![b"a"[..].into()];
        request.ask(&names);
        let s = out.add_split("f".into(), PositionKind::Line);
        out.push(s, None, br#"{"k":"x","a":5}"#, 1).unwrap();
        out.push(s, None, br#"{"ts":100,"a":"y\"","k":"z"}"#, 2)
            .unwrap();
        out.finish();
        let b = out
            .take_messages()
            .find_map(|m| match m {
                Message::Batch(b) => Some(b),
                _ => None,
            })
            .expect("a batch");
        let keys: Vec<_> = b.iter().map(|r| r.key().unwrap().to_vec()).collect();
        assert_eq!(keys, [&br#""x""#[..], br#""z""#]);
        let m = b.members.as_ref().expect("members");
        assert!(m.describe(&b, &names));
        assert_eq!(m.found, [13, 1, 14, 5 | MEMBER_ESCAPED]);
    }

    #[test]
    fn partial_batches_leave_after_the_buffer_timeout() {
        let (mut out, clock) = output(true, false, 100);
        let s = out.add_split("f".into(), PositionKind::Line);
        out.begin_poll();
        out.push(s, None, b"{}", 1).unwrap();
        assert_eq!(out.tick(true), Some(Duration::from_millis(100)));
        clock.advance(60);
        assert_eq!(out.tick(true), Some(Duration::from_millis(40)));
        assert!(kinds(&mut out).is_empty());
        clock.advance(40);
        assert_eq!(out.tick(true), None);
        assert_eq!(kinds(&mut out), ["b1"]);
    }

    #[test]
    fn debezium_events_become_changelog_rows() {
        let rows = |v: &str| {
            debezium_rows(v.as_bytes()).map(|rows| {
                rows.into_iter()
                    .map(|(k, r)| format!("{} {}", k.short(), String::from_utf8(r).unwrap()))
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(
            rows(r#"{"before":null,"after":{"id":1},"op":"c"}"#).unwrap(),
            [r#"+I {"id":1}"#]
        );
        assert_eq!(
            rows(r#"{"after":{"id":1},"op":"r","ts_ms":5}"#).unwrap(),
            [r#"+I {"id":1}"#]
        );
        assert_eq!(
            rows(r#"{"schema":{"type":"struct"},"payload":{"before":{"id":1,"v":1},"after":{"id":1,"v":2},"op":"u"}}"#)
                .unwrap(),
            [r#"-U {"id":1,"v":1}"#, r#"+U {"id":1,"v":2}"#]
        );
        assert_eq!(
            rows(r#"{"before":{"id":1},"after":null,"op":"d"}"#).unwrap(),
            [r#"-D {"id":1}"#]
        );
        // Tombstones, bare or wrapped.
        assert!(rows("").unwrap().is_empty());
        assert!(rows(" null").unwrap().is_empty());
        assert!(
            rows(r#"{"schema":null,"payload":null}"#)
                .unwrap()
                .is_empty()
        );
        let e = rows(r#"{"before":null,"after":{"id":1},"op":"u"}"#).unwrap_err();
        assert!(e.contains("REPLICA IDENTITY FULL"), "{e}");
        assert!(
            rows(r#"{"after":{"id":1},"op":"x"}"#)
                .unwrap_err()
                .contains("unknown")
        );
        assert!(rows(r#"{"after":{"id":1}}"#).unwrap_err().contains("`op`"));
        assert!(rows("{oops").unwrap_err().contains("not JSON"));
    }
}
