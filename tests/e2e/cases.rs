//! Data-driven cases: one folder per case under `tests/cases/`.
//!
//! A case holds `spec.yaml`, its inputs, and either `expected/` — one file
//! per output file the spec writes to `${OUT}` — or `expected-error.txt`,
//! lines that must all appear in the error output of a failing run
//! (`{modules}` stands for the folder of the example modules, `{wit}` for
//! the WIT package's version). The spec runs
//! from the repository root and finds its own folder there as `${CASE}`, so
//! paths in outputs and errors read the same on every machine. Each case runs
//! at parallelism 1 and 2 and must give the same output both times; outputs are compared as sorted
//! lines, because the order of records across subtasks is not fixed.
//!
//! Examples with their own data (`examples/*/pipeline.yaml` next to an
//! `expected/` folder) are cases too. A spec that mentions `STATE_BACKEND`
//! also runs with `STATE_BACKEND=rocksdb` at both parallelisms, and must give
//! the same output as on the heap.
//!
//! Every case that succeeds also runs with checkpoints (exactly-once part
//! files) at parallelism 2, and killed half way and restored from a
//! checkpoint at parallelism 3; the committed output must equal the
//! expectations both times.
//!
//! Every case is three tests, run by name (`cargo test --release --test
//! cases -- NAME`): `NAME` (parallelism 1 and 2, and RocksDB where the spec
//! asks), `NAME::checkpoints` and `NAME::restored_at_p3`. This file is its
//! own test target with its own harness (libtest-mimic), since the cases are
//! found at run time.
//!
//! `BLESS=1 cargo test --release --test cases` rewrites the expectations
//! from the parallelism-1 run (review the diff before committing it).

#[path = "support.rs"]
#[allow(dead_code)]
mod support;

use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{sorted_lines, stderr};

/// Case folders and their spec files.
fn cases() -> Vec<(PathBuf, &'static str)> {
    let mut dirs = Vec::new();
    for (root, spec) in [("tests/cases", "spec.yaml"), ("examples", "pipeline.yaml")] {
        for e in std::fs::read_dir(support::repo().join(root))
            .expect(root)
            .filter_map(Result::ok)
        {
            let p = e.path();
            let is_case =
                p.join(spec).is_file() && (root == "tests/cases" || p.join("expected").is_dir());
            if is_case {
                dirs.push((p, spec));
            }
        }
    }
    dirs.sort();
    dirs
}

/// Output files of a run, as sorted lines. A folder is a sink's part files
/// (with checkpointing): its committed files, those whose names do not
/// begin with `.`, read as one.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .expect("output folder")
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        let lines = if e.path().is_dir() {
            let mut lines: Vec<String> = std::fs::read_dir(e.path())
                .expect("part folder")
                .filter_map(Result::ok)
                .filter(|p| !p.file_name().to_string_lossy().starts_with('.'))
                .flat_map(|p| sorted_lines(&p.path()))
                .collect();
            lines.sort();
            lines
        } else {
            sorted_lines(&e.path())
        };
        out.insert(name, lines);
    }
    out
}

fn expected(case: &Path) -> BTreeMap<String, Vec<String>> {
    let dir = case.join("expected");
    if !dir.is_dir() {
        return BTreeMap::new();
    }
    outputs(&dir)
}

/// `sluice run` for a case at `parallelism` on `backend`, writing to `out`.
fn case_command(case: &Path, spec: &str, parallelism: &str, backend: &str, out: &Path) -> Command {
    // Relative to the repository (sluice runs there), so that record origins
    // in the expectations read the same on every machine.
    let relative = case
        .strip_prefix(support::repo())
        .expect("case inside the repository");
    let mut c = support::sluice();
    c.args(["run", "--no-api", "-q"])
        .arg(relative.join(spec))
        .env("CASE", relative)
        .env("OUT", out)
        .env("PARALLELISM", parallelism)
        .env("STATE_BACKEND", backend);
    c
}

fn run_case(
    case: &Path,
    spec: &str,
    parallelism: &str,
    backend: &str,
) -> (std::process::Output, tempfile::TempDir) {
    let out = support::temp_dir();
    let o = case_command(case, spec, parallelism, backend, out.path())
        .output()
        .expect("run sluice");
    (o, out)
}

