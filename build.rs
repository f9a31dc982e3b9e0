//! Builds the BPF skeletons, and nothing else.
use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// The parser, and the small program put on each interface that hands packets to it.
const PROGRAMS: &[&str] = &["http_golden", "link"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    // Debian's uapi headers keep asm/ under the multiarch directory.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "aarch64" => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let clang = env::var("BPF_CLANG").unwrap_or_else(|_| "clang-19".to_string());

    for name in PROGRAMS {
        let src = format!("bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            .clang(&clang)
            .clang_args([
                "-O2".to_string(),
                "-g".to_string(),
                "-Wall".to_string(),
                "-Werror".to_string(),
                "-Ibpf".to_string(),
                format!("-I/usr/include/{multiarch}"),
            ])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("building {src} with {clang}: {e:#}"));
    }
    // The programs and every header they include (bpf/http_golden.h, bpf/lib/):
    // cargo scans a directory recursively.
    println!("cargo:rerun-if-changed=bpf");
    println!("cargo:rerun-if-env-changed=BPF_CLANG");
}
