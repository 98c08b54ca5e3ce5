//! The `usd-orders` logic compiled natively, timed on a file of orders the
//! way its Wasm build runs in a pipeline: batches of 1024 records, each one
//! call of the component's `process` export code
//! ([`sluice_guest::testing::NativeTransform`]).
//!
//! ```text
//! cargo bench -p usd-orders --bench native -- FILE [--rounds N] [--batch N] [--config JSON] [--out FILE]
//! ```
//!
//! Prints one line per round, `round=… records=… kept=… errors=…
//! seconds=… ns_per_record=…`, counting only the time in the calls.
//! `--out` writes the first round's output values, one per line, as the
//! pipeline's file sink does (`bench/native.py` compares them with the Wasm
//! build's output). The config defaults to W1's.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice_guest::testing::{InputBatch, NativeTransform};
use usd_orders::UsdOrders;

struct Args {
    file: String,
    rounds: usize,
    batch: usize,
    config: String,
    out: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        file: String::new(),
        rounds: 3,
        batch: 1024,
        config: r#"{"status":"COMPLETED","min_amount":100.0}"#.to_owned(),
        out: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--rounds" => args.rounds = number(&value("--rounds")?)?,
            "--batch" => args.batch = number(&value("--batch")?)?,
            "--config" => args.config = value("--config")?,
            "--out" => args.out = Some(value("--out")?),
            // `cargo bench` passes `--bench` to every bench target.
            "--bench" => {}
            _ if a.starts_with("--") => return Err(format!("unknown option {a}")),
            _ if args.file.is_empty() => args.file = a,
            _ => return Err(format!("one input file, not also {a}")),
        }
    }
    if args.file.is_empty() {
        return Err(
            "usage: native FILE [--rounds N] [--batch N] [--config JSON] [--out FILE]".into(),
        );
    }
    if args.rounds == 0 || args.batch == 0 {
        return Err("--rounds and --batch must be at least 1".into());
    }
    Ok(args)
}

fn number(s: &str) -> Result<usize, String> {
    s.parse().map_err(|_| format!("{s:?} is not a count"))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("native: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = args()?;
    let text = std::fs::read(&args.file).map_err(|e| format!("{}: {e}", args.file))?;
    let lines: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let batches: Vec<InputBatch> = lines
        .chunks(args.batch)
        .map(|c| InputBatch::of_values(c.iter().copied()))
        .collect();
    let op = NativeTransform::<UsdOrders>::open(&args.config)
        .map_err(|e| format!("open with {}: {e}", args.config))?;
    let mut out = match &args.out {
        Some(path) => Some(BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("{path}: {e}"))?,
        )),
        None => None,
    };
    for round in 1..=args.rounds {
        let (mut kept, mut errors, mut busy) = (0, 0, Duration::ZERO);
        for batch in &batches {
            let started = Instant::now();
            let output = op.process(batch);
            busy += started.elapsed();
            kept += output.len();
            errors += output.errors();
            if round == 1
                && let Some(w) = &mut out
            {
                for value in output.values() {
                    w.write_all(value)
                        .and_then(|()| w.write_all(b"\n"))
                        .map_err(|e| format!("writing the output: {e}"))?;
                }
            }
        }
        if let Some(w) = out.take() {
            w.into_inner()
                .map_err(|e| format!("writing the output: {e}"))?;
        }
        println!(
            "round={round} records={} kept={kept} errors={errors} seconds={:.3} ns_per_record={:.1}",
            lines.len(),
            busy.as_secs_f64(),
            busy.as_nanos() as f64 / lines.len().max(1) as f64
        );
    }
    Ok(())
}
