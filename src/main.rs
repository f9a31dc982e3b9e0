//! The binary: flags and configuration, then the daemon (`hge_attacher::start`,
//! which forks the exporter), `--check-config`, `--cleanup`, or the terminal
//! view (`top`, a program of its own).

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use clap::Parser;

use hge_attacher::bpf::kernel::Unsupported;
use hge_attacher::cli::{Cli, Command, TOP_PROGRAM};
use hge_attacher::start;
use hge_shared::config::Config;

// Only linked, and so in place of musl's memcpy and memmove, when named.
#[cfg(all(target_env = "musl", target_arch = "x86_64"))]
use hge_memcpy as _;

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Top { args }) = cli.command.take() {
        return run_top(args);
    }
    env_logger::Builder::new().parse_filters(&cli.log_level).format_target(false).init();

    let (path, explicit) = cli.config_path();
    let mut cfg = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("http-golden-exporter: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    cli.apply(&mut cfg);
    if cli.check_config {
        if let Err(e) = start::check_web_config(&cfg) {
            eprintln!("http-golden-exporter: invalid configuration: {e:#}");
            return ExitCode::FAILURE;
        }
        println!("{}: configuration is valid ({} targets)", path.display(), cfg.targets.len());
        return ExitCode::SUCCESS;
    }
    if cli.cleanup {
        return match start::cleanup(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http-golden-exporter: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let reload: start::Reloader = Box::new(move || {
        let mut cfg = Config::load(&path, explicit).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cli.apply(&mut cfg);
        Ok(cfg)
    });
    match start::run(cfg, reload) {
        Ok(()) => ExitCode::SUCCESS,
        // Already one sentence for the user: what the kernel lacks, which kernel has it.
        Err(e) if e.is::<Unsupported>() => {
            eprintln!("http-golden-exporter: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("http-golden-exporter: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `http-golden-exporter top ...`: the terminal view's own program, from the
/// directory this binary is in (where the packages and cargo put both).
fn run_top(args: Vec<std::ffi::OsString>) -> ExitCode {
    let program = std::env::current_exe().map(|exe| exe.with_file_name(TOP_PROGRAM));
    let err = match &program {
        Ok(p) => std::process::Command::new(p).arg0("http-golden-exporter top").args(args).exec(),
        Err(e) => std::io::Error::new(e.kind(), e.to_string()),
    };
    let shown = program.map(|p| p.display().to_string()).unwrap_or_else(|_| TOP_PROGRAM.to_string());
    // `cargo build` makes both programs; `cargo run` and `cargo install --path .` only this one.
    let hint = if err.kind() == std::io::ErrorKind::NotFound {
        " (it is installed beside this binary; from a source tree, `cargo build --release --locked` builds it)"
            .to_string()
    } else {
        String::new()
    };
    eprintln!("http-golden-exporter top: running {shown}: {err}{hint}");
    ExitCode::FAILURE
}
