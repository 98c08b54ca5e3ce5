//! `window:` in a spec: the window kind, its settings as the spec writes
//! them, and how they become a [`WindowFactory`].

use super::aggregate::{AggregatorFactory, NativeAgg, NativeAggregates, NativeFn};
use super::{WindowFactory, WindowSettings};
use crate::error::PlanError;
use crate::runtime::kind::{self, OperatorKind, PlanContext, Planned, error, field};
use crate::time::windows::WindowSpec;
use crate::units::Dur;
use serde::Deserialize;
use std::sync::Arc;

/// A window's aggregate function: exactly one of `wasm` (a module of the
/// `aggregate-operator` world) and `native` (built-in functions, all over
/// the same window).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateSpec {
    #[serde(default)]
    pub wasm: Option<serde_yaml::Value>,
    #[serde(default)]
    pub native: Option<Vec<NativeAggSpec>>,
    /// SQL's aggregate functions (`sluice sql` writes it).
    #[serde(default)]
    pub sql: Option<serde_yaml::Value>,
}

pub use crate::runtime::aggregate::NativeAggSpec;

/// Field names of a window's output rows.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct WindowOutputSpec {
    /// The key's field (default: the last segment of the `key_by` pointer).
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub window_start: Option<String>,
    #[serde(default)]
    pub window_end: Option<String>,
}

/// `window:` with `aggregate:` (incremental) or `process:` (a full-window
/// Wasm function).
pub struct WindowOperatorKind;

impl OperatorKind for WindowOperatorKind {
    fn tag(&self) -> &'static str {
        "window"
    }

    fn what(&self) -> &'static str {
        "a window"
    }

    fn fields(&self) -> &'static [&'static str] {
        &["allowed_lateness", "aggregate", "output", "process"]
    }

    fn plan(&self, cx: &dyn PlanContext) -> Result<Planned, PlanError> {
        let key = kind::key(cx, "a window needs a `key_by`")?.clone();
        let spec = field::<WindowSpec>(cx, "window")?.expect("the tag is set");
        let window = spec.kind().map_err(|m| error(cx, "window", m))?;
        let lateness = field::<Dur>(cx, "allowed_lateness")?.map_or(0, |d| d.millis());
        let output = field::<WindowOutputSpec>(cx, "output")?.unwrap_or_default();
        let settings = Arc::new(WindowSettings {
            kind: window,
            allowed_lateness: lateness,
            key_field: output.key.unwrap_or_else(|| key.field_name().to_owned()),
            start_field: output.window_start.unwrap_or_else(|| "window_start".into()),
            end_field: output.window_end.unwrap_or_else(|| "window_end".into()),
        });
        let aggregator = match (cx.value("aggregate"), cx.value("process")) {
            (Some(_), None) => aggregator(cx)?,
            (None, Some(_)) => cx.guest_aggregator("process", true)?,
            (Some(_), Some(_)) => {
                return Err(error(
                    cx,
                    "process",
                    "a window has either `aggregate` (incremental) or `process` (a full-window function), not both",
                ));
            }
            (None, None) => {
                return Err(error(
                    cx,
                    "",
                    "a window needs an `aggregate` or a `process` (full-window) function",
                ));
            }
        };
        Ok(Planned {
            side_ports: vec!["late".to_owned()],
            needs_event_time: true,
            ..Planned::new(Arc::new(WindowFactory {
                settings,
                aggregator,
                backend: cx.backend()?,
                max_parallelism: cx.max_parallelism(),
            }))
        })
    }
}

/// The `aggregate:` section: a Wasm module or built-in functions.
fn aggregator(cx: &dyn PlanContext) -> Result<Arc<dyn AggregatorFactory>, PlanError> {
    let ap = "aggregate";
    let spec = field::<AggregateSpec>(cx, ap)?.expect("the caller saw it");
    if spec.sql.is_some() {
        if spec.wasm.is_some() || spec.native.is_some() {
            return Err(error(
                cx,
                ap,
                "give exactly one of `wasm`, `native` and `sql`",
            ));
        }
        return cx.sql_aggregator("aggregate.sql");
    }
    Ok(match (&spec.wasm, spec.native) {
        (Some(_), None) => cx.guest_aggregator("aggregate.wasm", false)?,
        (None, Some(list)) => {
            if list.is_empty() {
                return Err(error(cx, ap, "list at least one aggregate function"));
            }
            let mut aggs = Vec::new();
            for (j, a) in list.iter().enumerate() {
                let at = format!("{ap}.native[{j}]");
                if a.func == NativeFn::Count && a.field.is_some() {
                    return Err(error(
                        cx,
                        &at,
                        "`count` counts records and takes no `field`",
                    ));
                }
                let (field, name) = a.compile().map_err(|m| error(cx, &at, m))?;
                aggs.push(NativeAgg {
                    func: a.func,
                    field,
                    name,
                });
            }
            Arc::new(NativeAggregates(aggs))
        }
        _ => return Err(error(cx, ap, "give exactly one of `wasm` and `native`")),
    })
}
