//! The `sluice` command: `run`, `validate`, `serve`, `version`, and the
//! API client verbs `module` and `job` (see [`client`]).
//!
//! Exit codes: 0 when the job finished (or stopped with a savepoint), 2 for a problem in the spec or a
//! module (fix the input and run again), 1 for a failure while running
//! (or a request the server refused), 130 when interrupted or cancelled.

mod client;

use crate::error::{Error, Fault, RuntimeError};
use crate::plan::{self, Pipeline, PlanOptions};
use crate::runtime::job::JobSummary;
use crate::server::jobs::Jobs;
use crate::server::store::ModuleStore;
use crate::server::{self, AppState};
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
        /// Do not print the job summary (nor the API's address).
        #[arg(long, short)]
        quiet: bool,
        /// Where to serve the API for this job (loopback; when the port is
        /// taken, another one is used and printed).
        #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
        listen: String,
        /// Do not serve the API.
        #[arg(long)]
        no_api: bool,
        /// Start from a savepoint (or checkpoint) folder, possibly at another
        /// parallelism or with operators' modules replaced.
        #[arg(long, value_name = "DIR")]
        from_savepoint: Option<PathBuf>,
        /// With --from-savepoint: drop state of operators the spec no longer
        /// has, or states a module no longer declares.
        #[arg(long)]
        drop_unclaimed_state: bool,
        /// Take checkpoints into this folder (in place of the spec's
        /// `checkpoints.dir`; turns checkpointing on).
        #[arg(long, value_name = "DIR")]
        checkpoint_dir: Option<String>,
        /// The checkpoint interval, in place of the spec's (e.g. 500ms, 10s).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        checkpoint_interval: Option<std::time::Duration>,
        /// Read at most this many records per second in each source task: to
        /// replay a file at a realistic pace.
        #[arg(long, value_name = "N", value_parser = parse_rate)]
        source_rate: Option<f64>,
    },
    /// Run a long-lived host: a REST API for modules and jobs, Prometheus
    /// metrics at /metrics and a dashboard at /.
    Serve {
        /// Address to listen on; anything but loopback needs a token.
        #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
        listen: String,
        /// Bearer token that every request must carry (default: a random
        /// one made up at start, printed, and kept where the CLI finds it:
        /// $SLUICE_HOME/serve-<port>.token, else
        /// ~/.local/share/sluice/serve-<port>.token, readable by you alone).
        #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Serve without a token: then any program on this machine, run by
        /// any user, may submit jobs that read and write your files (web
        /// pages still may not). Loopback only.
        #[arg(long)]
        no_token: bool,
        /// Another name clients may reach the server by (the `Host` they
        /// send), besides IP addresses, `localhost` and the --listen name:
        /// e.g. its name on a container network. May be repeated.
        #[arg(long = "allow-host", value_name = "NAME")]
        allow_hosts: Vec<String>,
        /// A folder submitted jobs may read and write (file sources and
        /// sinks, dead letters, checkpoints, state, folders granted to
        /// modules, savepoints); may be repeated. Default: the folder the
        /// server runs in.
        #[arg(long = "allow-dir", value_name = "DIR")]
        allow_dirs: Vec<PathBuf>,
        /// Where uploaded modules are kept (default: $SLUICE_HOME/modules,
        /// else ~/.local/share/sluice/modules).
        #[arg(long, value_name = "DIR")]
        store: Option<PathBuf>,
        /// Largest module upload, e.g. 64MiB.
        #[arg(long, default_value = "64MiB", value_parser = parse_size)]
        max_module_size: u64,
    },
    /// Upload, list, inspect and remove modules on a server.
    Module {
        #[command(subcommand)]
        command: client::ModuleCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Submit, list, inspect and cancel jobs on a server.
    Job {
        #[command(subcommand)]
        command: client::JobCommand,
        #[command(flatten)]
        server: client::ServerArgs,
    },
    /// Check a spec and its modules, and print the plan, without running.
    Validate {
        spec: PathBuf,
        #[command(flatten)]
        modules: ModuleArgs,
    },
    /// Run a Flink SQL script (SET, CREATE TABLE, a final SELECT) in this
    /// process; the SELECT's rows go to standard output as JSON lines.
    Sql {
        /// The script; `${VAR}` and `${VAR:-default}` come from the
        /// environment.
        file: PathBuf,
        /// Print the plan (operators, parallelism, uids) and the result
        /// columns, without running.
        #[arg(long)]
        explain: bool,
        /// Write the rows to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Do not print the job summary.
        #[arg(long, short)]
        quiet: bool,
        /// The job's parallelism where the script does not SET
        /// 'parallelism.default' (Flink's `-p`).
        #[arg(long, short, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
        parallelism: Option<u32>,
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

fn parse_size(s: &str) -> Result<u64, String> {
    crate::plan::spec::ByteSize::parse(s).map(|b| b.0)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::plan::spec::Dur::parse(s).map(|d| d.0)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "`{s}` is not a positive number of records per second"
        )),
    }
}

