//! From a pipeline spec to a plan the runtime can deploy.
//!
//! [`load`] reads the YAML (substituting `${VAR}`s), builds the logical graph
//! — nodes with their resolved connectors, compiled modules and window
//! settings, and edges from each input to its node — and checks it: unique
//! uids, known inputs, no cycles, event time where windows need it, modules
//! that implement their worlds. It then makes it physical: every node gets a
//! parallelism, every edge a [`Partitioning`], and forward edges between
//! nodes of equal parallelism are chained, so that a chain runs as one task
//! per subtask. Every error names the spec file, the line and the node.

pub mod confine;
pub mod env;
pub mod locate;
pub mod spec;

use crate::connectors;
use crate::error::{Location, PlanError};
use crate::group;
use crate::join;
use crate::json::Pointer;
use crate::runtime::aggregate::AggregatorFactory;
use crate::runtime::keys::KeySelector;
use crate::runtime::kind::{self, OperatorKind, PlanContext, Registry};
use crate::runtime::router::Partitioning;
use crate::runtime::source::EventTime;
use crate::runtime::{Chain, Edge, Node};
use crate::time::watermark::WatermarkStrategy;
use crate::wasm::{self, World};
use crate::window;
use locate::Locator;
use spec::{KeyBySpec, PartitionSpec, Spec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::runtime::{NodeKind, Pipeline, Settings};

/// What the planner is given besides the spec: the operator kinds it knows,
/// where modules are looked for besides the spec's folder, and settings
/// from the command line or the server.
#[derive(Clone)]
pub struct PlanOptions {
    /// The operator kinds (default: [`builtin_kinds`]).
    pub kinds: Registry,
    pub module_path: Vec<PathBuf>,
    /// Uploaded modules (`sluice serve`): when set, a spec's module names
    /// are looked up here only.
    pub store: Option<Arc<dyn ModuleSource>>,
    /// Checkpointing from the command line: the folder (turns it on) and
    /// the interval, in place of the spec's.
    pub checkpoint_dir: Option<String>,
    pub checkpoint_interval: Option<std::time::Duration>,
    /// Records per second each source task reads at most.
    pub source_rate: Option<f64>,
    /// The folders the spec's files and folders must be in (`sluice serve`);
    /// `None`: anywhere (`sluice run`).
    pub allowed_dirs: Option<confine::AllowedDirs>,
}

/// A place that resolves a module name (or hash) to a file.
pub trait ModuleSource: Send + Sync {
    /// The file of module `name`, or a message saying why there is none.
    fn find(&self, name: &str) -> Result<PathBuf, String>;
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            kinds: builtin_kinds(),
            module_path: Vec::new(),
            store: None,
            checkpoint_dir: None,
            checkpoint_interval: None,
            source_rate: None,
            allowed_dirs: None,
        }
    }
}

impl std::fmt::Debug for PlanOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanOptions")
            .field("kinds", &self.kinds)
            .field("module_path", &self.module_path)
            .field("store", &self.store.is_some())
            .finish()
    }
}

impl PlanOptions {
    /// `SLUICE_MODULE_PATH` (`:`-separated) followed by `extra`.
    pub fn from_env(extra: &[PathBuf]) -> PlanOptions {
        let mut module_path: Vec<PathBuf> = std::env::var_os("SLUICE_MODULE_PATH")
            .map(|v| std::env::split_paths(&v).collect())
            .unwrap_or_default();
        module_path.extend_from_slice(extra);
        PlanOptions {
            module_path,
            ..PlanOptions::default()
        }
    }
}

/// Reads, checks and plans the spec at `path` (`${VAR}`s from the
/// environment).
pub fn load(path: &Path, options: &PlanOptions) -> Result<Pipeline, PlanError> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        PlanError::new(
            Location {
                file: path.to_owned(),
                line: None,
                node: None,
            },
            format!("cannot read the spec: {e}"),
        )
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(&raw, path, &base_dir, &|k| std::env::var(k).ok(), options)
}

/// Checks and plans the spec `raw`, which errors call `origin`; `${VAR}`s
/// come from `vars`, and relative module and grant paths start at
/// `base_dir`.
pub fn load_text(
    raw: &str,
    origin: &Path,
    base_dir: &Path,
    vars: &dyn Fn(&str) -> Option<String>,
    options: &PlanOptions,
) -> Result<Pipeline, PlanError> {
    let here = |line: Option<usize>| Location {
        file: origin.to_owned(),
        line,
        node: None,
    };
    let text =
        env::substitute(raw, vars).map_err(|(line, m)| PlanError::new(here(Some(line)), m))?;
    let mut spec: Spec = serde_yaml::from_str(&text).map_err(|e| {
        let line = e.location().map(|l| l.line());
        PlanError::new(here(line), e.to_string())
    })?;
    if let Some(dir) = &options.checkpoint_dir {
        spec.checkpoints.dir = Some(dir.clone());
    }
    if let Some(interval) = options.checkpoint_interval {
        spec.checkpoints.interval = spec::Dur(interval);
    }
    let locator = Locator::new(&text);
    Planner {
        path: origin,
        base_dir: base_dir.to_owned(),
        locator,
        options,
        spec: &spec,
    }
    .plan()
}

struct Planner<'a> {
    path: &'a Path,
    base_dir: PathBuf,
    locator: Locator,
    options: &'a PlanOptions,
    spec: &'a Spec,
}

/// A node before edges and chains are known.
struct Draft {
    node: Node,
    /// (reference, spec path of the `input` key, logical input).
    inputs: Vec<(String, String, usize)>,
    /// Its key: none, one for every input, or one per named input.
    keys: Vec<KeySelector>,
    partition: Option<PartitionSpec>,
    /// Whether the node may share its input's task.
    chain: bool,
    explicit_parallelism: bool,
    needs_event_time: bool,
    /// Whether the node's side outputs are whatever the pipeline reads (a
    /// process function's: the guest names them at run time).
    open_side_ports: bool,
    /// Its inputs whose records go to every subtask.
    broadcast_inputs: &'static [usize],
    /// Its key only routes records (a sink that must see each key in one
    /// subtask): at parallelism 1 there is nothing to route.
    key_routes_only: bool,
}

