//! The host's modules form layers: a module uses only modules below it.
//! These tests read the sources and fail on a dependency cycle between the
//! top-level modules of `host/src`, or between the files of `wasm/` and of
//! `connectors/kafka/` — the places where cycles grew before.
//!
//! A module depends on another when its code (not its comments, not its
//! `#[cfg(test)]` part) names it: `crate::other::…`, `crate::{other, …}`,
//! or, between sibling files, `super::other`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its test module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a readable source file");
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names used after each occurrence of `prefix`: `prefix name` or
/// `prefix{a, b::c}`.
fn names_after(code: &str, prefix: &str, out: &mut BTreeSet<String>) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices(prefix) {
        let rest = &code[i + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for part in group.split(',') {
                out.insert(ident(part.trim()));
            }
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
}

/// Dependencies between the children of `dir` (files and folders), which
/// the crate names `path` (`crate::wasm::`).
fn graph(dir: &Path, path: &str) -> Graph {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(dir).expect("under dir");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "mod" || module == "lib" || module == "main" {
            continue;
        }
        let code = code(&f);
        let mut used = BTreeSet::new();
        names_after(&code, path, &mut used);
        // `super::x` from a file directly in `dir` names a sibling.
        if rel.components().count() == 1 {
            names_after(&code, "super::", &mut used);
        }
        used.remove(&module);
        g.entry(module).or_default().extend(used);
    }
    // Only modules count, not items of the parent.
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for used in g.values_mut() {
        used.retain(|m| modules.contains(m));
    }
    g
}

/// The cycles of `g`: its strongly connected components of more than one
/// module (Tarjan).
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct Walk<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self
                    .stack
                    .iter()
                    .rposition(|&x| x == v)
                    .expect("on the stack");
                let component: Vec<String> = self.stack.drain(at..).map(str::to_owned).collect();
                if component.len() > 1 {
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn assert_acyclic(dir: &Path, path: &str) {
    let g = graph(dir, path);
    assert!(g.len() > 1, "no modules found under {}", dir.display());
    let found = cycles(&g);
    assert!(
        found.is_empty(),
        "dependency cycles among the modules of {}: {found:?}\n(dependencies: {g:#?})",
        dir.display()
    );
}

#[test]
fn top_level_modules_form_no_cycle() {
    assert_acyclic(&src(), "crate::");
}

#[test]
fn the_runtime_knows_no_operator_kind() {
    let g = graph(&src(), "crate::");
    for upper in [
        "plan",
        "wasm",
        "window",
        "join",
        "group",
        "connectors",
        "sql",
        "server",
        "cli",
    ] {
        assert!(
            !g["runtime"].contains(upper),
            "runtime/ uses {upper}/: operators reach it through their factories"
        );
    }
}

#[test]
fn operator_modules_do_not_use_each_other() {
    // Windows, Wasm operators and connectors meet only through the
    // runtime's contracts (factories, kinds, the aggregate contract); the
    // planner wires them together.
    let g = graph(&src(), "crate::");
    let peers = ["window", "join", "group", "wasm", "connectors", "sql"];
    for a in peers {
        for b in peers {
            assert!(
                a == b || !g[a].contains(b),
                "{a}/ uses {b}/: operator modules reach each other through runtime/"
            );
        }
    }
}

#[test]
fn the_files_of_wasm_form_no_cycle() {
    assert_acyclic(&src().join("wasm"), "crate::wasm::");
}

#[test]
fn the_files_of_the_kafka_connector_form_no_cycle() {
    assert_acyclic(
        &src().join("connectors/kafka"),
        "crate::connectors::kafka::",
    );
}

#[test]
fn a_cycle_is_found() {
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")] {
        g.entry(a.to_owned()).or_default().insert(b.to_owned());
    }
    g.entry("d".to_owned()).or_default();
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    let mut used = BTreeSet::new();
    names_after(
        "use crate::{x, y::z};\nlet _ = crate::w::f();",
        "crate::",
        &mut used,
    );
    assert_eq!(used.into_iter().collect::<Vec<_>>(), ["w", "x", "y"]);
}
