//! The Wasm boundary: loading operator modules and running them sandboxed.
//!
//! This is the only place that generates bindings (`bindgen!`, once, for the
//! `host` world of `wit/operator.wit`, which has every import and export) and
//! the only place that touches wasmtime. It owns:
//!
//! - the process-wide [`Engine`] with epoch interruption, and the thread that
//!   ticks its epoch (the per-call deadline is counted in ticks);
//! - [`load`]: a module file becomes a [`Module`] — compiled once per process
//!   and cached on disk by content hash, type-checked against the world the
//!   node needs before anything runs;
//! - [`sandbox`]: what a guest may reach (nothing unless the spec grants it),
//!   its memory cap, where its log lines and stderr go, and how a trap is
//!   described;
//! - [`types`]: the batch types of the WIT contract, written by hand so that
//!   a batch's record list crosses the boundary in one pass;
//! - the adapters from a module to the runtime: [`transform::WasmTransform`]
//!   (an [`crate::runtime::Operator`]) and [`aggregate::WasmAggregator`] (a
//!   window's [`crate::runtime::aggregate::Aggregator`]).
//!
//! Calls are async (`call_async`): they run on a fiber inside the task's
//! tokio task, which is what wasmtime-wasi needs when a guest writes to
//! stdout or panics.

pub mod aggregate;
pub mod enricher;
mod fields;
pub mod function;
pub mod http;
mod imports;
mod keyed;
pub mod keyed_types;
pub mod logging;
pub mod plan;
pub mod process;
pub mod sandbox;
pub mod transform;
pub mod types;
pub mod window_fn;

use crate::runtime::aggregate::{Aggregator, AggregatorFactory};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, OptLevel};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "host",
    ownership: Borrowing { duplicate_if_necessary: true },
    exports: { default: async },
    // Written by hand, so that a batch's record list crosses in one pass
    // (see `types`), and a keyed call's timer and value-state changes come
    // back in one pass each (see `keyed_types`).
    with: {
        "sluice:operator/types": crate::wasm::types,
        "sluice:operator/keyed": crate::wasm::keyed_types,
    },
    // An import can fail the call (a state error, a bad handle): it traps.
    // Outbound HTTP waits on the network: the guest's fiber yields meanwhile.
    imports: {
        "sluice:operator/http.fetch": async | trappable,
        default: trappable,
    },
});

pub use exports::sluice::operator::{
    aggregate as wit_aggregate, enricher as wit_enricher, migration as wit_migration,
    transform as wit_transform, window_function as wit_window,
};

/// The state-migration hook a keyed process module may export.
const MIGRATION_EXPORT: &str = crate::wit_name!("migration");
pub use sluice::operator::keyed as wit_keyed;
pub use types as wit;

/// Epoch tick: the resolution of call deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The operator world a node needs a module to implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    Transform,
    Aggregate,
    Process,
    CoProcess,
    BroadcastProcess,
    WindowFunction,
    Enricher,
    SqlFunction,
}

impl World {
    pub const ALL: [World; 8] = [
        World::Transform,
        World::Aggregate,
        World::Process,
        World::CoProcess,
        World::BroadcastProcess,
        World::WindowFunction,
        World::Enricher,
        World::SqlFunction,
    ];

    /// The world's short name, as the API shows it.
    pub fn name(self) -> &'static str {
        match self {
            World::Transform => "transform",
            World::Aggregate => "aggregate",
            World::Process => "keyed-process",
            World::CoProcess => "keyed-co-process",
            World::BroadcastProcess => "keyed-broadcast-process",
            World::WindowFunction => "window-function",
            World::Enricher => "enricher",
            World::SqlFunction => "sql-function",
        }
    }

    pub fn wit_name(self) -> &'static str {
        match self {
            World::Transform => crate::wit_name!("transform-operator"),
            World::Aggregate => crate::wit_name!("aggregate-operator"),
            World::Process => crate::wit_name!("keyed-process-operator"),
            World::CoProcess => crate::wit_name!("keyed-co-process-operator"),
            World::BroadcastProcess => crate::wit_name!("keyed-broadcast-process-operator"),
            World::WindowFunction => crate::wit_name!("window-function-operator"),
            World::Enricher => crate::wit_name!("enricher-operator"),
            World::SqlFunction => crate::wit_name!("sql-function-module"),
        }
    }

    fn export(self) -> &'static str {
        match self {
            World::Transform => crate::wit_name!("transform"),
            World::Aggregate => crate::wit_name!("aggregate"),
            World::Process => crate::wit_name!("keyed-process"),
            World::CoProcess => crate::wit_name!("keyed-co-process"),
            World::BroadcastProcess => crate::wit_name!("keyed-broadcast-process"),
            World::WindowFunction => crate::wit_name!("window-function"),
            World::Enricher => crate::wit_name!("enricher"),
            World::SqlFunction => crate::wit_name!("sql-function"),
        }
    }
}

