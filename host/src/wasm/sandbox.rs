//! What a guest may reach, how much memory it may take, how long a call may
//! run, and how its failures are described.
//!
//! A guest built for `wasm32-wasip2` imports WASI interfaces even when it does
//! no I/O, so the host links WASI but grants nothing by default: no files,
//! no network, both clocks frozen at zero and randomness replaced by a fixed
//! sequence (so a guest's run is repeatable). The spec's `grants` open these
//! one by one. Guest stdout and stderr become log lines tagged with the
//! operator uid; the last lines of stderr (where a Rust guest's panic message
//! goes) are kept to explain a trap.

use super::{InstanceSettings, Module};
use crate::error::WasmError;
use bytes::Bytes;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use wasmtime::component::{Instance, ResourceTable};
use wasmtime::{ResourceLimiter, Store, Trap, WasmBacktrace};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder,
    WasiCtxView, WasiView,
};

/// The data of every guest's store.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    pub(crate) uid: Arc<str>,
    /// The operator's share of the host's log.
    pub(crate) logs: Arc<super::logging::LogBudget>,
    /// What the keyed-state imports reach during a call (empty otherwise).
    pub(crate) keyed: super::keyed::KeyedCall,
    /// What `http.fetch` may reach (`grants.network`), and its kept-alive
    /// connection.
    pub(crate) network: super::http::Network,
    /// The members a transform or aggregate module reads, and where they
    /// are in the current call's input.
    pub(crate) fields: super::fields::Projection,
}

impl Drop for StoreData {
    fn drop(&mut self) {
        self.logs.flush();
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// One `memory_limit` shared by several instances (an enricher subtask's
/// pool, which grows to `capacity` instances): each byte a linear memory
/// grows by is taken from it, and given back when the instance goes.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
    /// The most one instance has taken so far: what another one is expected
    /// to need.
    largest: std::sync::atomic::AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: u64) -> MemoryBudget {
        MemoryBudget {
            limit,
            used: Default::default(),
            largest: Default::default(),
        }
    }

