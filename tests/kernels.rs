//! The exporter on the kernels users run, each booted under QEMU from
//! Debian's own packages (`.ci/kernels` fetches them):
//!
//! - 6.1, Debian 12's kernel, the oldest supported: tc clsact filters;
//! - 6.12 (Debian 13's series, also built for Debian 12): TCX links;
//! - 5.10, Debian 11's: refused at start, in one line naming what it lacks;
//! - 6.1 and 6.12 for arm64, under qemu-system-aarch64 (TCG).
//!
//! The exporter is the one users install: the static binary of the deb for
//! the kernel's architecture (`packaging/build --profile dev`), in an
//! initramfs that holds no C library for it.
//!
//! On 6.1 and 6.12 the programs load, each within a fifth of the verifier's
//! limit; 5 real requests over a veth pair between two namespaces and 5 over
//! lo are counted exactly in both views; SIGTERM leaves no program or filter
//! behind; and the parser's tests pass, packet by packet and header by
//! header. The host's own kernel is held to the same bound. The guests run
//! their part (tests/kernels/*.sh) and report on a serial port; the
//! assertions are made here.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::packages::{self, Arch};
use common::qemu::{self, Guest, Initramfs, Kernel};
use common::{Exporter, Metrics, Pair};

/// Every program must verify in at most this many instructions: a fifth of
/// the verifier's limit (1,000,000), so that another build of a kernel, or a
/// change to the parser, does not take it over the edge.
const HEADROOM: f64 = 200_000.0;

/// The programs a running exporter has loaded: the parser's two, and the two
/// on each interface.
const PROGRAMS: [&str; 4] = ["hg_parse_ingress", "hg_parse_egress", "http_ingress", "http_egress"];

/// Debian package names: prefix, version, suffix.
const DEBIAN_6_1: (&str, &str) = ("linux-image-6.1.0-", "-cloud-amd64-unsigned");
const DEBIAN_6_12: (&str, &str) = ("linux-image-6.12.", "+deb12-cloud-amd64-unsigned");
const DEBIAN_5_10: (&str, &str) = ("linux-image-5.10.0-", "-cloud-amd64-unsigned");
const DEBIAN_6_1_ARM64: (&str, &str) = ("linux-image-6.1.0-", "-cloud-arm64-unsigned");
const DEBIAN_6_12_ARM64: (&str, &str) = ("linux-image-6.12.", "+deb12-cloud-arm64-unsigned");

/// The parser's tests, run inside each guest: packet by packet, and its
/// headers' scanners and classifiers on their own.
const PARSER_TESTS: [&str; 4] = ["bpf_parser", "bpf_streams", "bpf_fuzz", "bpf_lib"];

const INIT: &str = include_str!("kernels/init.sh");

/// The guest's configuration: both ends of the veth pair, as `Pair::two_views`
/// configures them on the host, and lo, on the port of its server only (the
/// scrapes go over lo too).
const CONFIG: &str = r#"
[web]
listen_address = "127.0.0.1:10114"

[metrics]
scrape_interval = "200ms"

[[target]]
name = "server"
interfaces = ["hgs"]
netns = "/run/netns/server"

[[target]]
name = "client"
interfaces = ["hgc"]
netns = "/run/netns/client"

[[target]]
name = "loopback"
interfaces = ["lo"]
ports = [8081]
"#;

#[test]
fn on_6_1_the_exporter_attaches_tc_clsact_counts_exactly_and_leaves_nothing_behind() {
    exporter_on(DEBIAN_6_1, "tc");
}

#[test]
fn on_6_12_the_exporter_attaches_tcx_counts_exactly_and_leaves_nothing_behind() {
    exporter_on(DEBIAN_6_12, "tcx");
}

#[test]
fn on_arm64_6_1_the_exporter_attaches_tc_clsact_counts_exactly_and_leaves_nothing_behind() {
    exporter_on(DEBIAN_6_1_ARM64, "tc");
}

#[test]
fn on_arm64_6_12_the_exporter_attaches_tcx_counts_exactly_and_leaves_nothing_behind() {
    exporter_on(DEBIAN_6_12_ARM64, "tcx");
}

#[test]
fn on_6_1_the_packet_level_parser_tests_pass() {
    parser_tests_on(DEBIAN_6_1);
}

#[test]
fn on_6_12_the_packet_level_parser_tests_pass() {
    parser_tests_on(DEBIAN_6_12);
}

