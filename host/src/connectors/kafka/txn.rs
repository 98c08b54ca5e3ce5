//! The exactly-once Kafka sink's transactions, bound to checkpoints.
//!
//! Each sink subtask writes an epoch (its records between two checkpoint
//! barriers) in one Kafka transaction, begun with the epoch's first record,
//! under a transactional id from a small pool per subtask
//! (`PREFIX-SUBTASK-K`). At the barrier the subtask waits for the broker's
//! acknowledgements, adds a *marker* to the transaction (the epoch's random
//! token, as the committed offset of the consumer group named like the
//! transactional id) and
//! hands the transaction over, prepared, to the sink's [`Transactions`]. The
//! checkpoint coordinator commits it when the checkpoint is complete; a
//! `read_committed` reader sees the epoch then, and only then.
//!
//! librdkafka cannot commit a transaction that another process began, so
//! each epoch's records are also written to a log next to the checkpoints
//! (`CHECKPOINT_DIR/kafka-sink-UID/TXID.TOKEN.log`), synced at the barrier,
//! removed once committed. After a crash, recovery looks at each
//! transaction of the restored checkpoint: when its marker is committed, so
//! is the transaction; otherwise a producer with the same transactional id
//! fences (aborts) the lingering transaction and writes the logged records
//! again in a new one, with the marker, and commits it. A log the
//! checkpoint does not name belongs to an epoch after it: its transactional
//! id is fenced the same way, so that no reader waits for it to time out.

use super::client_config;
use super::producer::{Deliveries, KafkaSinkOptions, Outgoing, send_blocking};
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Transactional ids per subtask: one open transaction plus those waiting
/// for their checkpoint to complete (more than one only while checkpoints
/// fail).
const POOL: usize = 8;

/// How long one transactional request to the broker may take.
const TXN_REQUEST: Duration = Duration::from_secs(30);

const LOG_SUFFIX: &str = ".log";

/// The first bytes of a log: its format's version.
const LOG_MAGIC: &[u8; 8] = b"sluicek2";

/// Appends a record to a log: key, value (length-prefixed, `u32::MAX` for
/// none), timestamp (`i64::MIN` for none), then the number of headers and
/// each header's name and value, all little-endian.
fn write_record(w: &mut impl Write, r: &Outgoing<'_>) -> std::io::Result<()> {
    fn bytes(w: &mut impl Write, b: Option<&[u8]>) -> std::io::Result<()> {
        match b {
            Some(b) => {
                w.write_all(&(b.len() as u32).to_le_bytes())?;
                w.write_all(b)
            }
            None => w.write_all(&u32::MAX.to_le_bytes()),
        }
    }
    bytes(w, r.key)?;
    bytes(w, r.value)?;
    w.write_all(&r.timestamp.unwrap_or(i64::MIN).to_le_bytes())?;
    let count = r.headers.as_ref().map_or(0, |h| h.count());
    w.write_all(&(count as u32).to_le_bytes())?;
    if let Some(h) = &r.headers {
        for h in h.iter() {
            bytes(w, Some(h.key.as_bytes()))?;
            bytes(w, h.value)?;
        }
    }
    Ok(())
}

/// A record read back from a log, into buffers kept from one record to the
/// next.
#[derive(Default)]
struct Logged {
    key: Field,
    value: Field,
    timestamp: Option<i64>,
    /// The first `header_count` are this record's.
    headers: Vec<(Field, Field)>,
    header_count: usize,
}

/// Bytes that may be absent (length `u32::MAX` in the log).
#[derive(Default)]
struct Field {
    present: bool,
    bytes: Vec<u8>,
}

impl Field {
    fn read(&mut self, r: &mut impl Read) -> std::io::Result<()> {
        self.read_after(u32_of(r)?, r)
    }

    /// Reads the bytes of a field whose length was read already.
    fn read_after(&mut self, len: u32, r: &mut impl Read) -> std::io::Result<()> {
        self.present = len != u32::MAX;
        self.bytes.clear();
        if self.present {
            self.bytes.resize(len as usize, 0);
            r.read_exact(&mut self.bytes)?;
        }
        Ok(())
    }