    fn take(&self, bytes: u64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.used
            .fetch_update(SeqCst, SeqCst, |u| {
                u.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether another instance, as big as the biggest so far, would fit.
    pub fn room_for_another(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.used.load(SeqCst) + self.largest.load(SeqCst) <= self.limit
    }

    /// Bytes taken by all instances.
    #[cfg(test)]
    fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Caps each linear memory; remembers that the cap was hit so that the trap
/// that follows (a Rust guest aborts when allocation fails) can be explained.
struct MemoryCap {
    limit: usize,
    hit: bool,
    /// The largest size a linear memory has grown to.
    used: usize,
    /// The pool's budget, if the instance shares one, and what this
    /// instance has taken from it.
    shared: Option<Arc<MemoryBudget>>,
    taken: u64,
}

impl Drop for MemoryCap {
    fn drop(&mut self) {
        if let Some(b) = &self.shared {
            b.give_back(self.taken);
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        if let Some(b) = &self.shared {
            let more = desired.saturating_sub(current) as u64;
            if !b.take(more) {
                self.hit = true;
                return Ok(false);
            }
            self.taken += more;
            b.largest
                .fetch_max(self.taken, std::sync::atomic::Ordering::SeqCst);
        }
        self.used = self.used.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// One guest instance with its store.
pub struct Sandbox {
    pub store: Store<StoreData>,
    pub instance: Instance,
    deadline_ticks: u64,
    call_timeout: Duration,
    memory_limit: u64,
    stderr: GuestOutput,
    /// Calls armed so far (`open` included).
    calls: u64,
    /// Whether [`Sandbox::worn`] warned that the instance was past the mark
    /// after one call (it is then never replaced for its memory).
    warned: bool,
}

impl Sandbox {
    /// Creates an instance of `module`. Instantiation may run guest code, so
    /// it runs under the deadline too.
    pub async fn new(module: &Module, settings: &InstanceSettings) -> Result<Sandbox, WasmError> {
        let open_err = |message: String| WasmError::Open {
            uid: settings.uid.to_string(),
            message,
        };
        let stderr = GuestOutput::new(settings.logs.clone(), true);
        let mut b = WasiCtxBuilder::new();
        b.stdout(GuestOutput::new(settings.logs.clone(), false));
        b.stderr(stderr.clone());
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let g = &settings.grants;
        if !g.clock {
            b.wall_clock(Frozen).monotonic_clock(Frozen);
        }
        if !g.random {
            let fixed: Vec<u8> = (0..=255u8).collect();
            b.secure_random(Deterministic::new(fixed.clone()));
            b.insecure_random(Deterministic::new(fixed));
            b.insecure_random_seed(0);
        }
        for (k, v) in &g.env {
            b.env(k, v);
        }
        for (host, guest) in &g.dirs {
            let host = settings.base_dir.join(host);
            b.preopened_dir(&host, guest, FsPerms::ReadOnly)
                .map_err(|e| open_err(format!("cannot grant folder {}: {e}", host.display())))?;
        }
        let network =
            super::http::Network::new(settings.uid.clone(), &g.network).map_err(open_err)?;
        let data = StoreData {
            wasi: b.build(),
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit: settings.memory_limit.min(usize::MAX as u64) as usize,
                hit: false,
                used: 0,
                shared: settings.shared_memory.clone(),
                taken: 0,
            },
            uid: settings.uid.clone(),
            logs: settings.logs.clone(),
            keyed: Default::default(),
            network,
            fields: Default::default(),
        };
        let mut store = Store::new(super::engine(), data);
        store.limiter(|d| &mut d.memory);
        let tick = super::EPOCH_TICK.as_millis() as u64;
        let deadline_ticks = (settings.call_timeout.as_millis() as u64)
            .div_ceil(tick)
            .max(1)
            + 1;
        store.set_epoch_deadline(deadline_ticks);
        let started = std::time::Instant::now();
        let instance = match module.pre.instantiate_async(&mut store).await {
            Ok(i) => {
                tracing::debug!(
                    operator = %settings.uid,
                    "instantiated {} in {:?}",
                    module.path.display(),
                    started.elapsed()
                );
                i
            }
            Err(e) => {
                let msg = describe(
                    &e,
                    &store,
                    settings.call_timeout,
                    settings.memory_limit,
                    &stderr,
                );
                return Err(open_err(format!(
                    "cannot instantiate {}: {msg}",
                    module.path.display()
                )));
            }
        };
        Ok(Sandbox {
            store,
            instance,
            deadline_ticks,
            call_timeout: settings.call_timeout,
            memory_limit: settings.memory_limit,
            stderr,
            calls: 0,
            warned: false,
        })
    }

    /// The instance's exports of one world, loaded with `load` (that world's
    /// `GuestIndices::load`); a failure is an open error of operator `uid`.
    pub fn exports<T>(
        &mut self,
        uid: &str,
        load: impl FnOnce(&mut Store<StoreData>, &Instance) -> wasmtime::Result<T>,
    ) -> Result<T, WasmError> {
        load(&mut self.store, &self.instance).map_err(|e| WasmError::Open {
            uid: uid.to_owned(),
            message: format!("{e:#}"),
        })
    }

    /// Whether the instance's memory has grown past three quarters of its
    /// limit. An operator whose state lives in the host then replaces the
    /// instance after the call rather than wait for it to fail: a guest that
    /// leaks (componentize-js's glue does, per keyed-process call) keeps
    /// running.
    ///
    /// An instance that is past that mark after its first call is kept (a
    /// new one would be no better) and logged once: its limit is too low.
    pub fn worn(&mut self) -> bool {
        let m = &self.store.data().memory;
        if m.used <= m.limit / 4 * 3 || self.warned {
            return false;
        }
        // `open` and one call.
        if self.calls <= 2 {
            tracing::warn!(
                operator = %self.store.data().uid,
                "the module uses {:.1} MiB of its {:.1} MiB memory limit after one call; raise `memory_limit`",
                m.used as f64 / (1 << 20) as f64,
                m.limit as f64 / (1 << 20) as f64
            );
            self.warned = true;
            return false;
        }
        true
    }

    /// Whether the call that just trapped ran into the memory limit on an
    /// instance that had made more calls than `open` and one: a guest that
    /// leaks can outgrow its limit within one large call, before
    /// [`Sandbox::worn`] sees it coming, and a new instance may well have
    /// room for the same call.
    pub fn outgrown(&self) -> bool {
        self.store.data().memory.hit && self.calls > 2
    }

    /// Sets the deadline for the next call.
    #[inline]
    pub fn arm(&mut self) {
        self.calls += 1;
        self.store.set_epoch_deadline(self.deadline_ticks);
    }

    /// What a guest's `open` returned, as the error a user reads.
    pub fn opened(
        &self,
        uid: &str,
        result: wasmtime::Result<Result<(), String>>,
    ) -> Result<(), WasmError> {
        let message = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(m)) => format!("open failed: {m}"),
            Err(e) => format!("open trapped: {}", self.describe(&e)),
        };
        Err(WasmError::Open {
            uid: uid.to_owned(),
            message,
        })
    }

    /// A trap or error from a call, in words.
    pub fn describe(&self, e: &wasmtime::Error) -> String {
        describe(
            e,
            &self.store,
            self.call_timeout,
            self.memory_limit,
            &self.stderr,
        )
    }
}

fn describe(
    e: &wasmtime::Error,
    store: &Store<StoreData>,
    call_timeout: Duration,
    memory_limit: u64,
    stderr: &GuestOutput,
) -> String {
    let mut msg = if store.data().memory.hit {
        let shared = if store.data().memory.shared.is_some() {
            ", shared by the subtask's instances"
        } else {
            ""
        };
        format!(
            "exceeded its memory limit of {} MiB{shared} ({e})",
            memory_limit as f64 / (1 << 20) as f64
        )
    } else {
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => {
                format!("exceeded its call deadline of {call_timeout:?}")
            }
            Some(t) => format!("wasm trap: {t}"),
            None => format!("{e:#}"),
        }
    };
    let tail = stderr.tail();
    if !tail.is_empty() {
        msg.push_str("; guest stderr: ");
        msg.push_str(&tail);
    }
    if let Some(bt) = e.downcast_ref::<WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(8)
            .map(|f| {
                let name = f.func_name().unwrap_or("<unknown>");
                match f
                    .symbols()
                    .first()
                    .and_then(|s| Some((s.file()?, s.line()?)))
                {
                    Some((file, line)) => format!("{name} ({file}:{line})"),
                    None => name.to_owned(),
                }
            })
            .collect();
        if !frames.is_empty() {
            msg.push_str("; at ");
            msg.push_str(&frames.join(" <- "));
        }
    }
    msg
}

/// A clock that always reads zero.
struct Frozen;

impl HostWallClock for Frozen {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for Frozen {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Guest stdout or stderr: complete lines (cut at [`MAX_LINE`] bytes) become
/// log events, within the operator's [`LogBudget`](super::logging::LogBudget);
/// the last lines of stderr are kept whatever the budget says.
#[derive(Clone)]
pub struct GuestOutput(Arc<Mutex<OutputState>>);

struct OutputState {
    logs: Arc<super::logging::LogBudget>,
    stderr: bool,
    partial: Vec<u8>,
    tail: VecDeque<String>,
}

const TAIL_LINES: usize = 8;
const MAX_LINE: usize = 4096;

impl GuestOutput {
    fn new(logs: Arc<super::logging::LogBudget>, stderr: bool) -> GuestOutput {
        GuestOutput(Arc::new(Mutex::new(OutputState {
            logs,
            stderr,
            partial: Vec::new(),
            tail: VecDeque::new(),
        })))
    }

    fn write(&self, mut bytes: &[u8]) {
        let mut s = self.0.lock().expect("guest output");
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            s.push(&bytes[..nl]);
            s.end_line();
            bytes = &bytes[nl + 1..];
        }
        s.push(bytes);
    }

    fn tail(&self) -> String {
        let s = self.0.lock().expect("guest output");
        let mut lines: Vec<&str> = s.tail.iter().map(String::as_str).collect();
        let partial = String::from_utf8_lossy(&s.partial);
        if !partial.trim().is_empty() {
            lines.push(&partial);
            return lines.join(" | ");
        }
        lines.join(" | ")
    }
}

impl OutputState {
    /// Adds to the line being written; a line that reaches [`MAX_LINE`]
    /// bytes is cut there, so a guest writing without newlines costs the
    /// host no more than that.
    fn push(&mut self, mut bytes: &[u8]) {
        while self.partial.len() + bytes.len() > MAX_LINE {
            let room = MAX_LINE - self.partial.len();
            self.partial.extend_from_slice(&bytes[..room]);
            bytes = &bytes[room..];
            self.end_line();
        }
        self.partial.extend_from_slice(bytes);
    }

    /// Logs the line written so far and starts the next one (in the same
    /// buffer).
    fn end_line(&mut self) {
        use super::sluice::operator::logging::Level;
        let text = String::from_utf8_lossy(&self.partial);
        if self.stderr {
            super::logging::emit(&self.logs, Level::Warn, "guest stderr: ", &text);
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            let text = text.into_owned();
            self.tail.push_back(text);
        } else {
            super::logging::emit(&self.logs, Level::Info, "guest stdout: ", &text);
        }
        self.partial.clear();
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        GuestOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_sharing_a_budget_take_from_it_and_give_back_when_they_go() {
        let budget = Arc::new(MemoryBudget::new(100));
        let cap = |b: &Arc<MemoryBudget>| MemoryCap {
            limit: 1000,
            hit: false,
            used: 0,
            shared: Some(b.clone()),
            taken: 0,
        };
        let mut a = cap(&budget);
        let mut b = cap(&budget);
        assert!(a.memory_growing(0, 60, None).unwrap());
        assert!(!budget.room_for_another());
        // Together past the budget: refused, and remembered for the message.
        assert!(!b.memory_growing(0, 50, None).unwrap());
        assert!(b.hit);
        assert!(b.memory_growing(0, 40, None).unwrap());
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(budget.room_for_another());
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