#[test]
fn on_5_10_the_exporter_refuses_to_start_in_one_line_naming_what_is_missing() {
    let Some(kernel) = qemu::require(DEBIAN_5_10.0, DEBIAN_5_10.1, &[]) else { return };
    if !packages::can_build() {
        return;
    }
    let fs = guest_system(&kernel, "refused.sh", include_str!("kernels/refused.sh"));
    // Busybox and the exporter, nothing else: the binary needs no library.
    assert_eq!(packaged_exporter(&fs, &kernel), 0, "the packaged exporter loads no shared library");
    let guest = qemu::boot(&kernel, &fs, 1024, Duration::from_secs(300));
    ran(&guest, &kernel);
    let r = &guest.report;

    let status = r.status("exporter");
    assert!(matches!(status, Some(s) if s != 0), "the exporter exits non-zero (got {status:?})\n{}", guest.tail());
    let stderr = r.output("stderr").unwrap_or_default();
    assert_eq!(
        stderr,
        format!(
            "http-golden-exporter: this kernel ({}) lacks bpf_loop (Linux 5.17); the oldest supported kernel is 6.1\n",
            kernel.release
        ),
        "one line on stderr, naming the helper, the kernel that has it and the oldest supported one\n{}",
        guest.tail()
    );
    assert_eq!(r.output("stdout"), Some(""), "nothing on stdout\n{}", guest.tail());
}

#[test]
fn on_the_host_kernel_every_program_verifies_within_a_fifth_of_the_limit() {
    if !common::privileged(&["ip"]) {
        return;
    }
    let pair = Pair::new();
    let exp = Exporter::start(&pair.two_views("", None));
    let m = exp.scrape();
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    assert_verified_within_headroom(&m, &format!("the host's kernel {release}"), &exp.log());
    assert!(
        exp.log().contains("BPF programs verified: hg_parse_ingress "),
        "the figures are logged at start:\n{}",
        exp.log()
    );
}

/// Boot `kernel` with the exporter and the tools the scenario uses, run
/// tests/kernels/exporter.sh, and check what it reports.
fn exporter_on(package: (&str, &str), mode: &str) {
    let Some(kernel) = qemu::require(package.0, package.1, &["ip", "tc", "bpftool"]) else { return };
    if !packages::can_build() {
        return;
    }
    let fs = guest_system(&kernel, "exporter.sh", include_str!("kernels/exporter.sh"));
    assert_eq!(packaged_exporter(&fs, &kernel), 0, "the packaged exporter loads no shared library");
    for tool in ["ip", "tc", "bpftool"] {
        fs.tool(tool, &format!("usr/sbin/{tool}"));
    }
    fs.modules(&kernel, &["sch_ingress", "cls_bpf", "veth"]);
    let guest = qemu::boot(&kernel, &fs, 2048, Duration::from_secs(20 * 60));
    ran(&guest, &kernel);
    let r = &guest.report;
    let log = r.output("exporter-log").unwrap_or_default();

    for step in ["modules", "network"] {
        assert_eq!(r.status(step), Some(0), "the guest's {step} step succeeded\n{}", guest.tail());
    }
    assert_eq!(
        r.status("ready"),
        Some(0),
        "the exporter started and answered a scrape\nexporter log:\n{log}\n{}",
        guest.tail()
    );
    eprintln!("{}: the exporter answered {:.0} s after it started", kernel.release, r.seconds("ready").unwrap_or(0.0));
    for step in ["requests-veth", "requests-loopback"] {
        assert_eq!(r.status(step), Some(0), "every request was answered ({step})\n{}", guest.tail());
    }
    let m = Metrics::parse(r.output("metrics").unwrap_or_default());

    // Attached in the mode the kernel offers: 3 interfaces, 2 directions.
    let attached: Vec<_> = m.samples.iter().filter(|(n, _, _)| n == "http_golden_exporter_attached").collect();
    assert_eq!(attached.len(), 6, "both directions of hgs, hgc and lo are attached:\n{}", m.text);
    for (_, labels, _) in &attached {
        assert_eq!(
            labels.get("mode").map(String::as_str),
            Some(mode),
            "{} attaches with {mode}: {labels:?}",
            kernel.release
        );
    }

    // Counted exactly, in both views: requests, and responses (the histogram's _count).
    for (target, view, n) in [
        ("server", "server", 5.0),
        ("server", "client", 0.0),
        ("client", "client", 5.0),
        ("client", "server", 0.0),
        ("loopback", "server", 5.0),
        ("loopback", "client", 5.0),
    ] {
        for family in [format!("http_{view}_requests_total"), format!("http_{view}_request_duration_seconds_count")] {
            assert_eq!(
                m.sum(&family, &[("target", target)]),
                n,
                "{family} of target {target} on {} is {n}\n{}\n{}",
                kernel.release,
                m.text,
                guest.tail()
            );
        }
    }

    assert_verified_within_headroom(&m, &kernel.release, log);
    assert!(log.contains("BPF programs verified: hg_parse_ingress "), "the figures are logged at start:\n{log}");

    // SIGTERM: exit 0, and nothing of ours is left in the kernel.
    assert_eq!(r.status("stopped"), Some(0), "the exporter exits 0 on SIGTERM\nexporter log:\n{log}\n{}", guest.tail());
    let left = r.output("left-behind").unwrap_or_default();
    for ours in ["hg_parse", "http_ingress", "http_egress"] {
        assert!(!left.contains(ours), "no program or filter of ours ({ours}) after SIGTERM:\n{left}");
    }
}