    fn get(&self) -> Option<&[u8]> {
        self.present.then_some(&self.bytes[..])
    }
}

fn u32_of(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

impl Logged {
    /// Reads the next record: `false` at the end of the log.
    fn read(&mut self, r: &mut impl Read) -> std::io::Result<bool> {
        let len = match u32_of(r) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        };
        self.key.read_after(len, r)?;
        self.value.read(r)?;
        let mut ts = [0u8; 8];
        r.read_exact(&mut ts)?;
        self.timestamp = Some(i64::from_le_bytes(ts)).filter(|t| *t != i64::MIN);
        self.header_count = u32_of(r)? as usize;
        if self.headers.len() < self.header_count {
            self.headers
                .resize_with(self.header_count, Default::default);
        }
        for (name, value) in &mut self.headers[..self.header_count] {
            name.read(r)?;
            value.read(r)?;
        }
        Ok(true)
    }

    fn outgoing(&self) -> Outgoing<'_> {
        let headers = (self.header_count > 0).then(|| {
            self.headers[..self.header_count].iter().fold(
                OwnedHeaders::new(),
                |h, (name, value)| {
                    h.insert(Header {
                        key: &String::from_utf8_lossy(&name.bytes),
                        value: value.get(),
                    })
                },
            )
        });
        Outgoing {
            key: self.key.get(),
            value: self.value.get(),
            timestamp: self.timestamp,
            headers,
        }
    }
}

/// A producer bound to one transactional id, and what marks its commits.
pub(crate) struct Txn {
    pub txid: String,
    pub producer: ThreadedProducer<Deliveries>,
    pub failed: Arc<Mutex<Option<String>>>,
    /// A consumer in the group named like the transactional id: the marker
    /// is that group's offset.
    group: BaseConsumer,
}

/// An epoch being written: its transaction and its log.
pub(crate) struct Epoch {
    pub txn: Txn,
    token: u64,
    log: BufWriter<File>,
    log_name: String,
    records: u64,
}

/// A transaction at its barrier, as it goes into the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    txid: String,
    token: u64,
    checkpoint: u64,
    log: String,
    records: u64,
}

impl Item {
    pub fn to_json(&self) -> Value {
        json!({
            "txid": self.txid,
            "token": format!("{:016x}", self.token),
            "checkpoint": self.checkpoint,
            "log": self.log,
            "records": self.records,
        })
    }

    fn from_json(v: &Value) -> Result<Item, String> {
        let bad = || format!("not a kafka sink committable: {v}");
        let s = |k: &str| v.get(k).and_then(Value::as_str).ok_or_else(bad);
        let n = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(bad);
        let log = s("log")?;
        if log.contains('/') || log.contains('\\') || !log.ends_with(LOG_SUFFIX) {
            return Err(bad());
        }
        Ok(Item {
            txid: s("txid")?.to_owned(),
            token: u64::from_str_radix(s("token")?, 16).map_err(|_| bad())?,
            checkpoint: n("checkpoint")?,
            log: log.to_owned(),
            records: n("records")?,
        })
    }
}

impl Item {
    /// A checkpoint's committables, in checkpoint order.
    fn in_order(items: &[Value]) -> Result<Vec<Item>, String> {
        let mut items = items
            .iter()
            .map(Item::from_json)
            .collect::<Result<Vec<_>, _>>()?;
        items.sort_by_key(|i| i.checkpoint);
        Ok(items)
    }
}

