//! `sluice module …` and `sluice job …`: a client of the REST API (see
//! [`crate::server`]). Tables for people; `--json` prints the server's
//! answer as it is, for scripts.

use clap::Subcommand;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        env = "SLUICE_SERVER",
        default_value = "http://127.0.0.1:8081",
        global = true
    )]
    server: String,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum ModuleCommand {
    /// Upload a .wasm component (checked by the server before it is kept).
    Upload {
        file: PathBuf,
        /// The name to keep it under (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List uploaded modules.
    List,
    /// Show a module's worlds, hash, size and (keyed process functions)
    /// declared states.
    Inspect {
        /// A name, or a hash (`sha256:…` or 12+ hex digits).
        module: String,
        /// The JSON config to open a keyed process function with.
        #[arg(long)]
        config: Option<String>,
    },
    /// Remove a module (refused while a running job uses it).
    Rm { module: String },
}

#[derive(Subcommand)]
pub enum JobCommand {
    /// Submit a spec, or a Flink SQL script (`FILE.sql`, its INSERT INTOs);
    /// its `${VAR}`s are filled from this shell's environment (and --var),
    /// its modules are names or hashes of uploaded modules.
    Submit {
        spec: PathBuf,
        /// A value for a `${VAR}` of the spec: NAME=VALUE (may be repeated).
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Start from this savepoint folder (on the server's machine).
        #[arg(long, value_name = "DIR")]
        from_savepoint: Option<PathBuf>,
        /// Drop state in the savepoint that no node of the spec claims.
        #[arg(long)]
        drop_unclaimed_state: bool,
    },
    /// List jobs.
    List,
    /// Show a job: status, graph, and per operator rates, watermark,
    /// backpressure, late and dead-lettered counts.
    Inspect { id: String },
    /// Cancel a running job and wait (up to 30 s) until it has stopped.
    Cancel {
        id: String,
        /// Then drop the replication slots of its `postgres-cdc` sources
        /// (a cancel without it, and any failure, keeps them).
        #[arg(long)]
        drop_slot: bool,
    },
    /// Take a savepoint of a running job; it keeps running.
    Savepoint {
        id: String,
        /// The folder to write it to (on the server's machine; default: a
        /// `savepoint-<id>` folder in the job's checkpoint folder).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Take a savepoint and stop the job once it is complete.
    Stop {
        id: String,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(args: &ServerArgs) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let base = args.server.trim_end_matches('/').to_owned();
        let token = std::env::var("SLUICE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| {
                server_port(&base).and_then(|p| {
                    crate::server::guard::read_token(&crate::server::guard::token_file(p))
                })
            });
        Client { base, token, agent }
    }

    /// Sends a request; an answer that is not 2xx becomes the server's
    /// error message.
    fn call(&self, method: &str, path: &str, body: Option<Body>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let sent = match body {
            // The server takes a POST only as JSON, even an empty one.
            None if method == "POST" => self.agent.run(
                req.header("Content-Type", "application/json")
                    .body(())
                    .map_err(|e| e.to_string())?,
            ),
            None => self.agent.run(req.body(()).map_err(|e| e.to_string())?),
            Some(Body::Wasm(bytes)) => self.agent.run(
                req.header("Content-Type", "application/wasm")
                    .body(bytes)
                    .map_err(|e| e.to_string())?,
            ),
            Some(Body::Json(v)) => self.agent.run(
                req.header("Content-Type", "application/json")
                    .body(v.to_string())
                    .map_err(|e| e.to_string())?,
            ),
        };
        let mut resp = sent.map_err(|e| {
            format!(
                "cannot reach the server at {} ({e}); start one with `sluice serve`, or point --server / SLUICE_SERVER at it",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| format!("{method} {url}: cannot read the answer: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["error"].as_str().map_or_else(
                || format!("{method} {url}: {status}: {value}"),
                str::to_owned,
            ))
        }
    }
}

/// The port of a server URL (`http://host:port/...`; 80 when it has none),
/// by which `sluice serve` names its token file.
fn server_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.is_empty() => port.parse().ok(),
        _ => Some(80),
    }
}

enum Body {
    Wasm(Vec<u8>),
    Json(Value),
}

fn finish(args: &ServerArgs, result: Result<Value, String>, table: impl Fn(&Value)) -> ExitCode {
    match result {
        Ok(v) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&v).expect("json"));
            } else {
                table(&v);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sluice: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A path segment, percent-encoded.
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn module(cmd: ModuleCommand, args: &ServerArgs) -> ExitCode {
    let c = Client::new(args);
    match cmd {
        ModuleCommand::Upload { file, name } => {
            let name = name.unwrap_or_else(|| {
                file.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let result = std::fs::read(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))
                .and_then(|bytes| {
                    c.call(
                        "PUT",
                        &format!("/v1/modules/{}", seg(&name)),
                        Some(Body::Wasm(bytes)),
                    )
                });
            finish(args, result, |m| {
                println!(
                    "uploaded {} (sha256:{}, {}, {})",
                    s(&m["name"]),
                    s(&m["sha256"]),
                    size(m["size"].as_u64().unwrap_or(0)),
                    worlds(m)
                )
            })
        }
        ModuleCommand::List => finish(args, c.call("GET", "/v1/modules", None), |v| {
            let rows: Vec<Vec<String>> = list(&v["modules"])
                .iter()
                .map(|m| {
                    vec![
                        s(&m["name"]),
                        s(&m["sha256"]).chars().take(12).collect(),
                        size(m["size"].as_u64().unwrap_or(0)),
                        worlds(m),
                        list(&m["used_by"])
                            .iter()
                            .map(s)
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            table(&["NAME", "SHA256", "SIZE", "WORLDS", "USED BY"], &rows);
        }),
        ModuleCommand::Inspect { module, config } => {
            let query = config
                .map(|c| format!("?config={}", seg(&c)))
                .unwrap_or_default();
            let result = c.call("GET", &format!("/v1/modules/{}{query}", seg(&module)), None);
            finish(args, result, |m| {
                println!("name      {}", s(&m["name"]));
                println!("sha256    {}", s(&m["sha256"]));
                println!("size      {}", size(m["size"].as_u64().unwrap_or(0)));
                println!("worlds    {}", worlds(m));
                let used = list(&m["used_by"]).iter().map(s).collect::<Vec<_>>();
                println!(
                    "used by   {}",
                    if used.is_empty() {
                        "-".into()
                    } else {
                        used.join(", ")
                    }
                );
                if let Some(states) = m["states"].as_array() {
                    println!("states:");
                    let rows: Vec<Vec<String>> = states
                        .iter()
                        .map(|st| {
                            vec![
                                s(&st["name"]),
                                s(&st["kind"]),
                                st["ttl_ms"]
                                    .as_u64()
                                    .map_or("-".into(), |t| format!("{t} ms")),
                            ]
                        })
                        .collect();
                    table(&["  NAME", "KIND", "TTL"], &rows);
                    let sides = list(&m["side_outputs"]).iter().map(s).collect::<Vec<_>>();
                    if !sides.is_empty() {
                        println!("side outputs: {}", sides.join(", "));
                    }
                }
                if let Some(e) = m["states_error"].as_str() {
                    println!("states    unknown: {e}");
                }
            })
        }
        ModuleCommand::Rm { module } => {
            let result = c.call("DELETE", &format!("/v1/modules/{}", seg(&module)), None);
            finish(args, result, |v| {
                for m in list(&v["removed"]) {
                    println!("removed {} (sha256:{})", s(&m["name"]), s(&m["sha256"]));
                }
            })
        }
    }
}

pub fn job(cmd: JobCommand, args: &ServerArgs) -> ExitCode {
    let c = Client::new(args);
    match cmd {
        JobCommand::Submit {
            spec,
            vars,
            from_savepoint,
            drop_unclaimed_state,
        } => {
            let result = submission(&spec, &vars)
                .map(|mut body| {
                    if let Some(d) = &from_savepoint {
                        body["from_savepoint"] = json!(absolute(d));
                    }
                    if drop_unclaimed_state {
                        body["drop_unclaimed_state"] = json!(true);
                    }
                    body
                })
                .and_then(|body| c.call("POST", "/v1/jobs", Some(Body::Json(body))));
            finish(args, result, |j| {
                println!("submitted job {} (`{}`)", s(&j["id"]), s(&j["name"]))
            })
        }
        JobCommand::List => finish(args, c.call("GET", "/v1/jobs", None), |v| {
            let rows: Vec<Vec<String>> = list(&v["jobs"])
                .iter()
                .map(|j| {
                    vec![
                        s(&j["id"]),
                        s(&j["name"]),
                        s(&j["status"]),
                        format!("{:.1} s", j["duration_seconds"].as_f64().unwrap_or(0.0)),
                        num(&j["records_read"]),
                        num(&j["records_read_per_second"]),
                    ]
                })
                .collect();
            table(
                &["ID", "NAME", "STATUS", "RUNNING", "RECORDS", "RECORDS/S"],
                &rows,
            );
        }),
        JobCommand::Inspect { id } => {
            let result = c.call("GET", &format!("/v1/jobs/{}", seg(&id)), None);
            finish(args, result, print_job)
        }
        JobCommand::Savepoint { id, dir } => savepoint(&c, args, &id, dir, false),
        JobCommand::Stop { id, dir } => savepoint(&c, args, &id, dir, true),
        JobCommand::Cancel { id, drop_slot } => {
            let query = if drop_slot { "?drop_slot=true" } else { "" };
            let result = c
                .call(
                    "POST",
                    &format!("/v1/jobs/{}/cancel{query}", seg(&id)),
                    None,
                )
                .and_then(|j| {
                    let id = s(&j["id"]);
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    loop {
                        let now = match c.call("GET", &format!("/v1/jobs/{id}"), None) {
                            Ok(now) => now,
                            // `sluice run` exits when its job has stopped.
                            Err(e) if e.starts_with("cannot reach") => {
                                let mut gone = j.clone();
                                gone["status"] = json!("cancelled (its host has exited)");
                                return Ok(gone);
                            }
                            Err(e) => return Err(e),
                        };
                        if now["status"] != "running" {
                            return Ok(now);
                        }
                        if std::time::Instant::now() > deadline {
                            return Err(format!("job {id} is still stopping after 30 s"));
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            finish(args, result, |j| {
                println!(
                    "job {} (`{}`) is {}",
                    s(&j["id"]),
                    s(&j["name"]),
                    s(&j["status"])
                )
            })
        }
    }
}

/// `job savepoint` and `job stop`.
fn savepoint(
    c: &Client,
    args: &ServerArgs,
    id: &str,
    dir: Option<PathBuf>,
    stop: bool,
) -> ExitCode {
    let verb = if stop { "stop" } else { "savepoints" };
    let body = json!({ "dir": dir.as_deref().map(absolute) });
    let result = c.call(
        "POST",
        &format!("/v1/jobs/{}/{verb}", seg(id)),
        Some(Body::Json(body)),
    );
    finish(args, result, |j| {
        println!("savepoint {}", s(&j["savepoint"]));
        if stop {
            println!(
                "job {} (`{}`) is {}",
                s(&j["id"]),
                s(&j["name"]),
                s(&j["status"])
            );
        }
    })
}

/// A path made absolute against this folder: the server resolves relative
/// paths against its own.
fn absolute(p: &std::path::Path) -> String {
    std::path::absolute(p)
        .unwrap_or_else(|_| p.to_owned())
        .display()
        .to_string()
}

/// The submission body: the spec's text, its file name, and the values of
/// the `${VAR}`s it uses (from --var, else this environment).
fn submission(spec: &std::path::Path, vars: &[String]) -> Result<Value, String> {
    let text = std::fs::read_to_string(spec)
        .map_err(|e| format!("cannot read {}: {e}", spec.display()))?;
    let mut given = BTreeMap::new();
    for v in vars {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| format!("--var `{v}`: write NAME=VALUE"))?;
        given.insert(k.to_owned(), val.to_owned());
    }
    let used = std::cell::RefCell::new(BTreeMap::new());
    // Substituting here only finds the names; the server substitutes again
    // (and reports errors with lines).
    let _ = crate::plan::env::substitute(&text, |k| {
        let v = given.get(k).cloned().or_else(|| std::env::var(k).ok());
        if let Some(v) = &v {
            used.borrow_mut().insert(k.to_owned(), v.clone());
        }
        v
    });
    // A Flink SQL script (`.sql`) goes as `sql`: the server plans it.
    let key = if spec.extension().is_some_and(|e| e == "sql") {
        "sql"
    } else {
        "spec"
    };
    Ok(json!({
        key: text,
        "file": spec.display().to_string(),
        "vars": used.into_inner(),
    }))
}

fn print_job(j: &Value) {
    println!("job       {} (`{}`)", s(&j["id"]), s(&j["name"]));
    println!(
        "status    {} for {:.1} s, {} restarts, {} checkpoints (last {} ms, {} bytes)",
        s(&j["status"]),
        j["duration_seconds"].as_f64().unwrap_or(0.0),
        num(&j["restarts"]),
        num(&j["checkpoints"]["completed"]),
        num(&j["checkpoints"]["last_duration_ms"]),
        num(&j["checkpoints"]["last_size_bytes"]),
    );
    if let Some(p) = j["savepoint"].as_str() {
        println!("savepoint {p}");
    }
    if let Some(e) = j["last_error"].as_str() {
        println!("error     {e}");
    }
    let rows: Vec<Vec<String>> = list(&j["operators"])
        .iter()
        .map(|o| {
            vec![
                s(&o["uid"]),
                s(&o["kind"]),
                num(&o["parallelism"]),
                num(&o["records_in_per_second"]),
                num(&o["records_out_per_second"]),
                num(&o["records_in"]),
                num(&o["records_out"]),
                o["watermark_lag_ms"].as_i64().map_or("-".into(), lag),
                format!("{:.0} %", o["backpressure"].as_f64().unwrap_or(0.0) * 100.0),
                num(&o["late"]),
                num(&o["dead_lettered"]),
                o["state_bytes"].as_u64().map_or("-".into(), size),
            ]
        })
        .collect();
    table(
        &[
            "OPERATOR", "KIND", "PAR", "IN/S", "OUT/S", "IN", "OUT", "WM LAG", "BACKPR", "LATE",
            "DEAD", "STATE",
        ],
        &rows,
    );
    let edges: Vec<String> = list(&j["graph"]["edges"])
        .iter()
        .map(|e| {
            let port = s(&e["port"]);
            format!(
                "{}{} -> {} ({}{})",
                s(&e["from"]),
                if port == "main" {
                    String::new()
                } else {
                    format!(".{port}")
                },
                s(&e["to"]),
                s(&e["partitioning"]),
                if e["chained"] == true {
                    ", chained"
                } else {
                    ""
                }
            )
        })
        .collect();
    if !edges.is_empty() {
        println!("graph     {}", edges.join("; "));
    }
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn num(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |n| format!("{n:.0}"))
}

fn worlds(m: &Value) -> String {
    list(&m["worlds"])
        .iter()
        .map(s)
        .collect::<Vec<_>>()
        .join(",")
}

fn lag(ms: i64) -> String {
    let f = ms as f64;
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", f / 1e3),
        60_000..3_600_000 => format!("{:.1} min", f / 6e4),
        3_600_000..86_400_000 => format!("{:.1} h", f / 3.6e6),
        _ => format!("{:.1} d", f / 8.64e7),
    }
}

fn size(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1048576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1048576.0),
    }
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::server_port;

    #[test]
    fn the_port_names_the_token_file() {
        assert_eq!(server_port("http://127.0.0.1:8081"), Some(8081));
        assert_eq!(server_port("http://localhost:9000/x"), Some(9000));
        assert_eq!(server_port("http://[::1]:8082"), Some(8082));
        assert_eq!(server_port("http://[::1]"), Some(80));
        assert_eq!(server_port("http://example"), Some(80));
        assert_eq!(server_port("https://example:1"), None);
    }
}
