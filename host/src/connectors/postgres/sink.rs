//! The `postgres` sink operator and its checkpoint committer (see the
//! module docs of [`super`] for the protocol).

use super::PostgresSinkOptions;
use super::db::{self, Statements};
use super::rows::{Changes, Rows, Table};
use crate::checkpoint::{Barrier, Committer, OperatorState};
use crate::connectors::{Pending, SinkContext};
use crate::error::RuntimeError;
use crate::runtime::operator::ChangelogInput;
use crate::runtime::{Batch, Operator, OperatorFactory, Output, Subtask};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Client;

/// Without checkpointing, a subtask also writes once it holds this many
/// rows.
const WRITE_AT_ROWS: usize = 50_000;

struct Shared {
    url: String,
    table: Table,
    statements: Statements,
    /// The sink's row in the progress table: the job's name and the uid.
    sink_id: String,
    /// With checkpointing: where sealed epochs wait for their commit.
    staging: Option<PathBuf>,
    buffer_timeout: Duration,
    retry_timeout: Duration,
}

impl Shared {
    fn what(&self) -> String {
        format!("writing {} at {}", self.table.name, db::redacted(&self.url))
    }
}

pub struct PostgresSinkFactory {
    shared: Arc<Shared>,
}

impl PostgresSinkFactory {
    /// Reads the table's definition from the server: a table or column that
    /// is not there is an error now, not when the first record arrives.
    pub fn new(
        options: PostgresSinkOptions,
        context: SinkContext,
    ) -> Result<PostgresSinkFactory, String> {
        let retry_timeout = options
            .retry_timeout
            .map(|d| d.0)
            .unwrap_or(Duration::from_secs(60));
        let url = options.url.clone();
        let table = db::block_on(async {
            let what = format!("cannot connect to {}", db::redacted(&url));
            let mut retry = db::Retry::new(&what, retry_timeout.min(Duration::from_secs(10)));
            let client = loop {
                match db::connect(&url).await {
                    Ok(c) => break c,
                    Err(e) => retry.failed(e).await?,
                }
            };
            db::table(&client, &options).await
        })?;
        let staging = context.checkpoints.as_ref().map(|c| {
            c.dir
                .join("postgres")
                .join(crate::checkpoint::coordinator::safe_name(&context.uid))
        });
        Ok(PostgresSinkFactory {
            shared: Arc::new(Shared {
                url,
                statements: Statements::new(&table),
                table,
                sink_id: format!("{}/{}", context.job, context.uid),
                staging,
                buffer_timeout: options
                    .buffer_timeout
                    .map(|d| d.0)
                    .unwrap_or(context.buffer_timeout),
                retry_timeout,
            }),
        })
    }
}

#[async_trait]
impl OperatorFactory for PostgresSinkFactory {
    fn kind(&self) -> &'static str {
        "sink"
    }

    fn create(&self, subtask: &Subtask<'_>) -> Box<dyn Operator> {
        Box::new(PostgresSink {
            shared: self.shared.clone(),
            subtask: subtask.index,
            changes: Changes::new(self.shared.table.upsert()),
            since: None,
            writer: None,
            line: Vec::new(),
            key: Vec::new(),
            pending: Pending::default(),
        })
    }

    fn input_key(&self) -> Option<crate::runtime::keys::KeySelector> {
        let t = &self.shared.table;
        t.upsert().then(|| {
            crate::runtime::keys::KeySelector::new(
                t.key.iter().map(|&i| t.columns[i].field.clone()).collect(),
            )
        })
    }

    fn changelog(&self) -> ChangelogInput {
        if self.shared.table.upsert() {
            ChangelogInput::Applied
        } else {
            ChangelogInput::Refused
        }
    }

    fn committer(&self) -> Option<Arc<dyn Committer>> {
        self.shared
            .staging
            .is_some()
            .then(|| Arc::new(PostgresCommitter(self.shared.clone())) as Arc<dyn Committer>)
    }
}

pub struct PostgresSink {
    shared: Arc<Shared>,
    subtask: u32,
    changes: Changes,
    /// When the oldest unwritten change arrived (at-least-once).
    since: Option<Instant>,
    /// An at-least-once sink's writer.
    writer: Option<Writer>,
    line: Vec<u8>,
    key: Vec<u8>,
    pending: Pending,
}

