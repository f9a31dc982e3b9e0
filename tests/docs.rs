//! What the docs say of the code, checked against the code: the unit's limits
//! wherever the docs quote them, and every test the docs name as checking a
//! statement exists under that name.

use std::path::Path;

fn read(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The documents that quote the unit or name tests.
const DOCS: &[&str] = &[
    "README.md",
    "docs/architecture.md",
    "docs/accuracy.md",
    "man/http-golden-exporter.8.in",
    "man/http-golden-exporter.toml.5",
];

#[test]
fn the_units_limits_are_quoted_as_the_unit_sets_them() {
    let unit = read("systemd/http-golden-exporter.service");
    for key in ["LimitNOFILE=", "MemoryMax="] {
        let set = unit.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("the unit sets no {key}"));
        let mut quoted = 0;
        for doc in DOCS {
            for (n, line) in read(doc).lines().enumerate() {
                for (at, _) in line.match_indices(key) {
                    let value: String =
                        line[at + key.len()..].chars().take_while(char::is_ascii_alphanumeric).collect();
                    assert_eq!(value, set, "{doc}:{}: {key}{value}, but the unit sets {key}{set}", n + 1);
                    quoted += 1;
                }
            }
        }
        assert!(quoted > 0, "no document quotes {key}");
    }
}

/// Every `fn name` in the tests and the crates' unit tests.
fn test_names() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for rest in text.split("fn ").skip(1) {
                    out.push(rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect());
                }
            }
        }
    }
    let mut names = Vec::new();
    for dir in ["tests", "src"] {
        walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut names);
    }
    names
}

/// Quoted names that look like a test's and are not: a recording rule's label set.
const NOT_TESTS: &[&str] = &["instance_target_container_port_method"];

#[test]
fn every_test_the_docs_name_exists() {
    let names = test_names();
    let mut checked = 0;
    for doc in DOCS {
        for (n, line) in read(doc).lines().enumerate() {
            if line.trim_start().starts_with("```") {
                continue;
            }
            // Inside backquotes: a test's name, or its beginning and an ellipsis.
            for quoted in line.split('`').skip(1).step_by(2) {
                let (name, prefix) = match quoted.strip_suffix('…') {
                    Some(p) => (p.trim_end_matches('_'), true),
                    None => (quoted, false),
                };
                let snake = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                // Metrics end in _total, helpers begin with bpf_: neither is a test.
                let other = name.ends_with("_total") || name.starts_with("bpf_") || name.starts_with("http_");
                let long = name.matches('_').count() >= 4 || (prefix && name.contains('_'));
                if !snake || other || !long || NOT_TESTS.contains(&name) {
                    continue;
                }
                let found = names.iter().any(|t| if prefix { t.starts_with(name) } else { t == name });
                assert!(found, "{doc}:{}: `{quoted}`, and no test is called that", n + 1);
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} test names found in the docs");
}
