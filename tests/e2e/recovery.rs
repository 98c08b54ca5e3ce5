//! Fault tolerance with real processes: `sluice run` killed with SIGKILL and
//! run again, savepoints taken over the API and restored at another
//! parallelism, and a trapping guest under a restart strategy (a user fault:
//! no restart). Committed
//! output (the part files whose names do not begin with `.`) must equal an
//! uninterrupted run's.

use crate::support::{self, assert_ok, stderr};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const W2: &str = "CHECKSUM W2 results=22061 sum_count=199818 sum_cents=4989540265 sum_ws=21950058283 late=182 hash=d19d85e6f8f3e0e4";
const W5: &str = "CHECKSUM W5 results=17704 sum_count=199931 sum_len=880560263 late=69 early_close=866 dropped_ooo=0 hash=afb64e595aba9bd6";

/// Concatenates the committed part files of a sink's folder into one file.
pub fn committed(dir: &Path, into: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut all = Vec::new();
    for n in names {
        all.extend(std::fs::read(n).unwrap());
    }
    std::fs::write(into, all).unwrap();
    into.to_owned()
}

/// `sluice ARGS` with extra environment variables.
pub fn sluice_with(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = support::sluice();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A small deterministic generator of kill delays.
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// Runs `spec` until it exits 0, killing it with SIGKILL after a random
/// moment up to `kills` times; returns how many times it was killed.
pub fn crash_loop(spec: &Path, env: &[(&str, &str)], kills: u32, seed: u64, max_ms: u64) -> u32 {
    crash_loop_with(spec, env, kills, seed, max_ms, &mut || {})
}

/// [`crash_loop`], calling `after_kill` after each kill (before the restart).
fn crash_loop_with(
    spec: &Path,
    env: &[(&str, &str)],
    kills: u32,
    seed: u64,
    max_ms: u64,
    after_kill: &mut dyn FnMut(),
) -> u32 {
    let mut rng = Lcg(seed);
    let mut killed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "the crash loop did not finish");
        let mut child = sluice_with(&["run", "--no-api", "-q"], env)
            .arg(spec)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        if killed < kills {
            let at = Instant::now() + Duration::from_millis(rng.next_ms(10, max_ms));
            while Instant::now() < at && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                child.wait().unwrap();
                killed += 1;
                after_kill();
                continue;
            }
        }
        let o = child.wait_with_output().unwrap();
        assert_ok(&o);
        return killed;
    }
}

/// Kills `workload` at random moments (within `max_ms` of each start) and
/// checks the committed output. A fast run may end before the first kill:
/// then it tries again with earlier kills.
fn crash_loop_checksum(workload: &str, parallelism: &str, backend: &str, seed: u64) {
    for round in 0..6 {
        let max_ms = (320 >> round).max(20);
        if crash_loop_round(workload, parallelism, backend, seed + round, max_ms) {
            return;
        }
    }
    panic!("{workload}: the job always ended before it could be killed");
}

/// One crash loop; false when the job was never killed.
fn crash_loop_round(
    workload: &str,
    parallelism: &str,
    backend: &str,
    seed: u64,
    max_ms: u64,
) -> bool {
    let input = support::orders_200k();
    let spec = support::repo().join(format!("examples/bench/{}.yaml", workload.to_lowercase()));
    let dir = support::temp_dir();
    let d = dir.path();
    let (out, late, dropped, cks) = (
        d.join("out"),
        d.join("late"),
        d.join("dropped"),
        d.join("checkpoints"),
    );
    let killed = crash_loop(
        &spec,
        &[
            ("INPUT", input.to_str().unwrap()),
            ("OUTPUT", out.to_str().unwrap()),
            ("LATE_OUTPUT", late.to_str().unwrap()),
            ("DROPPED_OUTPUT", dropped.to_str().unwrap()),
            ("CHECKPOINT_DIR", cks.to_str().unwrap()),
            ("CHECKPOINT_INTERVAL", "40ms"),
            ("PARALLELISM", parallelism),
            ("STATE_BACKEND", backend),
        ],
        4,
        seed,
        max_ms,
    );
    if killed == 0 {
        return false;
    }
    let results = committed(&out, &d.join("out.jsonl"));
    let late = committed(&late, &d.join("late.jsonl"));
    let got = if workload == "W5" {
        let dropped = committed(&dropped, &d.join("dropped.jsonl"));
        support::checksum_w5(&results, &late, &dropped)
    } else {
        support::checksum(workload, &results, Some(&late))
    };
    let want = if workload == "W5" { W5 } else { W2 };
    assert_eq!(
        got, want,
        "{workload} at parallelism {parallelism} on {backend}, killed {killed} times"
    );
    true
}

