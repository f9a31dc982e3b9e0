use std::process::ExitCode;

use clap::Parser;

use http_golden_exporter::bpf::kernel::Unsupported;
use http_golden_exporter::cli::{Cli, Command};
use http_golden_exporter::config::Config;
use http_golden_exporter::{daemon, top};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Top(args)) = cli.command.take() {
        return match top::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http-golden-exporter top: error: {e:#}");
                ExitCode::FAILURE
            }
        };
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
        if let Err(e) = daemon::check_web_config(&cfg) {
            eprintln!("http-golden-exporter: invalid configuration: {e:#}");
            return ExitCode::FAILURE;
        }
        println!("{}: configuration is valid ({} targets)", path.display(), cfg.targets.len());
        return ExitCode::SUCCESS;
    }
    if cli.cleanup {
        return match daemon::cleanup(&cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http-golden-exporter: error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let reload: daemon::Reloader = Box::new(move || {
        let mut cfg = Config::load(&path, explicit).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        cli.apply(&mut cfg);
        Ok(cfg)
    });
    match daemon::run(cfg, reload) {
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
