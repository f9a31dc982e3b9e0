//! bench/'s report judges each result against its goal (met or missed):
//! bench/harness/test_report.py checks those verdicts at every goal's edge,
//! with Debian's python3, the one bench/run uses.

mod common;

use std::process::Command;

#[test]
fn the_benchmark_reports_verdicts_are_right_at_each_goals_edge() {
    let python = "/usr/bin/python3";
    if !std::path::Path::new(python).exists() {
        let msg = format!("this test needs {python} (Debian's python3, as bench/run)");
        assert!(!common::in_ci(), "{msg} (CI=true: it must run)");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let out = Command::new(python)
        .args(["-B", "-m", "unittest", "-v", "bench.harness.test_report"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running python3");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("\nOK"), "{said}");
}
