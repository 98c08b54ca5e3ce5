//! The data generator: the embedded default source, so that a pipeline runs
//! with nothing else installed.
//!
//! `schema: orders` generates the benchmark's order events (see [`orders`]);
//! with the default seed and `splits: 1` the records are exactly the lines
//! of `bench/gen_orders.py`. `schema: fields` generates records of the
//! `fields` listed, sequences or random values (see [`fields`]; what SQL's
//! `datagen` tables read). A generator is bounded by `count` or runs until
//! stopped, as fast as it can or at `rate` records per second. Each split is
//! an independent stream (split `i` uses seed `seed + i`); a subtask takes
//! turns among its splits.

pub mod fields;
pub mod orders;

use crate::error::RuntimeError;
use crate::runtime::PositionKind;
use crate::runtime::source::SourceFactory;
use crate::runtime::source::{Format, Source, SourceOutput, SourcePoll, SplitId};
use fields::{FieldSpec, FieldsGenerator};
use orders::{OrdersGenerator, OrdersParams};
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatagenOptions {
    #[serde(default)]
    pub schema: Schema,
    /// Records in total over all splits; unbounded when absent.
    #[serde(default)]
    pub count: Option<u64>,
    /// Records per second over all splits; as fast as possible when absent.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default = "one")]
    pub splits: u32,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default = "default_customers")]
    pub customers: u32,
    #[serde(default = "default_zipf")]
    pub zipf_s: f64,
    /// Mean advance of the event clock per record, in milliseconds.
    #[serde(default = "default_step")]
    pub clock_step_ms: i64,
    #[serde(default = "default_start")]
    pub start_ts: i64,
    /// `schema: fields`: the fields of each record.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum Schema {
    #[default]
    Orders,
    Fields,
}

fn one() -> u32 {
    1
}
fn default_seed() -> u64 {
    OrdersParams::default().seed
}
fn default_customers() -> u32 {
    OrdersParams::default().customers
}
fn default_zipf() -> f64 {
    OrdersParams::default().zipf_s
}
fn default_step() -> i64 {
    OrdersParams::default().clock_step_ms
}
fn default_start() -> i64 {
    OrdersParams::default().start_ts
}

pub struct DatagenFactory {
    options: DatagenOptions,
}

impl DatagenFactory {
    pub fn new(options: DatagenOptions) -> Result<DatagenFactory, String> {
        if options.splits == 0 {
            return Err("splits must be at least 1".into());
        }
        if options.customers == 0 {
            return Err("customers must be at least 1".into());
        }
        if let Some(r) = options.rate
            && !(r > 0.0 && r.is_finite())
        {
            return Err(format!(
                "rate must be a positive number of records per second, not {r}"
            ));
        }
        if options.clock_step_ms < 0 {
            return Err("clock_step_ms must not be negative".into());
        }
        let mut options = options;
        match options.schema {
            Schema::Orders if !options.fields.is_empty() => {
                return Err("`fields` belong to `schema: fields`".into());
            }
            Schema::Orders => {}
            Schema::Fields => {
                if options.fields.is_empty() {
                    return Err("`schema: fields` needs `fields`".into());
                }
                if options.splits != 1 {
                    return Err("`schema: fields` generates one split (`splits: 1`)".into());
                }
                // A sequence ends the stream where it ends.
                for f in &options.fields {
                    if let Some(n) = f.check()? {
                        options.count = Some(options.count.map_or(n, |c| c.min(n)));
                    }
                }
            }
        }
        Ok(DatagenFactory { options })
    }
}

impl SourceFactory for DatagenFactory {
    fn splits(&self) -> Option<usize> {
        Some(self.options.splits as usize)
    }

    fn format(&self) -> Format {
        Format::Json
    }