pub fn main() -> ExitCode {
    crate::process_start();
    let cli = Cli::parse();
    init_logging(if matches!(cli.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    });
    match cli.command {
        Command::Module { command, server } => client::module(command, &server),
        Command::Job { command, server } => client::job(command, &server),
        Command::Serve {
            listen,
            token,
            no_token,
            allow_hosts,
            allow_dirs,
            store,
            max_module_size,
        } => {
            let hosts = allow_hosts
                .iter()
                .fold(server::guard::Hosts::for_listen(&listen), |h, n| h.with(n));
            let dirs = if allow_dirs.is_empty() {
                vec![std::env::current_dir().unwrap_or_default()]
            } else {
                allow_dirs
            };
            let allowed = match crate::plan::confine::AllowedDirs::new(&dirs) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("sluice serve: {e}");
                    return ExitCode::from(2);
                }
            };
            let limits = ServeLimits {
                hosts,
                allowed,
                max_module_size,
            };
            serve(&listen, TokenChoice::new(token, no_token), limits, store)
        }
        Command::Sql {
            file,
            explain,
            output,
            quiet,
            parallelism,
            modules,
        } => sql(&file, explain, output, quiet, parallelism, &modules),
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
            listen,
            no_api,
            from_savepoint,
            drop_unclaimed_state,
            checkpoint_dir,
            checkpoint_interval,
            source_rate,
        } => {
            let options = PlanOptions {
                checkpoint_dir,
                checkpoint_interval,
                source_rate,
                ..PlanOptions::from_env(&modules.module_path)
            };
            let pipeline = match plan::load(&spec, &options) {
                Ok(p) => p,
                Err(e) => return fail(&Error::Plan(e)),
            };
            tracing::debug!("plan:\n{}", pipeline.describe());
            let start = crate::runtime::job::Start {
                from_savepoint,
                drop_unclaimed_state,
            };
            run(pipeline, quiet, (!no_api).then_some(listen.as_str()), start)
        }
    }
}