/// The four programs' figures, present, above 0 and within the headroom.
fn assert_verified_within_headroom(m: &Metrics, kernel: &str, log: &str) {
    let mut figures = Vec::new();
    for program in PROGRAMS {
        let labels = [("program", program)];
        assert!(
            m.has("http_golden_exporter_bpf_verified_instructions", &labels),
            "the scrape gives the verified instructions of {program} on {kernel}:\n{}",
            m.text
        );
        let n = m.sum("http_golden_exporter_bpf_verified_instructions", &labels);
        figures.push(format!("{program} {n}"));
        assert!(n > 0.0, "{program} on {kernel}: the kernel reported 0 verified instructions");
        assert!(
            n <= HEADROOM,
            "{program} on {kernel} verified in {n} instructions, over {HEADROOM} (a fifth of the limit)\nexporter \
             log:\n{log}"
        );
    }
    eprintln!("verified instructions on {kernel}: {}", figures.join(", "));
}

/// Boot `kernel` with the parser test binaries this `cargo test` built, run
/// each with CI=true, and check that each passed.
fn parser_tests_on(package: (&str, &str)) {
    let Some(kernel) = qemu::require(package.0, package.1, &[]) else { return };
    let fs = guest_system(&kernel, "parser_tests.sh", include_str!("kernels/parser_tests.sh"));
    for (name, path) in test_binaries(&PARSER_TESTS) {
        fs.binary(&path, &format!("tests/{name}"));
    }
    let guest = qemu::boot(&kernel, &fs, 2048, Duration::from_secs(60 * 60));
    ran(&guest, &kernel);
    for name in PARSER_TESTS {
        let section = format!("test-{name}");
        let output = guest.report.output(&section).unwrap_or_default();
        let seconds = guest.report.seconds(&section).unwrap_or_default();
        eprintln!("tests/{name}.rs on {}: {seconds:.0} s", kernel.release);
        assert_eq!(
            guest.report.status(&section),
            Some(0),
            "tests/{name}.rs passes on {} (output's last 80 lines):\n{}\n{}",
            kernel.release,
            qemu::last_lines(output, 80),
            guest.console_tail()
        );
    }
}

/// An initramfs for `kernel` with init.sh as /init, `scenario` as
/// /scenario.sh, and the exporter's configuration.
fn guest_system(kernel: &Kernel, name: &str, scenario: &str) -> Initramfs {
    let fs = Initramfs::new(kernel);
    fs.script("init", INIT);
    fs.file("scenario.sh", &format!("# tests/kernels/{name}\n{scenario}"));
    fs.file("etc/http-golden-exporter.toml", CONFIG);
    fs
}

/// The exporter of the deb for `kernel`'s architecture, put in `fs`; how
/// many shared libraries came with it.
fn packaged_exporter(fs: &Initramfs, kernel: &Kernel) -> usize {
    let arch = match kernel.arch {
        qemu::Arch::X86_64 => Arch::Amd64,
        qemu::Arch::Aarch64 => Arch::Arm64,
    };
    let built = packages::built();
    eprintln!("{}: the exporter of {}", kernel.package, built.deb(arch).display());
    fs.binary(&built.binary(arch), "usr/sbin/http-golden-exporter")
}

/// The guest ran on `kernel` and powered off on its own.
fn ran(guest: &Guest, kernel: &Kernel) {
    eprintln!("{}: the guest ran for {:.1} s ({})", kernel.package, guest.took.as_secs_f64(), guest.accel);
    assert!(!guest.timed_out, "the guest on {} powered off before its deadline\n{}", kernel.release, guest.tail());
    assert_eq!(
        guest.report.output("kernel").map(str::trim),
        Some(kernel.release.as_str()),
        "the guest runs {}\n{}",
        kernel.release,
        guest.tail()
    );
}

/// The executables of the integration tests `names`, as cargo builds them
/// for this profile and target directory (a no-op when `cargo test` has
/// built them already, as it has before running this).
fn test_binaries(names: &[&str]) -> Vec<(String, PathBuf)> {
    // This test's own executable is TARGET_DIR/PROFILE/deps/kernels-HASH.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test runs from PROFILE/deps");
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev",
        other => other,
    };
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["test", "--locked", "--no-run", "--message-format=json", "--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for n in names {
        cmd.args(["--test", n]);
    }
    let out = cmd.output().expect("running cargo test --no-run");
    assert!(out.status.success(), "cargo test --no-run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if let (Some(exe), true) = (msg["executable"].as_str(), names.contains(&name)) {
            found.push((name.to_string(), PathBuf::from(exe)));
        }
    }
    assert_eq!(found.len(), names.len(), "cargo named an executable for each of {names:?}: {found:?}");
    found
}
