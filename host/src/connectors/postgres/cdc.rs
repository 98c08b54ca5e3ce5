//! `type: postgres-cdc`: a table's changes as a changelog, read by logical
//! replication with `pgoutput`.
//!
//! One subtask reads the slot (a replication slot is one stream). A fresh
//! job creates the slot with an exported snapshot, copies the tables as of
//! that snapshot (rows are inserts), then streams from the slot's consistent
//! point: the snapshot and the stream meet exactly, with nothing lost or
//! doubled. Each transaction is read whole before a barrier may pass (a
//! transaction over two tables is never cut by a checkpoint), and a
//! checkpoint stores the end LSN of the last transaction read. The slot's
//! confirmed position moves only when a checkpoint completes, and only to the
//! oldest of the checkpoints still retained, so every retained checkpoint
//! can be restored; on a quiet database keepalives carry the position on, so
//! the slot pins no WAL.
//!
//! The crate `pgwire-replication` speaks the replication protocol (its gated
//! session runs `CREATE_REPLICATION_SLOT … EXPORT_SNAPSHOT` before
//! `START_REPLICATION`, which polling `pg_logical_slot_peek_binary_changes`
//! cannot do, and it answers keepalives); [`super::decode`] reads pgoutput.

use super::db;
use super::decode::{self, Change, Datum, Relation};
use crate::connectors::SourceContext;
use crate::error::RuntimeError;
use crate::runtime::PositionKind;
use crate::runtime::batch::RowKind;
use crate::runtime::source::SplitId;
use crate::runtime::source::{Format, Positions, Source, SourceFactory, SourceOutput, SourcePoll};
use pgwire_replication::{Lsn, ReplicationClient, ReplicationConfig, ReplicationEvent};
use serde::Deserialize;
use smallvec::{SmallVec, smallvec};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_postgres::Client;

/// Rows per chunk handed from the reader thread to the source.
const CHUNK_ROWS: usize = 1024;
/// The prefix of the logical message that marks where a bounded source ends.
const END_MARKER: &str = "sluice-cdc-end";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcOptions {
    /// `postgresql://user:password@host:port/database`; the user needs the
    /// REPLICATION attribute (and ownership of the tables, to create the
    /// publication).
    pub url: String,
    /// The tables to read (`name` or `schema.name`), or `table` for one.
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub table: Option<String>,
    /// The replication slot (created when missing).
    pub slot: String,
    /// The publication (default: the slot's name; created when missing).
    #[serde(default)]
    pub publication: Option<String>,
    /// `initial` (default): a snapshot of the tables, then their changes;
    /// `latest`: only changes from the job's start.
    #[serde(default)]
    pub startup: Startup,
    /// `all` (default): updates as −U/+U and deletes with the whole row,
    /// which needs `REPLICA IDENTITY FULL`; `upsert`: updates as +U only and
    /// deletes carrying the key, for tables with any replica identity.
    #[serde(default)]
    pub changelog_mode: ChangelogMode,
    /// What a `TRUNCATE` of a read table does: `fail` the job (default: a
    /// changelog cannot say "every row is gone") or `skip` it.
    #[serde(default)]
    pub on_truncate: OnTruncate,
    /// A field added to each row naming its table (`schema.name`).
    #[serde(default)]
    pub table_field: Option<String>,
    /// End the input at the WAL position current when streaming starts.
    #[serde(default)]
    pub bounded: bool,
    /// How long an unreachable server (or a slot still held by a dying
    /// session) is retried before the source fails (default 60s).
    #[serde(default)]
    pub retry_timeout: Option<crate::units::Dur>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Startup {
    #[default]
    Initial,
    Latest,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ChangelogMode {
    #[default]
    All,
    Upsert,
}

#[derive(Debug, Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnTruncate {
    #[default]
    Fail,
    Skip,
}

/// What every subtask shares.
#[derive(Debug)]
struct Settings {
    url: String,
    tables: Vec<String>,
    slot: String,
    publication: String,
    startup: Startup,
    mode: ChangelogMode,
    on_truncate: OnTruncate,
    table_field: Option<String>,
    bounded: bool,
    retry_timeout: Duration,
    /// Checkpoints retained (0: no checkpointing).
    retained: usize,
}

impl Settings {
    fn split(&self) -> String {
        format!("postgres-cdc slot {}", self.slot)
    }
}

pub struct CdcSourceFactory {
    settings: Arc<Settings>,
}

/// Slot and publication names go into replication commands: plain
/// identifiers only.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}`: use 1 to 63 lower-case letters, digits and underscores"
        ))
    }
}