impl PostgresSink {
    /// Seals the changes as the epoch of checkpoint `id`: a staged file,
    /// synced, that the committer applies once the checkpoint completes.
    fn seal(&mut self, id: u64) -> Result<(), RuntimeError> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let dir = self.shared.staging.as_ref().expect("exactly once");
        let rows = self.changes.take();
        let name = format!(
            "{:04}-{id:08}-{}-{:x}.rows",
            self.subtask,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let path = dir.join(&name);
        let io = |e| RuntimeError::io(format!("cannot write {}", path.display()), e);
        let mut f = std::fs::File::create(&path).map_err(io)?;
        std::io::Write::write_all(&mut f, &rows.to_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        self.pending.push(
            id,
            json!({ "file": name, "epoch": id, "subtask": self.subtask, "rows": rows.count }),
        );
        Ok(())
    }

    /// At least once: hands what is collected to the writer (which writes
    /// it while the subtask reads on); an earlier write's error fails now.
    fn write(&mut self) -> Result<(), RuntimeError> {
        self.since = None;
        let writer = self
            .writer
            .get_or_insert_with(|| Writer::start(self.shared.clone()));
        writer.collect().map_err(RuntimeError::Connector)?;
        if self.changes.is_empty() {
            return Ok(());
        }
        writer
            .send(self.changes.take())
            .map_err(RuntimeError::Connector)
    }
}

/// Writes an at-least-once subtask's rows on a thread of its own, one
/// transaction per hand-over, so that the subtask encodes its next rows
/// while PostgreSQL takes the last ones. At most one hand-over waits while
/// one is written (then the subtask waits: backpressure).
struct Writer {
    rows: Option<std::sync::mpsc::SyncSender<Rows>>,
    done: std::sync::mpsc::Receiver<Result<(), String>>,
    in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(shared: Arc<Shared>) -> Writer {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Rows>(1);
        let (done_tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("postgres-writer".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(async move {
                    let mut client = None;
                    while let Ok(rows) = rx.recv() {
                        let r = write_rows(&shared, &mut client, &rows).await;
                        if done_tx.send(r).is_err() {
                            break;
                        }
                    }
                });
            })
            .expect("a thread");
        Writer {
            rows: Some(tx),
            done,
            in_flight: 0,
            thread: Some(thread),
        }
    }

    fn send(&mut self, rows: Rows) -> Result<(), String> {
        self.in_flight += 1;
        self.rows
            .as_ref()
            .expect("running")
            .send(rows)
            .map_err(|_| "the PostgreSQL writer stopped".to_owned())
    }

    /// The results of the writes done so far.
    fn collect(&mut self) -> Result<(), String> {
        while let Ok(r) = self.done.try_recv() {
            self.in_flight -= 1;
            r?;
        }
        Ok(())
    }

    /// Waits for every write handed over.
    fn wait(&mut self) -> Result<(), String> {
        while self.in_flight > 0 {
            let r = self
                .done
                .recv()
                .map_err(|_| "the PostgreSQL writer stopped".to_owned())?;
            self.in_flight -= 1;
            r?;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.rows = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `rows` in one transaction, reconnecting while the server is
/// unreachable.
async fn write_rows(
    shared: &Shared,
    client: &mut Option<Client>,
    rows: &Rows,
) -> Result<(), String> {
    let what = shared.what();
    let mut retry = db::Retry::new(&what, shared.retry_timeout);
    loop {
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            match db::connect(&shared.url).await {
                Ok(c) => *client = Some(c),
                Err(e) => {
                    retry.failed(e).await?;
                    continue;
                }
            }
        }
        let c = client.as_mut().expect("connected");
        let r = async {
            let txn = c.transaction().await?;
            db::apply(&txn, &shared.statements, rows).await?;
            txn.commit().await
        }
        .await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                *client = None;
                retry.failed(e).await?;
            }
        }
    }
}

#[async_trait]
impl Operator for PostgresSink {
    async fn open(&mut self) -> Result<(), RuntimeError> {
        if let Some(dir) = &self.shared.staging {
            std::fs::create_dir_all(dir).map_err(|e| {
                RuntimeError::io(format!("cannot create folder {}", dir.display()), e)
            })?;
        }
        Ok(())
    }

