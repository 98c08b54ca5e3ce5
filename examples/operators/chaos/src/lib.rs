//! `chaos`: a transform that misbehaves on purpose, so that the host's
//! sandbox and error containment can be tested.
//!
//! Config: `{"mode": "<mode>", "trigger": "<substring>", "path": "<file>"}`.
//! `trigger` defaults to `"boom"`; `path` (for `probe`) to `/etc/hostname`.
//! A record *triggers* when its value contains `trigger`. By mode:
//!
//! | mode    | a triggering record                                          |
//! | ------- | ------------------------------------------------------------ |
//! | `panic` | panics: `chaos: panic on record <value>` (the instance traps) |
//! | `spin`  | loops forever (fuel or epoch interruption must stop it)       |
//! | `alloc` | allocates 1 MiB blocks forever and keeps them (memory limit)  |
//! | `error` | is a record error: `chaos: rejected record`                   |
//! | `flood` | writes 16 MiB to stderr in 1 KiB lines, then 1 MiB without a newline, and logs 20,000 lines (the host must cap guest logs) |
//!
//! Every other record passes through unchanged. Two modes ignore the trigger:
//!
//! * `probe`: for every record, emits what the sandbox allowed, and logs it at
//!   info level:
//!   `{"value": "<input value>", "file": {"ok": "<contents of path>"} or {"err": "<error>"},
//!   "clock_ms": <wall clock in epoch ms, or null>, "random": <u64 seeded by WASI random>,
//!   "env": <$SLUICE_PROBE or null>}`.
//! * `log`: logs each record's value at info level and passes it through.
//!
//! Build (from the workspace root):
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p chaos
//! ```
//!
//! which writes `target/wasm32-wasip2/release/chaos.wasm`, the module the
//! pipeline specs under `examples/` refer to. The `chaos-enricher` crate builds
//! the same source as an async enricher (`chaos_enricher.wasm`), and the
//! `chaos-process` crate a keyed process function (`chaos_process.wasm`, see
//! the `keyed` module) that panics on a triggering record, and the
//! `chaos-broadcast` crate a keyed broadcast process function
//! (`chaos_broadcast.wasm`, see the `broadcast` module) that breaks the
//! rules of broadcast state.

// `chaos-process` exports only the keyed process function; the transform's
// code is built but unused there.
#![cfg_attr(any(feature = "process", feature = "broadcast"), allow(dead_code))]

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sluice_guest::{Config, Error, Output, Record, Transform, log};

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Panic,
    Spin,
    Alloc,
    Error,
    Probe,
    Log,
    Flood,
    /// `chaos-broadcast` only: see the `broadcast` module.
    Local,
    #[serde(rename = "keyed_write")]
    KeyedWrite,
}

/// The operator's config.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    mode: Option<Mode>,
    trigger: Option<String>,
    path: Option<String>,
    /// `chaos-process` only: KiB that every record keeps for the life of the
    /// instance (a leak of a known size).
    leak_kib: usize,
    /// `chaos-process` only: whether records join the list state `seen`
    /// (default true).
    list: Option<bool>,
}

struct Chaos {
    mode: Mode,
    trigger: String,
    path: String,
}

/// What `probe` found out about the sandbox.
#[derive(Serialize)]
struct Probe<'a> {
    value: Cow<'a, str>,
    file: FileResult,
    clock_ms: Option<u64>,
    random: u64,
    env: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum FileResult {
    Ok(String),
    Err(String),
}

thread_local! {
    /// Where `alloc` keeps its blocks, so that they are never freed.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

impl Transform for Chaos {
    fn open(config: Config) -> Result<Self, Error> {
        let Settings {
            mode,
            trigger,
            path,
            ..
        } = config.parse()?;
        let mode = mode.ok_or(
            "chaos needs a config with a \"mode\": panic, spin, alloc, error, probe, log or flood",
        )?;
        Ok(Chaos {
            mode,
            trigger: trigger.unwrap_or_else(|| "boom".to_owned()),
            path: path.unwrap_or_else(|| "/etc/hostname".to_owned()),
        })
    }

    fn process(&mut self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let value = record.value();
        match self.mode {
            Mode::Probe => return self.probe(record, out),
            Mode::Log => log::info(&String::from_utf8_lossy(value)),
            _ if !contains(value, self.trigger.as_bytes()) => {}
            Mode::Panic => panic!("chaos: panic on record {}", String::from_utf8_lossy(value)),
            Mode::Spin => spin(),
            Mode::Alloc => hoard(),
            Mode::Error => return Err("chaos: rejected record".into()),
            Mode::Flood => flood(),
            Mode::Local | Mode::KeyedWrite => {}
        }
        out.forward();
        Ok(())
    }
}

impl Chaos {
    fn probe(&self, record: &Record<'_>, out: &mut Output<'_>) -> Result<(), Error> {
        let probe = Probe {
            value: String::from_utf8_lossy(record.value()),
            file: match std::fs::read_to_string(&self.path) {
                Ok(contents) => FileResult::Ok(contents),
                Err(e) => FileResult::Err(e.to_string()),
            },
            clock_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64),
            // std seeds RandomState from the WASI random interface.
            random: RandomState::new().hash_one(0x5EED_u64),
            env: std::env::var("SLUICE_PROBE").ok(),
        };
        let json = sluice_guest::serde_json::to_string(&probe)?;
        log::info(&format!("chaos probe: {json}"));
        out.emit_value(json.as_bytes());
        Ok(())
    }
}

