//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// The repository root.
/// The WIT package's version, as `wit/operator.wit` declares it.
pub fn wit_version() -> String {
    let wit = std::fs::read_to_string(repo().join("wit/operator.wit")).expect("wit/operator.wit");
    wit.lines()
        .find_map(|l| l.trim().strip_prefix("package sluice:operator@"))
        .and_then(|v| v.strip_suffix(';'))
        .expect("a package line")
        .to_owned()
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

/// The cargo target folder this test binary was built into.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // <target>/<profile>/deps/e2e-<hash>
    exe.ancestors().nth(3).expect("target folder").to_path_buf()
}

/// Where the example operators' components are.
pub fn modules_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("SLUICE_MODULE_PATH") {
            Some(d) => PathBuf::from(d),
            None => target_dir().join("wasm32-wasip2").join("release"),
        };
        // Without them every test would fail on its own: stop the run with
        // one line that says what to do.
        for m in [
            "usd_orders.wasm",
            "count_sum.wasm",
            "count.wasm",
            "chaos.wasm",
        ] {
            if !dir.join(m).is_file() {
                eprintln!(
                    "\nthe example operators are not built ({} is missing): run scripts/test.sh, or \
                     build them with scripts/build-guests.sh and set SLUICE_MODULE_PATH to the folder it prints",
                    dir.join(m).display()
                );
                std::process::exit(2);
            }
        }
        dir
    })
    .clone()
}

/// A temporary folder removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sluice-e2e-")
        .tempdir()
        .expect("temp dir")
}

/// The `sluice` binary, set up to find the example modules and to cache
/// compiled modules inside the target folder.
pub fn sluice() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
    c.env("SLUICE_MODULE_PATH", modules_dir())
        .env("SLUICE_CACHE_DIR", target_dir().join("sluice-test-cache"))
        .env_remove("SLUICE_LOG")
        .current_dir(repo());
    c
}

/// Runs `sluice run SPEC` with extra environment variables.
pub fn run(spec: &Path, env: &[(&str, &str)]) -> Output {
    let mut c = sluice();
    c.arg("run").arg(spec);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run sluice")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts success, showing stderr otherwise.
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "sluice failed ({}):\n{}",
        o.status,
        stderr(o)
    );
}

/// Lines of a file, sorted (outputs are sets: order depends on scheduling).
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// The benchmark's 200k-order input (generated once per target folder).
pub fn orders_200k() -> PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = target_dir().join("sluice-test-data");
        let file = dir.join("orders-200k.jsonl");
        if std::fs::metadata(&file).map(|m| m.len()).ok() == Some(24_588_772) {
            return file;
        }
        std::fs::create_dir_all(&dir).expect("data folder");
        let tmp = dir.join(format!("orders-200k.{}.tmp", std::process::id()));
        let status = Command::new("python3")
            .arg(repo().join("bench/gen_orders.py"))
            .args(["--events", "200000", "--seed", "42", "--out"])
            .arg(&tmp)
            .status()
            .expect("python3 is needed to generate the benchmark input");
        assert!(status.success(), "gen_orders.py failed");
        std::fs::rename(&tmp, &file).expect("rename generated input");
        file
    })
    .clone()
}

/// The second inputs of W6 and W7 for orders-200k: (payments, rates), as
/// `gen_orders.py --payments --rates` derives them (the orders file it writes
/// beside them is byte-identical to [`orders_200k`]'s).
pub fn join_inputs_200k() -> (PathBuf, PathBuf) {
    static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    FILES
        .get_or_init(|| {
            let dir = target_dir().join("sluice-test-data");
            let payments = dir.join("payments-200k.jsonl");
            let rates = dir.join("rates-200k.jsonl");
            let sizes = (11_567_120, 5_985);
            let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
            if (size(&payments), size(&rates)) == sizes {
                return (payments, rates);
            }
            std::fs::create_dir_all(&dir).expect("data folder");
            let tmp = tempfile::tempdir_in(&dir).expect("a temporary folder");
            let (o, p, r) = (
                tmp.path().join("orders.jsonl"),
                tmp.path().join("payments.jsonl"),
                tmp.path().join("rates.jsonl"),
            );
            let status = Command::new("python3")
                .arg(repo().join("bench/gen_orders.py"))
                .args(["--events", "200000", "--seed", "42", "--out"])
                .arg(&o)
                .arg("--payments")
                .arg(&p)
                .arg("--rates")
                .arg(&r)
                .status()
                .expect("python3 is needed to generate the benchmark input");
            assert!(status.success(), "gen_orders.py failed");
            std::fs::rename(&p, &payments).expect("rename generated payments");
            std::fs::rename(&r, &rates).expect("rename generated rates");
            assert_eq!((size(&payments), size(&rates)), sizes, "join inputs");
            (payments, rates)
        })
        .clone()
}

