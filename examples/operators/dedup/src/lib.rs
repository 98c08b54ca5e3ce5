//! Deduplication, as Flink's deduplication keeps the first or the last row
//! per key.
//!
//! `keep: first` (the default): the first record per key goes to the main
//! output, later ones with the same key to the side output `duplicates`.
//! The output is append-only.
//!
//! `keep: last`: every record replaces the key's previous one, so the main
//! output is a changelog: `+I` for a key's first record, then `-U` (the
//! previous record) and `+U` (the new one) for each later record. The spec
//! says so with `changelog: true` in the `process` section, and the records
//! go to a node that applies changes (a `stdout` sink with `changelog:
//! true`, an upsert sink, a `group_aggregate`).
//!
//! The state per key (the "seen" flag, or the last record) has a TTL
//! (`ttl_ms`, processing time, default one hour), so the state of keys that
//! stop appearing is dropped by the host: the memory a dedup needs is
//! bounded by the keys of the last `ttl_ms`, not by all keys ever seen.

use serde::Deserialize;
use sluice_guest::{
    Config, Context, Error, KeyedProcess, Record, RowKind, Setup, SideOutput, ValueState,
};
use std::time::Duration;

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Keep {
    First,
    Last,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    ttl_ms: u64,
    keep: Keep,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ttl_ms: 3_600_000,
            keep: Keep::First,
        }
    }
}

enum Dedup {
    First {
        seen: ValueState<bool>,
        duplicates: SideOutput,
    },
    Last {
        last: ValueState<String>,
    },
}

impl KeyedProcess for Dedup {
    fn open(config: Config, setup: &mut Setup) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.ttl_ms == 0 {
            return Err("ttl_ms must be positive".into());
        }
        let ttl = Some(Duration::from_millis(s.ttl_ms));
        Ok(match s.keep {
            Keep::First => Dedup::First {
                seen: setup.value_state_with_ttl("seen", ttl)?,
                duplicates: setup.side_output("duplicates"),
            },
            Keep::Last => Dedup::Last {
                last: setup.value_state_with_ttl("last", ttl)?,
            },
        })
    }

    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), Error> {
        match self {
            Dedup::First { seen, duplicates } => {
                if seen.get(ctx)?.is_some() {
                    ctx.emit_value_to(*duplicates, record.value());
                } else {
                    seen.set(ctx, &true)?;
                    ctx.emit_value(record.value());
                }
            }
            Dedup::Last { last } => {
                let value = record.value_str()?;
                match last.get(ctx)? {
                    None => ctx.emit_change_value(RowKind::Insert, value.as_bytes()),
                    Some(previous) => {
                        ctx.emit_change_value(RowKind::UpdateBefore, previous.as_bytes());
                        ctx.emit_change_value(RowKind::UpdateAfter, value.as_bytes());
                    }
                }
                last.set(ctx, &value.to_owned())?;
            }
        }
        Ok(())
    }
}

sluice_guest::export_process!(Dedup);