impl CdcSourceFactory {
    pub fn new(o: CdcOptions, context: SourceContext) -> Result<CdcSourceFactory, String> {
        let mut tables = o.tables;
        tables.extend(o.table);
        if tables.is_empty() {
            return Err("no `tables` (or `table`) to read".into());
        }
        check_name("slot", &o.slot)?;
        let publication = o.publication.unwrap_or_else(|| o.slot.clone());
        check_name("publication", &publication)?;
        let settings = Settings {
            url: o.url,
            tables,
            slot: o.slot,
            publication,
            startup: o.startup,
            mode: o.changelog_mode,
            on_truncate: o.on_truncate,
            table_field: o.table_field,
            bounded: o.bounded,
            retry_timeout: o.retry_timeout.map_or(Duration::from_secs(60), |d| d.0),
            retained: context
                .checkpoints
                .as_ref()
                .map_or(0, |c| c.retained.max(1)),
        };
        // The tables and their replica identity are checked when the plan
        // is built, so that a wrong name is a plan error.
        db::block_on(async {
            let client = db::connect(&settings.url).await.map_err(|e| {
                format!(
                    "cannot connect to {}: {}",
                    db::redacted(&settings.url),
                    db::describe(&e)
                )
            })?;
            tables_of(&client, &settings).await.map(|_| ())
        })?;
        Ok(CdcSourceFactory {
            settings: Arc::new(settings),
        })
    }
}

impl SourceFactory for CdcSourceFactory {
    fn splits(&self) -> Option<usize> {
        Some(1)
    }

    fn format(&self) -> Format {
        Format::Json
    }

    fn record_timestamps(&self) -> bool {
        true
    }

    fn emits_changelog(&self) -> bool {
        true
    }

    fn create(&self, subtask: u32, _parallelism: u32) -> Box<dyn Source> {
        Box::new(CdcSource {
            settings: self.settings.clone(),
            reads: subtask == 0,
            restored: None,
            reader: None,
            split: None,
            snapshot_split: None,
            position: 0,
            in_txn: false,
            completed: VecDeque::new(),
            done: false,
        })
    }

    /// Drops the slot (`sluice job cancel --drop-slot`).
    fn release(&self) -> Result<(), String> {
        let s = self.settings.clone();
        db::block_on(async move {
            let client = db::connect(&s.url).await.map_err(|e| {
                format!(
                    "cannot connect to drop slot `{}`: {}",
                    s.slot,
                    db::describe(&e)
                )
            })?;
            // The job's replication session may take a moment to end.
            let mut retry = db::Retry::new("dropping the replication slot", s.retry_timeout);
            let began = std::time::Instant::now();
            loop {
                match client
                    .execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                        &[&s.slot],
                    )
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(e) if e.code().map(|c| c.code()) == Some("55006") => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if began.elapsed() > Duration::from_secs(10) {
                            return Err(format!("slot `{}`: {}", s.slot, db::describe(&e)));
                        }
                    }
                    Err(e) => retry.failed(e).await?,
                }
            }
        })
    }
}

/// A table to read, from the catalog.
#[derive(Debug, Clone)]
struct TableInfo {
    /// Quoted for SQL.
    quoted: String,
    /// `schema.name`, as pgoutput names it.
    name: String,
    /// Column names and type OIDs, in order.
    columns: Vec<(String, u32)>,
}

/// The tables of the spec, checked: they exist and, for `changelog_mode:
/// all`, give the whole row before an update or delete.
async fn tables_of(client: &Client, s: &Settings) -> Result<Vec<TableInfo>, String> {
    let mut out = Vec::new();
    for t in &s.tables {
        let row = client
            .query_opt(
                "SELECT c.oid::bigint, c.oid::regclass::text, n.nspname::text || '.' || c.relname::text,
                        c.relreplident::text, c.relkind::text
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = to_regclass($1)",
                &[t],
            )
            .await
            .map_err(|e| db::describe(&e))?
            .ok_or_else(|| format!("there is no table `{t}`"))?;
        let (oid, quoted, name, ident, kind): (i64, String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        if kind != "r" && kind != "p" {
            return Err(format!("`{t}` is not a table"));
        }
        if s.mode == ChangelogMode::All && ident != "f" {
            return Err(format!(
                "table `{name}` has REPLICA IDENTITY {}: its updates and deletes do not carry the whole row a changelog retracts; run `ALTER TABLE {quoted} REPLICA IDENTITY FULL`, or read it with `changelog_mode: upsert`",
                match ident.as_str() {
                    "d" => "DEFAULT",
                    "n" => "NOTHING",
                    _ => "USING INDEX",
                }
            ));
        }
        if s.mode == ChangelogMode::Upsert && ident == "n" {
            return Err(format!(
                "table `{name}` has REPLICA IDENTITY NOTHING: its updates and deletes carry no key"
            ));
        }
        let columns = client
            .query(
                "SELECT attname::text, atttypid::bigint FROM pg_attribute
                 WHERE attrelid = $1::bigint::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                &[&oid],
            )
            .await
            .map_err(|e| db::describe(&e))?
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u32))
            .collect();
        out.push(TableInfo {
            quoted,
            name,
            columns,
        });
    }
    Ok(out)
}

