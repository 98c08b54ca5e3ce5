//! Connectors: where records come from and go to.
//!
//! Each connector lives in its own folder and owns its options (the keys of
//! its spec node besides `uid`, `type`, `parallelism`, `input`, and
//! `event_time`). [`source`] and [`sink`] are the registry: a plain match on
//! the `type`. A factory is made once per node when the plan is built (so a
//! bad option or a missing file is a plan error with a line number) and
//! makes one instance per subtask when the job starts.

pub mod datagen;
pub mod discard;
pub mod file;
pub mod kafka;
pub mod postgres;
pub mod stdout;

use crate::error::RuntimeError;
use crate::runtime::OperatorFactory;
use crate::runtime::source::{Format, SourceFactory};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// How a source reads its records' bytes: `format: json` (the default),
/// `raw`, or `debezium-json` (change events: a changelog).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub enum FormatOption {
    #[default]
    Json,
    /// JSON that the operators reading it check (see
    /// [`Format::JsonUnchecked`]): only where every reader does.
    JsonUnchecked,
    Raw,
    DebeziumJson,
}

impl From<FormatOption> for Format {
    fn from(f: FormatOption) -> Format {
        match f {
            FormatOption::Json => Format::Json,
            FormatOption::JsonUnchecked => Format::JsonUnchecked,
            FormatOption::Raw => Format::Raw,
            FormatOption::DebeziumJson => Format::DebeziumJson,
        }
    }
}

/// What a sink connector knows of the job when the plan is built.
#[derive(Clone, Debug, Default)]
pub struct SinkContext {
    /// Checkpointing is on: output becomes visible when the checkpoint that
    /// covers it completes.
    pub exactly_once: bool,
    /// The job's name and the sink's uid.
    pub job: String,
    pub uid: String,
    /// With checkpointing: the checkpoint folder and settings.
    pub checkpoints: Option<crate::checkpoint::CheckpointSettings>,
    /// The pipeline's `buffer_timeout`: how long output may wait.
    pub buffer_timeout: std::time::Duration,
}

/// What a source connector knows of the job when the plan is built.
#[derive(Clone, Debug, Default)]
pub struct SourceContext {
    /// With checkpointing: the checkpoint folder and settings.
    pub checkpoints: Option<crate::checkpoint::CheckpointSettings>,
}

/// The source connector named `kind`.
pub fn source(
    kind: &str,
    options: serde_yaml::Mapping,
    context: SourceContext,
) -> Result<Arc<dyn SourceFactory>, String> {
    match kind {
        "file" => Ok(Arc::new(file::FileSourceFactory::new(options_of(
            options,
        )?)?)),
        "datagen" => Ok(Arc::new(datagen::DatagenFactory::new(options_of(
            options,
        )?)?)),
        "kafka" => Ok(Arc::new(kafka::KafkaSourceFactory::new(options_of(
            options,
        )?)?)),
        "postgres-cdc" => Ok(Arc::new(postgres::cdc::CdcSourceFactory::new(
            options_of(options)?,
            context,
        )?)),
        other => Err(format!(
            "unknown source type `{other}` (available: file, datagen, kafka, postgres-cdc)"
        )),
    }
}

/// The sink connector named `kind`.
pub fn sink(
    kind: &str,
    options: serde_yaml::Mapping,
    context: SinkContext,
) -> Result<Arc<dyn OperatorFactory>, String> {
    match kind {
        "file" => file::sink_factory(options_of(options)?, context),
        "stdout" => Ok(Arc::new(stdout::StdoutSinkFactory::new(options_of(
            options,
        )?))),
        "discard" => {
            let _: discard::DiscardOptions = options_of(options)?;
            Ok(Arc::new(discard::DiscardSinkFactory))
        }
        "kafka" => Ok(Arc::new(kafka::sink::KafkaSinkFactory::new(
            options_of(options)?,
            context,
        )?)),
        "postgres" => Ok(Arc::new(postgres::PostgresSinkFactory::new(
            options_of(options)?,
            context,
        )?)),
        other => Err(format!(
            "unknown sink type `{other}` (available: file, stdout, discard, kafka, postgres)"
        )),
    }
}

fn options_of<T: DeserializeOwned>(options: serde_yaml::Mapping) -> Result<T, String> {
    serde_yaml::from_value(serde_yaml::Value::Mapping(options)).map_err(|e| e.to_string())
}

/// Writes record values as lines into a buffer that a sink flushes.
pub(crate) fn append_lines(buf: &mut Vec<u8>, batch: &crate::runtime::Batch) {
    for r in batch.iter() {
        buf.extend_from_slice(r.value());
        buf.push(b'\n');
    }
}

/// A two-phase sink's output sealed at barriers and not yet known to be
/// committed: the committables of each epoch, by checkpoint id.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    items: Vec<(u64, serde_json::Value)>,
    last_barrier: u64,
}

impl Pending {
    /// The epoch a barrier (or the end of input) seals now.
    pub fn barrier(&mut self, id: u64) {
        self.last_barrier = id;
    }

    /// The epoch of the job's last output, sealed at the end of input:
    /// committed when the whole job has ended.
    pub fn final_epoch(&self) -> u64 {
        self.last_barrier + 1
    }

    pub fn push(&mut self, epoch: u64, committable: serde_json::Value) {
        self.items.push((epoch, committable));
    }

    /// What the snapshot of the current barrier holds: every epoch not yet
    /// committed (those of a failed checkpoint go with the next).
    pub fn state(&self) -> crate::checkpoint::OperatorState {
        crate::checkpoint::OperatorState {
            committables: self.items.iter().map(|(_, c)| c.clone()).collect(),
            ..Default::default()
        }
    }

    /// Checkpoint `id` is complete (also told at the start of a restored
    /// job: epochs go on from there).
    pub fn completed(&mut self, id: u64) {
        self.last_barrier = self.last_barrier.max(id);
        self.items.retain(|(e, _)| *e > id);
    }

    pub fn take(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.items)
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }
}

pub(crate) fn io_error(what: String) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::io(what, e)
}