#[cfg(not(any(feature = "enricher", feature = "process", feature = "broadcast")))]
sluice_guest::export_transform!(Chaos);
// `chaos-enricher`: the same operator as an async enricher.
#[cfg(feature = "enricher")]
sluice_guest::export_enricher!(Chaos);

/// `chaos-process`: a keyed process function that, for every record, adds
/// its value to the key's list state `seen` and counts it in the value state
/// `count`, then emits `{"key": <key>, "count": n, "seen": <list length>,
/// "kind": <the record's changelog kind, "+I" …>}` —
/// except that a triggering record panics after its writes, so that the
/// host must undo them before it replays the call record by record.
/// With `"list": false` records are only counted (`seen` stays 0); with
/// `"leak_kib": n` every record keeps n KiB of the instance's memory until
/// the instance is dropped, so that a test knows how much a call grows it.
#[cfg(feature = "process")]
mod keyed {
    use super::{HOARD, Settings, contains};
    use sluice_guest::{
        Config, Context, Error, KeyedProcess, ListState, Record, Setup, ValueState,
    };

    struct ChaosProcess {
        trigger: String,
        leak: usize,
        list: bool,
        seen: ListState<String>,
        count: ValueState<u64>,
    }

    impl KeyedProcess for ChaosProcess {
        fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
            let Settings {
                trigger,
                leak_kib,
                list,
                ..
            } = config.parse()?;
            Ok(ChaosProcess {
                trigger: trigger.unwrap_or_else(|| "boom".to_owned()),
                leak: leak_kib << 10,
                list: list.unwrap_or(true),
                seen: setup.list_state("seen")?,
                count: setup.value_state("count")?,
            })
        }

        fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
            if self.leak > 0 {
                HOARD.with(|h| h.borrow_mut().push(vec![1u8; self.leak]));
            }
            let value = String::from_utf8_lossy(record.value()).into_owned();
            if self.list {
                self.seen.add(ctx, &value)?;
            }
            let count = self.count.get(ctx)?.unwrap_or(0) + 1;
            self.count.set(ctx, &count)?;
            if contains(record.value(), self.trigger.as_bytes()) {
                panic!("chaos: panic on record {value}");
            }
            let seen = self.seen.get(ctx)?.len();
            let key = String::from_utf8_lossy(ctx.key()).into_owned();
            ctx.emit_json(&sluice_guest::serde_json::json!({
                "key": key.trim_matches('"'),
                "count": count,
                "seen": seen,
                "kind": record.kind().short(),
            }))
        }
    }

    sluice_guest::export_process!(ChaosProcess);
}

/// `chaos-broadcast`: a keyed broadcast process function that breaks the
/// rules of broadcast state, by `mode`:
///
/// | mode          | what it does                                               |
/// | ------------- | ---------------------------------------------------------- |
/// | `local`       | each broadcast record stores, under its value, how many keyed records *this instance* has seen: state that differs between subtasks |
/// | `keyed_write` | a keyed record that triggers writes broadcast state, which only the broadcast side may do |
///
/// Keyed records pass through; broadcast records are stored (`local`) or
/// ignored.
#[cfg(feature = "broadcast")]
mod broadcast {
    use super::{Mode, Settings, contains};
    use sluice_guest::{
        BroadcastContext, BroadcastState, Config, Context, Error, KeyedBroadcastProcess, Record,
        Setup,
    };

    struct ChaosBroadcast {
        mode: Option<Mode>,
        trigger: String,
        seen: u64,
        state: BroadcastState<String, u64>,
    }

    impl KeyedBroadcastProcess for ChaosBroadcast {
        fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
            let Settings { mode, trigger, .. } = config.parse()?;
            Ok(ChaosBroadcast {
                mode,
                trigger: trigger.unwrap_or_else(|| "boom".to_owned()),
                seen: 0,
                state: setup.broadcast_state("chaos")?,
            })
        }

        fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
            self.seen += 1;
            if self.mode == Some(Mode::KeyedWrite)
                && contains(record.value(), self.trigger.as_bytes())
            {
                // What the SDK does not let a keyed record do: the raw import.
                sluice_guest::__private::broadcast_bindings::sluice::operator::broadcast_state::put(
                    0, b"\"k\"", b"1",
                );
            }
            ctx.emit_value(record.value());
            Ok(())
        }

        fn process_broadcast(
            &mut self,
            record: &Record<'_>,
            ctx: &mut BroadcastContext<'_>,
        ) -> Result<(), Error> {
            if self.mode == Some(Mode::Local) {
                let key = String::from_utf8_lossy(record.value()).into_owned();
                self.state.put(ctx, &key, &self.seen)?;
            }
            Ok(())
        }
    }

    sluice_guest::export_broadcast_process!(ChaosBroadcast);
}

/// Whether `haystack` contains `needle` (an empty needle is everywhere).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Floods stderr and the log.
fn flood() {
    use std::io::Write;
    let mut line = vec![b'x'; 1023];
    line.push(b'\n');
    let mut err = std::io::stderr().lock();
    for _ in 0..16 << 10 {
        let _ = err.write_all(&line);
    }
    let _ = err.write_all(&vec![b'y'; 1 << 20]);
    drop(err);
    for i in 0..20_000 {
        log::info(&format!("chaos flood {i}"));
    }
}

/// Never returns; `black_box` keeps the optimizer from proving the loop
/// useless.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Never returns: allocates until the allocator fails, which aborts.
fn hoard() -> ! {
    loop {
        // Non-zero, so that every page is written and really committed.
        let block = vec![0xA5u8; 1 << 20];
        HOARD.with(|h| h.borrow_mut().push(black_box(block)));
    }
}

#[cfg(test)]
mod tests {
    use sluice_guest::testing::run_transform;

    use super::*;

    fn op(config: &str) -> Chaos {
        Chaos::open(Config::new(config)).unwrap()
    }

    #[test]
    fn error_mode_rejects_only_triggering_records() {
        let run = run_transform(&mut op(r#"{"mode":"error"}"#), &["a", "a boom", "b"]);
        assert_eq!(run.values(), ["a", "b"]);
        assert_eq!(run.errors, [(1, "chaos: rejected record".to_owned())]);
        let run = run_transform(&mut op(r#"{"mode":"error","trigger":"x"}"#), &["boom", "x"]);
        assert_eq!(run.values(), ["boom"]);
    }

    #[test]
    #[should_panic(expected = "chaos: panic on record a boom")]
    fn panic_mode_panics() {
        run_transform(&mut op(r#"{"mode":"panic"}"#), &["ok", "a boom"]);
    }

    #[test]
    fn log_mode_forwards() {
        let run = run_transform(&mut op(r#"{"mode":"log"}"#), &["a", "boom"]);
        assert_eq!(run.values(), ["a", "boom"]);
    }

    #[test]
    fn probe_mode_describes_every_record() {
        let run = run_transform(
            &mut op(r#"{"mode":"probe","path":"/nonexistent/sluice"}"#),
            &["v1", "v2"],
        );
        assert!(run.errors.is_empty());
        assert_eq!(run.records.len(), 2);
        let probe: sluice_guest::serde_json::Value =
            sluice_guest::serde_json::from_slice(&run.records[1].value).unwrap();
        assert_eq!(probe["value"], "v2");
        assert!(probe["file"]["err"].is_string(), "{probe}");
        assert!(probe["clock_ms"].as_u64().unwrap() > 1_600_000_000_000);
        assert!(probe["random"].is_u64());
        assert!(probe.get("env").is_some());
    }

    #[test]
    fn trigger_matching() {
        assert!(contains(b"a boom b", b"boom"));
        assert!(!contains(b"a bom b", b"boom"));
        assert!(!contains(b"bo", b"boom"));
        assert!(contains(b"anything", b""));
    }

    #[test]
    fn config_needs_a_known_mode() {
        assert!(Chaos::open(Config::new("null")).is_err());
        assert!(Chaos::open(Config::new(r#"{"mode":"explode"}"#)).is_err());
        let c = Chaos::open(Config::new(r#"{"mode":"error"}"#)).unwrap();
        assert_eq!((c.mode, &*c.trigger), (Mode::Error, "boom"));
    }

    #[test]
    fn probe_output_shape() {
        let json = sluice_guest::serde_json::to_string(&Probe {
            value: "v".into(),
            file: FileResult::Err("denied".into()),
            clock_ms: None,
            random: 7,
            env: None,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"value":"v","file":{"err":"denied"},"clock_ms":null,"random":7,"env":null}"#
        );
    }
}
