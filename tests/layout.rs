//! The module map of docs/architecture.md, checked: which module may import
//! which, no import cycles, and files small enough to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules and what each may import (docs/architecture.md, "Module map").
const ALLOWED: &[(&str, &[&str])] = &[
    ("config", &[]),
    ("topology", &[]),
    ("cli", &["config", "top"]),
    ("bpf", &["config"]),
    ("collector", &["bpf", "config", "topology"]),
    ("web", &["collector", "config"]),
    ("privileged", &["bpf", "config", "topology"]),
    ("discover", &[]),
    // The terminal view reads /metrics over HTTP like any client: nothing of the daemon.
    ("top", &[]),
    ("daemon", &["bpf", "collector", "config", "discover", "privileged", "topology", "web"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under src/ belongs to (None for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.trim_end_matches(".rs").to_string();
    (!matches!(first.as_str(), "lib" | "main")).then_some(first)
}

/// Modules named as `crate::NAME` in a file.
fn crate_imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // `http_golden_exporter::crate::` does not occur; `$crate::` would be a macro's.
        if text[..i].ends_with('$') {
            continue;
        }
        let rest = &text[i + 7..];
        // `crate::{a, b::c}` names several modules at once.
        let group = match rest.strip_prefix('{') {
            Some(inner) => &inner[..inner.find('}').unwrap_or(inner.len())],
            None => rest,
        };
        for part in group.split(',') {
            let name: String =
                part.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
            if !rest.starts_with('{') {
                break;
            }
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let Some(m) = module_of(&src(), &f) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(m.clone()).or_default();
        deps.extend(crate_imports(&text).into_iter().filter(|d| *d != m));
    }
    g
}

#[test]
fn every_module_imports_only_what_the_module_map_allows() {
    let g = graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    for (m, deps) in &g {
        let Some(ok) = allowed.get(m.as_str()) else { panic!("module {m} is not in the module map") };
        for d in deps {
            assert!(ok.contains(&d.as_str()), "src/{m} imports crate::{d}, which the module map does not allow");
        }
    }
    assert_eq!(g.len(), ALLOWED.len(), "modules: {:?}", g.keys().collect::<Vec<_>>());
}

#[test]
fn the_leaves_import_nothing_of_the_program() {
    let g = graph();
    assert!(g["config"].is_empty(), "config imports {:?}", g["config"]);
    assert!(g["topology"].is_empty(), "topology imports {:?}", g["topology"]);
    for m in ["web", "collector"] {
        assert!(!g[m].contains("privileged"), "src/{m} must not import privileged code");
    }
}

#[test]
fn there_is_no_import_cycle() {
    let g = graph();
    // Depth-first search with colours: grey on the stack, black done.
    fn visit(g: &BTreeMap<String, BTreeSet<String>>, m: &str, grey: &mut Vec<String>, black: &mut BTreeSet<String>) {
        if black.contains(m) {
            return;
        }
        if let Some(i) = grey.iter().position(|x| x == m) {
            panic!("import cycle: {} -> {m}", grey[i..].join(" -> "));
        }
        grey.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            visit(g, d, grey, black);
        }
        grey.pop();
        black.insert(m.to_string());
    }
    let mut black = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut black);
    }
}

#[test]
fn source_files_stay_small() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in &files {
        let n = std::fs::read_to_string(f).unwrap().lines().count();
        assert!(n <= 400, "{} has {n} lines (at most 400)", f.display());
    }
    let bpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let mut c = Vec::new();
    for dir in [bpf.clone(), bpf.join("lib")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "c" || x == "h") {
                c.push(p);
            }
        }
    }
    assert!(c.len() > 2, "bpf/ and bpf/lib/ hold the parser: {c:?}");
    for f in &c {
        let n = std::fs::read_to_string(f).unwrap().lines().count();
        assert!(n <= 450, "{} has {n} lines (at most 450)", f.display());
    }
}
