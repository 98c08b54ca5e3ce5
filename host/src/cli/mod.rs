//! The `sluice` command: `run`, `validate`, `version`.
//!
//! Exit codes: 0 when the job finished, 2 for a problem in the spec or a
//! module (fix the input and run again), 1 for a failure while running,
//! 130 when interrupted.

use crate::error::{Error, Fault};
use crate::plan::{self, Pipeline, PlanOptions};
use crate::runtime::job::{self, JobSummary};
use crate::time::SystemClock;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A stream processor with sandboxed WebAssembly operators"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline in this process until its input ends (or Ctrl-C).
    Run {
        /// The pipeline spec (YAML).
        spec: PathBuf,
        #[command(flatten)]
        modules: ModuleArgs,
        /// Do not print the job summary.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a spec and its modules, and print the plan, without running.
    Validate {
        spec: PathBuf,
        #[command(flatten)]
        modules: ModuleArgs,
    },
    /// Print the versions of sluice, its WIT contract and wasmtime.
    Version,
}

#[derive(clap::Args)]
struct ModuleArgs {
    /// A folder to look for Wasm modules in (after the spec's folder and
    /// SLUICE_MODULE_PATH); may be repeated.
    #[arg(long = "module-path", value_name = "DIR")]
    module_path: Vec<PathBuf>,
}

pub fn main() -> ExitCode {
    crate::process_start();
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Version => {
            println!(
                "sluice {} (WIT {}, wasmtime {})",
                env!("CARGO_PKG_VERSION"),
                crate::WIT_PACKAGE,
                env!("SLUICE_WASMTIME_VERSION")
            );
            ExitCode::SUCCESS
        }
        Command::Validate { spec, modules } => {
            match plan::load(&spec, &PlanOptions::from_env(&modules.module_path)) {
                Ok(p) => {
                    print!("{}", p.describe());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&Error::Plan(e)),
            }
        }
        Command::Run {
            spec,
            modules,
            quiet,
        } => {
            let pipeline = match plan::load(&spec, &PlanOptions::from_env(&modules.module_path)) {
                Ok(p) => p,
                Err(e) => return fail(&Error::Plan(e)),
            };
            tracing::debug!("plan:\n{}", pipeline.describe());
            run(&pipeline, quiet)
        }
    }
}

fn run(pipeline: &Pipeline, quiet: bool) -> ExitCode {
    // Tasks run on threads of their own (see runtime::job); this runtime
    // only waits for them and for Ctrl-C.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = job::run(pipeline, Arc::new(SystemClock)) => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    });
    match outcome {
        None => {
            eprintln!("sluice: interrupted");
            ExitCode::from(130)
        }
        Some(Err(e)) => fail(&Error::Runtime(e)),
        Some(Ok(summary)) => {
            if !quiet {
                eprint!("{}", format_summary(pipeline, &summary));
            }
            ExitCode::SUCCESS
        }
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("sluice: error: {e}");
    match e.fault() {
        Fault::User => {}
        Fault::External => eprintln!(
            "sluice: this is a problem outside sluice (a file, a disk); fix it and run again"
        ),
        Fault::Internal => eprintln!(
            "sluice: this is a bug in sluice; please report it with the spec that caused it"
        ),
    }
    match e {
        Error::Plan(_) => ExitCode::from(2),
        Error::Runtime(_) => ExitCode::FAILURE,
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The table printed when a job ends.
pub fn format_summary(pipeline: &Pipeline, s: &JobSummary) -> String {
    use std::fmt::Write;
    let secs = s.elapsed.as_secs_f64();
    let read = s.records_read();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sluice: job `{}` finished in {:.2} s: {} records read ({:.0} records/s)",
        pipeline.name,
        secs,
        read,
        if secs > 0.0 { read as f64 / secs } else { 0.0 }
    );
    let ms = |d: Option<std::time::Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    let _ = writeln!(
        out,
        "  since start: first record read {}, first output {}",
        ms(s.first_read),
        ms(s.first_output)
    );
    let _ = writeln!(
        out,
        "  {:<16} {:<9} {:>3} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "node", "kind", "par", "in", "out", "late", "dead", "wasm s"
    );
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "  {:<16} {:<9} {:>3} {:>12} {:>12} {:>9} {:>9} {:>9.3}",
            n.uid,
            n.kind,
            n.parallelism,
            n.records_in,
            n.records_out,
            n.late,
            n.dead_lettered,
            n.wasm.as_secs_f64()
        );
    }
    out
}