/// Follows changelogs (records that update or delete earlier ones) from the
/// sources that read them to every node they reach: a node that would take
/// a retraction for one more row is a plan error naming it and the node the
/// changelog comes from.
fn check_changelogs(
    drafts: &mut [Draft],
    edges: &[EdgeRef],
    order: &[usize],
) -> Result<(), PlanError> {
    use crate::runtime::operator::ChangelogInput;
    // Per node: the node its output's changelog comes from, if it is one.
    let mut from: Vec<Option<usize>> = vec![None; drafts.len()];
    for &n in order {
        let d = &drafts[n];
        let changelog_input = edges
            .iter()
            .filter(|e| e.2 == n && e.1 == crate::runtime::operator::MAIN_PORT)
            .find_map(|e| from[e.0]);
        from[n] = match &d.node.kind {
            NodeKind::Source { factory, .. } => factory.emits_changelog().then_some(n),
            NodeKind::Operator(f) => match (changelog_input, f.changelog()) {
                (Some(c), ChangelogInput::Refused) => {
                    let what = if d.node.kind.is_sink() {
                        "is append-only"
                    } else {
                        "takes inserts only"
                    };
                    return Err(PlanError::new(
                        d.node.location.clone(),
                        format!(
                            "`{}` ({}) {what}, but its input is the changelog (updates and deletes) of `{}`: it would read each retraction as one more row; feed it to a node that applies changes (a `postgres` sink on a table with a primary key, a `group_aggregate`, a Kafka sink with `upsert: true`, a `stdout` sink with `changelog: true`)",
                            d.node.uid,
                            d.node.kind.name(),
                            drafts[c].node.uid
                        ),
                    ));
                }
                (Some(c), ChangelogInput::Kept) => Some(c),
                _ if f.emits_changelog() => Some(n),
                _ => None,
            },
        };
    }
    for (d, f) in drafts.iter_mut().zip(&from) {
        d.node.changelog = f.is_some();
    }
    Ok(())
}