/// A compiled module, checked against its world and ready to instantiate.
pub struct Module {
    pub path: PathBuf,
    /// Hex SHA-256 of the module file.
    pub sha256: String,
    pub world: World,
    pre: InstancePre<sandbox::StoreData>,
    exports: Exports,
    /// The state-migration hook, when a keyed process module exports it.
    migration: Option<wit_migration::GuestIndices>,
}

impl Module {
    /// Whether the module exports the state-migration hook.
    pub fn migrates(&self) -> bool {
        self.migration.is_some()
    }
}

enum Exports {
    Transform(wit_transform::GuestIndices),
    Aggregate(wit_aggregate::GuestIndices),
    Process(process::wit_process::GuestIndices),
    CoProcess(process::wit_co::GuestIndices),
    BroadcastProcess(process::wit_broadcast::GuestIndices),
    WindowFunction(wit_window::GuestIndices),
    Enricher(wit_enricher::GuestIndices),
    SqlFunction(exports::sluice::operator::sql_function::GuestIndices),
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("world", &self.world)
            .field("migrates", &self.migrates())
            .finish()
    }
}

/// What a module may reach beyond its own memory. Nothing, by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// The real wall and monotonic clocks (otherwise both read zero).
    pub clock: bool,
    /// Real randomness (otherwise a fixed, deterministic sequence).
    pub random: bool,
    /// Environment variables the module sees.
    pub env: std::collections::BTreeMap<String, String>,
    /// Host folders (relative to `base_dir`) the module may read, each with
    /// the path the module sees it at.
    pub dirs: Vec<(PathBuf, String)>,
    /// Addresses an async enricher may send HTTP requests to (see
    /// [`http::NetRule`]).
    pub network: Vec<String>,
}

/// A module and how its instances run: what every Wasm operator's factory
/// holds.
#[derive(Debug, Clone)]
pub struct Guest {
    pub module: Arc<Module>,
    pub settings: Arc<InstanceSettings>,
    /// The spec says the module emits a changelog whatever its input.
    pub changelog: bool,
}

impl Guest {
    pub fn module_ref(&self) -> crate::runtime::ModuleRef<'_> {
        crate::runtime::ModuleRef {
            path: &self.module.path,
            sha256: &self.module.sha256,
        }
    }
}

/// Makes a window's Wasm aggregator (an incremental aggregate or a
/// full-window function), one per subtask.
pub struct GuestAggregator {
    guest: Guest,
    make: fn(&Guest, &Arc<crate::runtime::NodeInfo>) -> Box<dyn Aggregator>,
    /// Whether its module can project (the aggregate world's `fields`).
    projects: bool,
}

impl GuestAggregator {
    /// A module of the `aggregate-operator` world.
    pub fn aggregate(guest: Guest) -> GuestAggregator {
        GuestAggregator {
            guest,
            make: |g, info| {
                Box::new(aggregate::WasmAggregator::new(
                    g.module.clone(),
                    g.settings.clone(),
                    info.clone(),
                ))
            },
            projects: true,
        }
    }

    /// A module of the `window-function-operator` world.
    pub fn window_function(guest: Guest) -> GuestAggregator {
        GuestAggregator {
            guest,
            make: |g, info| {
                Box::new(window_fn::WasmWindowFunction::new(
                    g.module.clone(),
                    g.settings.clone(),
                    info.clone(),
                ))
            },
            projects: false,
        }
    }
}