/// The transactions of one exactly-once sink node: shared by its subtasks
/// (which open and prepare them) and its committer (which commits them).
pub(crate) struct Transactions {
    options: Arc<KafkaSinkOptions>,
    prefix: String,
    dir: PathBuf,
    /// librdkafka's `transaction.timeout.ms`.
    timeout_ms: String,
    /// What errors name.
    context: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Transactions flushed at a barrier, waiting for their checkpoint, by
    /// token.
    prepared: HashMap<u64, Txn>,
    /// Producers without a transaction, ready for another epoch.
    idle: Vec<Txn>,
    /// The transactional ids of open and prepared transactions.
    lent: HashSet<String>,
    /// Tokens committed by this process.
    committed: HashSet<u64>,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Transactions {
    pub fn new(
        options: Arc<KafkaSinkOptions>,
        prefix: String,
        dir: PathBuf,
        checkpoints: &crate::checkpoint::CheckpointSettings,
        context: String,
    ) -> Transactions {
        // A transaction lives from an epoch's first record until its
        // checkpoint completes: give it room for two intervals and a slow
        // checkpoint (brokers allow up to 15 minutes by default).
        let ms = (2 * checkpoints.interval + checkpoints.timeout).as_millis();
        let timeout_ms = ms.clamp(60_000, 900_000).to_string();
        Transactions {
            options,
            prefix,
            dir,
            timeout_ms,
            context,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// A producer with `txid`, its transactions initialized: a lingering
    /// transaction of an earlier producer with this id is aborted (fenced).
    fn producer(&self, txid: &str) -> Result<Txn, String> {
        let failed = Arc::new(Mutex::new(None));
        let defaults = [
            ("linger.ms", "5"),
            ("transaction.timeout.ms", self.timeout_ms.as_str()),
        ];
        let mut config =
            client_config(&self.options.bootstrap, &defaults, &self.options.properties);
        config.set("transactional.id", txid);
        let producer = ThreadedProducer::from_config_and_context(
            &config,
            Deliveries::new(failed.clone(), &self.options.properties),
        )
        .map_err(|e| format!("cannot create a producer with transactional id `{txid}`: {e}"))?;
        producer
            .init_transactions(TXN_REQUEST)
            .map_err(|e| format!("cannot initialize transactional id `{txid}`: {e}"))?;
        let group = client_config(
            &self.options.bootstrap,
            &[("group.id", txid), ("enable.auto.commit", "false")],
            &self.options.properties,
        )
        .create()
        .map_err(|e| format!("cannot create a consumer for group `{txid}`: {e}"))?;
        Ok(Txn {
            txid: txid.to_owned(),
            producer,
            failed,
            group,
        })
    }

    /// Opens subtask `subtask`'s next epoch: a transaction begun, and its log.
    pub fn begin(&self, subtask: u32) -> Result<Epoch, String> {
        let head = format!("{}-{subtask}-", self.prefix);
        let (reuse, txid) = {
            let mut inner = lock(&self.inner);
            if let Some(i) = inner.idle.iter().position(|t| t.txid.starts_with(&head)) {
                let t = inner.idle.swap_remove(i);
                inner.lent.insert(t.txid.clone());
                let txid = t.txid.clone();
                (Some(t), txid)
            } else {
                let Some(txid) = (0..POOL)
                    .map(|k| format!("{head}{k}"))
                    .find(|id| !inner.lent.contains(id))
                else {
                    return Err(format!(
                        "all {POOL} transactional ids of subtask {subtask} ({head}0…) hold transactions waiting for checkpoints to complete"
                    ));
                };
                inner.lent.insert(txid.clone());
                (None, txid)
            }
        };
        let opened = (|| {
            let txn = match reuse {
                Some(t) => t,
                None => self.producer(&txid)?,
            };
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("cannot create folder {}: {e}", self.dir.display()))?;
            let token = random_token();
            let log_name = format!("{txid}.{token:016x}{LOG_SUFFIX}");
            let path = self.dir.join(&log_name);
            let file = File::create(&path)
                .and_then(|mut f| f.write_all(LOG_MAGIC).map(|()| f))
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            txn.producer
                .begin_transaction()
                .map_err(|e| format!("cannot begin a transaction with id `{txid}`: {e}"))?;
            Ok(Epoch {
                txn,
                token,
                log: BufWriter::with_capacity(256 << 10, file),
                log_name,
                records: 0,
            })
        })();
        if opened.is_err() {
            lock(&self.inner).lent.remove(&txid);
        }
        opened
    }

    /// Logs a record of `epoch` (before it is sent).
    pub fn log(&self, epoch: &mut Epoch, record: &Outgoing<'_>) -> Result<(), String> {
        epoch.records += 1;
        write_record(&mut epoch.log, record).map_err(|e| {
            format!(
                "cannot write {}: {e}",
                self.dir.join(&epoch.log_name).display()
            )
        })
    }

    /// Prepares `epoch` for checkpoint `checkpoint`: its records are
    /// acknowledged (the caller flushed the producer), its log synced and
    /// its marker added. The transaction waits for [`Transactions::commit`].
    pub fn prepare(&self, mut epoch: Epoch, checkpoint: u64) -> Result<Item, String> {
        let path = self.dir.join(&epoch.log_name);
        epoch
            .log
            .flush()
            .and_then(|_| epoch.log.get_ref().sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        self.mark(&epoch.txn, epoch.token)?;
        let item = Item {
            txid: epoch.txn.txid.clone(),
            token: epoch.token,
            checkpoint,
            log: epoch.log_name,
            records: epoch.records,
        };
        lock(&self.inner).prepared.insert(epoch.token, epoch.txn);
        Ok(item)
    }

    /// Adds the marker of the epoch with `token` to `txn`'s transaction.
    fn mark(&self, txn: &Txn, token: u64) -> Result<(), String> {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.options.topic, 0, Offset::Offset(marker(token)))
            .map_err(|e| e.to_string())?;
        let group = txn
            .group
            .group_metadata()
            .ok_or_else(|| format!("no group metadata for `{}`", txn.txid))?;
        txn.producer
            .send_offsets_to_transaction(&offsets, &group, TXN_REQUEST)
            .map_err(|e| format!("cannot add the marker to transaction `{}`: {e}", txn.txid))
    }

    /// Whether the transaction with `token` is committed: its marker is.
    fn marked(&self, group: &BaseConsumer, txid: &str, token: u64) -> Result<bool, String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.options.topic, 0);
        let committed = group
            .committed_offsets(tpl, TXN_REQUEST)
            .map_err(|e| format!("cannot read the marker of transactional id `{txid}`: {e}"))?;
        Ok(committed
            .find_partition(&self.options.topic, 0)
            .is_some_and(|p| p.offset() == Offset::Offset(marker(token))))
    }