/// Rows handed from the reader thread to the source.
#[derive(Debug, Default)]
struct Chunk {
    /// JSON values, back to back.
    data: Vec<u8>,
    rows: Vec<ChunkRow>,
    /// The transaction these rows belong to ends here, at this end LSN.
    /// `None`: more of it follows (or it is the snapshot).
    commit: Option<u64>,
}

#[derive(Debug)]
struct ChunkRow {
    end: usize,
    kind: RowKind,
    timestamp: i64,
    /// Snapshot: the row's number; stream: its transaction's commit LSN.
    position: u64,
}

enum Event {
    Rows(Chunk),
    /// The snapshot is read; the stream starts at this LSN (the slot's
    /// consistent point).
    SnapshotDone(u64),
    /// Nothing to read up to this LSN (a keepalive on a quiet database).
    Progress(u64),
    /// A bounded source has read up to its end.
    End,
    Failed(String),
}

struct Reader {
    rx: mpsc::Receiver<Event>,
    /// The LSN the slot may confirm (written by the source, read by the
    /// reader thread).
    confirm: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Reader {
    /// Tells the reader thread to end its replication session (it does
    /// within 100 ms, or when its next send fails); not waited for, as it
    /// may be retrying an unreachable server.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.close();
    }
}

struct CdcSource {
    settings: Arc<Settings>,
    /// Subtask 0 reads the slot; the others have nothing to read.
    reads: bool,
    restored: Option<u64>,
    reader: Option<Reader>,
    split: Option<SplitId>,
    snapshot_split: Option<SplitId>,
    /// The end LSN of the last transaction pushed whole.
    position: u64,
    /// Rows of a transaction (or of the snapshot) have been pushed, but not
    /// all of them: no barrier may pass.
    in_txn: bool,
    /// LSNs of the completed checkpoints still retained, oldest first.
    completed: VecDeque<u64>,
    done: bool,
}

fn lsn_text(lsn: u64) -> String {
    Lsn::from_u64(lsn).to_pg_string()
}