impl AggregatorFactory for GuestAggregator {
    fn create(&self, info: &Arc<crate::runtime::NodeInfo>) -> Box<dyn Aggregator> {
        (self.make)(&self.guest, info)
    }

    fn module(&self) -> Option<crate::runtime::ModuleRef<'_>> {
        Some(self.guest.module_ref())
    }

    fn asks_members(&self) -> bool {
        self.projects
    }
}

/// How one operator's instances run.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    /// The node's uid, for logs and errors.
    pub uid: Arc<str>,
    /// JSON text passed to the module's `open`.
    pub config: String,
    pub memory_limit: u64,
    pub call_timeout: Duration,
    pub grants: Grants,
    /// Folder that relative `grants.dirs` paths are resolved against.
    pub base_dir: PathBuf,
    /// The operator's share of the host's log, for all its instances.
    pub logs: Arc<logging::LogBudget>,
    /// Set for instances that share one `memory_limit` (an enricher
    /// subtask's pool); `None`: each instance has `memory_limit` of its own.
    pub shared_memory: Option<Arc<sandbox::MemoryBudget>>,
}

impl InstanceSettings {
    /// Settings that grant nothing, with these limits, for a module that
    /// no node runs yet (one read while planning).
    pub fn plain(
        uid: &str,
        base_dir: &Path,
        memory_limit: u64,
        call_timeout: Duration,
    ) -> InstanceSettings {
        let uid: Arc<str> = uid.into();
        InstanceSettings {
            logs: Arc::new(logging::LogBudget::new(uid.clone())),
            uid,
            config: "null".into(),
            memory_limit,
            call_timeout,
            grants: Grants::default(),
            base_dir: base_dir.to_owned(),
            shared_memory: None,
        }
    }
}

struct Runtime {
    engine: Engine,
    linker: Linker<sandbox::StoreData>,
    compiled: Mutex<HashMap<String, Component>>,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        if std::env::var_os("SLUICE_PERF_MAP").is_some() {
            // For profiling: guest functions by name in `perf report`
            // (wasmtime writes /tmp/perf-PID.map).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).expect("wasmtime engine configuration");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .expect("spawn epoch thread");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("link WASI");
        sluice::operator::logging::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link logging");
        sluice::operator::state::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link state");
        sluice::operator::output::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link output");
        sluice::operator::http::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link http");
        sluice::operator::broadcast_state::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link broadcast state");
        sluice::operator::fields::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .expect("link fields");
        keyed_types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("link keyed types");
        // Guests import the (function-less) `types` instance too.
        types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("link types");
        Runtime {
            engine,
            linker,
            compiled: Mutex::new(HashMap::new()),
        }
    })
}

/// The process-wide engine.
pub fn engine() -> &'static Engine {
    &runtime().engine
}

/// Loads, compiles (or reuses the compiled artifact of) and type-checks the
/// module at `path` for `world`. The error says what is wrong in words a
/// module author can act on.
pub fn load(path: &Path, world: World) -> Result<Arc<Module>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let sha256 = hex(&Sha256::digest(&bytes));
    typed(compiled(&bytes, &sha256, path)?, path, sha256, world)
}

/// Checks a component before it is accepted (an upload): it must be a valid
/// component that implements at least one operator world, and every world
/// it claims (by exporting its interface) must type-check with imports the
/// host provides. Returns it loaded for each of its worlds; `path` is where
/// it will be kept. A refused component leaves nothing behind: it is
/// compiled outside the caches, and only an accepted one is remembered (in
/// memory and on disk).
pub fn inspect(bytes: &[u8], path: &Path) -> Result<Vec<Arc<Module>>, String> {
    let sha256 = hex(&Sha256::digest(bytes));
    let (component, found) = component(bytes, &sha256, path)?;
    let claimed: Vec<World> = World::ALL
        .into_iter()
        .filter(|w| component.get_export_index(None, w.export()).is_some())
        .collect();
    if claimed.is_empty() {
        return Err(format!(
            "the component implements none of the {} worlds (it must export one of {}; it exports {})",
            crate::WIT_PACKAGE,
            World::ALL.map(World::export).join(", "),
            exports_of(&component)
        ));
    }
    let modules = claimed
        .into_iter()
        .map(|w| typed(component.clone(), path, sha256.clone(), w))
        .collect::<Result<Vec<_>, _>>()?;
    keep(&component, found, bytes.len(), &sha256);
    Ok(modules)
}