    /// Commits the transactions of a complete checkpoint (idempotent).
    pub fn commit(&self, items: &[Value]) -> Result<(), String> {
        self.commit_all(items)
    }

    /// Commits `items` in checkpoint order.
    fn commit_all(&self, items: &[Value]) -> Result<(), String> {
        let items = Item::in_order(items)?;
        for (n, item) in items.iter().enumerate() {
            let crash = crash_mid_commit().is_some_and(|(uid, at)| {
                at <= item.checkpoint && self.dir.ends_with(format!("kafka-sink-{uid}"))
            }) && items
                .get(n + 1)
                .is_some_and(|i| i.checkpoint == item.checkpoint);
            self.commit_one(item, crash)?;
        }
        Ok(())
    }

    /// Commits `item`; with `crash` (a failpoint), ends the process right
    /// after, before its log is removed.
    fn commit_one(&self, item: &Item, crash: bool) -> Result<(), String> {
        let prepared = {
            let mut inner = lock(&self.inner);
            if inner.committed.contains(&item.token) {
                return Ok(());
            }
            inner.prepared.remove(&item.token)
        };
        match prepared {
            Some(txn) => match txn.producer.commit_transaction(TXN_REQUEST) {
                Ok(()) if crash => {
                    eprintln!(
                        "sluice: SLUICE_CRASH_MID_COMMIT: transaction `{}` of checkpoint {} is committed, the rest are not; stopping the process",
                        item.txid, item.checkpoint
                    );
                    std::process::abort();
                }
                Ok(()) => self.committed(item, Some(txn)),
                Err(e) => {
                    // Left to recovery (after the job restarts), which knows
                    // whether it got through.
                    lock(&self.inner).lent.remove(&txn.txid);
                    Err(format!(
                        "cannot commit transaction `{}` (checkpoint {}): {e}",
                        item.txid, item.checkpoint
                    ))
                }
            },
            None => self.recover_one(item),
        }
    }