impl Source for CdcSource {
    fn open(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError> {
        if !self.reads {
            return Ok(());
        }
        let s = self.settings.clone();
        self.split = Some(out.add_split(s.split(), PositionKind::Lsn));
        if self.restored.is_none() && s.startup == Startup::Initial {
            self.snapshot_split = Some(out.add_split(
                format!("postgres-cdc snapshot for slot {}", s.slot),
                PositionKind::Sequence,
            ));
            // The snapshot is read whole before a barrier may pass.
            self.in_txn = true;
        }
        let (tx, rx) = mpsc::channel(64);
        let confirm = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st, restored) = (confirm.clone(), stop.clone(), self.restored);
        std::thread::Builder::new()
            .name(format!("cdc {}", s.slot))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async {
                    let failed = tx.clone();
                    if let Err(m) = read(&s, restored, &tx, &c, &st).await {
                        let _ = failed.send(Event::Failed(m)).await;
                    }
                });
            })
            .map_err(|e| RuntimeError::Internal(format!("cannot start the CDC reader: {e}")))?;
        self.reader = Some(Reader { rx, confirm, stop });
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError> {
        let (Some(reader), Some(split)) = (&mut self.reader, self.split) else {
            return Ok(SourcePoll::Finished);
        };
        if self.done {
            return Ok(SourcePoll::Finished);
        }
        let mut read = false;
        while !out.is_full() {
            let ev = match reader.rx.try_recv() {
                Ok(ev) => ev,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(RuntimeError::Connector(format!(
                        "postgres-cdc slot `{}`: the reader stopped",
                        self.settings.slot
                    )));
                }
            };
            read = true;
            match ev {
                Event::Rows(chunk) => {
                    // Snapshot rows until the snapshot is done.
                    let into = self.snapshot_split.unwrap_or(split);
                    let mut start = 0;
                    for r in &chunk.rows {
                        out.push_change(
                            into,
                            &chunk.data[start..r.end],
                            Some(r.timestamp),
                            r.kind,
                            r.position,
                        )?;
                        start = r.end;
                    }
                    match chunk.commit {
                        Some(lsn) => {
                            self.in_txn = false;
                            self.position = self.position.max(lsn);
                        }
                        None => self.in_txn = true,
                    }
                }
                Event::SnapshotDone(lsn) => {
                    self.in_txn = false;
                    self.position = self.position.max(lsn);
                    if let Some(s) = self.snapshot_split.take() {
                        out.finish_split(s);
                    }
                }
                Event::Progress(lsn) => {
                    if !self.in_txn {
                        self.position = self.position.max(lsn);
                    }
                }
                Event::End => {
                    self.done = true;
                    out.finish_split(split);
                    return Ok(SourcePoll::Finished);
                }
                Event::Failed(m) => {
                    return Err(RuntimeError::Connector(format!(
                        "postgres-cdc slot `{}`: {m}",
                        self.settings.slot
                    )));
                }
            }
        }
        // Without checkpoints nothing will ever be read again from the
        // slot: what was handed on is confirmed.
        if self.settings.retained == 0 && !self.in_txn {
            reader.confirm.fetch_max(self.position, Ordering::Relaxed);
        }
        Ok(if read {
            SourcePoll::More
        } else {
            SourcePoll::Wait(Duration::from_millis(5))
        })
    }

    fn at_boundary(&self) -> bool {
        !self.in_txn
    }

    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        if self.reads && self.position > 0 {
            m.insert(
                self.settings.split(),
                serde_json::json!({ "lsn": lsn_text(self.position) }),
            );
        }
        m
    }

    fn checkpoint_complete(&mut self, positions: &Positions) {
        let Some(lsn) = positions
            .get(&self.settings.split())
            .and_then(|p| p["lsn"].as_str())
            .and_then(|l| Lsn::parse(l).ok())
        else {
            return;
        };
        self.completed.push_back(lsn.as_u64());
        while self.completed.len() > self.settings.retained.max(1) {
            self.completed.pop_front();
        }
        if let (Some(r), Some(oldest)) = (&self.reader, self.completed.front()) {
            r.confirm.fetch_max(*oldest, Ordering::Relaxed);
        }
    }

    fn restore(&mut self, positions: &Positions) -> Result<(), RuntimeError> {
        if let Some(p) = positions.get(&self.settings.split()) {
            let lsn = p["lsn"]
                .as_str()
                .and_then(|l| Lsn::parse(l).ok())
                .ok_or_else(|| {
                    RuntimeError::Connector(format!(
                        "postgres-cdc slot `{}`: the snapshot's position {p} is not an LSN",
                        self.settings.slot
                    ))
                })?;
            self.restored = Some(lsn.as_u64());
            self.position = lsn.as_u64();
        }
        Ok(())
    }
}

/// The replication session's settings from the URL.
fn replication_config(s: &Settings, start: u64) -> Result<ReplicationConfig, String> {
    let c: tokio_postgres::Config = s
        .url
        .parse()
        .map_err(|e| format!("{}: {e}", db::redacted(&s.url)))?;
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let user = c.get_user().unwrap_or("postgres").to_owned();
    let password = c
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    let database = c.get_dbname().unwrap_or(&user).to_owned();
    Ok(ReplicationConfig::new(
        host,
        user,
        password,
        database,
        s.slot.clone(),
        s.publication.clone(),
    )
    .with_port(port)
    .with_start_lsn(Lsn::from_u64(start))
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(1))
    .with_application_name("sluice")
    .with_options("-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3"))
}

/// Connects (retrying while the server is unreachable).
async fn connect(s: &Settings) -> Result<Client, String> {
    let mut retry = db::Retry::new("connecting", s.retry_timeout);
    loop {
        match db::connect(&s.url).await {
            Ok(c) => {
                c.batch_execute(
                    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET extra_float_digits = 3",
                )
                .await
                .map_err(|e| db::describe(&e))?;
                return Ok(c);
            }
            Err(e) => retry.failed(e).await?,
        }
    }
}

/// Creates the publication if it is missing; checks that it publishes every
/// table.
async fn ensure_publication(c: &Client, s: &Settings, tables: &[TableInfo]) -> Result<(), String> {
    let d = |e: tokio_postgres::Error| db::describe(&e);
    let exists = c
        .query_opt(
            "SELECT 1 FROM pg_publication WHERE pubname = $1",
            &[&s.publication],
        )
        .await
        .map_err(d)?
        .is_some();
    if !exists {
        let list: Vec<&str> = tables.iter().map(|t| t.quoted.as_str()).collect();
        c.batch_execute(&format!(
            "CREATE PUBLICATION {} FOR TABLE {}",
            s.publication,
            list.join(", ")
        ))
        .await
        .map_err(|e| {
            format!(
                "creating publication `{}`: {}",
                s.publication,
                db::describe(&e)
            )
        })?;
        return Ok(());
    }
    for t in tables {
        let published = c
            .query_opt(
                "SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname || '.' || tablename = $2",
                &[&s.publication, &t.name],
            )
            .await
            .map_err(d)?
            .is_some();
        if !published {
            return Err(format!(
                "publication `{}` does not publish `{}`: run `ALTER PUBLICATION {} ADD TABLE {}`",
                s.publication, t.name, s.publication, t.quoted
            ));
        }
    }
    Ok(())
}