/// Where [`component`] found a component.
enum Found {
    /// In this process's map.
    Memory,
    /// In the disk cache.
    Disk,
    /// Nowhere: compiled now, in this long.
    Compiled(Duration),
}

/// The component for `bytes`: from this process's map or the disk cache, or
/// compiled now. Compilations run one at a time (and look in the map again
/// after waiting), so that many uploads of one module at once compile it
/// once and many different ones do not take all the memory together. What
/// is found or compiled is not kept yet: see [`keep`].
fn component(bytes: &[u8], sha256: &str, path: &Path) -> Result<(Component, Found), String> {
    let rt = runtime();
    let in_memory = || {
        rt.compiled
            .lock()
            .expect("module cache")
            .get(sha256)
            .cloned()
    };
    if let Some(c) = in_memory() {
        return Ok((c, Found::Memory));
    }
    if let Some(c) = load_compiled(&rt.engine, sha256) {
        return Ok((c, Found::Disk));
    }
    static COMPILING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = COMPILING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = in_memory() {
        return Ok((c, Found::Memory));
    }
    let started = std::time::Instant::now();
    let c = Component::new(&rt.engine, bytes)
        .map_err(|e| format!("{} is not a valid Wasm component: {e}", path.display()))?;
    Ok((c, Found::Compiled(started.elapsed())))
}

/// Keeps a component [`component`] gave: in this process's map, and, when it
/// was compiled now, in the disk cache.
fn keep(component: &Component, found: Found, size: usize, sha256: &str) {
    if let Found::Compiled(took) = found {
        store_compiled(component, size, sha256, took);
    }
    if !matches!(found, Found::Memory) {
        runtime()
            .compiled
            .lock()
            .expect("module cache")
            .insert(sha256.to_owned(), component.clone());
    }
}

/// The component for `bytes`, compiled once per process and cached on disk.
fn compiled(bytes: &[u8], sha256: &str, path: &Path) -> Result<Component, String> {
    let (c, found) = component(bytes, sha256, path)?;
    keep(&c, found, bytes.len(), sha256);
    Ok(c)
}

fn exports_of(component: &Component) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(&runtime().engine)
        .map(|(n, _)| n.to_owned())
        .collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

