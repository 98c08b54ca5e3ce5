//! A full-window function: the `p`-th percentile (nearest rank; default the
//! 99th) of a numeric field over all records of a window — something an
//! incremental aggregate cannot compute exactly.
//!
//! Config: `{"field": "latency_ms", "p": 99, "as": "p99_latency_ms"}`.
//! Output fields: `<as>` and `count`.

use serde::Deserialize;
use sluice_guest::serde_json;
use sluice_guest::{Config, Error, Record, Window, WindowFunction};

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    field: String,
    p: f64,
    #[serde(rename = "as")]
    name: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            field: "latency_ms".into(),
            p: 99.0,
            name: None,
        }
    }
}

struct Percentile {
    field: String,
    p: f64,
    name: String,
    values: Vec<f64>,
}

impl WindowFunction for Percentile {
    type Output = serde_json::Map<String, serde_json::Value>;

    fn open(config: Config) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if !(s.p > 0.0 && s.p <= 100.0) {
            return Err(format!("p must be in (0, 100], not {}", s.p).into());
        }
        let name = s.name.unwrap_or_else(|| format!("p{}_{}", s.p, s.field));
        Ok(Percentile {
            field: s.field,
            p: s.p,
            name,
            values: Vec::new(),
        })
    }

    fn process(&mut self, _w: &Window<'_>, records: &[Record<'_>]) -> Result<Self::Output, Error> {
        self.values.clear();
        for r in records {
            if let Some(v) = r.field::<f64>(&self.field)? {
                self.values.push(v);
            }
        }
        self.values.sort_by(f64::total_cmp);
        let mut out = serde_json::Map::new();
        let n = self.values.len();
        let value = if n == 0 {
            serde_json::Value::Null
        } else {
            // Nearest rank: the smallest value with at least p% at or below it.
            let rank = ((self.p / 100.0) * n as f64).ceil().max(1.0) as usize;
            serde_json::json!(self.values[rank - 1])
        };
        out.insert(self.name.clone(), value);
        out.insert("count".into(), n.into());
        Ok(out)
    }
}

sluice_guest::export_window_function!(Percentile);
