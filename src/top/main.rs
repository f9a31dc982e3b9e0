//! `http-golden-exporter-top`, run by `http-golden-exporter top`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hge_top::Cli::parse();
    match hge_top::run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http-golden-exporter top: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