#[test]
fn w2_killed_at_random_moments_commits_each_result_exactly_once() {
    crash_loop_checksum("W2", "1", "memory", 7);
    crash_loop_checksum("W2", "2", "rocksdb", 11);
}

#[test]
fn w5_killed_at_random_moments_commits_each_result_exactly_once() {
    crash_loop_checksum("W5", "1", "rocksdb", 3);
    crash_loop_checksum("W5", "2", "memory", 5);
}

/// `sluice run` with its API on a free port; returns the child and the URL.
fn run_with_api(spec: &Path, env: &[(&str, &str)], extra: &[&str]) -> (Child, String) {
    let mut child = sluice_with(&["run", "--listen", "127.0.0.1:0"], env)
        .arg(spec)
        .args(extra)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("sluice run printed its API address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("sluice: API and dashboard at ") {
            break rest.trim().to_owned();
        }
    };
    // Keep reading stderr so that the child never blocks on it.
    std::thread::spawn(move || for _ in lines {});
    (child, url)
}

fn client(url: &str, args: &[&str]) -> std::process::Output {
    sluice_with(&["job"], &[])
        .args(args)
        .args(["--server", url])
        .output()
        .unwrap()
}

/// The id of the one job a `sluice run` serves.
fn job_id(url: &str) -> String {
    let o = client(url, &["list", "--json"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["jobs"][0]["id"].as_str().unwrap().to_owned()
}

fn sorted_committed(dir: &Path, scratch: &Path) -> Vec<String> {
    let f = committed(dir, scratch);
    support::sorted_lines(&f)
}

#[test]
fn savepoint_stop_and_restore_at_parallelism_1_2_3_gives_identical_results() {
    let spec = support::repo().join("examples/savepoints/orders.yaml");
    let dir = support::temp_dir();
    let d = dir.path();
    let count = "40000";

    // Uninterrupted, at parallelism 1.
    let reference = d.join("reference");
    let o = support::run(
        &spec,
        &[
            ("CHECKPOINT_DIR", d.join("ck-ref").to_str().unwrap()),
            ("OUTPUT", reference.to_str().unwrap()),
            ("COUNT", count),
            ("RATE", "10000000"),
        ],
    );
    assert_ok(&o);

    // Stopped with a savepoint twice and restored at parallelism 2 (on
    // RocksDB: savepoints are backend-independent), then 3.
    let out = d.join("out");
    let ck = d.join("ck");
    let env = |p: &'static str, backend: &'static str| {
        vec![
            ("CHECKPOINT_DIR", ck.to_str().unwrap().to_owned()),
            ("OUTPUT", out.to_str().unwrap().to_owned()),
            ("COUNT", count.to_owned()),
            ("RATE", "20000".to_owned()),
            ("CHECKPOINT_INTERVAL", "200ms".to_owned()),
            ("PARALLELISM", p.to_owned()),
            ("STATE_BACKEND", backend.to_owned()),
        ]
    };
    let mut from: Option<PathBuf> = None;
    for (i, (p, backend)) in [("1", "memory"), ("2", "rocksdb")].into_iter().enumerate() {
        let vars = env(p, backend);
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let extra: Vec<String> = from
            .iter()
            .flat_map(|f| ["--from-savepoint".to_owned(), f.display().to_string()])
            .collect();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (mut child, url) = run_with_api(&spec, &vars, &extra);
        std::thread::sleep(Duration::from_millis(600));
        let sp = d.join(format!("sp{i}"));
        let o = client(
            &url,
            &["stop", &job_id(&url), "--dir", sp.to_str().unwrap()],
        );
        assert_ok(&o);
        let status = child.wait().unwrap();
        assert!(status.success(), "a stopped job exits 0, not {status}");
        assert!(
            sp.join("_manifest.json").is_file(),
            "{}",
            support::stdout(&o)
        );
        from = Some(sp);
    }
    let vars = env("3", "memory");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let o = sluice_with(&["run", "--no-api", "-q"], &vars)
        .arg(&spec)
        .arg("--from-savepoint")
        .arg(from.as_ref().unwrap())
        .output()
        .unwrap();
    assert_ok(&o);

    for sink in ["revenue", "sessions", "late"] {
        let want = sorted_committed(&reference.join(sink), &d.join(format!("{sink}-want")));
        let got = sorted_committed(&out.join(sink), &d.join(format!("{sink}-got")));
        assert!(!want.is_empty() || sink == "late");
        assert_eq!(
            got.len(),
            want.len(),
            "{sink}: {} rows after two stops and restores, {} uninterrupted",
            got.len(),
            want.len()
        );
        assert!(
            got == want,
            "{sink}: rows differ from the uninterrupted run"
        );
    }
}

#[test]
fn restoring_a_savepoint_with_state_no_node_claims_is_refused_unless_dropped() {
    let spec = support::repo().join("examples/savepoints/orders.yaml");
    let dir = support::temp_dir();
    let d = dir.path();
    let vars = [
        ("CHECKPOINT_DIR", d.join("ck").to_str().unwrap().to_owned()),
        ("OUTPUT", d.join("out").to_str().unwrap().to_owned()),
        ("COUNT", "20000".to_owned()),
        ("RATE", "10000".to_owned()),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (mut child, url) = run_with_api(&spec, &vars, &[]);
    std::thread::sleep(Duration::from_millis(400));
    let sp = d.join("sp");
    assert_ok(&client(
        &url,
        &["stop", &job_id(&url), "--dir", sp.to_str().unwrap()],
    ));
    assert!(child.wait().unwrap().success());

    // The same pipeline without its window: the window's state is unclaimed.
    let text = std::fs::read_to_string(&spec).unwrap();
    let cut = |t: &str, from: &str, to: Option<&str>| {
        let a = t.find(from).unwrap();
        let b = to.map_or(t.len(), |to| t.find(to).unwrap());
        format!("{}{}", &t[..a], &t[b..])
    };
    let smaller = cut(&text, "  - uid: revenue\n", Some("  - uid: sessions\n"));
    let smaller = cut(
        &smaller,
        "  - uid: revenue-out\n",
        Some("  - uid: sessions-out\n"),
    );
    let smaller = cut(&smaller, "  - uid: late\n", None);
    let small_spec = d.join("smaller.yaml");
    std::fs::write(&small_spec, smaller).unwrap();
    let run = |extra: &[&str]| {
        sluice_with(&["run", "--no-api", "-q"], &vars)
            .arg(&small_spec)
            .arg("--from-savepoint")
            .arg(&sp)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("`revenue`") && e.contains("--drop-unclaimed-state"),
        "{e}"
    );
    assert_ok(&run(&["--drop-unclaimed-state"]));
}

#[test]
fn a_trapping_guest_under_a_restart_strategy() {
    let input = support::orders_200k();
    let dir = support::temp_dir();
    let d = dir.path();
    // Order o-1234 makes the guest panic.
    let spec = |dead_letter: bool| {
        format!(
            r#"
name: trap
checkpoints: {{ dir: {ck}, interval: 50ms }}
restart: {{ strategy: fixed_delay, attempts: 2, delay: 10ms }}
sources:
  - {{ uid: orders, type: file, path: {input} }}
operators:
  - uid: chaos
    input: orders
    wasm: {{ module: chaos.wasm, config: {{ mode: panic, trigger: '"o-1234"' }} }}
sinks:
  - {{ uid: out, input: chaos, type: file, path: {out} }}
{dl}"#,
            ck = d.join(format!("ck-{dead_letter}")).display(),
            input = input.display(),
            out = d.join(format!("out-{dead_letter}")).display(),
            dl = if dead_letter {
                format!(
                    "dead_letter: {{ type: file, path: {} }}",
                    d.join("dead").display()
                )
            } else {
                String::new()
            }
        )
    };
    // With a dead-letter sink the record is set aside and everything else
    // is committed exactly once.
    let with = d.join("with.yaml");
    std::fs::write(&with, spec(true)).unwrap();
    assert_ok(&support::run(&with, &[]));
    let out = support::sorted_lines(&committed(&d.join("out-true"), &d.join("a.jsonl")));
    assert_eq!(out.len(), 199_999);
    let mut dedup = out.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), out.len(), "a record was committed twice");
    let dead = support::sorted_lines(&committed(&d.join("dead"), &d.join("d.jsonl")));
    assert_eq!(dead.len(), 1);
    assert!(dead[0].contains("o-1234\\\""), "{}", dead[0]);

    // Without one, every attempt would fail on the same record: a user
    // fault, so the job does not restart but fails at once, naming the
    // record.
    let without = d.join("without.yaml");
    std::fs::write(&without, spec(false)).unwrap();
    let o = support::run(&without, &[("SLUICE_LOG", "warn")]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(!e.contains("restarting"), "{e}");
    assert!(
        e.contains("chaos") && e.contains("orders-200k.jsonl:"),
        "{e}"
    );
}

/// Module swap: `counter_v1` is stopped with a savepoint; `counter_v3`
/// (another state layout, no migration hook) is refused before it starts;
/// `counter_v2` migrates v1's counts and goes on. Every key's counts over
/// both modules' committed rows are 1, 2, … up to the uninterrupted run's
/// final count: none lost, none repeated.
#[test]
fn a_module_swap_keeps_counts_and_an_incompatible_module_is_refused() {
    use std::collections::BTreeMap;
    let spec = support::repo().join("examples/savepoints/counter.yaml");
    let dir = support::temp_dir();
    let d = dir.path();
    let env = |module: &str, out: &str, rate: &str| {
        [
            ("COUNTER", module.to_owned()),
            (
                "CHECKPOINT_DIR",
                d.join(format!("ck-{out}")).display().to_string(),
            ),
            ("OUTPUT", d.join(out).display().to_string()),
            ("COUNT", "30000".to_owned()),
            ("RATE", rate.to_owned()),
            ("CHECKPOINT_INTERVAL", "200ms".to_owned()),
        ]
    };
    let vars = |e: &[(&'static str, String); 6]| -> Vec<(&'static str, String)> { e.to_vec() };
    fn as_refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    // Uninterrupted, with v1: each key's final count.
    let reference = vars(&env("counter_v1", "reference", "10000000"));
    assert_ok(&support::run(&spec, &as_refs(&reference)));
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for row in sorted_committed(&d.join("reference/counts"), &d.join("want")) {
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        let n = want
            .entry(v["key"].as_str().unwrap().to_owned())
            .or_default();
        *n = (*n).max(v["count"].as_u64().unwrap());
    }

    // v1, stopped with a savepoint part way.
    let v1 = vars(&env("counter_v1", "out", "20000"));
    let (mut child, url) = run_with_api(&spec, &as_refs(&v1), &[]);
    std::thread::sleep(Duration::from_millis(600));
    let sp = d.join("sp");
    assert_ok(&client(
        &url,
        &["stop", &job_id(&url), "--dir", sp.to_str().unwrap()],
    ));
    assert!(child.wait().unwrap().success());

    // v3 cannot take over v1's `count`: refused, and nothing runs.
    let restore = |module: &str| {
        let v = vars(&env(module, "out", "10000000"));
        sluice_with(&["run", "--no-api", "-q"], &as_refs(&v))
            .arg(&spec)
            .arg("--from-savepoint")
            .arg(&sp)
            .output()
            .unwrap()
    };
    let o = restore("counter_v3");
    assert!(!o.status.success(), "counter_v3 must be refused");
    let e = stderr(&o);
    assert!(
        e.contains("operator `counter`")
            && e.contains("counter_v3.wasm")
            && e.contains(
                "state `count` has version 1 in the snapshot but the module declares version 3"
            ),
        "{e}"
    );

    // v2 migrates and goes on.
    assert_ok(&restore("counter_v2"));
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let (mut v1_rows, mut v2_rows) = (0, 0);
    let mut v2_first: BTreeMap<String, u64> = BTreeMap::new();
    for row in sorted_committed(&d.join("out/counts"), &d.join("got")) {
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        let key = v["key"].as_str().unwrap().to_owned();
        let n = if v["counter"] == 2 {
            v2_rows += 1;
            let n = v["n"].as_u64().unwrap_or_else(|| panic!("{row}"));
            let first = v2_first.entry(key.clone()).or_insert(n);
            *first = (*first).min(n);
            n
        } else {
            v1_rows += 1;
            v["count"].as_u64().unwrap_or_else(|| panic!("{row}"))
        };
        got.entry(key).or_default().push(n);
    }
    assert!(
        v1_rows > 0 && v2_rows > 0,
        "v1 rows {v1_rows}, v2 rows {v2_rows}"
    );
    assert!(
        v2_first.values().any(|&n| n > 1),
        "no key's count went on from v1's in v2"
    );
    assert_eq!(got.len(), want.len(), "keys");
    for (key, mut counts) in got {
        counts.sort_unstable();
        let expected: Vec<u64> = (1..=want[&key]).collect();
        assert!(
            counts == expected,
            "key {key}: counts {}..{} ({} rows), want 1..{}",
            counts[0],
            counts[counts.len() - 1],
            counts.len(),
            want[&key]
        );
    }
}