    /// Notes `item` committed: its log goes, its producer is free.
    fn committed(&self, item: &Item, txn: Option<Txn>) -> Result<(), String> {
        let path = self.dir.join(&item.log);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
        let mut inner = lock(&self.inner);
        inner.committed.insert(item.token);
        if let Some(t) = txn {
            inner.lent.remove(&t.txid);
            inner.idle.push(t);
        }
        Ok(())
    }

    /// Commits `item` without its producer: after a crash, or a failed
    /// commit.
    fn recover_one(&self, item: &Item) -> Result<(), String> {
        // Fencing aborts the transaction if it is still open: look at the
        // marker after.
        let txn = self.producer(&item.txid)?;
        self.settle(item, &txn)?;
        self.committed(item, Some(txn))
    }

    /// Makes sure the transaction of `item` is committed, with `txn` (its
    /// transactional id, fenced): if its marker is not, its records are
    /// written again from the log.
    fn settle(&self, item: &Item, txn: &Txn) -> Result<(), String> {
        let path = self.dir.join(&item.log);
        if self.marked(&txn.group, &item.txid, item.token)? {
            tracing::debug!(sink = %self.context, "transaction {} of checkpoint {} was committed", item.txid, item.checkpoint);
            return Ok(());
        }
        if !path.exists() {
            // A log goes only after its transaction is committed (a later
            // transaction with this id has moved the marker on since).
            tracing::debug!(sink = %self.context, "transaction {} of checkpoint {} was committed (its log is gone)", item.txid, item.checkpoint);
            return Ok(());
        }
        let n = self.replay(txn, &path, item)?;
        tracing::info!(
            sink = %self.context,
            "wrote the {n} records of checkpoint {} again in a new transaction with id `{}` (the first did not commit before the job stopped)",
            item.checkpoint,
            item.txid
        );
        Ok(())
    }

    /// Writes the records logged at `path` in a new transaction of `txn`,
    /// with `item`'s marker, and commits it.
    fn replay(&self, txn: &Txn, path: &Path, item: &Item) -> Result<u64, String> {
        let bad = |e: String| format!("cannot read {}: {e}", path.display());
        let file = File::open(path).map_err(|e| bad(e.to_string()))?;
        let mut r = BufReader::with_capacity(256 << 10, file);
        let mut magic = [0u8; LOG_MAGIC.len()];
        r.read_exact(&mut magic)
            .ok()
            .filter(|()| magic == *LOG_MAGIC)
            .ok_or_else(|| bad("not a sluice Kafka sink log of this version".into()))?;
        txn.producer
            .begin_transaction()
            .map_err(|e| format!("cannot begin a transaction with id `{}`: {e}", txn.txid))?;
        let mut n = 0u64;
        let mut logged = Logged::default();
        while logged.read(&mut r).map_err(|e| bad(e.to_string()))? {
            send_blocking(&txn.producer, &self.options.topic, logged.outgoing())?;
            n += 1;
        }
        if n != item.records {
            return Err(bad(format!(
                "it holds {n} records, the checkpoint says {}",
                item.records
            )));
        }
        self.mark(txn, item.token)?;
        txn.producer
            .commit_transaction(TXN_REQUEST)
            .map_err(|e| format!("cannot commit transaction `{}`: {e}", txn.txid))?;
        if let Some(e) = txn.failed.lock().expect("delivery lock").take() {
            return Err(e);
        }
        Ok(n)
    }