/// Type-checks `component` for `world`.
fn typed(
    component: Component,
    path: &Path,
    sha256: String,
    world: World,
) -> Result<Arc<Module>, String> {
    let rt = runtime();
    if component.get_export_index(None, world.export()).is_none() {
        return Err(format!(
            "{} does not implement the world {} (it must export {}; it exports {})",
            path.display(),
            world.wit_name(),
            world.export(),
            exports_of(&component)
        ));
    }
    let pre = rt.linker.instantiate_pre(&component).map_err(|e| {
        format!(
            "{} imports something the host does not provide: {e:#}",
            path.display()
        )
    })?;
    let wrong_world = |e: wasmtime::Error| {
        format!(
            "{} does not implement the world {}: {e:#}",
            path.display(),
            world.wit_name()
        )
    };
    let exports = match world {
        World::Transform => {
            Exports::Transform(wit_transform::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::Aggregate => {
            Exports::Aggregate(wit_aggregate::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::Process => {
            Exports::Process(process::wit_process::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::CoProcess => {
            Exports::CoProcess(process::wit_co::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::BroadcastProcess => Exports::BroadcastProcess(
            process::wit_broadcast::GuestIndices::new(&pre).map_err(wrong_world)?,
        ),
        World::WindowFunction => {
            Exports::WindowFunction(wit_window::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::Enricher => {
            Exports::Enricher(wit_enricher::GuestIndices::new(&pre).map_err(wrong_world)?)
        }
        World::SqlFunction => Exports::SqlFunction(
            exports::sluice::operator::sql_function::GuestIndices::new(&pre)
                .map_err(wrong_world)?,
        ),
    };
    let migration = match world {
        World::Process | World::CoProcess | World::BroadcastProcess
            if component.get_export_index(None, MIGRATION_EXPORT).is_some() =>
        {
            Some(
            wit_migration::GuestIndices::new(&pre).map_err(|e| {
                format!(
                    "{} exports a state-migration hook that does not match {MIGRATION_EXPORT}: {e:#}",
                    path.display()
                )
            })?)
        }
        _ => None,
    };
    Ok(Arc::new(Module {
        path: path.to_owned(),
        sha256,
        world,
        pre,
        exports,
        migration,
    }))
}

/// Compiling costs tens of milliseconds per module (seconds for big
/// guests); loading a precompiled artifact costs well under one. Artifacts are
/// kept under the cache folder, named by the module's hash and the engine's
/// compatibility hash, written atomically.
fn cache_file(engine: &Engine, sha256: &str) -> PathBuf {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compat);
    cache_dir().join(format!(
        "{sha256}-{:016x}.cwasm",
        std::hash::Hasher::finish(&compat)
    ))
}

/// The compiled artifact of `sha256` from the disk cache, if it is there
/// and usable.
fn load_compiled(engine: &Engine, sha256: &str) -> Option<Component> {
    let file = cache_file(engine, sha256);
    if !file.exists() {
        return None;
    }
    // SAFETY: the file was written by `Component::serialize` of an engine
    // with the same compatibility hash, into sluice's own cache folder.
    let started = std::time::Instant::now();
    match unsafe { Component::deserialize_file(engine, &file) } {
        Ok(c) => {
            tracing::debug!(
                "loaded compiled module {} from the cache in {:.2?}",
                &sha256[..12],
                started.elapsed()
            );
            Some(c)
        }
        Err(e) => {
            tracing::warn!(file = %file.display(), "ignoring unusable cached module: {e}");
            None
        }
    }
}

/// Writes a compiled component to the disk cache, and logs how long it took
/// to compile.
fn store_compiled(component: &Component, size: usize, sha256: &str, took: Duration) {
    let file = cache_file(&runtime().engine, sha256);
    let stored = match component.serialize() {
        Ok(artifact) => crate::checkpoint::storage::write_atomically(&file, &artifact)
            .map_err(|e| format!("cannot write {}: {e}", file.display())),
        Err(e) => Err(format!("{e:#}")),
    };
    let size = size as f64 / (1 << 20) as f64;
    match stored {
        Ok(()) => tracing::info!(
            "compiled a {size:.1} MiB module ({}) in {took:.2?}; later starts load it from {}",
            &sha256[..12],
            cache_dir().display()
        ),
        Err(e) => tracing::info!(
            "compiled a {size:.1} MiB module ({}) in {took:.2?}; not cached: {e}",
            &sha256[..12]
        ),
    }
}

fn wit_span(s: crate::runtime::batch::Span) -> wit::Span {
    wit::Span {
        offset: s.offset,
        len: s.len,
    }
}

fn wit_kind(k: crate::runtime::batch::RowKind) -> wit::RowKind {
    use crate::runtime::batch::RowKind;
    match k {
        RowKind::Insert => wit::RowKind::Insert,
        RowKind::UpdateBefore => wit::RowKind::UpdateBefore,
        RowKind::UpdateAfter => wit::RowKind::UpdateAfter,
        RowKind::Delete => wit::RowKind::Delete,
    }
}

/// The kind of a record a guest emitted, checked against the node's
/// output: only a node whose output the plan knows to be a changelog may
/// emit anything but inserts (an append-only sink downstream would read a
/// retraction as one more row).
fn emitted_kind(
    k: wit::RowKind,
    changelog: bool,
) -> Result<crate::runtime::batch::RowKind, String> {
    use crate::runtime::batch::RowKind;
    let kind = match k {
        wit::RowKind::Insert => return Ok(RowKind::Insert),
        wit::RowKind::UpdateBefore => RowKind::UpdateBefore,
        wit::RowKind::UpdateAfter => RowKind::UpdateAfter,
        wit::RowKind::Delete => RowKind::Delete,
    };
    if changelog {
        Ok(kind)
    } else {
        Err(format!(
            "it emitted a {} record where its output is append-only: a module that emits \
             updates and deletes says so with `changelog: true` in its section of the spec \
             (a map's output is also a changelog when its input is; side outputs carry inserts \
             only)",
            kind.short()
        ))
    }
}

fn wit_spans(spans: &[crate::runtime::batch::Span]) -> Vec<wit::Span> {
    spans.iter().copied().map(wit_span).collect()
}

/// A record made a guest trap (found by replaying a batch record by
/// record): it goes to the dead-letter output, or stops the job with an error
/// naming the operator and the record.
fn trapped_on(
    out: &mut crate::runtime::Output,
    uid: &str,
    record: crate::runtime::RecordRef<'_>,
    description: String,
) -> Result<(), crate::error::RuntimeError> {
    if out.info().has_dead_letter {
        return out.dead_letter(record, &format!("operator trapped: {description}"));
    }
    Err(crate::error::WasmError::Trap {
        uid: uid.to_owned(),
        at: format!(" on record {}", out.info().splits.describe(record.origin())),
        message: description,
    }
    .into())
}

/// Reusable buffers for handing a host batch to a guest: only the small
/// per-record metadata is converted; the data buffer is passed as it is.
#[derive(Default)]
pub(crate) struct Lowering {
    metas: Vec<wit::RecordMeta>,
    headers: Vec<wit::Header>,
}

impl Lowering {
    pub(crate) fn batch<'a>(&'a mut self, b: &'a crate::runtime::Batch) -> wit::BatchParam<'a> {
        self.metas.clear();
        self.metas.extend(b.records.iter().map(|m| wit::RecordMeta {
            key: m.key.map(wit_span),
            value: wit_span(m.value),
            timestamp: m.timestamp,
            headers_start: m.headers_start,
            headers_len: m.headers_len,
            kind: wit_kind(m.kind),
        }));
        self.headers.clear();
        self.headers.extend(b.headers.iter().map(|h| wit::Header {
            name: wit_span(h.name),
            value: wit_span(h.value),
        }));
        wit::BatchParam {
            data: &b.data,
            records: &self.metas,
            headers: &self.headers,
        }
    }
}

/// Checks that a guest-made span lies inside a buffer of `len` bytes.
fn checked_span(s: wit::Span, len: usize) -> Result<crate::runtime::batch::Span, String> {
    if s.offset as u64 + s.len as u64 > len as u64 {
        return Err(format!(
            "a span {}..{} reaches past the end of its {len}-byte buffer",
            s.offset,
            s.offset as u64 + s.len as u64
        ));
    }
    Ok(crate::runtime::batch::Span {
        offset: s.offset,
        len: s.len,
    })
}

/// Checks spans a guest returned (`what` made them) into a buffer of `len`
/// bytes.
fn checked_spans(
    spans: Vec<wit::Span>,
    len: usize,
    what: &str,
) -> Result<Vec<crate::runtime::batch::Span>, String> {
    spans
        .into_iter()
        .map(|s| checked_span(s, len).map_err(|m| format!("{what}: {m}")))
        .collect()
}

/// Checks a byte list a guest returned (`what` made it): `expected` items,
/// each inside the data.
fn checked_list(
    list: wit::ByteListResult,
    expected: usize,
    what: &str,
) -> Result<crate::runtime::aggregate::ByteList, String> {
    if list.spans.len() != expected {
        return Err(format!(
            "{what} returned {} accumulators, expected {expected}",
            list.spans.len()
        ));
    }
    let spans = checked_spans(list.spans, list.data.len(), what)?;
    Ok(crate::runtime::aggregate::ByteList {
        data: list.data,
        spans,
    })
}

/// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/modules`, else
/// `~/.cache/sluice/modules`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SLUICE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sluice").join("modules")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of [`hex`]'s text.
fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| "not hex".to_owned()))
        .collect()
}

/// Hex SHA-256 of `bytes`: how modules are named by content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: a header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_refused_component_is_not_kept_in_memory() {
        let sha = sha256_hex(EMPTY_COMPONENT);
        let e = inspect(EMPTY_COMPONENT, Path::new("empty.wasm")).unwrap_err();
        assert!(e.contains("implements none of the"), "{e}");
        assert!(
            !runtime().compiled.lock().unwrap().contains_key(&sha),
            "a refused component stayed in the process's cache"
        );
    }
}