fn bless(case: &Path, o: &std::process::Output, out: &Path) {
    let exp = case.join("expected");
    let _ = std::fs::remove_dir_all(&exp);
    let _ = std::fs::remove_file(case.join("expected-error.txt"));
    if o.status.success() {
        std::fs::create_dir_all(&exp).expect("expected folder");
        for (name, lines) in outputs(out) {
            let mut text = lines.join("\n");
            if !lines.is_empty() {
                text.push('\n');
            }
            std::fs::write(exp.join(name), text).expect("write expectation");
        }
    } else {
        let err = stderr(o);
        let line = err
            .lines()
            .find(|l| l.contains("error"))
            .unwrap_or(&err)
            .replace(
                support::modules_dir().to_str().expect("utf-8 path"),
                "{modules}",
            )
            .replace(&format!("@{}", support::wit_version()), "@{wit}");
        std::fs::write(case.join("expected-error.txt"), line + "\n").expect("write expectation");
    }
}

/// Compares a run's outputs with the case's expectations.
fn compare(name: &str, run: &str, out: &Path, case: &Path, failures: &mut Vec<String>) {
    let got = outputs(out);
    let want = expected(case);
    if got != want {
        let mut diff = String::new();
        for file in got
            .keys()
            .chain(want.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (g, w) = (got.get(file), want.get(file));
            if g != w {
                diff.push_str(&format!(
                    "  {file}:\n    expected: {:?}\n    got:      {:?}\n",
                    w.map(|l| l.iter().take(20).collect::<Vec<_>>()),
                    g.map(|l| l.iter().take(20).collect::<Vec<_>>())
                ));
            }
        }
        failures.push(format!("{name} ({run}): outputs differ\n{diff}"));
    }
}

/// A case's runs at parallelism 1 and 2 (and on RocksDB where the spec
/// names `STATE_BACKEND`): each gives the expected output or error.
fn plain_runs(case: &Path, spec: &str) -> Result<(), Failed> {
    let blessing = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let error_file = case.join("expected-error.txt");
    let text = std::fs::read_to_string(case.join(spec)).expect("spec");
    let mut runs = vec![("1", "memory"), ("2", "memory")];
    if text.contains("STATE_BACKEND") {
        runs.extend([("1", "rocksdb"), ("2", "rocksdb")]);
    }
    for (parallelism, backend) in runs {
        let (o, out) = run_case(case, spec, parallelism, backend);
        let parallelism = format!("{parallelism}, {backend}");
        if blessing && parallelism == "1, memory" {
            bless(case, &o, out.path());
        }
        if error_file.is_file() {
            let wanted = std::fs::read_to_string(&error_file).expect("expected-error.txt");
            let err = stderr(&o);
            if o.status.success() {
                failures.push(format!(
                    "{name} (p={parallelism}): expected a failure, but it succeeded"
                ));
            }
            let modules = support::modules_dir();
            let wit = support::wit_version();
            for line in wanted.lines().filter(|l| !l.trim().is_empty()) {
                let line = line
                    .replace("{modules}", modules.to_str().expect("utf-8 path"))
                    .replace("{wit}", &wit);
                if !err.contains(line.trim()) {
                    failures.push(format!(
                        "{name} (p={parallelism}): error output lacks `{}`:\n{err}",
                        line.trim()
                    ));
                }
            }
            continue;
        }
        if !o.status.success() {
            failures.push(format!("{name} (p={parallelism}): failed:\n{}", stderr(&o)));
            continue;
        }
        compare(&name, &parallelism, out.path(), case, &mut failures);
    }
    verdict(failures)
}

fn verdict(failures: Vec<String>) -> Result<(), Failed> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n").into())
    }
}

/// Lines in a case's input files (everything but the spec and the
/// expectations).
fn input_records(case: &Path) -> usize {
    std::fs::read_dir(case)
        .expect("case folder")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file() && !e.file_name().to_string_lossy().ends_with(".yaml"))
        .filter(|e| !e.file_name().to_string_lossy().starts_with("expected"))
        .map(|e| std::fs::read_to_string(e.path()).map_or(0, |t| t.lines().count()))
        .sum()
}

