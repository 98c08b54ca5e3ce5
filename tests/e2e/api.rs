//! `sluice serve` and its REST API, over real HTTP to a real server
//! process: upload real example components, submit a job on the generator,
//! watch its metrics move, cancel it; and every way a request can be
//! refused.

use crate::support::{self, stderr, stdout};
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `sluice serve` process on a free loopback port, stopped on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        let dir = support::temp_dir();
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let mut child = support::sluice()
            .args(["serve", "--listen", "127.0.0.1:0", "--store"])
            .arg(dir.path().join("store"))
            .args(extra)
            .current_dir(dir.path())
            .env_remove("SLUICE_TOKEN")
            // Where it keeps its token file.
            .env("SLUICE_HOME", dir.path())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start sluice serve");
        // The first line says where it listens, the second where the
        // dashboard is (with the token).
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = std::io::BufReader::new(out);
            for _ in 0..2 {
                let mut line = String::new();
                let _ = out.read_line(&mut line);
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sluice serve prints its address");
        let dashboard = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("sluice serve prints the dashboard's address");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        // The token it was given, or the one it made up (printed in the
        // dashboard's URL).
        let token = match extra.iter().position(|a| *a == "--token") {
            Some(i) => Some(extra[i + 1].to_owned()),
            None => dashboard
                .split_whitespace()
                .find_map(|w| w.split_once("#token="))
                .map(|(_, t)| t.to_owned()),
        };
        assert_eq!(
            token.is_none(),
            extra.contains(&"--no-token"),
            "a token unless --no-token: {dashboard:?}"
        );
        Server {
            child,
            url,
            dir,
            agent,
            token,
        }
    }

    /// The token the server wants, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The dashboard's address, with the token in its fragment.
    pub fn dashboard_url(&self) -> String {
        match &self.token {
            Some(t) => format!("{}/#token={t}", self.url),
            None => format!("{}/", self.url),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Sends a request (with the server's token, if it has one); returns
    /// the status and the body (JSON when it parses, else a string).
    pub fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        self.request_with(method, path, body, self.token.as_deref())
    }

    pub fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let send = |body: Option<Vec<u8>>| {
            let mut req = ureq::http::Request::builder()
                .method(method)
                .uri(format!("{}{path}", self.url));
            if let Some(t) = token {
                req = req.header("Authorization", format!("Bearer {t}"));
            }
            if method == "POST" {
                req = req.header("Content-Type", "application/json");
            }
            match body {
                None => self.agent.run(req.body(()).unwrap()),
                Some(b) => self.agent.run(req.body(b).unwrap()),
            }
        };
        let mut sent = send(body.clone());
        // A pooled keep-alive connection the server has just closed as idle
        // fails the next request on it ("Peer disconnected"): an idempotent
        // GET is sent again on a new one, as browsers do.
        if method == "GET" && matches!(sent, Err(ureq::Error::Io(_))) {
            sent = send(body);
        }
        let mut resp = sent.unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn upload(&self, name: &str, file: &str) -> (u16, Value) {
        let bytes = std::fs::read(support::modules_dir().join(file)).unwrap();
        self.request("PUT", &format!("/v1/modules/{name}"), Some(bytes))
    }

    /// Submits `examples/serve/orders-live.yaml` writing into the server's
    /// folder; returns the job id.
    pub fn submit_orders_live(&self) -> String {
        let spec = std::fs::read_to_string(support::repo().join("examples/serve/orders-live.yaml"))
            .unwrap();
        let body = json!({"spec": spec, "file": "orders-live.yaml", "vars": {"RATE": "3000"}});
        let (status, job) = self.request("POST", "/v1/jobs", Some(body.to_string().into_bytes()));
        assert_eq!(status, 201, "{job}\n{}", self.log());
        assert_eq!(job["status"], "running", "{job}");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Polls the job until `done` holds (at most 30 s).
    pub fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let (status, job) = self.request("GET", &format!("/v1/jobs/{id}"), None);
            assert_eq!(status, 200, "{job}");
            if done(&job) {
                return job;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waited 30 s for {what}: {job:#}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn operator<'a>(job: &'a Value, uid: &str) -> &'a Value {
    job["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["uid"] == uid)
        .unwrap_or_else(|| panic!("no operator {uid} in {job:#}"))
}

fn source_in(job: &Value) -> u64 {
    operator(job, "orders")["records_in"].as_u64().unwrap()
}

#[test]
fn upload_submit_watch_metrics_and_cancel_over_http() {
    let s = Server::start(&[]);
    let (status, m) = s.upload("usd_orders.wasm", "usd_orders.wasm");
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["worlds"], json!(["transform"]));
    let sha = m["sha256"].as_str().unwrap().to_owned();
    assert!(
        s.dir.path().join(format!("store/{sha}.wasm")).is_file(),
        "stored by content"
    );
    let (status, m) = s.upload("count_sum.wasm", "count_sum.wasm");
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["worlds"], json!(["aggregate"]));
    // The same content again under the same name replaces nothing.
    assert_eq!(s.upload("count_sum.wasm", "count_sum.wasm").0, 200);
    let (_, list) = s.request("GET", "/v1/modules", None);
    let names: Vec<&str> = list["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["count_sum.wasm", "usd_orders.wasm"]);
    // By hash prefix too.
    let (status, m) = s.request("GET", &format!("/v1/modules/sha256:{}", &sha[..16]), None);
    assert_eq!(
        (status, &m["name"]),
        (200, &json!("usd_orders.wasm")),
        "{m}"
    );

    let id = s.submit_orders_live();
    let first = s.wait_for(&id, "records to flow and rates to be sampled", |j| {
        source_in(j) > 0
            && operator(j, "orders")["records_in_per_second"]
                .as_f64()
                .unwrap()
                > 0.0
            && operator(j, "revenue-per-minute")["watermark"].is_i64()
    });
    let graph = &first["graph"];
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 5, "{graph}");
    assert!(
        graph["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == "completed-usd"
                && e["to"] == "revenue-per-minute"
                && e["partitioning"] == "hash"),
        "{graph}"
    );
    assert_eq!(operator(&first, "completed-usd")["parallelism"], 2);
    assert!(
        operator(&first, "completed-usd")["wasm_seconds"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // The metrics move.
    let before = source_in(&first);
    let later = s.wait_for(&id, "the source count to grow", |j| {
        source_in(j) > before + 1000
    });
    assert!(operator(&later, "revenue-per-minute")["watermark_lag_ms"].is_i64());
    let (status, text) = s.request("GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("sluice_records_in_total{")
                && l.contains(&format!("job=\"{id}\""))
                && l.contains("operator=\"orders\"")
        })
        .unwrap_or_else(|| panic!("no records_in series:\n{text}"));
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n > 0.0, "{line}");
    for series in [
        "sluice_watermark_lag_seconds{",
        "sluice_backpressured_seconds_total{",
        "sluice_dead_lettered_records_total{",
        "sluice_late_records_total{",
        "sluice_wasm_call_seconds_total{",
        "sluice_latency_seconds_bucket{",
        "sluice_job_status{",
    ] {
        assert!(text.contains(series), "no {series} in\n{text}");
    }
    // Latency markers reach the sink within a few seconds.
    s.wait_for(&id, "a latency figure at the sink", |j| {
        operator(j, "revenue")["latency_p99_ms"].is_f64()
    });

    // A module in use stays.
    let (status, e) = s.request("DELETE", "/v1/modules/usd_orders.wasm", None);
    assert_eq!(status, 409, "{e}");
    assert!(e["error"].as_str().unwrap().contains(&id), "{e}");

    let (status, j) = s.request("POST", &format!("/v1/jobs/{}/cancel", &id[..8]), None);
    assert_eq!(status, 202, "{j}");
    let done = s.wait_for(&id, "the job to stop", |j| j["status"] != "running");
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(
        s.request("POST", &format!("/v1/jobs/{id}/cancel"), None).0,
        409
    );
    let (status, r) = s.request("DELETE", "/v1/modules/usd_orders.wasm", None);
    assert_eq!(status, 200, "{r}");
    assert!(!s.dir.path().join(format!("store/{sha}.wasm")).exists());
    // The job wrote its results where the server runs.
    assert!(s.dir.path().join("orders-live.jsonl").is_file());
}

#[test]
fn the_cli_runs_the_readme_loop() {
    let s = Server::start(&[]);
    let cli = |args: &[&str]| {
        let o = support::sluice()
            .args(args)
            .env("SLUICE_SERVER", &s.url)
            // The CLI finds the server's token in its file there.
            .env("SLUICE_HOME", s.dir.path())
            .env_remove("SLUICE_TOKEN")
            .env("RATE", "2000")
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "sluice {args:?}: {}", stderr(&o));
        stdout(&o)
    };
    let modules = support::modules_dir();
    for m in ["usd_orders.wasm", "count_sum.wasm"] {
        let out = cli(&["module", "upload", modules.join(m).to_str().unwrap()]);
        assert!(out.starts_with(&format!("uploaded {m} (sha256:")), "{out}");
    }
    let out = cli(&["module", "list"]);
    assert!(
        out.contains("usd_orders.wasm") && out.contains("transform"),
        "{out}"
    );
    let spec = support::repo().join("examples/serve/orders-live.yaml");
    let out = cli(&["job", "submit", spec.to_str().unwrap()]);
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    assert!(out.starts_with("submitted job "), "{out}");
    let job = s.wait_for(&id, "records", |j| source_in(j) > 0);
    assert_eq!(job["name"], "orders-live");
    let list: Value = serde_json::from_str(&cli(&["job", "list", "--json"])).unwrap();
    assert_eq!(list["jobs"][0]["id"], id.as_str());
    let out = cli(&["job", "inspect", &id]);
    assert!(
        out.contains("revenue-per-minute") && out.contains("status    running"),
        "{out}"
    );
    let out = cli(&["job", "cancel", &id]);
    assert!(out.contains("is cancelled"), "{out}");
    let out = cli(&["module", "inspect", "count_sum.wasm"]);
    assert!(out.contains("worlds    aggregate"), "{out}");
    let out = cli(&["module", "rm", "count_sum.wasm"]);
    assert!(out.starts_with("removed count_sum.wasm"), "{out}");
}

#[test]
fn module_inspect_shows_declared_states() {
    let s = Server::start(&[]);
    assert_eq!(s.upload("dedup", "dedup.wasm").0, 201);
    let (status, m) = s.request("GET", "/v1/modules/dedup", None);
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["worlds"], json!(["keyed-process"]));
    let states = m["states"].as_array().unwrap_or_else(|| panic!("{m:#}"));
    assert!(!states.is_empty(), "{m:#}");
    assert!(states.iter().all(|s| s["kind"].is_string()), "{m:#}");
    assert!(states.iter().all(|s| s["version"] == json!(1)), "{m:#}");
    assert_eq!(m["state_migration"], json!(false), "{m:#}");
    let (status, e) = s.request("GET", "/v1/modules/dedup?config=%7Bnot", None);
    assert_eq!(status, 400, "{e}");
}

#[test]
fn state_size_of_a_process_function_grows_in_the_api_and_metrics() {
    let s = Server::start(&[]);
    assert_eq!(s.upload("dedup.wasm", "dedup.wasm").0, 201);
    let spec = "name: dedup-live\nsources:\n  - { uid: orders, type: datagen, rate: 3000 }\noperators:\n  - uid: dedup\n    input: orders\n    key_by: /order_id\n    process: { module: dedup.wasm, config: { ttl_ms: 3600000 } }\nsinks:\n  - { uid: unique, input: dedup, type: file, path: unique.jsonl }\n";
    let body = json!({"spec": spec, "file": "dedup-live.yaml"});
    let (status, job) = s.request("POST", "/v1/jobs", Some(body.to_string().into_bytes()));
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let state = |j: &Value| operator(j, "dedup")["state_bytes"].as_u64().unwrap();
    let first = s.wait_for(&id, "state to be measured", |j| state(j) > 0);
    let before = state(&first);
    s.wait_for(&id, "state to grow (a new key per order)", |j| {
        state(j) > before
    });
    assert!(
        operator(&first, "orders")["state_bytes"].is_null(),
        "{first}"
    );
    let (_, text) = s.request("GET", "/metrics", None);
    let line = text
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with("sluice_state_bytes{") && l.contains("operator=\"dedup\""))
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();
    assert!(
        line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() > 0.0,
        "{line}"
    );
    assert_eq!(
        s.request("POST", &format!("/v1/jobs/{id}/cancel"), None).0,
        202
    );
}

#[test]
fn an_invalid_component_is_refused_and_nothing_is_kept() {
    let s = Server::start(&[]);
    let (status, e) = s.request("PUT", "/v1/modules/junk.wasm", Some(b"\0asm junk".to_vec()));
    assert_eq!(status, 422, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("module `junk.wasm` is not accepted"), "{msg}");
    // A plain core module is not a component either.
    let core = b"\0asm\x01\0\0\0".to_vec();
    let (status, e) = s.request("PUT", "/v1/modules/core.wasm", Some(core));
    assert_eq!(status, 422, "{e}");
    let (status, e) = s.request("PUT", "/v1/modules/empty.wasm", Some(Vec::new()));
    assert_eq!(status, 400, "{e}");
    let (_, list) = s.request("GET", "/v1/modules", None);
    assert_eq!(list["modules"], json!([]));
    let kept: Vec<PathBuf> = std::fs::read_dir(s.dir.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(kept.is_empty(), "{kept:?}");
}

#[test]
fn an_oversize_upload_gets_413() {
    let s = Server::start(&["--max-module-size", "1MiB"]);
    let (status, e) = s.upload("usd_orders.wasm", "usd_orders.wasm");
    assert_eq!(status, 413, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("limited to 1048576 bytes"), "{msg}");
    let (_, list) = s.request("GET", "/v1/modules", None);
    assert_eq!(list["modules"], json!([]));
}

#[test]
fn a_spec_naming_an_unknown_module_is_a_400_with_its_line() {
    let s = Server::start(&[]);
    let spec = "name: x\nsources:\n  - { uid: g, type: datagen, count: 10 }\noperators:\n  - uid: m\n    input: g\n    wasm: { module: nope.wasm }\nsinks:\n  - { uid: out, input: m, type: stdout }\n";
    let body = json!({"spec": spec, "file": "x.yaml"});
    let (status, e) = s.request("POST", "/v1/jobs", Some(body.to_string().into_bytes()));
    assert_eq!(status, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("x.yaml:7") && msg.contains("module `nope.wasm` is not uploaded"),
        "{msg}"
    );
    let (status, e) = s.request("POST", "/v1/jobs", Some(b"{not json".to_vec()));
    assert_eq!(status, 400, "{e}");
    assert!(e["error"].as_str().unwrap().contains("must be JSON"), "{e}");
    let (_, jobs) = s.request("GET", "/v1/jobs", None);
    assert_eq!(jobs["jobs"], json!([]));
}

#[test]
fn bad_requests_say_what_is_wrong() {
    let s = Server::start(&[]);
    for (method, path, status, says) in [
        (
            "PUT",
            "/v1/modules/..%2F..%2Fevil",
            400,
            "is not a module name",
        ),
        ("PUT", "/v1/modules/.hidden", 400, "is not a module name"),
        ("GET", "/v1/modules/nothing", 404, "is not uploaded"),
        ("GET", "/v1/jobs/0123", 404, "no job `0123`"),
        ("GET", "/v1/nowhere", 404, "no such endpoint"),
        ("DELETE", "/v1/jobs", 405, "not allowed"),
    ] {
        let body = (method == "PUT").then(|| b"x".to_vec());
        let (got, e) = s.request(method, path, body);
        assert_eq!(got, status, "{method} {path}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{method} {path}: {msg}");
    }
    let escaped: Vec<PathBuf> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name != "serve.log" && name != "store" && !name.ends_with(".token")
        })
        .collect();
    assert!(escaped.is_empty(), "{escaped:?}");
}