/// The gated replication session, retried while the server is unreachable.
async fn session(s: &Settings, start: u64) -> Result<ReplicationClient, String> {
    let started = std::time::Instant::now();
    loop {
        let cfg = replication_config(s, start)?;
        let mut r = ReplicationClient::connect_gated(cfg)
            .await
            .map_err(|e| e.to_string())?;
        match r.identify_system().await {
            Ok(_) => return Ok(r),
            Err(e) if started.elapsed() < s.retry_timeout => {
                tracing::warn!("postgres-cdc slot `{}`: {e} (retrying)", s.slot);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(format!("replication session: {e}")),
        }
    }
}

/// Sets up the slot, reads the snapshot when the job is fresh, then streams
/// until stopped.
async fn read(
    s: &Settings,
    restored: Option<u64>,
    tx: &mpsc::Sender<Event>,
    confirm: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    let client = connect(s).await?;
    let tables = tables_of(&client, s).await?;
    ensure_publication(&client, s, &tables).await?;
    let slot = client
        .query_opt(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&s.slot],
        )
        .await
        .map_err(|e| db::describe(&e))?
        .map(|r| r.get::<_, Option<String>>(0));
    let start = match restored {
        Some(lsn) => {
            let Some(confirmed) = slot else {
                return Err(format!(
                    "the replication slot is gone: the changes after LSN {} cannot be read again; start the job without its checkpoint (a new snapshot)",
                    lsn_text(lsn)
                ));
            };
            if let Some(c) = confirmed.as_deref().and_then(|c| Lsn::parse(c).ok())
                && c.as_u64() > lsn
            {
                return Err(format!(
                    "the slot has confirmed LSN {}, past the restored snapshot's {}: the changes in between are no longer kept; restore a later checkpoint, or start the job without one",
                    c.to_pg_string(),
                    lsn_text(lsn)
                ));
            }
            lsn
        }
        None => {
            // A fresh job: a slot left by an earlier run has no use to it
            // (its snapshot would not meet the slot).
            if slot.is_some() {
                client
                    .execute("SELECT pg_drop_replication_slot($1)", &[&s.slot])
                    .await
                    .map_err(|e| {
                        format!(
                            "dropping the slot left by an earlier run: {}",
                            db::describe(&e)
                        )
                    })?;
            }
            0
        }
    };
    let mut session = session(s, start).await?;
    let start = if restored.is_some() {
        start
    } else {
        let export = if s.startup == Startup::Initial {
            "EXPORT_SNAPSHOT"
        } else {
            "NOEXPORT_SNAPSHOT"
        };
        let rows = session
            .simple_query(&format!(
                "CREATE_REPLICATION_SLOT {} LOGICAL pgoutput {export}",
                s.slot
            ))
            .await
            .map_err(|e| format!("creating the slot: {e}"))?;
        let field = |i: usize| -> Option<String> {
            rows.first()?
                .get(i)?
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        let consistent = field(1)
            .and_then(|l| Lsn::parse(&l).ok())
            .ok_or("CREATE_REPLICATION_SLOT returned no consistent point")?;
        if s.startup == Startup::Initial {
            let name = field(2).ok_or("CREATE_REPLICATION_SLOT exported no snapshot")?;
            snapshot(s, &client, &tables, &name, consistent.as_u64(), tx).await?;
        } else if tx.send(Event::Progress(consistent.as_u64())).await.is_err() {
            return Ok(());
        }
        // From here a checkpoint holds a position in the slot.
        consistent.as_u64()
    };
    let end = if s.bounded {
        let row = client
            .query_one(
                "SELECT pg_logical_emit_message(false, $1, $2)::text",
                &[&END_MARKER, &s.slot],
            )
            .await
            .map_err(|e| db::describe(&e))?;
        Some(Lsn::parse(&row.get::<_, String>(0)).map_err(|e| e.to_string())?)
    } else {
        None
    };
    // A restored job's session may find the slot still held by the session
    // of the run that died: retried until the server lets it go.
    let began = std::time::Instant::now();
    loop {
        session.start().await.map_err(|e| e.to_string())?;
        match session.wait_started().await {
            Ok(()) => break,
            Err(e) if e.to_string().contains("is active") && began.elapsed() < s.retry_timeout => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                session = self::session(s, start).await?;
            }
            Err(e) => {
                return Err(format!(
                    "starting replication at LSN {}: {e}",
                    lsn_text(start)
                ));
            }
        }
    }
    let mut stream = Stream {
        s,
        tables: &tables,
        client: &client,
        relations: HashMap::new(),
        chunk: Chunk::default(),
        txn: None,
        progress: start,
    };
    let mut confirmed = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            session.stop();
            return Ok(());
        }
        let c = confirm.load(Ordering::Relaxed);
        if c > confirmed {
            confirmed = c;
            session.update_applied_lsn(Lsn::from_u64(c));
        }
        // A chunk of whole transactions held while the source was busy.
        if hand_on_held(&mut stream.chunk, tx).is_err() {
            return Ok(());
        }
        let wait = if stream.chunk.commit.is_some() {
            1
        } else {
            100
        };
        let ev = match tokio::time::timeout(Duration::from_millis(wait), session.recv()).await {
            Err(_) => continue,
            Ok(Ok(Some(ev))) => ev,
            Ok(Ok(None)) => return Err("the replication stream ended".into()),
            Ok(Err(e)) => return Err(format!("replication stream: {e}")),
        };
        match ev {
            ReplicationEvent::Begin {
                final_lsn,
                commit_time_micros,
                ..
            } => {
                stream.txn = Some((final_lsn.as_u64(), pg_micros_to_ms(commit_time_micros)));
            }
            ReplicationEvent::XLogData { data, .. } => {
                if let Some(full) = stream.change(&data).await?
                    && tx.send(Event::Rows(full)).await.is_err()
                {
                    return Ok(());
                }
            }
            ReplicationEvent::Commit { end_lsn, .. } => {
                stream.txn = None;
                stream.chunk.commit = Some(end_lsn.as_u64());
                stream.progress = end_lsn.as_u64();
                // Handed on at once when the source keeps up; otherwise
                // the next transactions join the chunk (held, below).
                if hand_on_held(&mut stream.chunk, tx).is_err() {
                    return Ok(());
                }
            }
            ReplicationEvent::KeepAlive { wal_end, .. }
                if stream.txn.is_none()
                    && stream.chunk.rows.is_empty()
                    && wal_end.as_u64() > stream.progress =>
            {
                stream.progress = wal_end.as_u64();
                if tx.send(Event::Progress(wal_end.as_u64())).await.is_err() {
                    return Ok(());
                }
            }
            ReplicationEvent::Message {
                transactional: false,
                lsn,
                prefix,
                ..
            } if prefix == END_MARKER && end.is_some_and(|e| lsn >= e) => {
                if !stream.chunk.rows.is_empty() {
                    let held = std::mem::take(&mut stream.chunk);
                    let _ = tx.send(Event::Rows(held)).await;
                }
                let _ = tx.send(Event::End).await;
                session.stop();
                return Ok(());
            }
            _ => {}
        }
    }
}