impl Planner<'_> {
    fn at(&self, spec_path: &str, node: Option<&str>) -> Location {
        Location {
            file: self.path.to_owned(),
            line: self.locator.line(spec_path),
            node: node.map(str::to_owned),
        }
    }

    fn err(&self, spec_path: &str, node: Option<&str>, message: impl Into<String>) -> PlanError {
        PlanError::new(self.at(spec_path, node), message)
    }

    /// Checks that a host path the spec names is one the job may use.
    fn confine(&self, spec_path: &str, node: Option<&str>, path: &Path) -> Result<(), PlanError> {
        match &self.options.allowed_dirs {
            Some(allowed) => allowed
                .check(path, &self.base_dir)
                .map_err(|m| self.err(spec_path, node, m)),
            None => Ok(()),
        }
    }

    /// Checks the `path` of a file source or sink.
    fn confine_connector(
        &self,
        spec_path: &str,
        node: Option<&str>,
        connector: &spec::ConnectorSpec,
    ) -> Result<(), PlanError> {
        if connector.kind != "file" {
            return Ok(());
        }
        match connector.options.get("path") {
            Some(serde_yaml::Value::String(path)) => {
                self.confine(&format!("{spec_path}.path"), node, Path::new(path))
            }
            _ => Ok(()),
        }
    }

    /// Plans the spec in passes: settings, nodes, edges, order and event
    /// time, parallelism, partitioning, chains.
    fn plan(self) -> Result<Pipeline, PlanError> {
        self.check_settings()?;
        let mut drafts = self.drafts()?;
        self.check_uids(&drafts)?;
        let edge_refs = self.connect(&mut drafts)?;
        let order = self.topological(&drafts, &edge_refs)?;
        self.check_event_time(&drafts, &edge_refs, &order)?;
        check_changelogs(&mut drafts, &edge_refs, &order)?;
        self.parallelism(&mut drafts)?;
        let edges = self.partitioning(&drafts, &edge_refs)?;
        let chains = chains(&drafts, &edges, &order);
        let spec = self.spec;
        Ok(Pipeline {
            name: self.job_name(),
            spec_path: self.path.to_owned(),
            nodes: drafts.into_iter().map(|d| d.node).collect(),
            edges,
            chains,
            settings: Settings {
                state_backend: self.backend()?,
                batch_size: spec.batch_size.max(1),
                buffer_timeout: spec.buffer_timeout.0,
                channel_capacity: spec.channel_capacity.max(1),
                max_parallelism: spec.max_parallelism,
                checkpoints: self.checkpoints(),
                source_rate: self.options.source_rate,
                restart: self.restart()?,
            },
            has_dead_letter: spec.dead_letter.is_some(),
        })
    }

    /// The pipeline-wide settings that nodes do not check.
    fn check_settings(&self) -> Result<(), PlanError> {
        let spec = self.spec;
        if spec.parallelism == 0 {
            return Err(self.err("parallelism", None, "parallelism must be at least 1"));
        }
        if spec.max_parallelism == 0 || spec.max_parallelism > 32768 {
            return Err(self.err(
                "max_parallelism",
                None,
                "max_parallelism must be in 1..=32768",
            ));
        }
        if spec.sources.is_empty() {
            return Err(self.err("sources", None, "a pipeline needs at least one source"));
        }
        if spec.sinks.is_empty() {
            return Err(self.err("sinks", None, "a pipeline needs at least one sink"));
        }
        if let Some(dir) = spec.checkpoints.dir.as_deref() {
            self.confine("checkpoints.dir", None, Path::new(dir.trim()))?;
        }
        if let Some(dir) = &spec.state.dir {
            self.confine("state.dir", None, dir)?;
        }
        Ok(())
    }

    /// One draft per node: sources, operators, sinks, then the dead-letter
    /// sink if there is one.
    fn drafts(&self) -> Result<Vec<Draft>, PlanError> {
        let spec = self.spec;
        // The operators' shapes first: a misspelt key is the first thing
        // to say.
        let kinds = (spec.operators.iter().enumerate())
            .map(|(i, o)| self.kind_of(i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let mut drafts = Vec::new();
        for (i, s) in spec.sources.iter().enumerate() {
            drafts.push(self.source(i, s)?);
        }
        for ((i, o), kind) in spec.operators.iter().enumerate().zip(kinds) {
            drafts.push(self.operator(i, o, kind)?);
        }
        for (i, s) in spec.sinks.iter().enumerate() {
            let p = format!("sinks[{i}]");
            let inputs = self.inputs(&p, &s.uid, s.input.as_deref(), &s.inputs)?;
            let mut sink = self.sink(&p, &s.uid, &s.connector, s.parallelism, inputs)?;
            sink.chain = s.chain;
            drafts.push(sink);
        }
        if let Some(dl) = &spec.dead_letter {
            drafts.push(self.sink("dead_letter", "dead_letter", dl, None, Vec::new())?);
        }
        Ok(drafts)
    }

    /// The edges `(from, port, to)` the nodes' inputs name, and one from
    /// every node to the dead-letter sink.
    fn connect(&self, drafts: &mut [Draft]) -> Result<Vec<EdgeRef>, PlanError> {
        let index: HashMap<String, usize> = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| (d.node.uid.clone(), i))
            .collect();
        let mut edge_refs: Vec<EdgeRef> = Vec::new();
        for to in 0..drafts.len() {
            let inputs = drafts[to].inputs.clone();
            let to_uid = drafts[to].node.uid.clone();
            for (reference, spec_path, logical) in &inputs {
                let (uid, port_name) = match reference.split_once('.') {
                    Some((u, p)) => (u, Some(p)),
                    None => (reference.as_str(), None),
                };
                let Some(from) = index.get(uid).copied() else {
                    let mut known: Vec<&str> = index.keys().map(String::as_str).collect();
                    known.sort();
                    return Err(self.err(
                        spec_path,
                        Some(&to_uid),
                        format!("unknown input `{uid}` (nodes: {})", known.join(", ")),
                    ));
                };
                if drafts[from].node.kind.is_sink() {
                    return Err(self.err(
                        spec_path,
                        Some(&to_uid),
                        format!("`{uid}` is a sink: it has no output to read"),
                    ));
                }
                let port = match port_name {
                    None => crate::runtime::operator::MAIN_PORT,
                    Some(p) => self.side_port(&mut drafts[from], p, spec_path, &to_uid)?,
                };
                edge_refs.push((from, port, to, *logical));
            }
        }
        if self.spec.dead_letter.is_some() {
            let dl = drafts.len() - 1;
            for from in 0..dl {
                edge_refs.push((from, crate::runtime::operator::DEAD_LETTER_PORT, dl, 0));
            }
        }
        Ok(edge_refs)
    }

    /// The port of side output `name` of `from`, which `to_uid` reads.
    fn side_port(
        &self,
        from: &mut Draft,
        name: &str,
        spec_path: &str,
        to_uid: &str,
    ) -> Result<usize, PlanError> {
        let side = &mut from.node.side_ports;
        if let Some(i) = side.iter().position(|s| s == name) {
            return Ok(crate::runtime::operator::FIRST_SIDE_PORT + i);
        }
        // A process function's side outputs are whatever the pipeline
        // reads: the guest names them at run time.
        if from.open_side_ports {
            side.push(name.to_owned());
            return Ok(crate::runtime::operator::FIRST_SIDE_PORT + side.len() - 1);
        }
        Err(self.err(
            spec_path,
            Some(to_uid),
            format!(
                "`{}` has no side output `{name}`{}",
                from.node.uid,
                if side.is_empty() {
                    String::from(" (it has none)")
                } else {
                    format!(" (it has: {})", side.join(", "))
                }
            ),
        ))
    }

    /// Every node's parallelism: its own, else the pipeline's (a source's
    /// at most its number of splits).
    fn parallelism(&self, drafts: &mut [Draft]) -> Result<(), PlanError> {
        let spec = self.spec;
        for d in drafts {
            if !d.explicit_parallelism {
                d.node.parallelism = match &d.node.kind {
                    NodeKind::Source { factory, .. } => match factory.splits() {
                        Some(n) => spec.parallelism.min(n.max(1) as u32),
                        None => spec.parallelism,
                    },
                    _ => spec.parallelism,
                };
            }
            if !d.keys.is_empty() && d.node.parallelism > spec.max_parallelism {
                return Err(PlanError::new(
                    d.node.location.clone(),
                    format!(
                        "parallelism {} exceeds max_parallelism {}",
                        d.node.parallelism, spec.max_parallelism
                    ),
                ));
            }
        }
        Ok(())
    }

    /// How each edge distributes records over its target's subtasks.
    fn partitioning(
        &self,
        drafts: &[Draft],
        edge_refs: &[EdgeRef],
    ) -> Result<Vec<Edge>, PlanError> {
        let mut edges = Vec::new();
        for &(from, port, to, input) in edge_refs {
            let (pf, pt) = (drafts[from].node.parallelism, drafts[to].node.parallelism);
            let d = &drafts[to];
            let key = match d.keys.len() {
                _ if d.key_routes_only && pt == 1 => None,
                1 => d.keys.first(),
                _ => d.keys.get(input),
            };
            let partitioning = match (key, d.partition) {
                _ if d.broadcast_inputs.contains(&input) => Partitioning::Broadcast,
                (Some(key), _) => Partitioning::KeyHash {
                    key: key.clone(),
                    max_parallelism: self.spec.max_parallelism,
                },
                (None, Some(PartitionSpec::Forward)) if pf != pt => {
                    return Err(PlanError::new(
                        d.node.location.clone(),
                        format!(
                            "`partition: forward` needs equal parallelism, but `{}` has {pf} and `{}` has {pt}",
                            drafts[from].node.uid, d.node.uid
                        ),
                    ));
                }
                (None, Some(PartitionSpec::Broadcast)) => Partitioning::Broadcast,
                (None, Some(PartitionSpec::Rebalance)) => Partitioning::Rebalance,
                _ if pf == pt => Partitioning::Forward,
                _ => Partitioning::Rebalance,
            };
            edges.push(Edge {
                from,
                port,
                to,
                input,
                partitioning,
            });
        }
        Ok(edges)
    }

    fn check_uids(&self, drafts: &[Draft]) -> Result<(), PlanError> {
        let mut seen: HashMap<&str, &Location> = HashMap::new();
        for d in drafts {
            let uid = d.node.uid.as_str();
            if uid.is_empty()
                || !uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(PlanError::new(
                    d.node.location.clone(),
                    format!("uid `{uid}`: use letters, digits, `_` and `-` only"),
                ));
            }
            if let Some(first) = seen.insert(uid, &d.node.location) {
                return Err(PlanError::new(
                    d.node.location.clone(),
                    format!(
                        "uid `{uid}` is used twice (first at line {})",
                        first.line.map_or("?".into(), |l| l.to_string())
                    ),
                ));
            }
        }
        Ok(())
    }

    fn topological(&self, drafts: &[Draft], edges: &[EdgeRef]) -> Result<Vec<usize>, PlanError> {
        let n = drafts.len();
        let mut indegree = vec![0usize; n];
        for &(_, _, to, _) in edges {
            indegree[to] += 1;
        }
        let mut ready: Vec<usize> = (0..n).rev().filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for &(from, _, to, _) in edges {
                if from == i {
                    indegree[to] -= 1;
                    if indegree[to] == 0 {
                        ready.push(to);
                    }
                }
            }
        }
        if order.len() < n {
            let stuck = (0..n)
                .find(|&i| indegree[i] > 0)
                .expect("a node in a cycle");
            return Err(PlanError::new(
                drafts[stuck].node.location.clone(),
                "the inputs form a cycle".to_owned(),
            ));
        }
        Ok(order)
    }

    fn check_event_time(
        &self,
        drafts: &[Draft],
        edges: &[EdgeRef],
        order: &[usize],
    ) -> Result<(), PlanError> {
        let mut timed = vec![false; drafts.len()];
        for &n in order {
            let d = &drafts[n];
            let inputs: Vec<usize> = edges
                .iter()
                .filter(|e| e.2 == n && e.1 != crate::runtime::operator::DEAD_LETTER_PORT)
                .map(|e| e.0)
                .collect();
            // A window's output is timed by its windows' ends.
            timed[n] = match &d.node.kind {
                NodeKind::Source { event_time, .. } => event_time.is_some(),
                _ if d.needs_event_time => true,
                _ => !inputs.is_empty() && inputs.iter().all(|&i| timed[i]),
            };
            if d.needs_event_time
                && let Some(&untimed) = inputs.iter().find(|&&i| !timed[i])
            {
                return Err(PlanError::new(
                    d.node.location.clone(),
                    format!(
                        "a window needs event time, but its input `{}` has none: give the source an `event_time`",
                        drafts[untimed].node.uid
                    ),
                ));
            }
        }
        Ok(())
    }

    fn inputs(
        &self,
        spec_path: &str,
        uid: &str,
        input: Option<&str>,
        inputs: &[String],
    ) -> Result<Vec<(String, String, usize)>, PlanError> {
        let mut refs: Vec<(String, String, usize)> = input
            .map(|i| (i.to_owned(), format!("{spec_path}.input"), 0))
            .into_iter()
            .collect();
        refs.extend(
            inputs
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), format!("{spec_path}.inputs[{i}]"), 0)),
        );
        if refs.is_empty() {
            return Err(self.err(spec_path, Some(uid), "no `input` (or `inputs`) given"));
        }
        Ok(refs)
    }

    fn source(&self, i: usize, s: &spec::SourceSpec) -> Result<Draft, PlanError> {
        let p = format!("sources[{i}]");
        let node = Some(s.uid.as_str());
        self.confine_connector(&p, node, &s.connector)?;
        let context = connectors::SourceContext {
            checkpoints: self.checkpoints(),
        };
        let factory =
            connectors::source(&s.connector.kind, s.connector.options.clone(), context)
                .map_err(|m| self.err(&p, node, format!("source `{}`: {m}", s.connector.kind)))?;
        let event_time = match &s.event_time {
            None => None,
            Some(et) => {
                let ep = format!("{p}.event_time");
                let timestamp = match &et.timestamp {
                    Some(t) => {
                        if !factory.format().is_json() {
                            return Err(self.err(
                                &ep,
                                node,
                                "an event_time `timestamp` field needs `format: json` (or `debezium-json`)",
                            ));
                        }
                        Some(
                            Pointer::parse(t)
                                .map_err(|m| self.err(&format!("{ep}.timestamp"), node, m))?,
                        )
                    }
                    None if factory.record_timestamps() => None,
                    None => {
                        return Err(self.err(
                            &ep,
                            node,
                            format!(
                                "event_time needs `timestamp` (a JSON pointer to epoch milliseconds): a `{}` source reads no record timestamps",
                                s.connector.kind
                            ),
                        ));
                    }
                };
                let w = &et.watermark;
                Some(EventTime {
                    timestamp,
                    strategy: WatermarkStrategy::new(
                        w.strategy.into(),
                        w.max_out_of_orderness.millis(),
                        w.emit.into(),
                        w.interval.millis(),
                        et.idleness.map(|d| d.millis()),
                    ),
                })
            }
        };
        Ok(Draft {
            node: Node {
                uid: s.uid.clone(),
                kind: NodeKind::Source {
                    factory,
                    event_time,
                },
                parallelism: s.parallelism.unwrap_or(0),
                location: self.at(&p, node),
                side_ports: Vec::new(),
                input_selection: Default::default(),
                changelog: false,
            },
            inputs: Vec::new(),
            keys: Vec::new(),
            partition: None,
            chain: true,
            explicit_parallelism: self.explicit(&p, node, s.parallelism)?,
            needs_event_time: false,
            open_side_ports: false,
            broadcast_inputs: &[],
            key_routes_only: false,
        })
    }

    fn explicit(
        &self,
        p: &str,
        node: Option<&str>,
        parallelism: Option<u32>,
    ) -> Result<bool, PlanError> {
        match parallelism {
            Some(0) => Err(self.err(
                &format!("{p}.parallelism"),
                node,
                "parallelism must be at least 1",
            )),
            Some(_) => Ok(true),
            None => Ok(false),
        }
    }

    fn sink(
        &self,
        p: &str,
        uid: &str,
        connector: &spec::ConnectorSpec,
        parallelism: Option<u32>,
        inputs: Vec<(String, String, usize)>,
    ) -> Result<Draft, PlanError> {
        let node = Some(uid);
        self.confine_connector(p, node, connector)?;
        let checkpoints = self.checkpoints();
        let context = connectors::SinkContext {
            exactly_once: checkpoints.is_some(),
            job: self.job_name(),
            uid: uid.to_owned(),
            checkpoints,
            buffer_timeout: self.spec.buffer_timeout.0,
        };
        let factory = connectors::sink(&connector.kind, connector.options.clone(), context)
            .map_err(|m| self.err(p, node, format!("sink `{}`: {m}", connector.kind)))?;
        let key = factory.input_key();
        Ok(Draft {
            node: Node {
                uid: uid.to_owned(),
                kind: NodeKind::Operator(factory),
                parallelism: parallelism.unwrap_or(0),
                location: self.at(p, node),
                side_ports: Vec::new(),
                input_selection: Default::default(),
                changelog: false,
            },
            inputs,
            // An upsert sink sees each primary key in one subtask.
            keys: key.into_iter().collect(),
            partition: None,
            chain: true,
            explicit_parallelism: self.explicit(p, node, parallelism)?,
            needs_event_time: false,
            open_side_ports: false,
            broadcast_inputs: &[],
            key_routes_only: true,
        })
    }

    /// The inputs of an operator: for a kind with named inputs one per name
    /// (`input: { left: a, right: b }`, logical input = the name's index),
    /// otherwise `input` and `inputs`, all logical input 0 (a union).
    fn operator_inputs(
        &self,
        p: &str,
        o: &spec::OperatorSpec,
        kind: &dyn OperatorKind,
    ) -> Result<Vec<(String, String, usize)>, PlanError> {
        let node = Some(o.uid.as_str());
        let names = kind.inputs();
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| format!("{n}: …"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (&o.input, names.is_empty()) {
            (Some(spec::InputSpec::Named(map)), false) => {
                if !o.inputs.is_empty() {
                    return Err(self.err(
                        &format!("{p}.inputs"),
                        node,
                        format!(
                            "{} names its inputs in `input`; `inputs` is for unions",
                            kind.what()
                        ),
                    ));
                }
                self.only_inputs(&format!("{p}.input"), node, kind, map.keys())?;
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| match map.get(*name) {
                        Some(r) => Ok((r.clone(), format!("{p}.input.{name}"), i)),
                        None => Err(self.err(
                            &format!("{p}.input"),
                            node,
                            format!(
                                "input `{name}` is missing: write `input: {{ {} }}`",
                                list(names)
                            ),
                        )),
                    })
                    .collect()
            }
            (_, false) => Err(self.err(
                &format!("{p}.input"),
                node,
                format!(
                    "{} has named inputs: write `input: {{ {} }}`",
                    kind.what(),
                    list(names)
                ),
            )),
            (Some(spec::InputSpec::Named(_)), true) => Err(self.err(
                &format!("{p}.input"),
                node,
                format!(
                    "{} has one input: write `input: NODE` (or `inputs: [A, B]` for their union)",
                    kind.what()
                ),
            )),
            (one, true) => {
                let one = match one {
                    Some(spec::InputSpec::One(r)) => Some(r.as_str()),
                    _ => None,
                };
                self.inputs(p, &o.uid, one, &o.inputs)
            }
        }
    }

    /// Checks that the names under `path` are inputs of `kind`.
    fn only_inputs<'n>(
        &self,
        path: &str,
        node: Option<&str>,
        kind: &dyn OperatorKind,
        mut names: impl Iterator<Item = &'n String>,
    ) -> Result<(), PlanError> {
        let inputs = kind.inputs();
        match names.find(|n| !inputs.contains(&n.as_str())) {
            Some(other) => Err(self.err(
                &format!("{path}.{other}"),
                node,
                format!(
                    "`{other}` is not an input of {} (its inputs: {})",
                    kind.what(),
                    inputs.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// An operator's key: none, one for all its inputs, or for a kind with
    /// named inputs one per input (`key_by: { left: /a, right: /b }`), in
    /// input order.
    fn operator_keys(
        &self,
        p: &str,
        o: &spec::OperatorSpec,
        kind: &dyn OperatorKind,
    ) -> Result<Vec<KeySelector>, PlanError> {
        let node = Some(o.uid.as_str());
        let kp = format!("{p}.key_by");
        match &o.key_by {
            None => Ok(Vec::new()),
            Some(KeyBySpec::PerInput(map)) => {
                let names = kind.inputs();
                if names.is_empty() {
                    return Err(self.err(
                        &kp,
                        node,
                        format!(
                            "{} has one input: give `key_by` one JSON pointer (or a list for a composite key)",
                            kind.what()
                        ),
                    ));
                }
                self.only_inputs(&kp, node, kind, map.keys())?;
                let broadcast = kind.broadcast_inputs();
                if let Some(&i) = broadcast.iter().find(|&&i| map.contains_key(names[i])) {
                    return Err(self.err(
                        &format!("{kp}.{}", names[i]),
                        node,
                        format!(
                            "input `{}` is broadcast to every subtask: it takes no key",
                            names[i]
                        ),
                    ));
                }
                names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !broadcast.contains(i))
                    .map(|(_, name)| match map.get(*name) {
                        Some(k) => self.key_selector(&format!("{kp}.{name}"), node, k),
                        None => Err(self.err(
                            &kp,
                            node,
                            format!("no key for input `{name}`: give every input its key, or one key for all"),
                        )),
                    })
                    .collect()
            }
            Some(k) => Ok(vec![self.key_selector(&kp, node, k)?]),
        }
    }

    /// The kind of operator `i`, found in the registry by the kind keys it
    /// sets.
    fn kind_of(&self, i: usize, o: &spec::OperatorSpec) -> Result<&dyn OperatorKind, PlanError> {
        let p = format!("operators[{i}]");
        let kinds = &self.options.kinds;
        let known = kinds.keys();
        let mut keys = Vec::new();
        for k in o.kind.keys() {
            match k.as_str() {
                Some(k) if known.contains(&k) => keys.push(k),
                _ => {
                    let name = k.as_str().map_or_else(|| format!("{k:?}"), str::to_owned);
                    let expected: Vec<String> = COMMON_OPERATOR_KEYS
                        .iter()
                        .chain(&known)
                        .map(|k| format!("`{k}`"))
                        .collect();
                    return Err(self.err(
                        &format!("{p}.{name}"),
                        None,
                        format!(
                            "{p}: unknown field `{name}`, expected one of {}",
                            expected.join(", ")
                        ),
                    ));
                }
            }
        }
        kinds.kind_of(&keys).map_err(|(key, why)| {
            let at = if key.is_empty() {
                p.clone()
            } else {
                format!("{p}.{key}")
            };
            self.err(&at, Some(&o.uid), why)
        })
    }

    /// An operator: the keys every operator has, then the keys of its kind,
    /// which plans itself.
    fn operator(
        &self,
        i: usize,
        o: &spec::OperatorSpec,
        kind: &dyn OperatorKind,
    ) -> Result<Draft, PlanError> {
        let p = format!("operators[{i}]");
        let node = Some(o.uid.as_str());
        let inputs = self.operator_inputs(&p, o, kind)?;
        let keys = self.operator_keys(&p, o, kind)?;
        if !keys.is_empty() && o.partition.is_some() {
            return Err(self.err(
                &format!("{p}.partition"),
                node,
                "`partition` and `key_by` exclude each other",
            ));
        }
        let planned = kind.plan(&OperatorContext {
            planner: self,
            path: &p,
            spec: o,
            keys: &keys,
        })?;
        Ok(Draft {
            node: Node {
                uid: o.uid.clone(),
                kind: NodeKind::Operator(planned.factory),
                parallelism: o.parallelism.unwrap_or(0),
                location: self.at(&p, node),
                side_ports: planned.side_ports,
                input_selection: o.input_selection,
                changelog: false,
            },
            inputs,
            keys,
            partition: o.partition,
            chain: o.chain,
            explicit_parallelism: self.explicit(&p, node, o.parallelism)?,
            needs_event_time: planned.needs_event_time,
            open_side_ports: planned.open_side_ports,
            broadcast_inputs: kind.broadcast_inputs(),
            key_routes_only: false,
        })
    }

    /// The job's name: the spec's, else its file's stem.
    fn job_name(&self) -> String {
        self.spec.name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into())
        })
    }

    fn checkpoints(&self) -> Option<crate::checkpoint::CheckpointSettings> {
        let c = &self.spec.checkpoints;
        let dir = c.dir.as_deref().map(str::trim).filter(|d| !d.is_empty())?;
        Some(crate::checkpoint::CheckpointSettings {
            dir: dir.into(),
            interval: c.interval.0.max(std::time::Duration::from_millis(1)),
            min_pause: c.min_pause.0,
            timeout: c.timeout.0,
            retained: c.retained.max(1),
            tolerable_failures: c.tolerable_failures,
        })
    }

    fn restart(&self) -> Result<crate::checkpoint::RestartStrategy, PlanError> {
        use crate::checkpoint::RestartStrategy;
        use spec::RestartKind;
        let r = &self.spec.restart;
        let checkpointing = self.checkpoints().is_some();
        let kind = r.strategy.unwrap_or(if checkpointing {
            RestartKind::FixedDelay
        } else {
            RestartKind::None
        });
        let attempts = r.attempts.unwrap_or(3);
        let delay = r.delay.map_or(std::time::Duration::from_secs(1), |d| d.0);
        Ok(match kind {
            RestartKind::None => RestartStrategy::None,
            RestartKind::FixedDelay => RestartStrategy::FixedDelay { attempts, delay },
            RestartKind::Exponential => {
                let multiplier = r.multiplier.unwrap_or(2.0);
                if multiplier.is_nan() || multiplier < 1.0 {
                    return Err(self.err(
                        "restart.multiplier",
                        None,
                        "the multiplier must be at least 1",
                    ));
                }
                RestartStrategy::Exponential {
                    attempts,
                    initial: delay,
                    max: r
                        .max_delay
                        .map_or(std::time::Duration::from_secs(60), |d| d.0),
                    multiplier,
                }
            }
        })
    }

    fn backend(&self) -> Result<crate::state::Backend, PlanError> {
        let st = &self.spec.state;
        Ok(match st.backend {
            spec::StateBackendKind::Memory => {
                if st.timers == Some(spec::TimerStoreKind::Rocksdb) {
                    return Err(self.err(
                        "state.timers",
                        None,
                        "`timers: rocksdb` needs `backend: rocksdb` (the heap backend keeps timers on the heap)",
                    ));
                }
                crate::state::Backend::Memory {
                    limit: st.memory_limit.0,
                }
            }
            spec::StateBackendKind::Rocksdb => crate::state::Backend::RocksDb {
                dir: st
                    .dir
                    .as_ref()
                    .map(|d| self.base_dir.join(d))
                    .unwrap_or_else(std::env::temp_dir),
                cache: st.rocksdb_cache.0,
                write_buffer: st.rocksdb_write_buffer.0,
                heap_timers: (st.timers == Some(spec::TimerStoreKind::Heap))
                    .then_some(st.memory_limit.0),
            },
        })
    }

    fn key_selector(
        &self,
        p: &str,
        node: Option<&str>,
        k: &KeyBySpec,
    ) -> Result<KeySelector, PlanError> {
        let pointers = k.pointers();
        if pointers.is_empty() || pointers.len() > 64 {
            return Err(self.err(p, node, "key_by takes 1 to 64 JSON pointers"));
        }
        let parsed = pointers
            .iter()
            .map(|s| Pointer::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| self.err(p, node, m))?;
        Ok(KeySelector::new(parsed))
    }

    fn find_module(&self, name: &str) -> Result<PathBuf, String> {
        locate_module(name, &self.base_dir, self.options)
    }
}

