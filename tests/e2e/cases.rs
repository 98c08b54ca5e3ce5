//! Data-driven cases: one folder per case under `tests/cases/`.
//!
//! A case holds `spec.yaml`, its inputs, and either `expected/` — one file
//! per output file the spec writes to `${OUT}` — or `expected-error.txt`,
//! lines that must all appear in the error output of a failing run
//! (`{modules}` stands for the folder of the example modules). The spec runs
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
//! `BLESS=1 cargo test --release --test e2e cases` rewrites the expectations
//! from the parallelism-1 run (review the diff before committing it).

use crate::support::{self, sorted_lines, stderr};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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

/// Output files of a run, as sorted lines.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)
        .expect("output folder")
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        out.insert(name, sorted_lines(&e.path()));
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

fn run_case(
    case: &Path,
    spec: &str,
    parallelism: &str,
    backend: &str,
) -> (std::process::Output, tempfile::TempDir) {
    let out = support::temp_dir();
    // Relative to the repository (sluice runs there), so that record origins
    // in the expectations read the same on every machine.
    let relative = case
        .strip_prefix(support::repo())
        .expect("case inside the repository");
    let o = support::run(
        &relative.join(spec),
        &[
            ("CASE", relative.to_str().expect("utf-8 path")),
            ("OUT", out.path().to_str().expect("utf-8 path")),
            ("PARALLELISM", parallelism),
            ("STATE_BACKEND", backend),
        ],
    );
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
            );
        std::fs::write(case.join("expected-error.txt"), line + "\n").expect("write expectation");
    }
}

#[test]
fn data_driven_cases() {
    let blessing = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    let all = cases();
    assert!(
        all.len() >= 10,
        "tests/cases should hold the data-driven cases"
    );
    for (case, spec) in &all {
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
                for line in wanted.lines().filter(|l| !l.trim().is_empty()) {
                    let line = line.replace("{modules}", modules.to_str().expect("utf-8 path"));
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
            let got = outputs(out.path());
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
                failures.push(format!("{name} (p={parallelism}): outputs differ\n{diff}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} case run(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