/// Hands a chunk that ends at a commit on when the channel has room; keeps
/// it otherwise. Errs when the source is gone.
fn hand_on_held(chunk: &mut Chunk, tx: &mpsc::Sender<Event>) -> Result<(), ()> {
    if chunk.commit.is_none() {
        return Ok(());
    }
    match tx.try_reserve() {
        Ok(permit) => {
            permit.send(Event::Rows(std::mem::take(chunk)));
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(())) => Ok(()),
        Err(mpsc::error::TrySendError::Closed(())) => Err(()),
    }
}

/// PostgreSQL's epoch (2000-01-01) microseconds as Unix milliseconds.
fn pg_micros_to_ms(micros: i64) -> i64 {
    micros.div_euclid(1000) + 946_684_800_000
}

/// Copies the tables as of the exported snapshot: their rows as inserts.
async fn snapshot(
    s: &Settings,
    client: &Client,
    tables: &[TableInfo],
    name: &str,
    consistent: u64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), String> {
    use futures_util::StreamExt;
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("an unexpected snapshot name `{name}`"));
    }
    let d = |e: tokio_postgres::Error| format!("snapshot: {}", db::describe(&e));
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{name}'"
        ))
        .await
        .map_err(d)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut n: u64 = 0;
    let (mut buf, mut fields) = (Vec::new(), Vec::new());
    for t in tables {
        let copy = client
            .copy_out(&format!("COPY {} TO STDOUT", t.quoted))
            .await
            .map_err(d)?;
        futures_util::pin_mut!(copy);
        let mut chunk = Chunk::default();
        let mut rest: Vec<u8> = Vec::new();
        while let Some(part) = copy.next().await {
            rest.extend_from_slice(&part.map_err(d)?);
            let mut start = 0;
            while let Some(nl) = rest[start..].iter().position(|&b| b == b'\n') {
                let line = &rest[start..start + nl];
                start += nl + 1;
                decode::copy_fields(line, &mut buf, &mut fields);
                if fields.len() != t.columns.len() {
                    return Err(format!(
                        "snapshot of `{}`: a row with {} fields for {} columns",
                        t.name,
                        fields.len(),
                        t.columns.len()
                    ));
                }
                n += 1;
                write_row(
                    s,
                    &t.name,
                    &mut chunk.data,
                    t.columns
                        .iter()
                        .zip(&fields)
                        .map(|((c, oid), f)| (c.as_str(), *oid, f.map(|(a, b)| &buf[a..b]))),
                );
                chunk.rows.push(ChunkRow {
                    end: chunk.data.len(),
                    kind: RowKind::Insert,
                    timestamp: now,
                    position: n,
                });
                if chunk.rows.len() >= CHUNK_ROWS {
                    tx.send(Event::Rows(std::mem::take(&mut chunk)))
                        .await
                        .map_err(|_| "the source stopped")?;
                }
            }
            rest.drain(..start);
        }
        if !chunk.rows.is_empty() {
            tx.send(Event::Rows(chunk))
                .await
                .map_err(|_| "the source stopped")?;
        }
    }
    client.batch_execute("COMMIT").await.map_err(d)?;
    tx.send(Event::SnapshotDone(consistent))
        .await
        .map_err(|_| "the source stopped")?;
    tracing::info!("postgres-cdc slot `{}`: snapshot of {n} rows read", s.slot);
    Ok(())
}

