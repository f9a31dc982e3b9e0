//! Property-based fuzzing of the config parser: arbitrary text and
//! valid configs mutated token by token never make it panic, and every error
//! it reports names the line (`line N`, with N inside the file) so that an
//! operator can find what to fix.

use std::path::Path;

use hge_shared::config::Config;
use proptest::prelude::*;

/// A config that sets every key, targets included (netns too).
const FULL: &str = r#"user = "metrics"
[web]
listen_address = "127.0.0.1:9999"
telemetry_path = "/m"
max_requests = 3
[metrics]
scrape_interval = "200ms"
buckets = [0.1, 0.2]
status_label = "code"
max_series = 50
[bpf]
attach_mode = "tc"
flow_table_size = 1024
[[target]]
name = "web"
interfaces = ["veth*", "eth0"]
netns = "/run/netns/web"
ports = [80, 8080]
[[target]]
name = "db"
interfaces = ["eth1"]
"#;

const EXAMPLE: &str = include_str!("../config.example.toml");

/// Pieces of TOML and of this config's vocabulary, for mutations that stay
/// close enough to a real file to get past the TOML syntax.
const TOKENS: &[&str] = &[
    "\n",
    " ",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    ",",
    "{",
    "}",
    "#",
    ".",
    "-",
    "0",
    "1",
    "-1",
    "65536",
    "1e9",
    "nan",
    "inf",
    "true",
    "\"\"",
    "\"x\"",
    "[]",
    "[\"eth0\"]",
    "\"/run/netns/x\"",
    "\"relative/ns\"",
    "\"../x\"",
    "\"\\u0000\"",
    "\"\\n\"",
    "\"5s\"",
    "\"0s\"",
    "user",
    "web",
    "metrics",
    "bpf",
    "target",
    "[[target]]",
    "[metrics]",
    "[web]",
    "[bpf]",
    "name",
    "interfaces",
    "netns",
    "ports",
    "buckets",
    "status_label",
    "max_series",
    "scrape_interval",
    "listen_address",
    "telemetry_path",
    "max_requests",
    "attach_mode",
    "flow_table_size",
    "name = \"web\"",
    "interfaces = [\"eth0\"]",
    "name = \"db\"",
    "ports = [80, 80]",
    "9223372036854775808",
    "1979-05-27T07:32:00Z",
    "\u{feff}",
    "\r\n",
    "\u{1b}[2J",
];

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("fuzz.toml")).map_err(|e| e.to_string())
}