/// The file of module `name`: in the store, when there is one; else beside
/// the spec (`base_dir`) or in a folder of the module path.
fn locate_module(name: &str, base_dir: &Path, options: &PlanOptions) -> Result<PathBuf, String> {
    if let Some(store) = &options.store {
        return store.find(name);
    }
    let given = Path::new(name);
    let mut tried = Vec::new();
    let candidates = std::iter::once(base_dir.join(given))
        .chain(options.module_path.iter().map(|d| d.join(given)));
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(format!(
        "module `{name}` not found (looked at: {}); build the operator crates with scripts/build-guests.sh and point SLUICE_MODULE_PATH at their folder",
        tried.join(", ")
    ))
}

/// The SQL functions module `name` offers (found as a spec in `base_dir`
/// would find it, run with the default limits): what `sluice sql` plans a
/// script's `CREATE FUNCTION`s with.
pub fn sql_function_signatures(
    name: &str,
    base_dir: &Path,
    options: &PlanOptions,
) -> Result<Vec<crate::runtime::function::Signature>, String> {
    let file = locate_module(name, base_dir, options)?;
    let module = wasm::load(&file, World::SqlFunction)?;
    let defaults = spec::WasmDefaults::default();
    let settings = wasm::InstanceSettings::plain(
        "sql-functions",
        base_dir,
        defaults.memory_limit.0,
        defaults.call_timeout.0,
    );
    let f = wasm::function::WasmFunctions::new(module, Arc::new(settings))?;
    Ok(crate::runtime::function::FunctionsFactory::signatures(&f).to_vec())
}