/// A row as a JSON object: the table field (if asked for), then each column.
fn write_row<'a>(
    s: &Settings,
    table: &str,
    out: &mut Vec<u8>,
    columns: impl Iterator<Item = (&'a str, u32, Option<&'a [u8]>)>,
) {
    out.push(b'{');
    let mut first = true;
    if let Some(f) = &s.table_field {
        crate::json::write_str(out, f.as_bytes());
        out.push(b':');
        crate::json::write_str(out, table.as_bytes());
        first = false;
    }
    for (name, oid, value) in columns {
        if !first {
            out.push(b',');
        }
        first = false;
        crate::json::write_str(out, name.as_bytes());
        out.push(b':');
        match value {
            Some(v) => decode::write_value(oid, v, out),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// The description pgoutput sent of relation `rel`.
fn relation(relations: &HashMap<u32, Relation>, rel: u32) -> Result<&Relation, String> {
    relations
        .get(&rel)
        .ok_or_else(|| format!("a change of relation {rel} before its description"))
}

/// The rows of one change with their kinds: one, or two for an update in
/// `all` mode.
type Rows<'a> = SmallVec<[(RowKind, Vec<Datum<'a>>); 2]>;

/// Streaming: relations seen, the transaction under way, the rows of the
/// chunk being filled.
struct Stream<'a> {
    s: &'a Settings,
    tables: &'a [TableInfo],
    client: &'a Client,
    relations: HashMap<u32, Relation>,
    chunk: Chunk,
    /// The transaction under way: its commit LSN and time.
    txn: Option<(u64, i64)>,
    /// The end of the last transaction (or keepalive) passed on.
    progress: u64,
}

