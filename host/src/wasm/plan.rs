//! A module section of a spec (`wasm:`, `process:`, `enricher:`,
//! `aggregate: { wasm: … }`) and how it becomes a [`Guest`]: the module
//! found, compiled and checked against its world, its grants checked, its
//! limits set.

use super::{Grants, Guest, InstanceSettings, World};
use crate::error::PlanError;
use crate::runtime::kind::{PlanContext, error, field};
use crate::units::{ByteSize, Dur};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A Wasm module and how it may run.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct WasmSpec {
    /// Path of the `.wasm` component: relative to the spec's folder, or found
    /// in a folder of `SLUICE_MODULE_PATH` / `--module-path`.
    pub module: String,
    /// Passed to the module's `open` as JSON.
    #[serde(default)]
    pub config: serde_yaml::Value,
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    #[serde(default)]
    pub call_timeout: Option<Dur>,
    #[serde(default)]
    pub grants: GrantsSpec,
    /// The module emits a changelog (updates and deletes, not only
    /// inserts) whatever its input: the plan then treats its output as one.
    #[serde(default)]
    pub changelog: bool,
}

/// What a module may reach beyond its own memory. Nothing, by default.
#[derive(Debug, Deserialize, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GrantsSpec {
    /// The real wall and monotonic clocks (otherwise both read zero).
    #[serde(default)]
    pub clock: bool,
    /// Real randomness (otherwise a fixed, deterministic sequence).
    #[serde(default)]
    pub random: bool,
    /// Environment variables the module sees.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host folders the module may read.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Addresses an async enricher may send HTTP requests to: `host:port`,
    /// `host:*` or `host` (any port). Nothing else is reachable.
    #[serde(default)]
    pub network: Vec<String>,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Folder on the host (relative to the spec's folder).
    pub host: PathBuf,
    /// Where the module sees it, e.g. `/data`.
    pub guest: String,
}

impl From<&GrantsSpec> for Grants {
    fn from(g: &GrantsSpec) -> Self {
        Grants {
            clock: g.clock,
            random: g.random,
            env: g.env.clone(),
            dirs: g
                .dirs
                .iter()
                .map(|d| (d.host.clone(), d.guest.clone()))
                .collect(),
            network: g.network.clone(),
        }
    }
}

/// The module section at `path` of the operator `cx` plans, loaded as a
/// module of `world`.
pub fn guest(cx: &dyn PlanContext, path: &str, world: World) -> Result<Guest, PlanError> {
    let Some(w) = field::<WasmSpec>(cx, path)? else {
        return Err(error(cx, path, format!("`{path}` is missing")));
    };
    guest_of(cx, path, w, world)
}

/// The module section `w`, written at `path`, loaded as a module of
/// `world`.
pub fn guest_of(
    cx: &dyn PlanContext,
    path: &str,
    w: WasmSpec,
    world: World,
) -> Result<Guest, PlanError> {
    let mp = format!("{path}.module");
    let file = cx.find_module(&w.module).map_err(|m| error(cx, &mp, m))?;
    let module = super::load(&file, world).map_err(|m| error(cx, &mp, m))?;
    let np = format!("{path}.grants.network");
    if !w.grants.network.is_empty() && world != World::Enricher {
        return Err(error(
            cx,
            &np,
            "network access is for async enrichers (`enricher:`) only",
        ));
    }
    if w.changelog && matches!(world, World::Aggregate | World::WindowFunction) {
        return Err(error(
            cx,
            &format!("{path}.changelog"),
            "`changelog` is for modules that emit records (`wasm`, `process`, `enricher`); a window's results are inserts",
        ));
    }
    for rule in &w.grants.network {
        super::http::NetRule::parse(rule).map_err(|m| error(cx, &np, m))?;
    }
    for (i, d) in w.grants.dirs.iter().enumerate() {
        cx.confine(&format!("{path}.grants.dirs[{i}].host"), &d.host)?;
    }
    let config = serde_json::to_string(&w.config).map_err(|e| {
        error(
            cx,
            &format!("{path}.config"),
            format!("config is not JSON-compatible: {e}"),
        )
    })?;
    let (memory_limit, call_timeout) = cx.module_limits();
    let uid: Arc<str> = cx.uid().into();
    let settings = InstanceSettings {
        logs: Arc::new(super::logging::LogBudget::new(uid.clone())),
        shared_memory: None,
        uid,
        config,
        memory_limit: w.memory_limit.map_or(memory_limit, |m| m.0),
        call_timeout: w.call_timeout.map_or(call_timeout, |d| d.0),
        grants: (&w.grants).into(),
        base_dir: cx.base_dir().to_owned(),
    };
    Ok(Guest {
        module,
        settings: Arc::new(settings),
        changelog: w.changelog,
    })
}