/// Chains: a node joins its upstream's chain when its only input is a
/// forward edge (and it does not ask for a task of its own).
fn chains(drafts: &[Draft], edges: &[Edge], order: &[usize]) -> Vec<Chain> {
    let mut chain_of: Vec<Option<usize>> = vec![None; drafts.len()];
    let mut chains: Vec<Chain> = Vec::new();
    for &n in order {
        let inputs: Vec<&Edge> = edges.iter().filter(|e| e.to == n).collect();
        let joined = match inputs.as_slice() {
            [e] if drafts[n].chain && matches!(e.partitioning, Partitioning::Forward) => {
                chain_of[e.from]
            }
            _ => None,
        };
        match joined {
            Some(c) => {
                chains[c].nodes.push(n);
                chain_of[n] = Some(c);
            }
            None => {
                chains.push(Chain {
                    nodes: vec![n],
                    parallelism: drafts[n].node.parallelism,
                });
                chain_of[n] = Some(chains.len() - 1);
            }
        }
    }
    chains
}

/// An edge by node indices: (from, port, to, logical input of `to`).
type EdgeRef = (usize, usize, usize, usize);

/// The keys of an operator that are not its kind's.
const COMMON_OPERATOR_KEYS: [&str; 8] = [
    "uid",
    "input",
    "inputs",
    "parallelism",
    "partition",
    "chain",
    "key_by",
    "input_selection",
];