    /// Before the job (re)starts: commits the restored checkpoint's
    /// transactions and aborts every other one this sink began.
    pub fn recover(&self, items: &[Value]) -> Result<(), String> {
        let items = Item::in_order(items)?;
        // The subtasks of a stopped attempt are gone, and their producers
        // with them (what they left open is fenced below).
        {
            let mut inner = lock(&self.inner);
            inner.lent.clear();
            inner.idle.clear();
            inner.prepared.clear();
        }
        // Every transactional id a transaction may be open under: the
        // checkpoint's, and those of the logs in the folder (epochs begun
        // after the checkpoint, replays cut short).
        let logs = self.logs()?;
        let mut ids: Vec<&str> = items.iter().map(|i| i.txid.as_str()).collect();
        ids.extend(logs.iter().map(|(txid, _)| txid.as_str()));
        ids.sort_unstable();
        ids.dedup();
        // All are fenced before any marker is looked at: Tansu applies a
        // committed transaction's offsets (its marker) only once no other
        // transaction with records on the same partition is open, so the
        // marker of a transaction that did commit may show only once the
        // others are fenced; looked at before, it would be written twice.
        // A log goes only once its id is fenced: a job stopped in between
        // (killed again while it recovers) finds it and fences the id the
        // next time (Tansu never times a transaction out).
        let named: HashSet<&str> = items.iter().map(|i| i.log.as_str()).collect();
        let mut fenced: HashMap<&str, Txn> = HashMap::new();
        for txid in ids {
            let left_open = logs
                .iter()
                .any(|(t, name)| t == txid && !named.contains(name.as_str()));
            if left_open && std::env::var_os("SLUICE_CRASH_BEFORE_FENCE").is_some() {
                // A failpoint for the tests: the moment a crash leaves a
                // transaction of an earlier run open.
                eprintln!(
                    "sluice: SLUICE_CRASH_BEFORE_FENCE: transactional id `{txid}` is not fenced yet; stopping the process"
                );
                std::process::abort();
            }
            fenced.insert(txid, self.producer(txid)?);
            if left_open {
                tracing::info!(sink = %self.context, "aborted the transaction with id `{txid}` begun after the checkpoint");
            }
        }
        for item in &items {
            if !lock(&self.inner).committed.contains(&item.token) {
                self.settle(item, &fenced[item.txid.as_str()])?;
                self.committed(item, None)?;
            }
        }
        // The checkpoint's logs went as their transactions were settled.
        for (_, name) in logs
            .iter()
            .filter(|(_, name)| !named.contains(name.as_str()))
        {
            let p = self.dir.join(name);
            std::fs::remove_file(&p).map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
        }
        lock(&self.inner).idle.extend(fenced.into_values());
        Ok(())
    }

    /// The logs in the sink's folder: (transactional id, file name).
    fn logs(&self) -> Result<Vec<(String, String)>, String> {
        let mut logs = Vec::new();
        if !self.dir.exists() {
            return Ok(logs);
        }
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("cannot read {}: {e}", self.dir.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((txid, _)) = name
                .strip_suffix(LOG_SUFFIX)
                .and_then(|s| s.rsplit_once('.'))
            {
                logs.push((txid.to_owned(), name));
            }
        }
        Ok(logs)
    }
}

/// A failpoint for the tests: `SLUICE_CRASH_MID_COMMIT=UID:N` ends the
/// process once the first of sink UID's transactions of a checkpoint is
/// committed (its log still there) and before the others are: the first
/// checkpoint from N on with more than one.
fn crash_mid_commit() -> Option<(&'static str, u64)> {
    static AT: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    AT.get_or_init(|| {
        let v = std::env::var("SLUICE_CRASH_MID_COMMIT").ok()?;
        let (uid, n) = v.rsplit_once(':')?;
        Some((uid.to_owned(), n.parse().ok()?))
    })
    .as_ref()
    .map(|(uid, n)| (uid.as_str(), *n))
}

/// A token no other epoch has: random, mixed with the time and the process.
fn random_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A transaction's marker: its token as a (non-negative) offset. Not the
/// offset's metadata: Tansu 0.6 stores it but does not return it.
fn marker(token: u64) -> i64 {
    (token >> 1) as i64
}