/// The error names a line of the file: "line N" with 1 <= N <= lines + 1.
fn assert_names_a_line(text: &str, err: &str) -> Result<(), TestCaseError> {
    let lines = text.lines().count().max(1) + 1;
    let named = err.match_indices("line ").any(|(i, m)| {
        let digits: String = err[i + m.len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().is_ok_and(|n| (1..=lines).contains(&n))
    });
    prop_assert!(named, "error names no line of the {}-line file:\n{err}\n--- file ---\n{text}", lines - 1);
    Ok(())
}

fn check(text: &str) -> Result<(), TestCaseError> {
    // A panic fails the property (proptest catches it and shrinks the input).
    if let Err(e) = parse(text) {
        assert_names_a_line(text, &e)?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Insert(usize, &'static str),
    Delete(usize, usize),
    Replace(usize, usize, &'static str),
    Duplicate(usize, usize),
    InsertRaw(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let tok = proptest::sample::select(TOKENS);
    prop_oneof![
        (any::<usize>(), tok.clone()).prop_map(|(at, t)| Mutation::Insert(at, t)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Mutation::Delete(at, n)),
        (any::<usize>(), 1usize..12, tok).prop_map(|(at, n, t)| Mutation::Replace(at, n, t)),
        (any::<usize>(), 1usize..200).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
        (any::<usize>(), ".{1,8}").prop_map(|(at, s)| Mutation::InsertRaw(at, s)),
    ]
}

/// Apply mutations at char boundaries (positions taken modulo the length).
fn mutate(base: &str, muts: &[Mutation]) -> String {
    let mut s = base.to_string();
    let boundary = |s: &str, at: usize| {
        let mut i = at % (s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for m in muts {
        match m {
            Mutation::Insert(at, t) => s.insert_str(boundary(&s, *at), t),
            Mutation::InsertRaw(at, t) => s.insert_str(boundary(&s, *at), t),
            Mutation::Delete(at, n) | Mutation::Replace(at, n, _) | Mutation::Duplicate(at, n) => {
                let a = boundary(&s, *at);
                let b = boundary(&s, a.saturating_add(*n).min(s.len()));
                match m {
                    Mutation::Delete(..) => s.replace_range(a..b, ""),
                    Mutation::Replace(_, _, t) => s.replace_range(a..b, t),
                    _ => {
                        let copy = s[a..b].to_string();
                        s.insert_str(b, &copy);
                    }
                }
            }
        }
    }
    s
}

const KEYS: &[&str] = &[
    "user",
    "listen_address",
    "telemetry_path",
    "max_requests",
    "scrape_interval",
    "buckets",
    "status_label",
    "max_series",
    "attach_mode",
    "flow_table_size",
    "name",
    "interfaces",
    "netns",
    "ports",
    "bogus",
];
const HEADERS: &[&str] = &["", "[web]", "[metrics]", "[bpf]", "[[target]]", "[target]", "[web.x]"];
const VALUES: &[&str] = &[
    "0",
    "1",
    "-5",
    "3",
    "99999999999",
    "1.5",
    "true",
    "\"\"",
    "\"a\"",
    "\"a b\"",
    "\"/m\"",
    "\"/\"",
    "\":1\"",
    "\"127.0.0.1:80\"",
    "\"5s\"",
    "\"1ms\"",
    "\"2h\"",
    "\"code\"",
    "\"class\"",
    "\"tc\"",
    "\"xdp\"",
    "[]",
    "[0.1, 0.05]",
    "[0.1, 0.2]",
    "[1e-12]",
    "[80, 80]",
    "[0]",
    "[80]",
    "[\"eth0\"]",
    "[\"[\"]",
    "[\"a/b\"]",
    "\"/run/netns/x\"",
    "\"netns/x\"",
    "\"\"",
    "{ a = 1 }",
    "\"\\u0007\"",
];

/// Tables and `key = value` lines drawn from the config's own vocabulary:
/// syntactically valid TOML that reaches the validators.
fn structured() -> impl Strategy<Value = String> {
    let line =
        (proptest::sample::select(KEYS), proptest::sample::select(VALUES)).prop_map(|(k, v)| format!("{k} = {v}"));
    let section = (proptest::sample::select(HEADERS), proptest::collection::vec(line, 0..5))
        .prop_map(|(h, lines)| format!("{h}\n{}\n", lines.join("\n")));
    proptest::collection::vec(section, 0..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_a_line(text in "(?s).{0,400}") {
        check(&text)?;
    }

    #[test]
    fn arbitrary_token_soup_never_panics_and_errors_name_a_line(
        toks in proptest::collection::vec(proptest::sample::select(TOKENS), 0..60)
    ) {
        check(&toks.concat())?;
    }

    #[test]
    fn mutated_valid_configs_never_panic_and_errors_name_a_line(
        full in any::<bool>(),
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let base = if full { FULL } else { EXAMPLE };
        check(&mutate(base, &muts))?;
    }

    #[test]
    fn structured_configs_never_panic_and_errors_name_a_line(text in structured()) {
        check(&text)?;
    }
}

#[test]
fn the_bases_are_valid() {
    assert_eq!(parse(FULL).unwrap().targets.len(), 2);
    parse(EXAMPLE).unwrap();
}

/// Found by the properties above: errors raised for a whole array of tables
/// (or a whole table) must still say where it is.
#[test]
fn errors_about_a_whole_table_name_a_line() {
    for text in [
        // Two targets with one name.
        "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"a\"\ninterfaces = [\"y\"]\n",
        // A target without interfaces.
        "[web]\nmax_requests = 3\n[[target]]\nname = \"a\"\n",
        // A relative netns path.
        "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nnetns = \"run/netns/a\"\n",
    ] {
        let e = parse(text).unwrap_err();
        assert_names_a_line(text, &e).unwrap();
    }
}