#[test]
fn a_token_is_required_when_set_and_needed_off_loopback() {
    let s = Server::start(&["--token", "s3cret"]);
    let (status, e) = s.request_with("GET", "/v1/jobs", None, None);
    assert_eq!(status, 401, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("needs a token"),
        "{e}"
    );
    assert_eq!(
        s.request_with("GET", "/metrics", None, Some("wrong")).0,
        401
    );
    assert_eq!(
        s.request_with("GET", "/v1/jobs", None, Some("s3cret")).0,
        200
    );
    // The dashboard's page is static and open; its data is not.
    assert_eq!(s.request_with("GET", "/", None, None).0, 200);
    // The CLI sends SLUICE_TOKEN, else the token in the server's file.
    let elsewhere = support::temp_dir();
    let o = support::sluice()
        .args(["job", "list", "--server", &s.url])
        .env_remove("SLUICE_TOKEN")
        .env("SLUICE_HOME", elsewhere.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("needs a token"), "{}", stderr(&o));
    let o = support::sluice()
        .args(["job", "list", "--server", &s.url])
        .env("SLUICE_TOKEN", "s3cret")
        .env("SLUICE_HOME", elsewhere.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = support::sluice()
        .args(["job", "list", "--server", &s.url])
        .env_remove("SLUICE_TOKEN")
        .env("SLUICE_HOME", s.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    // Off loopback without a token: refused before listening.
    let o = support::sluice()
        .args(["serve", "--listen", "0.0.0.0:0", "--no-token"])
        .env_remove("SLUICE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a loopback address: listening there needs a token"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_openapi_document_describes_every_route() {
    let s = Server::start(&[]);
    let (status, doc) = s.request("GET", "/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let documented: std::collections::BTreeSet<String> =
        doc["paths"].as_object().unwrap().keys().cloned().collect();
    let source = std::fs::read_to_string(support::repo().join("host/src/server/mod.rs")).unwrap();
    let routed: std::collections::BTreeSet<String> = source
        .split(".route(")
        .skip(1)
        .map(|r| {
            r.trim_start()
                .trim_start_matches('"')
                .split('"')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(!routed.is_empty());
    assert_eq!(routed, documented);
}

#[test]
fn sluice_run_serves_the_api_for_its_job() {
    let dir = support::temp_dir();
    let mut child = support::sluice()
        .args([
            "run",
            "examples/orders/pipeline.yaml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("ORDERS", "100000000")
        .env("RATE", "2000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("err")).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(dir.path().join("err")).unwrap_or_default();
    let start = Instant::now();
    let url = loop {
        if let Some(l) = err()
            .lines()
            .find(|l| l.contains("API and dashboard at http://"))
        {
            break l.rsplit(' ').next().unwrap().to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{}", err());
        std::thread::sleep(Duration::from_millis(100));
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let get = |path: &str| -> (u16, Value) {
        let mut r = agent.get(format!("{url}{path}")).call().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap(),
        )
    };
    let (_, jobs) = get("/v1/jobs");
    let id = jobs["jobs"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(jobs["jobs"][0]["name"], "orders-revenue");
    let (status, e) = get("/v1/modules");
    assert_eq!(status, 405, "{e}");
    let o = support::sluice()
        .args(["job", "cancel", &id, "--server", &url])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{}", err());
}

/// A job spec that writes `marker.txt` into `dir` (the file a hostile page
/// would overwrite).
fn writing_spec(dir: &std::path::Path) -> Value {
    let spec = format!(
        "name: cross-site\nsources:\n  - {{ uid: g, type: datagen, schema: orders, rate: 1000, count: 10 }}\nsinks:\n  - {{ uid: out, input: g, type: file, path: \"{}/marker.txt\" }}\n",
        dir.display()
    );
    json!({ "spec": spec })
}

/// Sends one raw HTTP/1.1 request (any headers, as a browser or an attacker
/// would) and returns the status.
fn raw_status(url: &str, head: &str, body: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.strip_prefix("http://").unwrap();
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        c,
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn a_web_page_cannot_submit_a_job_across_sites_nor_by_dns_rebinding() {
    // Even without a token, which is the weakest the server can be.
    let s = Server::start(&["--no-token"]);
    let target = s.dir.path().join("target");
    std::fs::create_dir_all(&target).unwrap();
    let body = writing_spec(&target).to_string();
    let host = s.url.strip_prefix("http://").unwrap().to_owned();
    // What a page of any site can send without a CORS preflight: a form or a
    // fetch with a text/plain body.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let status = raw_status(
            &s.url,
            &format!(
                "POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Type: {ct}"
            ),
            &body,
        );
        assert_eq!(status, 403, "{ct}");
        let status = raw_status(
            &s.url,
            &format!("POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: {ct}"),
            &body,
        );
        assert_eq!(status, 415, "{ct}");
    }
    // A foreign origin even with JSON (had a preflight been answered).
    let status = raw_status(
        &s.url,
        &format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Type: application/json"
        ),
        &body,
    );
    assert_eq!(status, 403);
    // DNS rebinding: the page's own name resolves to 127.0.0.1, so the
    // browser sends it as Host, and the Origin matches it.
    let port = host.rsplit(':').next().unwrap();
    for (method, ct) in [("POST", "application/json"), ("GET", "application/json")] {
        let status = raw_status(
            &s.url,
            &format!(
                "{method} /v1/jobs HTTP/1.1\r\nHost: rebind.evil.example:{port}\r\nOrigin: http://rebind.evil.example:{port}\r\nContent-Type: {ct}"
            ),
            &body,
        );
        assert_eq!(status, 403, "{method}");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!target.join("marker.txt").exists());
    assert_eq!(s.request("GET", "/v1/jobs", None).1["jobs"], json!([]));
    assert!(s.log().contains("refused"), "{}", s.log());

    // The server's own dashboard (same origin, by name or address) and the
    // CLI (no Origin) are served.
    for origin_host in [host.clone(), format!("localhost:{port}")] {
        let status = raw_status(
            &s.url,
            &format!(
                "GET /v1/jobs HTTP/1.1\r\nHost: {origin_host}\r\nOrigin: http://{origin_host}"
            ),
            "",
        );
        assert_eq!(status, 200, "{origin_host}");
    }
    let status = raw_status(
        &s.url,
        &format!(
            "POST /v1/jobs HTTP/1.1\r\nHost: {host}\r\nOrigin: http://{host}\r\nContent-Type: application/json"
        ),
        &body,
    );
    assert_eq!(status, 201);
}

#[test]
fn a_token_is_made_up_by_default_kept_for_the_user_alone_and_sent_by_the_cli() {
    use std::os::unix::fs::MetadataExt;
    let s = Server::start(&[]);
    let token = s.token().expect("a token by default").to_owned();
    assert_eq!(token.len(), 64, "{token}");
    let port = s.url.rsplit(':').next().unwrap();
    let file = s.dir.path().join(format!("serve-{port}.token"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);
    // Without it nothing but the dashboard's static page is served.
    assert_eq!(s.request_with("GET", "/v1/jobs", None, None).0, 401);
    let body = writing_spec(s.dir.path()).to_string().into_bytes();
    assert_eq!(
        s.request_with("POST", "/v1/jobs", Some(body.clone()), None)
            .0,
        401
    );
    assert_eq!(s.request_with("GET", "/", None, None).0, 200);
    // With it, a job runs; the CLI finds it in the file.
    let (status, job) = s.request("POST", "/v1/jobs", Some(body));
    assert_eq!(status, 201, "{job}");
    let o = support::sluice()
        .args(["job", "list", "--json", "--server", &s.url])
        .env_remove("SLUICE_TOKEN")
        .env("SLUICE_HOME", s.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cross-site"), "{}", stdout(&o));
}

#[test]
fn a_refused_component_leaves_no_compiled_artifact() {
    use sha2::Digest;
    let s = Server::start(&[]);
    // A valid component that implements no operator world: it compiles, and
    // is refused.
    let empty = b"\0asm\x0d\0\x01\0".to_vec();
    let sha: String = sha2::Sha256::digest(&empty)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (status, e) = s.request("PUT", "/v1/modules/nothing.wasm", Some(empty));
    assert_eq!(status, 422, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("implements none"),
        "{e}"
    );
    let cache = support::target_dir().join("sluice-test-cache");
    let left: Vec<String> = std::fs::read_dir(&cache)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(&sha))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?} in {}", cache.display());
}

#[test]
fn many_uploads_of_the_same_module_at_once_all_succeed() {
    let s = std::sync::Arc::new(Server::start(&[]));
    let bytes =
        std::sync::Arc::new(std::fs::read(support::modules_dir().join("count_sum.wasm")).unwrap());
    let threads: Vec<_> = (0..200)
        .map(|i| {
            let (s, bytes) = (s.clone(), bytes.clone());
            std::thread::spawn(move || {
                let name = format!("cs-{}", i % 20);
                s.request("PUT", &format!("/v1/modules/{name}"), Some(bytes.to_vec()))
            })
        })
        .collect();
    for t in threads {
        let (status, body) = t.join().unwrap();
        assert!(status == 200 || status == 201, "{status}: {body}");
    }
    let (_, list) = s.request("GET", "/v1/modules", None);
    assert_eq!(list["modules"].as_array().unwrap().len(), 20, "{list}");
    // One file for the content, no temporary ones left.
    let files: Vec<String> = std::fs::read_dir(s.dir.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".wasm")).count(),
        1,
        "{files:?}"
    );
    assert!(files.iter().all(|f| !f.starts_with('.')), "{files:?}");
}

#[test]
fn a_submitted_job_may_use_only_the_folders_the_server_allows() {
    let elsewhere = support::temp_dir();
    let s = Server::start(&[]);
    // By default: the server's folder only.
    let (status, e) = s.request(
        "POST",
        "/v1/jobs",
        Some(writing_spec(elsewhere.path()).to_string().into_bytes()),
    );
    assert_eq!(status, 400, "{e}");
    let msg = e["error"].as_str().unwrap();
    let marker = elsewhere.path().join("marker.txt");
    assert!(
        msg.contains(&format!(
            "`{}` is outside the folders jobs may use",
            marker.display()
        )) && msg.contains("--allow-dir"),
        "{msg}"
    );
    // Every kind of path: a source, the dead letters, checkpoints, a grant.
    let outside = elsewhere.path().display().to_string();
    for (what, spec) in [
        (
            "a file source",
            format!("sources:\n  - {{ uid: f, type: file, path: \"{outside}/*.jsonl\" }}\nsinks:\n  - {{ uid: out, input: f, type: file, path: out.jsonl }}\n"),
        ),
        (
            "a dead-letter file",
            format!("sources:\n  - {{ uid: g, type: datagen, schema: orders, count: 1 }}\nsinks:\n  - {{ uid: out, input: g, type: file, path: out.jsonl }}\ndead_letter: {{ type: file, path: \"{outside}/dead.jsonl\" }}\n"),
        ),
        (
            "a checkpoint folder",
            format!("checkpoints: {{ dir: \"{outside}/ck\" }}\nsources:\n  - {{ uid: g, type: datagen, schema: orders, count: 1 }}\nsinks:\n  - {{ uid: out, input: g, type: file, path: out.jsonl }}\n"),
        ),
        (
            "a climb out with ..",
            "sources:\n  - { uid: g, type: datagen, schema: orders, count: 1 }\nsinks:\n  - { uid: out, input: g, type: file, path: ../out.jsonl }\n".to_owned(),
        ),
    ] {
        let body = json!({ "spec": spec, "file": "x.yaml" });
        let (status, e) = s.request("POST", "/v1/jobs", Some(body.to_string().into_bytes()));
        assert_eq!(status, 400, "{what}: {e}");
        let msg = e["error"].as_str().unwrap();
        assert!(msg.contains("x.yaml:") && msg.contains("--allow-dir"), "{what}: {msg}");
    }
    assert!(
        std::fs::read_dir(elsewhere.path())
            .unwrap()
            .next()
            .is_none()
    );
    assert_eq!(s.request("GET", "/v1/jobs", None).1["jobs"], json!([]));

    // Allowed by the server's operator, the same job runs.
    let allowed = Server::start(&["--allow-dir", elsewhere.path().to_str().unwrap()]);
    let (status, job) = allowed.request(
        "POST",
        "/v1/jobs",
        Some(writing_spec(elsewhere.path()).to_string().into_bytes()),
    );
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    allowed.wait_for(&id, "the job to finish", |j| j["status"] == "finished");
    assert!(marker.exists());
}

/// A Flink SQL script goes to the server as `sql` (`sluice job submit
/// FILE.sql`), is planned there as `sluice sql` plans it, and runs as a job
/// like any other; one that ends in a SELECT has nowhere to write and is a
/// 400 that says so.
#[test]
fn a_sql_script_is_submitted_and_runs_as_a_job() {
    let s = Server::start(&[]);
    let script = s.dir.path().join("counts.sql");
    std::fs::write(
        &script,
        "CREATE TABLE gen (id BIGINT, k INT) WITH ('connector' = 'datagen',
           'rows-per-second' = '${RATE}', 'fields.id.kind' = 'sequence',
           'fields.id.start' = '1', 'fields.id.end' = '500', 'fields.k.min' = '1', 'fields.k.max' = '3');
         CREATE TABLE out (id BIGINT, doubled BIGINT) WITH ('connector' = 'filesystem',
           'path' = 'out', 'format' = 'json');
         INSERT INTO out SELECT id, id * 2 FROM gen WHERE k > 0;",
    )
    .unwrap();
    let o = support::sluice()
        .args(["job", "submit", script.to_str().unwrap()])
        .env("SLUICE_SERVER", &s.url)
        .env("SLUICE_HOME", s.dir.path())
        .env_remove("SLUICE_TOKEN")
        .env("RATE", "5000")
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let id = out.split_whitespace().nth(2).unwrap().to_owned();
    let job = s.wait_for(&id, "the job to finish", |j| j["status"] == "finished");
    assert_eq!(job["name"], "counts");
    // The job shows its script as submitted: variables not replaced.
    assert!(
        job["sql"]
            .as_str()
            .is_some_and(|t| t.contains("'rows-per-second' = '${RATE}'")),
        "{job}"
    );
    let rows = support::sorted_lines(&s.dir.path().join("out/part-0.json"));
    assert_eq!(rows.len(), 500);
    assert!(
        rows.contains(&"{\"id\":250,\"doubled\":500}".to_owned()),
        "{:?}",
        &rows[..3]
    );
    let (status, body) = s.request(
        "POST",
        "/v1/jobs",
        Some(
            serde_json::to_vec(&json!({
                "sql": "CREATE TABLE t (a INT) WITH ('connector' = 'datagen'); SELECT a FROM t;",
                "file": "q.sql"
            }))
            .unwrap(),
        ),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("q.sql: the script ends in a SELECT")),
        "{body}"
    );
}

/// A SQL job's `CREATE FUNCTION … USING JAR` names a module uploaded to the
/// server, found in its store as a spec's modules are; an unknown one is a
/// 400 naming the script's line.
#[test]
fn a_sql_script_calls_a_function_of_an_uploaded_module() {
    let s = Server::start(&[]);
    let (status, body) = s.upload("usd-udf", "usd_udf.wasm");
    assert!(status == 200 || status == 201, "{body}");
    let script = |jar: &str| {
        format!(
            "CREATE TABLE gen (id BIGINT, amount DECIMAL(10, 2)) WITH ('connector' = 'datagen',
               'rows-per-second' = '5000', 'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
               'fields.id.end' = '300', 'fields.amount.min' = '0.01', 'fields.amount.max' = '99');
             CREATE TABLE out (id BIGINT, amount DECIMAL(10, 2), eur DECIMAL(12, 2)) WITH (
               'connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
             CREATE FUNCTION usd AS 'usd' LANGUAGE WASM USING JAR '{jar}';
             INSERT INTO out SELECT id, amount, usd(amount, 'EUR') FROM gen;"
        )
    };
    let submit = |text: String| {
        s.request(
            "POST",
            "/v1/jobs",
            Some(serde_json::to_vec(&json!({"sql": text, "file": "usd.sql"})).unwrap()),
        )
    };
    let (status, job) = submit(script("usd-udf"));
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    s.wait_for(&id, "the job to finish", |j| j["status"] == "finished");
    let rows = support::sorted_lines(&s.dir.path().join("out/part-0.json"));
    assert_eq!(rows.len(), 300);
    for r in &rows {
        // {"id":7,"amount":12.34,"eur":13.57}: DECIMAL text, as written.
        let field = |name: &str| -> i128 {
            let at = r.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
            let text: String = r[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            text.replace('.', "").parse().unwrap()
        };
        let (cents, eur) = (field("amount"), field("eur"));
        assert_eq!(eur, (cents * 110 + 50) / 100, "{r}");
    }
    let (status, body) = submit(script("nowhere"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("usd.sql:6:30: function `usd`") && e.contains("nowhere")),
        "{body}"
    );
}