impl Stream<'_> {
    /// Acts on one pgoutput message; returns a full chunk to hand on.
    async fn change(&mut self, data: &[u8]) -> Result<Option<Chunk>, String> {
        let (lsn, ts) = self.txn.unwrap_or((self.progress, 0));
        let at = || format!("at LSN {}", lsn_text(lsn));
        let change = decode::change(data).map_err(|m| format!("{m} {}", at()))?;
        let looked_up: Vec<Option<Vec<u8>>>;
        let (rel, rows): (u32, Rows<'_>) = match change {
            Change::Relation(r) => {
                if !self.tables.iter().any(|t| t.name == r.name) {
                    return Ok(None);
                }
                if self.s.mode == ChangelogMode::All && r.replica_identity != b'f' {
                    return Err(format!(
                        "table `{}` no longer has REPLICA IDENTITY FULL ({}): updates and deletes would come without the whole row",
                        r.name,
                        at()
                    ));
                }
                self.relations.insert(r.id, r);
                return Ok(None);
            }
            Change::Insert { rel, new } => (rel, smallvec![(RowKind::Insert, new)]),
            Change::Update { rel, old, mut new } => {
                let r = relation(&self.relations, rel)?;
                // Unchanged TOAST values: from the before image when it is
                // the whole row.
                if let Some(old) = &old
                    && old.len() == new.len()
                {
                    for (n, o) in new.iter_mut().zip(old) {
                        if *n == Datum::Unchanged {
                            *n = *o;
                        }
                    }
                }
                if new.contains(&Datum::Unchanged) {
                    // Upsert mode without the whole before image: read them
                    // from the table by key. A row gone since will be
                    // deleted later in the stream: its update is skipped.
                    looked_up = match self
                        .current_values(r, &new)
                        .await
                        .map_err(|m| format!("{m} {}", at()))?
                    {
                        Some(v) => v,
                        None => return Ok(None),
                    };
                    for (n, l) in new.iter_mut().zip(&looked_up) {
                        if *n == Datum::Unchanged {
                            *n = l.as_deref().map_or(Datum::Null, Datum::Text);
                        }
                    }
                }
                match (self.s.mode, old) {
                    (ChangelogMode::All, Some(old)) => (
                        rel,
                        smallvec![(RowKind::UpdateBefore, old), (RowKind::UpdateAfter, new)],
                    ),
                    (ChangelogMode::All, None) => {
                        return Err(format!(
                            "an update of `{}` without its before image {}",
                            r.name,
                            at()
                        ));
                    }
                    (ChangelogMode::Upsert, _) => (rel, smallvec![(RowKind::UpdateAfter, new)]),
                }
            }
            Change::Delete { rel, old } => (rel, smallvec![(RowKind::Delete, old)]),
            Change::Truncate { rels } => {
                let names: Vec<String> = rels
                    .iter()
                    .filter_map(|r| self.relations.get(r).map(|r| r.name.clone()))
                    .collect();
                if names.is_empty() {
                    return Ok(None);
                }
                if self.s.on_truncate == OnTruncate::Fail {
                    return Err(format!(
                        "TRUNCATE of {} {}: a changelog cannot express it (give the source `on_truncate: skip` to go on without it, or start the job afresh for a new snapshot)",
                        names.join(", "),
                        at()
                    ));
                }
                tracing::warn!(
                    "postgres-cdc slot `{}`: TRUNCATE of {} {} skipped",
                    self.s.slot,
                    names.join(", "),
                    at()
                );
                return Ok(None);
            }
            Change::Other(_) => return Ok(None),
        };
        let Stream {
            s,
            relations,
            chunk,
            ..
        } = self;
        let r = relation(relations, rel)?;
        // Rows of a transaction under way: the chunk no longer ends at a
        // commit (a barrier waits for the next one).
        chunk.commit = None;
        for (kind, tuple) in rows {
            if tuple.len() != r.columns.len() {
                return Err(format!(
                    "a change of `{}` with {} columns for {} {}",
                    r.name,
                    tuple.len(),
                    r.columns.len(),
                    at()
                ));
            }
            write_row(
                s,
                &r.name,
                &mut chunk.data,
                r.columns.iter().zip(&tuple).map(|(c, d)| {
                    (
                        c.name.as_str(),
                        c.type_oid,
                        match d {
                            Datum::Text(t) => Some(*t),
                            _ => None,
                        },
                    )
                }),
            );
            chunk.rows.push(ChunkRow {
                end: chunk.data.len(),
                kind,
                timestamp: ts,
                position: lsn,
            });
        }
        if chunk.rows.len() >= CHUNK_ROWS {
            return Ok(Some(std::mem::take(chunk)));
        }
        Ok(None)
    }

    /// The current text values of a row's columns, by its key columns.
    async fn current_values(
        &self,
        r: &Relation,
        new: &[Datum<'_>],
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, String> {
        let t = self
            .tables
            .iter()
            .find(|t| t.name == r.name)
            .ok_or_else(|| format!("`{}` is not read", r.name))?;
        let quote = |n: &str| format!("\"{}\"", n.replace('"', "\"\""));
        let mut conds = Vec::new();
        let mut params: Vec<String> = Vec::new();
        for (c, d) in r.columns.iter().zip(new) {
            if c.key
                && let Datum::Text(v) = d
            {
                params.push(String::from_utf8_lossy(v).into_owned());
                conds.push(format!("{}::text = ${}", quote(&c.name), params.len()));
            }
        }
        if conds.is_empty() {
            return Err(format!("an update of `{}` whose key is unknown", r.name));
        }
        let select: Vec<String> = r
            .columns
            .iter()
            .map(|c| format!("{}::text", quote(&c.name)))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            select.join(", "),
            t.quoted,
            conds.join(" AND ")
        );
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let row = self.client.query_opt(&sql, &refs).await.map_err(|e| {
            format!(
                "reading the unchanged values of `{}`: {}",
                r.name,
                db::describe(&e)
            )
        })?;
        Ok(row.map(|row| {
            (0..r.columns.len())
                .map(|i| row.get::<_, Option<String>>(i).map(String::into_bytes))
                .collect()
        }))
    }
}
