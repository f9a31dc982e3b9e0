//! The command line and the web endpoint, as an operator meets them.

mod common;

use std::process::Command;

use common::{exporter_bin, http_request, Exporter, Pair, TempDir};

fn exporter(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(exporter_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn version_and_help_name_the_node_exporter_style_flags() {
    let (ok, out, _) = exporter(&["--version"]);
    assert!(ok && out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (ok, out, _) = exporter(&["--help"]);
    assert!(ok);
    for flag in ["--config.file", "--web.listen-address", "--web.telemetry-path", "--check-config", "--bpf.attach-mode"]
    {
        assert!(out.contains(flag), "--help lacks {flag}:\n{out}");
    }
}

#[test]
fn check_config_accepts_the_example_and_names_line_and_key_of_errors() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml");
    let (ok, out, err) = exporter(&["--check-config", "--config.file", example]);
    assert!(ok, "{out}{err}");

    let dir = TempDir::new("hgcli");
    let bad = write(&dir, "bad.toml", "[metrics]\nscrape_interval = \"5s\"\nbuckets = [1.0, 0.5]\n");
    let (ok, _, err) = exporter(&["--check-config", "--config.file", &bad]);
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("buckets") && err.contains("strictly increasing"), "{err}");

    let unknown = write(&dir, "unknown.toml", "[web]\nlisten_adress = \":1\"\n");
    let (ok, _, err) = exporter(&["--check-config", "--config.file", &unknown]);
    assert!(!ok);
    assert!(err.contains("line 2") && err.contains("listen_adress"), "{err}");
}

#[test]
fn a_config_file_named_explicitly_must_exist() {
    let (ok, _, err) = exporter(&["--check-config", "--config.file", "/nonexistent/hge.toml"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/hge.toml"), "{err}");
}

#[test]
fn bad_flag_values_are_rejected_before_anything_starts() {
    for args in
        [&["--web.listen-address", "nowhere"][..], &["--web.telemetry-path", "metrics"], &["--bpf.attach-mode", "xdp"]]
    {
        let (ok, _, err) = exporter(args);
        assert!(!ok, "{args:?} accepted");
        assert!(err.contains(args[0]), "{args:?}: {err}");
    }
}

#[test]
fn a_missing_interface_is_one_clear_error_and_a_non_zero_exit() {
    // Interfaces are resolved after the parser is loaded, which needs the privileges.
    if !common::privileged(&[]) {
        return;
    }
    let dir = TempDir::new("hgcli");
    let cfg = write(
        &dir,
        "c.toml",
        "[web]\nlisten_address = \"127.0.0.1:0\"\n[[target]]\nname = \"web\"\ninterfaces = [\"nosuch0\"]\n",
    );
    let (ok, _, err) = exporter(&["--config.file", &cfg]);
    assert!(!ok);
    assert!(err.contains("no interface \"nosuch0\""), "{err}");
    assert_eq!(err.trim_end().lines().filter(|l| l.contains("error")).count(), 1, "{err}");
}

#[test]
fn the_web_endpoint_serves_a_landing_page_and_refuses_the_rest() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = Exporter::start(&format!(
        "[[target]]\nname = \"t\"\ninterfaces = [\"{}\"]\nnetns = \"{}\"\n",
        pair.server_if,
        Pair::netns_path(&pair.server_ns)
    ));
    let (status, body) = http_request(exp.port, "GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("href=\"/metrics\""), "{body}");
    assert_eq!(http_request(exp.port, "GET /nope HTTP/1.0\r\n\r\n").unwrap().0, 404);
    assert_eq!(http_request(exp.port, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap().0, 405);
    assert_eq!(http_request(exp.port, "HEAD /metrics HTTP/1.0\r\n\r\n").unwrap().0, 200);
    // Garbage and oversized requests get an error, and the exporter lives on.
    assert_eq!(http_request(exp.port, "\x00\x01\x02 garbage\r\n\r\n").unwrap().0, 400);
    // A head past the 64 KiB read buffer: 431, not a hang or a crash.
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(200_000));
    assert_eq!(http_request(exp.port, &huge).unwrap().0, 431, "{}", exp.log());
    let m = exp.scrape();
    assert!(m.has("http_golden_exporter_build_info", &[]));
    assert!(exp.log().lines().all(|l| !l.contains("panicked")), "{}", exp.log());
}