/// A runtime for the API and for waiting on jobs; tasks run on threads of
/// their own (see runtime::job).
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice api")
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("sluice: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

fn run(
    pipeline: Pipeline,
    quiet: bool,
    listen: Option<&str>,
    start: crate::runtime::job::Start,
) -> ExitCode {
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let jobs = Arc::new(Jobs::default());
    let outcome = runtime.block_on(async {
        // The job is listed before the API says where it is.
        let (job, done) = jobs
            .start(pipeline, start, None)
            .map_err(RuntimeError::Internal)?;
        let mut api = None;
        if let Some(listen) = listen {
            // The same API as `sluice serve`, for this one job.
            let listener = match server::bind(listen, None).await {
                Ok(l) => Ok(l),
                Err(first) => server::bind("127.0.0.1:0", None).await.map_err(|_| first),
            };
            match listener {
                Ok(l) => {
                    if !quiet && let Ok(addr) = l.local_addr() {
                        eprintln!("sluice: API and dashboard at http://{addr}");
                    }
                    let state = Arc::new(AppState {
                        jobs: jobs.clone(),
                        store: None,
                        token: None,
                        hosts: server::guard::Hosts::for_listen(listen),
                        max_module_size: 0,
                        base_dir: PathBuf::from("."),
                        allowed_dirs: None,
                    });
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let task = tokio::spawn(server::serve_until(l, state, async {
                        let _ = rx.await;
                    }));
                    api = Some((tx, task));
                }
                Err(e) => tracing::warn!("not serving the API: {e}"),
            }
        }
        let result = tokio::select! {
            r = done => Ok(r.unwrap_or_else(|_| Err(RuntimeError::Internal("the job thread stopped".into())))),
            _ = tokio::signal::ctrl_c() => {
                job.cancel();
                Err(RuntimeError::Cancelled)
            }
        };
        // Answer the requests in flight (a `job stop` waits for the job to
        // have stopped) before the process exits.
        if let Some((tx, task)) = api {
            let _ = tx.send(());
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
        result
    });
    match outcome {
        Err(RuntimeError::Cancelled) | Ok(Err(RuntimeError::Cancelled)) => {
            eprintln!("sluice: interrupted");
            ExitCode::from(130)
        }
        Err(e) | Ok(Err(e)) => fail(&Error::Runtime(e)),
        Ok(Ok(summary)) => {
            if let Some(at) = &summary.already_finished {
                eprintln!(
                    "sluice: the job had already finished (its last checkpoint, {at}, says so); nothing to do. Empty the checkpoint folder to run it again."
                );
                return ExitCode::SUCCESS;
            }
            if let Some(sp) = &summary.savepoint {
                eprintln!("sluice: stopped with a savepoint at {}", sp.display());
            }
            if !quiet {
                let pipeline_name = jobs.list().first().map(|j| j.name.clone());
                eprint!(
                    "{}",
                    format_summary(pipeline_name.as_deref().unwrap_or("?"), &summary)
                );
            }
            ExitCode::SUCCESS
        }
    }
}

/// What `sluice serve` was told about tokens.
enum TokenChoice {
    /// `--token` or `SLUICE_TOKEN`.
    Given(String),
    /// Neither: one is made up.
    Generate,
    /// `--no-token`.
    None,
}

impl TokenChoice {
    fn new(token: Option<String>, no_token: bool) -> TokenChoice {
        match token.filter(|t| !t.is_empty()) {
            _ if no_token => TokenChoice::None,
            Some(t) => TokenChoice::Given(t),
            None => TokenChoice::Generate,
        }
    }
}

/// What `sluice serve` lets clients do.
struct ServeLimits {
    hosts: server::guard::Hosts,
    allowed: crate::plan::confine::AllowedDirs,
    max_module_size: u64,
}

fn serve(
    listen: &str,
    choice: TokenChoice,
    limits: ServeLimits,
    store: Option<PathBuf>,
) -> ExitCode {
    let dir = store.unwrap_or_else(default_store);
    let store = match ModuleStore::open(&dir) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("sluice serve: {e}");
            return ExitCode::from(2);
        }
    };
    let token = match choice {
        TokenChoice::Given(t) => Some(t),
        TokenChoice::Generate => match server::guard::new_token() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("sluice serve: {e}");
                return ExitCode::FAILURE;
            }
        },
        TokenChoice::None => None,
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let listener = match server::bind(listen, token.as_deref()).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sluice serve: {e}");
                return ExitCode::from(2);
            }
        };
        let local = listener.local_addr().ok();
        let addr = local.map_or_else(|| listen.to_owned(), |a| a.to_string());
        // The token goes where the CLI looks for it, by port.
        let token_file = match (&token, local) {
            (Some(t), Some(a)) => {
                let file = server::guard::token_file(a.port());
                if let Err(e) = server::guard::write_token(&file, t) {
                    eprintln!("sluice serve: {e}");
                    return ExitCode::FAILURE;
                }
                Some(file)
            }
            _ => None,
        };
        // The first line of output: scripts and tests read the address here.
        println!(
            "sluice: serving on http://{addr} (modules in {})",
            dir.display()
        );
        match (&token, &token_file) {
            (Some(t), Some(f)) => println!(
                "sluice: dashboard at http://{addr}/#token={t} (the token is in {}, where the CLI finds it)",
                f.display()
            ),
            (Some(_), None) => println!("sluice: dashboard at http://{addr}/#token=<the token>"),
            (None, _) => println!(
                "sluice: dashboard at http://{addr}/ (no token: any program on this machine may submit jobs)"
            ),
        }
        let state = Arc::new(AppState {
            jobs: Arc::new(Jobs::default()),
            store: Some(store),
            token,
            hosts: limits.hosts,
            max_module_size: limits.max_module_size,
            base_dir: std::env::current_dir().unwrap_or_default(),
            allowed_dirs: Some(limits.allowed),
        });
        let jobs = state.jobs.clone();
        let code = tokio::select! {
            r = server::serve(listener, state) => {
                if let Err(e) = r {
                    eprintln!("sluice serve: {e}");
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                }
            }
            _ = tokio::signal::ctrl_c() => {
                for j in jobs.list() {
                    j.cancel();
                }
                eprintln!("sluice serve: interrupted; jobs cancelled");
                ExitCode::from(130)
            }
        };
        if let Some(f) = token_file {
            let _ = std::fs::remove_file(f);
        }
        code
    })
}

