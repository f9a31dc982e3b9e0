//! The shape of the tree (docs/architecture.md, "Module map"). Which process
//! may reach which code is the compiler's to enforce: a crate per process,
//! and the dependencies between them. What is checked here is what the
//! compiler does not: that those dependencies stay as drawn, that no module
//! inside a crate imports in a circle, and that files and the main loops'
//! functions stay small enough to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every package the given package depends on for its build (normal
/// dependencies, transitively), by name.
fn dependencies(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "--edges", "normal", "--prefix", "none", "--format", "{p}", "-p"])
        .arg(package)
        .current_dir(root())
        .output()
        .expect("running cargo tree");
    assert!(out.status.success(), "cargo tree -p {package}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_exporter_depends_on_nothing_that_loads_programs_writes_maps_or_enters_namespaces() {
    let deps = dependencies("hge-exporter");
    for forbidden in ["http-golden-exporter", "libbpf-rs", "libbpf-cargo"] {
        assert!(!deps.contains(forbidden), "hge-exporter depends on {forbidden}: {deps:?}");
    }
    assert!(deps.contains("hge-shared"));
}

#[test]
fn what_both_processes_share_depends_on_neither() {
    let deps = dependencies("hge-shared");
    for forbidden in ["http-golden-exporter", "hge-exporter", "hge-top", "libbpf-rs", "libbpf-sys", "tokio"] {
        assert!(!deps.contains(forbidden), "hge-shared depends on {forbidden}: {deps:?}");
    }
}

#[test]
fn the_daemon_links_no_terminal_ui_and_top_nothing_of_the_daemon() {
    let daemon = dependencies("http-golden-exporter");
    for ui in ["hge-top", "ratatui", "crossterm", "ureq", "signal-hook"] {
        assert!(!daemon.contains(ui), "the daemon depends on {ui}");
    }
    let top = dependencies("hge-top");
    for ours in ["http-golden-exporter", "hge-exporter", "hge-shared", "libbpf-rs", "libbpf-sys"] {
        assert!(!top.contains(ours), "top depends on {ours}: it reads /metrics like any client");
    }
}

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

/// The crates' roots under src/: each with its top-level modules.
const CRATES: [&str; 4] = ["src/attacher", "src/exporter", "src/shared", "src/top"];

/// Within one crate: each top-level module and the modules it names as `crate::NAME`.
fn module_graph(krate: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(krate, &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(krate).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        if matches!(first, "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let deps = g.entry(first.to_string()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            // `$crate::` is a macro's; `crate::{a, b}` is not used in this tree.
            if !name.is_empty() && name != first && !text[..i].ends_with('$') {
                deps.insert(name);
            }
        }
    }
    g
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
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
    for krate in CRATES {
        let g = module_graph(&root().join(krate));
        assert!(g.len() > 2, "{krate} has modules: {g:?}");
        let mut black = BTreeSet::new();
        for m in g.keys() {
            visit(&g, m, &mut Vec::new(), &mut black);
        }
    }
}

#[test]
fn source_files_stay_small() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    for f in &files {
        let n = std::fs::read_to_string(f).unwrap().lines().count();
        assert!(n <= 400, "{} has {n} lines (at most 400)", f.display());
    }
    let bpf = root().join("bpf");
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

/// Each `fn` of `text` with its length in lines, by matching braces (the
/// files checked hold no braces in strings or comments that would mislead it).
fn functions(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("fn ") {
        if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let name: String = text[i + 3..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let Some(open) = text[i..].find(['{', ';']).map(|o| i + o) else { continue };
        if text.as_bytes()[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let close = text[open..]
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '{' => 1,
                    '}' => -1,
                    _ => 0,
                };
                depth == 0
            })
            .map(|(j, _)| open + j)
            .unwrap();
        out.push((name, text[i..=close].lines().count()));
    }
    out
}

#[test]
fn no_function_of_either_process_main_loop_is_over_60_lines() {
    for file in ["src/attacher/start.rs", "src/attacher/event_loop.rs", "src/exporter/process.rs"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let text = text.split("#[cfg(test)]").next().unwrap();
        let fns = functions(text);
        assert!(fns.len() > 3, "{file}: {fns:?}");
        for (name, lines) in fns {
            assert!(lines <= 60, "{file}: fn {name} has {lines} lines (at most 60)");
        }
    }
}