/// How many lines the file sources had read at a checkpoint (a finished
/// file counts as none: this is for deciding when half the input is read).
fn lines_read(chk: &Path) -> usize {
    support::checkpoint_splits(chk)
        .iter()
        .filter_map(|split| split["line"].as_u64())
        .sum::<u64>() as usize
}

/// A case that succeeds, with exactly-once part-file sinks and checkpoints
/// at parallelism 2: the committed output equals the expectations.
fn with_checkpoints(case: &Path, spec: &str) -> Result<(), Failed> {
    let mut failures = Vec::new();
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let dir = support::temp_dir();
    let (out, ck) = (dir.path().join("out"), dir.path().join("ck"));
    std::fs::create_dir_all(&out).unwrap();
    let mut c = case_command(case, spec, "2", "memory", &out);
    checkpointed(&mut c, &ck);
    let o = c.output().expect("run sluice");
    if !o.status.success() {
        failures.push(format!(
            "{name} (p=2, checkpoints): failed:\n{}",
            stderr(&o)
        ));
    } else {
        compare(&name, "p=2, checkpoints", &out, case, &mut failures);
    }
    verdict(failures)
}

fn checkpointed(c: &mut Command, ck: &Path) {
    c.arg("--checkpoint-dir")
        .arg(ck)
        .args(["--checkpoint-interval", "10ms"]);
}

/// A case that succeeds, at parallelism 2 paced (`--source-rate`) so that its
/// input lasts about half a second, killed with SIGKILL once a complete
/// checkpoint covers half its input, then restored from its latest
/// checkpoint at parallelism 3: the committed output equals the
/// expectations.
fn killed_and_restored(case: &Path, spec: &str) -> Result<(), Failed> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let dir = support::temp_dir();
    let (out, ck) = (dir.path().join("out"), dir.path().join("ck"));
    std::fs::create_dir_all(&out).unwrap();
    let records = input_records(case);
    let rate = (records * 2).max(4).to_string();
    let mut c = case_command(case, spec, "2", "memory", &out);
    checkpointed(&mut c, &ck);
    let mut child = c
        .args(["--source-rate", &rate])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start sluice");
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        if let Some(chk) = support::latest_checkpoint(&ck)
            && lines_read(&chk) * 2 >= records
        {
            break Some(chk);
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break None;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let _ = child.kill();
    let status = child.wait().unwrap();
    if first.is_none() {
        return Err(format!(
            "{name}: the paced run ended ({status}) before it was half way through"
        )
        .into());
    }
    // The kill may have come after a newer checkpoint completed.
    let from = support::latest_checkpoint(&ck).unwrap();
    if !support::checkpoint_reading(&from) {
        return Err(format!(
            "{name}: {} was taken after the sources had read all input",
            from.display()
        )
        .into());
    }
    let mut c = case_command(case, spec, "3", "memory", &out);
    checkpointed(&mut c, &ck);
    let o = c
        .arg("--from-savepoint")
        .arg(&from)
        .output()
        .expect("run sluice");
    if !o.status.success() {
        return Err(format!(
            "{name} (killed at p=2, restored at p=3 from {}): failed:\n{}",
            from.display(),
            stderr(&o)
        )
        .into());
    }
    let mut failures = Vec::new();
    compare(
        &name,
        "killed at p=2, restored at p=3",
        &out,
        case,
        &mut failures,
    );
    verdict(failures)
}

fn main() {
    let args = Arguments::from_args();
    let all = cases();
    assert!(
        all.len() >= 10,
        "tests/cases should hold the data-driven cases"
    );
    let mut trials = Vec::new();
    for (case, spec) in all {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let fails = case.join("expected-error.txt").is_file();
        let c = case.clone();
        trials.push(Trial::test(name.clone(), move || plain_runs(&c, spec)));
        if fails {
            continue;
        }
        let c = case.clone();
        trials.push(Trial::test(format!("{name}::checkpoints"), move || {
            with_checkpoints(&c, spec)
        }));
        trials.push(Trial::test(format!("{name}::restored_at_p3"), move || {
            killed_and_restored(&case, spec)
        }));
    }
    libtest_mimic::run(&args, trials).exit();
}
