//! Builds every BPF object of the project, and nothing else: each with the
//! same clang, flags and target architecture, into OUT_DIR as NAME.bpf.o with
//! its skeleton NAME.skel.rs. Each header under bpf/ is also compiled on its
//! own, so that none leans on what another translation unit includes first.
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// The programs that are not tests: the parser, the small program put on each
/// interface that hands packets to it, and the no-op floor the benchmarks
/// measure against.
const PROGRAMS: &[&str] = &["bpf/http_golden.bpf.c", "bpf/link.bpf.c", "bench/noop.bpf.c"];

/// The test programs (every *.bpf.c there): the headers' own tests and
/// test-only helpers such as packet loss.
const TEST_PROGRAMS: &str = "tests/bpf";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    // Debian's uapi headers keep asm/ under the multiarch directory.
    let multiarch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default().as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang-19".to_string());
    let flags = ["-O2", "-g", "-Wall", "-Werror", "-Ibpf", &format!("-I/usr/include/{multiarch}")].map(String::from);
    let compile = |src: &Path, name: &str, skeleton: bool| {
        let mut b = SkeletonBuilder::new();
        b.source(src).obj(out.join(format!("{name}.bpf.o"))).clang(&clang).clang_args(&flags);
        let built = if skeleton { b.build_and_generate(out.join(format!("{name}.skel.rs"))) } else { b.build() };
        built.unwrap_or_else(|e| panic!("building {} with {clang}: {e:#}", src.display()));
    };

    let mut sources: Vec<PathBuf> = PROGRAMS.iter().map(PathBuf::from).collect();
    sources.extend(files(Path::new(TEST_PROGRAMS), ".bpf.c"));
    for src in &sources {
        compile(src, stem(src, ".bpf.c"), true);
    }

    // `#include "HEADER"` and nothing else, as a translation unit of its own.
    let alone = out.join("alone");
    fs::create_dir_all(&alone).expect("creating OUT_DIR/alone");
    let mut headers = files(Path::new("bpf"), ".h");
    headers.extend(files(Path::new("bpf/lib"), ".h"));
    for header in headers {
        let include = header.strip_prefix("bpf").expect("a header under bpf/");
        let name = stem(&header, ".h");
        let src = alone.join(format!("{name}.bpf.c"));
        fs::write(&src, format!("#include \"{}\"\n", include.display()))
            .expect("writing a header's own translation unit");
        compile(&src, &format!("alone/{name}"), false);
    }

    // The programs and every header they include; cargo scans a directory recursively.
    for dir in ["bpf", TEST_PROGRAMS] {
        println!("cargo:rerun-if-changed={dir}");
    }
    for src in PROGRAMS {
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
}

/// The files in `dir` whose names end in `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("reading a directory entry").path())
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(suffix)))
        .collect();
    found.sort();
    found
}

/// A file's name without `suffix`: what its object and skeleton are called.
fn stem<'a>(path: &'a Path, suffix: &str) -> &'a str {
    let name = path.file_name().and_then(|n| n.to_str()).expect("a UTF-8 file name");
    name.strip_suffix(suffix).expect("the suffix it was found by")
}