    fn create(&self, subtask: u32, parallelism: u32) -> Box<dyn Source> {
        let o = &self.options;
        let mine: Vec<u32> = (subtask..o.splits).step_by(parallelism as usize).collect();
        let rate = o.rate.map(|r| r * mine.len() as f64 / o.splits as f64);
        let streams = mine
            .iter()
            .map(|&i| {
                let count = o
                    .count
                    .map(|c| c / o.splits as u64 + u64::from((i as u64) < c % o.splits as u64));
                let seed = o.seed.wrapping_add(i as u64);
                let generator = match o.schema {
                    Schema::Orders => {
                        Generator::Orders(Box::new(OrdersGenerator::new(&OrdersParams {
                            seed,
                            customers: o.customers,
                            zipf_s: o.zipf_s,
                            clock_step_ms: o.clock_step_ms,
                            start_ts: o.start_ts,
                        })))
                    }
                    Schema::Fields => {
                        Generator::Fields(FieldsGenerator::new(o.fields.clone(), seed))
                    }
                };
                Stream {
                    index: i,
                    generator,
                    remaining: count,
                    split: None,
                }
            })
            .collect();
        Box::new(Datagen {
            streams,
            next: 0,
            rate,
            started: None,
            produced: 0,
            line: Vec::with_capacity(160),
        })
    }
}

fn split_name(index: u32) -> String {
    format!("datagen split {index}")
}

/// What a split generates.
enum Generator {
    Orders(Box<OrdersGenerator>),
    Fields(FieldsGenerator),
}

impl Generator {
    fn next_into(&mut self, out: &mut Vec<u8>) {
        match self {
            Generator::Orders(g) => {
                g.next_into(out);
            }
            Generator::Fields(g) => g.next_into(out),
        }
    }

    fn generated(&self) -> u64 {
        match self {
            Generator::Orders(g) => g.generated(),
            Generator::Fields(g) => g.generated(),
        }
    }
}

struct Stream {
    index: u32,
    generator: Generator,
    remaining: Option<u64>,
    split: Option<SplitId>,
}

struct Datagen {
    streams: Vec<Stream>,
    next: usize,
    rate: Option<f64>,
    started: Option<Instant>,
    produced: u64,
    line: Vec<u8>,
}

impl Source for Datagen {
    fn open(&mut self, out: &mut SourceOutput) -> Result<(), RuntimeError> {
        for s in &mut self.streams {
            let split = out.add_split(split_name(s.index), PositionKind::Sequence);
            if s.remaining == Some(0) {
                // Read to its end before a restore.
                out.finish_split(split);
            }
            s.split = Some(split);
        }
        Ok(())
    }

    fn snapshot(&self) -> serde_json::Map<String, serde_json::Value> {
        self.streams
            .iter()
            .map(|s| (split_name(s.index), s.generator.generated().into()))
            .collect()
    }

    fn restore(
        &mut self,
        positions: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), RuntimeError> {
        // The generator is a pure function of its seed: skipping to a
        // position is generating and dropping that many records.
        for s in &mut self.streams {
            let Some(n) = positions.get(&split_name(s.index)).and_then(|v| v.as_u64()) else {
                continue;
            };
            while s.generator.generated() < n && s.remaining != Some(0) {
                self.line.clear();
                s.generator.next_into(&mut self.line);
                if let Some(r) = &mut s.remaining {
                    *r -= 1;
                }
            }
        }
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput) -> Result<SourcePoll, RuntimeError> {
        let started = *self.started.get_or_insert_with(Instant::now);
        loop {
            let live = self
                .streams
                .iter()
                .filter(|s| s.remaining != Some(0))
                .count();
            if live == 0 {
                return Ok(SourcePoll::Finished);
            }
            if let Some(rate) = self.rate {
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if self.produced >= due {
                    let next_at = (self.produced + 1) as f64 / rate;
                    let wait = next_at - started.elapsed().as_secs_f64();
                    return Ok(SourcePoll::Wait(Duration::from_secs_f64(wait.max(0.000_1))));
                }
            }
            let n = self.streams.len();
            let s = &mut self.streams[self.next % n];
            self.next += 1;
            if s.remaining == Some(0) {
                continue;
            }
            self.line.clear();
            s.generator.next_into(&mut self.line);
            let split = s.split.expect("opened");
            if let Some(r) = &mut s.remaining {
                *r -= 1;
                if *r == 0 {
                    out.push(split, None, &self.line, s.generator.generated())?;
                    out.finish_split(split);
                    self.produced += 1;
                    continue;
                }
            }
            out.push(split, None, &self.line, s.generator.generated())?;
            self.produced += 1;
            if out.is_full() {
                return Ok(SourcePoll::More);
            }
        }
    }
}
