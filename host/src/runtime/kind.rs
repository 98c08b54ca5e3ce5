//! Operator kinds: how one operator of a spec becomes an [`OperatorFactory`].
//!
//! A spec's operator has the keys every operator has (`uid`, `input(s)`,
//! `parallelism`, `partition`, `chain`, `key_by`), which the planner reads,
//! and the keys of its kind: a tag that says which kind it is (`wasm`,
//! `process`, `window`, `enricher`, …) and the kind's own settings. Each kind
//! is an [`OperatorKind`], kept beside its operator; the planner finds the
//! kind by its tag in a [`Registry`] its caller hands it, and the kind plans
//! itself through a [`PlanContext`] — the services only the planner has (the
//! spec's file and lines, the module path, the state backend).
//!
//! A new native operator kind is one module (the operator, its factory and
//! its `OperatorKind`) plus one line in the registry the planner is given.

use super::aggregate::AggregatorFactory;
use super::keys::KeySelector;
use super::operator::OperatorFactory;
use crate::error::{Location, PlanError};
use crate::state::Backend;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// `join: inner` (default) or `left` of the joins that enrich each record
/// of one input (a temporal join, a lookup join): with `left`, a record
/// without a match goes on with nulls.
#[derive(Debug, serde::Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InnerOrLeft {
    #[default]
    Inner,
    Left,
}

/// One kind of operator, found by its tag key.
pub trait OperatorKind: Send + Sync {
    /// The key that marks an operator of this kind (`window`).
    fn tag(&self) -> &'static str;

    /// What the kind is, for messages ("a window").
    fn what(&self) -> &'static str;

    /// The other keys of the kind (`allowed_lateness`, `aggregate`, …).
    fn fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The names of its inputs, for an operator with several
    /// (`["left", "right"]`): the spec then writes `input: { left: …,
    /// right: … }`, and a batch from input `i` reaches the operator through
    /// [`crate::runtime::Operator::process_input`]. Empty (the default): one
    /// input, which `input` and `inputs` (a union) feed.
    fn inputs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Those of its [`OperatorKind::inputs`] whose records reach every
    /// subtask (a broadcast process function's rules), by index. They take
    /// no key.
    fn broadcast_inputs(&self) -> &'static [usize] {
        &[]
    }

    /// Builds the operator's factory from its keys.
    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError>;
}

/// A planned operator: its factory and what the graph must know about it.
pub struct Planned {
    pub factory: Arc<dyn OperatorFactory>,
    /// Its side outputs, in port order after the main one.
    pub side_ports: Vec<String>,
    /// Whether its side outputs are whatever the pipeline reads (a process
    /// function's: the guest names them at run time).
    pub open_side_ports: bool,
    /// Whether every input must carry event time (a window's).
    pub needs_event_time: bool,
}

impl Planned {
    pub fn new(factory: Arc<dyn OperatorFactory>) -> Planned {
        Planned {
            factory,
            side_ports: Vec::new(),
            open_side_ports: false,
            needs_event_time: false,
        }
    }
}

/// What a kind may ask of the planner while it plans one operator. Fields
/// are named by their path below the operator: `aggregate.wasm`.
pub trait PlanContext {
    /// The operator's uid.
    fn uid(&self) -> &str;

    /// The raw value at `path`, if the spec sets it.
    fn value(&self, path: &str) -> Option<&serde_yaml::Value>;

    /// Where `path` is written (the operator itself for `""`).
    fn at(&self, path: &str) -> Location;

    /// The operator's key, if it has a `key_by` (for a kind with named
    /// inputs and a key per input: the first input's).
    fn key(&self) -> Option<&KeySelector>;

    /// The key of logical input `input`: its own, or the one key of all.
    fn input_key(&self, input: usize) -> Option<&KeySelector>;

    /// The job's number of key groups.
    fn max_parallelism(&self) -> u32;

    /// The job's state backend.
    fn backend(&self) -> Result<Backend, PlanError>;

    /// The folder relative host paths start at.
    fn base_dir(&self) -> &Path;

    /// Checks that a host path the spec names (at `path`) is one the job
    /// may use.
    fn confine(&self, path: &str, host: &Path) -> Result<(), PlanError>;

    /// The file of module `name`, or why there is none.
    fn find_module(&self, name: &str) -> Result<PathBuf, String>;

    /// The spec's defaults for a module's memory cap and call deadline.
    fn module_limits(&self) -> (u64, Duration);

    /// A Wasm aggregator from the module section at `path`: an incremental
    /// aggregate, or with `full_window` a full-window function.
    fn guest_aggregator(
        &self,
        path: &str,
        full_window: bool,
    ) -> Result<Arc<dyn AggregatorFactory>, PlanError>;