/// `$SLUICE_HOME/modules`, else `~/.local/share/sluice/modules`.
fn default_store() -> PathBuf {
    crate::home_dir().join("modules")
}

/// `sluice sql`: plans the script into a spec, then plans and runs that.
fn sql(
    file: &std::path::Path,
    explain: bool,
    output: Option<PathBuf>,
    quiet: bool,
    parallelism: Option<u32>,
    modules: &ModuleArgs,
) -> ExitCode {
    let refuse = |m: String| {
        eprintln!("sluice: error: {m}");
        ExitCode::from(2)
    };
    let raw = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return refuse(format!("{}: cannot read the script: {e}", file.display())),
    };
    let text = match plan::env::substitute(&raw, |k| std::env::var(k).ok()) {
        Ok(t) => t,
        Err((line, m)) => return refuse(format!("{}:{line}: {m}", file.display())),
    };
    let out = match output {
        Some(p) => crate::sql::Output::File(p),
        None => crate::sql::Output::Stdout,
    };
    let base_dir = file.parent().map(PathBuf::from).unwrap_or_default();
    let options = PlanOptions::from_env(&modules.module_path);
    let signatures = |m: &str| plan::sql_function_signatures(m, &base_dir, &options);
    let planned = match crate::sql::plan(&text, file, &out, parallelism, &signatures) {
        Ok(p) => p,
        Err(e) => {
            let at = e.pos.map_or(String::new(), |(l, c)| format!(":{l}:{c}"));
            return refuse(format!("{}{at}: {}", file.display(), e.message));
        }
    };
    let pipeline = match plan::load_text(&planned.spec, file, &base_dir, &|_| None, &options) {
        Ok(p) => p,
        Err(e) => return fail(&Error::Plan(e)),
    };
    if explain {
        use std::io::Write;
        let cols: Vec<String> = planned
            .columns
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect();
        // A reader that stops early (`| head`) closes the pipe: not an error.
        let _ = writeln!(
            std::io::stdout().lock(),
            "{}result columns: {}",
            pipeline.describe(),
            cols.join(", ")
        );
        return ExitCode::SUCCESS;
    }
    run(pipeline, quiet, None, crate::runtime::job::Start::default())
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

/// Logs go to stderr, filtered by `SLUICE_LOG` (default `default`), as
/// text or, with `SLUICE_LOG_FORMAT=json`, one JSON object per line (with
/// the job and task spans, so guest lines carry job, task and operator).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("SLUICE_LOG_FORMAT").is_ok_and(|f| f == "json") {
        let _ = builder.json().with_span_list(true).try_init();
    } else {
        let _ = builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
}

/// The table printed when a job ends.
pub fn format_summary(name: &str, s: &JobSummary) -> String {
    use std::fmt::Write;
    let secs = s.elapsed.as_secs_f64();
    let read = s.records_read();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sluice: job `{}` finished in {:.2} s: {} records read ({:.0} records/s)",
        name,
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
        "  {:<16} {:<17} {:>3} {:>12} {:>12} {:>9} {:>9} {:>9}",
        "node", "kind", "par", "in", "out", "late", "dead", "wasm s"
    );
    for n in &s.nodes {
        let _ = writeln!(
            out,
            "  {:<16} {:<17} {:>3} {:>12} {:>12} {:>9} {:>9} {:>9.3}",
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
    for n in s.nodes.iter().filter(|n| n.cache != (0, 0)) {
        let _ = writeln!(
            out,
            "  {}: lookup cache {} hits, {} misses",
            n.uid, n.cache.0, n.cache.1
        );
    }
    out
}
