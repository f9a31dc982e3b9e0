//! The man pages: OPTIONS of http-golden-exporter(8) come from the clap
//! definition (clap_mangen), so they cannot drift from the binary; the other
//! sections are hand-written in man/http-golden-exporter.8.in. Both pages
//! must be lint-clean.
//!
//! After changing a flag or man/http-golden-exporter.8.in, regenerate with
//!     HG_UPDATE_MAN=1 cargo test --test man

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;
use hge_attacher::cli::Cli;

/// Date in the page header: the date of the release the page describes.
const DATE: &str = "2026-11-27";

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("man")
}

fn render() -> String {
    let man = clap_mangen::Man::new(Cli::command())
        .title("HTTP-GOLDEN-EXPORTER")
        .section("8")
        .date(DATE)
        .source(format!("http-golden-exporter {}", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    // `top` (a program of its own, which `http-golden-exporter top` runs) has a
    // synopsis line and an options section of its own.
    let top = clap_mangen::Man::new(hge_top::Cli::command().bin_name("http-golden-exporter top"));
    let (mut top_synopsis, mut top_options) = (Vec::new(), Vec::new());
    top.render_synopsis_section(&mut top_synopsis).unwrap();
    top.render_options_section(&mut top_options).unwrap();
    let top_synopsis = String::from_utf8(top_synopsis).unwrap().replacen(".SH SYNOPSIS\n", ".br\n", 1);
    let top_options = String::from_utf8(top_options).unwrap().replacen(
        ".SH OPTIONS\n",
        ".SH TOP OPTIONS\nOptions of\n.BR \"http\\-golden\\-exporter top\" ,\nsee\n.BR \"LIVE VIEW\" .\n",
        1,
    );
    let mut out = Vec::new();
    man.render_title(&mut out).unwrap();
    man.render_name_section(&mut out).unwrap();
    man.render_synopsis_section(&mut out).unwrap();
    out.extend_from_slice(top_synopsis.as_bytes());
    man.render_description_section(&mut out).unwrap();
    man.render_options_section(&mut out).unwrap();
    out.extend_from_slice(top_options.as_bytes());
    // The daemon's flags do not mix with a subcommand: its synopsis line names none.
    let out = String::from_utf8(out).unwrap().replacen(" [\\fIsubcommands\\fR]", "", 1);
    let mut page = tidy(&out);
    page.push_str(&std::fs::read_to_string(man_dir().join("http-golden-exporter.8.in")).unwrap());
    page
}

/// clap_mangen's roff, made lint-clean: a blank line between two .br is one
/// .sp, no trailing blanks, text lines of at most 80 bytes (roff fills them anyway).
fn tidy(roff: &str) -> String {
    let roff = roff.replace("\n.br\n\n.br\n", "\n.sp\n");
    let mut out = String::new();
    for line in roff.lines() {
        let mut line = line.trim_end();
        while !line.starts_with('.') && line.len() > 80 {
            let Some(i) = line[..80].rfind(' ') else { break };
            out.push_str(&line[..i]);
            out.push('\n');
            line = &line[i + 1..];
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_committed_man_page_is_the_one_generated_from_the_cli() {
    let path = man_dir().join("http-golden-exporter.8");
    let want = render();
    if std::env::var_os("HG_UPDATE_MAN").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date with the flags or man/http-golden-exporter.8.in;\n\
         regenerate it with: HG_UPDATE_MAN=1 cargo test --test man",
        path.display()
    );
    for flag in [
        "config.file",
        "web.listen\\-address",
        "user",
        "cleanup",
        "check\\-config",
        "TOP OPTIONS",
        "url",
        "basic\\-auth.password\\-file",
        "tls.ca\\-file",
    ] {
        assert!(have.contains(flag), "OPTIONS lacks {flag}");
    }
}

#[test]
fn man_pages_are_lint_clean() {
    let in_ci = std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "false" | "0"));
    for tool in ["mandoc", "groff"] {
        if Command::new(tool).arg("-v").output().is_err() {
            assert!(!in_ci, "{tool} is missing (.ci/deps installs it)");
            eprintln!("SKIPPED: {tool} is not installed");
            return;
        }
    }
    for page in ["http-golden-exporter.8", "http-golden-exporter.toml.5"] {
        let path = man_dir().join(page);
        let out = Command::new("mandoc").args(["-T", "lint", "-W", "style"]).arg(&path).output().unwrap();
        let msgs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && msgs.trim().is_empty(), "mandoc -T lint {page}:\n{msgs}");
        // groff's own warnings too.
        let out = Command::new("groff").args(["-ww", "-man", "-z"]).arg(&path).output().unwrap();
        let msgs = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && msgs.trim().is_empty(), "groff -ww {page}:\n{msgs}");
    }
}