    /// SQL's aggregate functions from the section at `path` (what `sluice
    /// sql` writes for a window aggregation).
    fn sql_aggregator(&self, path: &str) -> Result<Arc<dyn AggregatorFactory>, PlanError>;

    /// The SQL functions of module `name` (a `sql-function-module`
    /// component), for the section at `path`.
    fn function_module(
        &self,
        path: &str,
        name: &str,
    ) -> Result<Arc<dyn super::function::FunctionsFactory>, PlanError>;
}

/// An error at `path` below the operator.
pub fn error(cx: &dyn PlanContext, path: &str, message: impl Into<String>) -> PlanError {
    PlanError::new(cx.at(path), message)
}

/// The value at `path` as a `T`, or `None` when the spec does not set it.
pub fn field<T: DeserializeOwned>(
    cx: &dyn PlanContext,
    path: &str,
) -> Result<Option<T>, PlanError> {
    match cx.value(path) {
        None => Ok(None),
        Some(v) => serde_yaml::from_value(v.clone())
            .map(Some)
            .map_err(|e| error(cx, path, format!("`{path}`: {e}"))),
    }
}

/// The operator's key, or an error saying why `what` needs one.
pub fn key<'a>(cx: &'a dyn PlanContext, why: &str) -> Result<&'a KeySelector, PlanError> {
    cx.key().ok_or_else(|| error(cx, "", why.to_owned()))
}

/// The operator kinds a planner knows, in the order their keys are listed.
#[derive(Clone)]
pub struct Registry {
    kinds: Vec<Arc<dyn OperatorKind>>,
}

impl Registry {
    pub fn new(kinds: Vec<Arc<dyn OperatorKind>>) -> Registry {
        Registry { kinds }
    }

    /// This registry and `kind`.
    pub fn with(mut self, kind: Arc<dyn OperatorKind>) -> Registry {
        self.kinds.push(kind);
        self
    }

    /// Every key of every kind, each once.
    pub fn keys(&self) -> Vec<&'static str> {
        let mut keys: Vec<&'static str> = Vec::new();
        for k in &self.kinds {
            for key in std::iter::once(k.tag()).chain(k.fields().iter().copied()) {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// The kind of an operator with the kind keys `keys`, or the key to
    /// blame and why it does not fit.
    pub fn kind_of(&self, keys: &[&str]) -> Result<&dyn OperatorKind, (String, String)> {
        let tagged: Vec<&dyn OperatorKind> = self
            .kinds
            .iter()
            .map(|k| k.as_ref())
            .filter(|k| keys.contains(&k.tag()))
            .collect();
        // A tag that is also a setting of another tagged kind is that
        // setting: `process` beside `window` is a full-window function.
        let chosen: Vec<&dyn OperatorKind> = tagged
            .iter()
            .copied()
            .filter(|k| !tagged.iter().any(|o| o.fields().contains(&k.tag())))
            .collect();
        let kind = match chosen.as_slice() {
            [one] => *one,
            [] => {
                let tags: Vec<String> = self
                    .kinds
                    .iter()
                    .map(|k| format!("`{}` ({})", k.tag(), k.what()))
                    .collect();
                let blame = keys.first().map_or(String::new(), |k| k.to_string());
                let why = match keys.first().and_then(|k| self.owner(k)) {
                    Some(owner) => format!(
                        "`{}` belongs to `{}` ({}), which is not set",
                        keys[0],
                        owner.tag(),
                        owner.what()
                    ),
                    None => format!("an operator needs one of {}", tags.join(", ")),
                };
                return Err((blame, why));
            }
            [a, b, ..] => {
                return Err((
                    b.tag().to_owned(),
                    format!(
                        "`{}` ({}) and `{}` ({}) exclude each other: an operator is of one kind",
                        a.tag(),
                        a.what(),
                        b.tag(),
                        b.what()
                    ),
                ));
            }
        };
        for key in keys {
            if *key != kind.tag() && !kind.fields().contains(key) {
                return Err((
                    key.to_string(),
                    format!(
                        "`{key}` does not go with `{}` ({})",
                        kind.tag(),
                        kind.what()
                    ),
                ));
            }
        }
        Ok(kind)
    }

    /// The kind whose settings include `key`.
    fn owner(&self, key: &str) -> Option<&dyn OperatorKind> {
        self.kinds
            .iter()
            .map(|k| k.as_ref())
            .find(|k| k.tag() == key || k.fields().contains(&key))
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.kinds.iter().map(|k| k.tag()))
            .finish()
    }
}