    async fn process_batch(&mut self, batch: Batch, out: &mut Output) -> Result<(), RuntimeError> {
        for r in batch.iter() {
            let added = self
                .shared
                .table
                .encode(
                    r.value(),
                    r.kind().is_addition(),
                    &mut self.line,
                    &mut self.key,
                )
                .and_then(|()| self.changes.add(r.kind(), &self.line, &self.key));
            if let Err(m) = added {
                out.dead_letter(r, &m)?;
            }
        }
        if self.shared.staging.is_none() && !self.changes.is_empty() {
            self.since.get_or_insert_with(Instant::now);
            if self.changes.len() >= WRITE_AT_ROWS {
                self.write()?;
            }
        }
        Ok(())
    }

    fn wakeup(&self) -> Option<Duration> {
        let since = self.since?;
        Some(self.shared.buffer_timeout.saturating_sub(since.elapsed()))
    }

    async fn flush(&mut self, _out: &mut Output) -> Result<Option<i64>, RuntimeError> {
        if self
            .since
            .is_some_and(|s| s.elapsed() >= self.shared.buffer_timeout)
        {
            self.write()?;
        }
        Ok(None)
    }

    async fn snapshot(
        &mut self,
        barrier: Barrier,
        _out: &mut Output,
    ) -> Result<OperatorState, RuntimeError> {
        self.pending.barrier(barrier.id);
        self.seal(barrier.id)?;
        Ok(self.pending.state())
    }

    fn notify_checkpoint_complete(&mut self, id: u64) {
        self.pending.completed(id);
    }

    async fn close(&mut self, _out: &mut Output) -> Result<(), RuntimeError> {
        if self.shared.staging.is_some() {
            self.seal(self.pending.final_epoch())
        } else {
            self.write()?;
            let writer = self.writer.as_mut().expect("started by write");
            writer.wait().map_err(RuntimeError::Connector)
        }
    }

    fn take_final_committables(&mut self) -> Vec<Value> {
        self.pending.take()
    }
}

/// A staged epoch named by a committable.
#[derive(Debug)]
struct Staged {
    file: String,
    epoch: u64,
    subtask: u64,
}

fn staged(items: &[Value]) -> Result<Vec<Staged>, String> {
    let mut v = Vec::with_capacity(items.len());
    for item in items {
        let file = item
            .get("file")
            .and_then(Value::as_str)
            .filter(|f| !f.is_empty() && !f.contains(['/', '\\']) && !f.starts_with('.'))
            .ok_or_else(|| format!("not a postgres sink committable: {item}"))?;
        let num = |k: &str| {
            item.get(k)
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("not a postgres sink committable: {item}"))
        };
        v.push(Staged {
            file: file.to_owned(),
            epoch: num("epoch")?,
            subtask: num("subtask")?,
        });
    }
    // Epochs in order; within one, subtasks in order (a key written by two
    // subtasks in one epoch ends with the later subtask's row).
    v.sort_by_key(|s| (s.epoch, s.subtask));
    v.dedup_by(|a, b| a.file == b.file);
    Ok(v)
}

/// Commits a sink's epochs: one transaction applies every staged epoch the
/// progress row does not show as applied, and advances the row.
struct PostgresCommitter(Arc<Shared>);

/// What a recovery does about the progress row.
#[derive(Clone, Copy)]
enum Progress {
    /// A new job: forget the row.
    Forget,
    /// Apply the epochs above the row, and set it to this epoch.
    Advance(u64),
}

impl PostgresCommitter {
    fn dir(&self) -> &Path {
        self.0.staging.as_deref().expect("exactly once")
    }