/// The operator kinds `sluice` knows, in the order errors list their keys.
/// A new kind is one line here.
pub fn builtin_kinds() -> Registry {
    Registry::new(vec![
        Arc::new(wasm::transform::TransformKind),
        Arc::new(wasm::process::ProcessKind),
        Arc::new(wasm::process::CoProcessKind),
        Arc::new(wasm::process::BroadcastProcessKind),
        Arc::new(window::plan::WindowOperatorKind),
        Arc::new(wasm::enricher::EnricherKind),
        Arc::new(join::interval::IntervalJoinKind),
        Arc::new(join::temporal::TemporalJoinKind),
        Arc::new(join::window::WindowJoinKind),
        Arc::new(group::GroupAggregateKind),
        Arc::new(connectors::postgres::LookupKind),
        Arc::new(crate::sql::operator::SqlKind),
    ])
}

/// The planner's services to the kind planning one operator.
struct OperatorContext<'a> {
    planner: &'a Planner<'a>,
    /// `operators[i]`.
    path: &'a str,
    spec: &'a spec::OperatorSpec,
    /// One key for all inputs, or one per named input.
    keys: &'a [KeySelector],
}

impl OperatorContext<'_> {
    fn full_path(&self, path: &str) -> String {
        if path.is_empty() {
            self.path.to_owned()
        } else {
            format!("{}.{path}", self.path)
        }
    }
}