/// The source splits' positions in a checkpoint's manifest.
pub fn checkpoint_splits(chk: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(chk.join("_manifest.json")).unwrap_or_default();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    m["operators"]
        .as_object()
        .into_iter()
        .flat_map(|ops| ops.values())
        .flat_map(|op| op["subtasks"].as_array().into_iter().flatten())
        .filter_map(|s| s["meta"]["splits"].as_object())
        .flat_map(|splits| splits.values().cloned())
        .collect()
}

/// Whether a checkpoint has a source split that was still being read.
pub fn checkpoint_reading(chk: &Path) -> bool {
    checkpoint_splits(chk)
        .iter()
        .any(|split| split["done"] != serde_json::json!(true))
}

/// bench/checksum.py's CHECKSUM line for result (and late) files.
pub fn checksum(workload: &str, results: &Path, late: Option<&Path>) -> String {
    checksum_with(workload, results, late, &[])
}

/// W5's CHECKSUM line: `early_close` is counted from the result rows that
/// say so, `dropped_ooo` is the number of lines in `dropped`.
pub fn checksum_w5(results: &Path, late: &Path, dropped: &Path) -> String {
    let rows = std::fs::read_to_string(results).expect("results");
    let early = rows.matches("\"early_close\":true").count();
    let dropped = std::fs::read_to_string(dropped).map_or(0, |d| d.lines().count());
    checksum_with(
        "W5",
        results,
        Some(late),
        &[
            format!("early_close={early}"),
            format!("dropped_ooo={dropped}"),
        ],
    )
}

fn checksum_with(workload: &str, results: &Path, late: Option<&Path>, extra: &[String]) -> String {
    let mut c = Command::new("python3");
    c.arg(repo().join("bench/checksum.py"))
        .arg(workload)
        .arg(results);
    if let Some(l) = late {
        c.arg(l);
    }
    if !extra.is_empty() {
        c.arg("--extra").args(extra);
    }
    let o = c.output().expect("python3 for checksum.py");
    assert!(o.status.success(), "checksum.py: {}", stderr(&o));
    stdout(&o).trim().to_owned()
}

/// Asserts that a run stopped at `SLUICE_CRASH_BEFORE_COMMIT`: a checkpoint
/// complete, its output not yet committed.
pub fn assert_crashed_before_commit(o: &Output) {
    assert!(
        stderr(o).contains("is complete and not committed"),
        "{}",
        stderr(o)
    );
}

/// Starts `command` (stdout and stderr discarded) and kills it with SIGKILL
/// at a random moment between `from` and `to` into its run, up to `times`
/// times, or until a run ends before its moment comes; returns the moments
/// of the kills. `seed` carries the random state from call to call.
pub fn kill_at_random_moments(
    command: &mut dyn FnMut() -> Command,
    times: usize,
    (from, to): (Duration, Duration),
    seed: &mut u64,
) -> Vec<Duration> {
    let mut kills = Vec::new();
    while kills.len() < times {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let spread = (to - from).as_millis().max(1) as u64;
        let after = from + Duration::from_millis((*seed >> 33) % spread);
        let mut child = command()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start sluice");
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        kills.push(after);
    }
    kills
}

/// A seed for [`kill_at_random_moments`] that differs from run to run.
pub fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// The newest checkpoint folder of `ck` with a manifest.
pub fn latest_checkpoint(ck: &Path) -> Option<PathBuf> {
    let mut done: Vec<PathBuf> = std::fs::read_dir(ck)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
        })
        .filter(|p| p.join("_manifest.json").is_file())
        .collect();
    done.sort();
    done.pop()
}