    /// One attempt at [`PostgresCommitter::apply`]: the outer error is the
    /// server's (maybe worth retrying), the inner one final.
    async fn attempt(
        &self,
        items: &[Staged],
        progress: Progress,
        restored: bool,
    ) -> Result<Result<Vec<usize>, String>, tokio_postgres::Error> {
        let s = &self.0;
        let mut loaded = Vec::new();
        let mut client = db::connect(&s.url).await?;
        db::ensure_progress(&client).await?;
        let txn = client.transaction().await?;
        let applied = db::progress(&txn, &s.sink_id).await?;
        let target = match progress {
            Progress::Forget => None,
            Progress::Advance(to) => {
                if restored && to < applied {
                    if !s.table.upsert() {
                        return Ok(Err(format!(
                            "{} already holds the rows of this sink up to epoch {applied} (row `{}` of {}), and the snapshot being restored is older (epoch {to}): appending its rows again would write them twice; restore a later checkpoint, or start the job without it",
                            s.table.name,
                            s.sink_id,
                            db::PROGRESS_TABLE
                        )));
                    }
                    // An upsert table converges: the restored job writes
                    // the later epochs again.
                    tracing::info!(
                        "sink `{}`: restoring epoch {to}, older than the {applied} {} holds; its rows are written again",
                        s.sink_id,
                        s.table.name
                    );
                } else {
                    for item in items.iter().filter(|i| i.epoch > applied) {
                        let rows = match read_staged(self.dir(), item) {
                            Ok(r) => r,
                            Err(e) => return Ok(Err(e)),
                        };
                        db::apply(&txn, &s.statements, &rows).await?;
                        loaded.push(rows.count);
                    }
                }
                Some(if restored { to } else { to.max(applied) })
            }
        };
        db::set_progress(&txn, &s.sink_id, target).await?;
        txn.commit().await?;
        Ok(Ok(loaded))
    }

    /// Applies `items` above the progress row and sets the row, in one
    /// transaction, retrying while the server is unreachable.
    fn apply(&self, items: &[Staged], progress: Progress, restored: bool) -> Result<(), String> {
        let s = &self.0;
        let loaded = db::block_on(async {
            let what = format!("cannot commit to {}", s.table.name);
            let mut retry = db::Retry::new(&what, s.retry_timeout);
            loop {
                match self.attempt(items, progress, restored).await {
                    Ok(r) => return r,
                    Err(e) => retry.failed(e).await?,
                }
            }
        })?;
        if crash_after_commit() && !loaded.is_empty() {
            eprintln!(
                "sluice: SLUICE_POSTGRES_CRASH_AFTER_COMMIT: {} rows of {} epochs are committed and not acknowledged; stopping the process",
                loaded.iter().sum::<usize>(),
                loaded.len()
            );
            std::process::abort();
        }
        Ok(())
    }
}

fn read_staged(dir: &Path, item: &Staged) -> Result<Rows, String> {
    let path = dir.join(&item.file);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "cannot read the staged rows of epoch {} at {}: {e} (a committed epoch's rows are removed once applied: was its row in {} dropped, or the checkpoint folder copied from another job?)",
            item.epoch,
            path.display(),
            db::PROGRESS_TABLE
        )
    })?;
    Rows::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// `SLUICE_POSTGRES_CRASH_AFTER_COMMIT=1`: a test's failpoint between a
/// commit and its acknowledgement.
fn crash_after_commit() -> bool {
    static AT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AT.get_or_init(|| std::env::var_os("SLUICE_POSTGRES_CRASH_AFTER_COMMIT").is_some())
}

impl Committer for PostgresCommitter {
    fn commit(&self, id: u64, items: &[Value]) -> Result<(), String> {
        let items = staged(items)?;
        self.apply(&items, Progress::Advance(id), false)?;
        for item in &items {
            let _ = std::fs::remove_file(self.dir().join(&item.file));
        }
        Ok(())
    }

    fn recover(&self, restored: Option<u64>, items: &[Value]) -> Result<(), String> {
        let items = staged(items)?;
        let progress = match restored {
            None => Progress::Forget,
            Some(id) => Progress::Advance(id),
        };
        self.apply(&items, progress, restored.is_some())?;
        // Every staged file is now applied or (written after the restored
        // snapshot) to be written again by the restored job.
        if let Ok(entries) = std::fs::read_dir(self.dir()) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".rows") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
}