impl PlanContext for OperatorContext<'_> {
    fn uid(&self) -> &str {
        &self.spec.uid
    }

    fn value(&self, path: &str) -> Option<&serde_yaml::Value> {
        let mut parts = path.split('.');
        let mut value = self.spec.kind.get(parts.next()?)?;
        for part in parts {
            value = value.as_mapping()?.get(part)?;
        }
        Some(value)
    }

    fn at(&self, path: &str) -> Location {
        self.planner
            .at(&self.full_path(path), Some(self.spec.uid.as_str()))
    }

    fn key(&self) -> Option<&KeySelector> {
        self.keys.first()
    }

    fn input_key(&self, input: usize) -> Option<&KeySelector> {
        match self.keys.len() {
            1 => self.keys.first(),
            _ => self.keys.get(input),
        }
    }

    fn max_parallelism(&self) -> u32 {
        self.planner.spec.max_parallelism
    }

    fn backend(&self) -> Result<crate::state::Backend, PlanError> {
        self.planner.backend()
    }

    fn base_dir(&self) -> &Path {
        &self.planner.base_dir
    }

    fn confine(&self, path: &str, host: &Path) -> Result<(), PlanError> {
        self.planner
            .confine(&self.full_path(path), Some(self.uid()), host)
    }

    fn find_module(&self, name: &str) -> Result<PathBuf, String> {
        self.planner.find_module(name)
    }

    fn module_limits(&self) -> (u64, Duration) {
        let w = &self.planner.spec.wasm;
        (w.memory_limit.0, w.call_timeout.0)
    }

    fn sql_aggregator(&self, path: &str) -> Result<Arc<dyn AggregatorFactory>, PlanError> {
        let spec = kind::field::<crate::sql::aggregate::SqlAggSpec>(self, path)?
            .ok_or_else(|| kind::error(self, path, "missing"))?;
        let functions =
            crate::sql::udf::plan_functions(self, &format!("{path}.functions"), &spec.functions)?;
        Ok(Arc::new(
            crate::sql::aggregate::SqlAggregates::new(&spec, functions)
                .map_err(|m| kind::error(self, path, m))?,
        ))
    }

    fn function_module(
        &self,
        path: &str,
        name: &str,
    ) -> Result<Arc<dyn crate::runtime::function::FunctionsFactory>, PlanError> {
        let spec = wasm::plan::WasmSpec {
            module: name.to_owned(),
            ..Default::default()
        };
        let guest = wasm::plan::guest_of(self, path, spec, World::SqlFunction)?;
        let functions = wasm::function::WasmFunctions::new(guest.module, guest.settings)
            .map_err(|m| kind::error(self, path, format!("module `{name}`: {m}")))?;
        Ok(Arc::new(functions))
    }

    fn guest_aggregator(
        &self,
        path: &str,
        full_window: bool,
    ) -> Result<Arc<dyn AggregatorFactory>, PlanError> {
        Ok(Arc::new(if full_window {
            let guest = wasm::plan::guest(self, path, World::WindowFunction)?;
            wasm::GuestAggregator::window_function(guest)
        } else {
            let guest = wasm::plan::guest(self, path, World::Aggregate)?;
            wasm::GuestAggregator::aggregate(guest)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans `spec` (no variables, modules nowhere).
    fn plan(spec: &str) -> Result<Pipeline, PlanError> {
        load_text(
            spec,
            Path::new("t.yaml"),
            Path::new("."),
            &|_| None,
            &PlanOptions::default(),
        )
    }

    fn err(spec: &str) -> PlanError {
        match plan(spec) {
            Ok(_) => panic!("planned a broken spec:\n{spec}"),
            Err(e) => e,
        }
    }

    #[test]
    fn forward_edges_of_equal_parallelism_chain_and_other_edges_do_not() {
        let p = plan(
            "parallelism: 2\n\
             sources: [{ uid: a, type: datagen, count: 10, splits: 2 }]\n\
             sinks:\n\
             \x20 - { uid: out, input: a, type: stdout }\n\
             \x20 - { uid: one, input: a, type: stdout, parallelism: 1 }\n",
        )
        .unwrap();
        let names: Vec<&str> = p.nodes.iter().map(|n| n.kind.name()).collect();
        assert_eq!(names, ["source", "sink", "sink"]);
        // `a` and `out` share a task; `one` (parallelism 1) is its own,
        // reached by rebalancing.
        assert_eq!(p.chains.len(), 2);
        assert_eq!(p.chains[0].nodes, [0, 1]);
        assert_eq!(
            (p.chains[1].nodes.clone(), p.chains[1].parallelism),
            (vec![2], 1)
        );
        let to_one = p.edges.iter().find(|e| e.to == 2).unwrap();
        assert!(matches!(to_one.partitioning, Partitioning::Rebalance));
        assert!(!p.is_chained(to_one));
        assert!(
            p.describe().contains("a -> one [rebalance]"),
            "{}",
            p.describe()
        );
    }

    #[test]
    fn a_sink_asked_not_to_chain_gets_a_task_of_its_own() {
        let spec = |chain: &str| {
            format!(
                "sources: [{{ uid: a, type: datagen, count: 10 }}]\n\
                 sinks: [{{ uid: out, input: a, type: stdout{chain} }}]\n"
            )
        };
        let chained = plan(&spec("")).unwrap();
        assert_eq!(chained.chains.len(), 1);
        let apart = plan(&spec(", chain: false")).unwrap();
        let out = apart.nodes.iter().position(|n| n.uid == "out").unwrap();
        assert_eq!(apart.chains.len(), 2);
        assert_eq!(apart.chains[1].nodes, [out]);
        let into = apart.edges.iter().find(|e| e.to == out).unwrap();
        assert!(matches!(into.partitioning, Partitioning::Forward));
        assert!(!apart.is_chained(into));
    }

    #[test]
    fn a_source_runs_with_at_most_as_many_subtasks_as_splits() {
        let p = plan(
            "parallelism: 4\n\
             sources: [{ uid: a, type: datagen, count: 10, splits: 3 }]\n\
             sinks: [{ uid: out, input: a, type: stdout }]\n",
        )
        .unwrap();
        assert_eq!(p.nodes[0].parallelism, 3);
        assert_eq!(p.nodes[1].parallelism, 4);
        assert_eq!(p.chains.len(), 2, "unequal parallelism: no chain");
    }

    #[test]
    fn a_dead_letter_sink_reads_every_node_from_its_port() {
        let p = plan(
            "sources: [{ uid: a, type: datagen, count: 1 }]\n\
             sinks: [{ uid: out, input: a, type: stdout }]\n\
             dead_letter: { type: stdout }\n",
        )
        .unwrap();
        assert!(p.has_dead_letter);
        let dl = p.nodes.iter().position(|n| n.uid == "dead_letter").unwrap();
        let into: Vec<(usize, usize)> = p
            .edges
            .iter()
            .filter(|e| e.to == dl)
            .map(|e| (e.from, e.port))
            .collect();
        assert_eq!(
            into,
            [
                (0, crate::runtime::operator::DEAD_LETTER_PORT),
                (1, crate::runtime::operator::DEAD_LETTER_PORT)
            ]
        );
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_node() {
        let e = err("sources: [{ uid: a, type: datagen }]\n\
             sinks:\n\
             \x20 - { uid: a, input: a, type: stdout }\n");
        assert_eq!(e.location.line, Some(3));
        assert!(
            e.message
                .contains("uid `a` is used twice (first at line 1)"),
            "{e}"
        );

        let e = err("sources: [{ uid: a, type: datagen }]\n\
             sinks:\n\
             \x20 - { uid: out, input: nope, type: stdout }\n");
        assert_eq!(e.location.node.as_deref(), Some("out"));
        assert!(e.to_string().starts_with("t.yaml:3 (node `out`)"), "{e}");
        assert!(
            e.message.contains("unknown input `nope` (nodes: a, out)"),
            "{e}"
        );

        let e = err("sources: [{ uid: a, type: datagen }]\n\
             sinks: [{ uid: out, input: a, type: nope }]\n");
        assert!(e.message.contains("unknown sink type `nope`"), "{e}");

        let e = err("parallelism: 0\nsources: []\nsinks: []\n");
        assert_eq!(e.location.line, Some(1));
    }

    #[test]
    fn a_window_needs_a_key_and_event_time() {
        let window = "    window: { type: tumbling, size: 1m }\n    aggregate: { native: [{ fn: count }] }\n";
        let e = err(&format!(
            "sources: [{{ uid: a, type: datagen }}]\n\
             operators:\n\
             \x20 - uid: w\n    input: a\n{window}\
             sinks: [{{ uid: out, input: w, type: stdout }}]\n"
        ));
        assert!(e.message.contains("a window needs a `key_by`"), "{e}");
        let e = err(&format!(
            "sources: [{{ uid: a, type: datagen }}]\n\
             operators:\n\
             \x20 - uid: w\n    input: a\n    key_by: /customer_id\n{window}\
             sinks: [{{ uid: out, input: w, type: stdout }}]\n"
        ));
        assert!(e.message.contains("a window needs event time"), "{e}");
        let p = plan(&format!(
            "sources:\n\
             \x20 - {{ uid: a, type: datagen, event_time: {{ timestamp: /event_ts }} }}\n\
             operators:\n\
             \x20 - uid: w\n    input: a\n    key_by: /customer_id\n{window}\
             sinks: [{{ uid: out, input: w.late, type: stdout }}]\n"
        ))
        .unwrap();
        let w = &p.nodes[1];
        assert_eq!(
            (w.kind.name(), w.side_ports.clone()),
            ("window", vec!["late".to_owned()])
        );
        let into_w = p.edges.iter().find(|e| e.to == 1).unwrap();
        assert!(matches!(into_w.partitioning, Partitioning::KeyHash { .. }));
        let late = p.edges.iter().find(|e| e.to == 2).unwrap();
        assert_eq!(p.port_names(1)[late.port], "late");
    }

    /// An operator with `keys` (YAML lines under `  - uid: o`), reading a
    /// timed source.
    fn operator_err(keys: &str) -> PlanError {
        err(&format!(
            "sources: [{{ uid: a, type: datagen, count: 1, event_time: {{ timestamp: /event_ts }} }}]\n\
             operators:\n\
             \x20 - uid: o\n    input: a\n    key_by: /customer_id\n{keys}\
             sinks: [{{ uid: out, input: o, type: stdout }}]\n"
        ))
    }

    #[test]
    fn an_operator_is_of_one_kind_and_says_which_key_does_not_fit() {
        // Two kinds at once: blamed at the second tag's line.
        let e =
            operator_err("    wasm: { module: m.wasm }\n    window: { type: session, gap: 1s }\n");
        assert_eq!(e.location.line, Some(7), "{e}");
        assert!(
            e.message
                .contains("`wasm` (a Wasm transform) and `window` (a window) exclude each other"),
            "{e}"
        );
        // A key of another kind.
        let e = operator_err("    process: { module: m.wasm }\n    output: { key: k }\n");
        assert_eq!(e.location.line, Some(7), "{e}");
        assert!(
            e.message
                .contains("`output` does not go with `process` (a keyed process function)"),
            "{e}"
        );
        // A kind's key without its tag.
        let e = operator_err("    aggregate: { native: [{ fn: count }] }\n");
        assert!(
            e.message
                .contains("`aggregate` belongs to `window` (a window), which is not set"),
            "{e}"
        );
        let e = operator_err("");
        assert!(e.message.contains("an operator needs one of `wasm`"), "{e}");
        // `process` beside `window` is the window's full-window function:
        // planning gets as far as looking for the module.
        let e = operator_err(
            "    window: { type: session, gap: 1s }\n    process: { module: nowhere.wasm }\n",
        );
        assert!(e.message.contains("module `nowhere.wasm` not found"), "{e}");
        assert_eq!(e.location.line, Some(7), "{e}");
        // A kind's own settings are checked by the kind, at their line.
        let e = operator_err("    window: { type: tumbling, size: 5 parsecs }\n");
        assert_eq!(e.location.line, Some(6), "{e}");
        assert!(e.message.contains("not a duration"), "{e}");
        let e = operator_err("    enricher:\n      module: m.wasm\n      capacity: 0\n");
        assert_eq!(e.location.line, Some(8), "{e}");
        assert!(
            e.message.contains("capacity must be between 1 and 10000"),
            "{e}"
        );
    }
}
