//! A physical plan, as the runtime deploys it: nodes with their factories,
//! edges with their partitioning, and chains of nodes that run as one task
//! per subtask. The planner (`plan`) builds it from a spec; tests may build
//! one by hand.

#[cfg(doc)]
use super::operator::FIRST_SIDE_PORT;
use super::operator::OperatorFactory;
use super::router::Partitioning;
use super::source::{EventTime, SourceFactory};
use crate::error::Location;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A planned pipeline.
pub struct Pipeline {
    pub name: String,
    pub spec_path: PathBuf,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    /// Chains in topological order; each runs as `parallelism` tasks.
    pub chains: Vec<Chain>,
    pub settings: Settings,
    pub has_dead_letter: bool,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where keyed state lives (process functions' state; window
    /// accumulators with RocksDB).
    pub state_backend: crate::state::Backend,
    pub batch_size: usize,
    pub buffer_timeout: Duration,
    pub channel_capacity: usize,
    pub max_parallelism: u32,
    /// Periodic checkpoints, when the spec has a checkpoint folder.
    pub checkpoints: Option<crate::checkpoint::CheckpointSettings>,
    pub restart: crate::checkpoint::RestartStrategy,
    /// Records per second each source task reads at most (`--source-rate`).
    pub source_rate: Option<f64>,
}

pub struct Node {
    pub uid: String,
    pub kind: NodeKind,
    pub parallelism: u32,
    pub location: Location,
    /// Names of the node's own side outputs (ports from
    /// [`FIRST_SIDE_PORT`] on).
    pub side_ports: Vec<String>,
    /// How the node's task picks its next message when it has several
    /// input channels.
    pub input_selection: InputSelection,
    /// Whether the node's output may be a changelog (set by the planner,
    /// which follows changelogs from the nodes that start them).
    pub changelog: bool,
}

/// How a task with several input channels picks the next message to handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputSelection {
    /// In the order messages arrive (fastest; which records are late may
    /// depend on how the inputs' progress interleaves).
    #[default]
    Arrival,
    /// Always from the active input with the lowest watermark, waiting for
    /// it when it has sent nothing yet (Flink's `InputSelectable`): the
    /// order, and so what is late, follows the data alone. The faster
    /// inputs' messages wait in memory meanwhile.
    LowestWatermark,
}

/// What a node is: a source (the head of its chain, driven by its splits)
/// or an operator that the runtime feeds (transforms, windows, process
/// functions, sinks, …), each made per subtask by its factory.
#[derive(Clone)]
pub enum NodeKind {
    Source {
        factory: Arc<dyn SourceFactory>,
        event_time: Option<EventTime>,
    },
    Operator(Arc<dyn OperatorFactory>),
}

impl NodeKind {
    pub fn name(&self) -> &'static str {
        match self {
            NodeKind::Source { .. } => "source",
            NodeKind::Operator(f) => f.kind(),
        }
    }

    pub fn is_source(&self) -> bool {
        matches!(self, NodeKind::Source { .. })
    }

    pub fn is_sink(&self) -> bool {
        matches!(self, NodeKind::Operator(f) if f.kind() == "sink")
    }

    /// The operator factory, unless this is a source.
    pub fn factory(&self) -> Option<&Arc<dyn OperatorFactory>> {
        match self {
            NodeKind::Source { .. } => None,
            NodeKind::Operator(f) => Some(f),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Edge {
    pub from: usize,
    /// Port of `from`: main, dead letter or a side output.
    pub port: usize,
    pub to: usize,
    /// Which logical input of `to` the edge feeds: 0, or for an operator
    /// with named inputs, the name's index in its kind's `inputs`.
    pub input: usize,
    pub partitioning: Partitioning,
}

#[derive(Debug, Clone)]
pub struct Chain {
    /// Node indices, the head first; every other node's single input comes
    /// from an earlier node of the chain.
    pub nodes: Vec<usize>,
    pub parallelism: u32,
}

impl Pipeline {
    pub fn chain_of(&self, node: usize) -> usize {
        self.chains
            .iter()
            .position(|c| c.nodes.contains(&node))
            .expect("every node is in a chain")
    }

    /// Whether an edge runs inside a task (no channel).
    pub fn is_chained(&self, edge: &Edge) -> bool {
        self.chain_of(edge.from) == self.chain_of(edge.to)
    }

    /// Port names of a node, by port index.
    pub fn port_names(&self, node: usize) -> Vec<&str> {
        let mut names = vec!["main", "dead_letter"];
        names.extend(self.nodes[node].side_ports.iter().map(String::as_str));
        names
    }

    /// A readable description of the physical plan.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "pipeline `{}` ({})", self.name, self.spec_path.display());
        for (i, c) in self.chains.iter().enumerate() {
            let names: Vec<String> = c
                .nodes
                .iter()
                .map(|&n| format!("{} ({})", self.nodes[n].uid, self.nodes[n].kind.name()))
                .collect();
            let _ = writeln!(s, "  task {i} × {}: {}", c.parallelism, names.join(", "));
        }
        for e in &self.edges {
            let port = self.port_names(e.from)[e.port];
            let from = &self.nodes[e.from].uid;
            let from = if port == "main" {
                from.clone()
            } else {
                format!("{from}.{port}")
            };
            let _ = writeln!(
                s,
                "  {} -> {} [{}]",
                from,
                self.nodes[e.to].uid,
                match &e.partitioning {
                    _ if self.is_chained(e) => "chained".to_owned(),
                    Partitioning::KeyHash { key, .. } => format!("hash {}", key.describe()),
                    p => p.name().to_owned(),
                }
            );
        }
        s
    }
}
