//! How long discovery's one-off scan takes with many processes: the daemon
//! reads /proc every second for namespaces held only by a process, so the
//! scan's cost is paid each second. Starts N `sleep` processes (default
//! 1,000), then times `discover::enumerate` over /proc and the usual netns
//! directories, best and median of R runs (default 5). As root (it reads
//! every process's /proc/PID/ns/net):
//!
//!   cargo run --release --locked --example discover-scan -- [N] [R]
//!
//! tests/discover.rs checks what the scan finds; this measures only its time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hge_attacher::discover::{enumerate, Roots, Settings};

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().expect("N and R are numbers"));
    let n = args.next().unwrap_or(1000);
    let runs = args.next().unwrap_or(5).max(1);
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = (n as u64 + 1024).min(hard).max(soft);
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, hard).unwrap();
    let mut kids: Vec<Child> = (0..n)
        .map(|_| Command::new("sleep").arg("600").stdin(Stdio::null()).spawn().expect("starting sleep"))
        .collect();
    let settings = Settings {
        netns_dirs: ["/run/netns", "/run/docker/netns"].iter().map(PathBuf::from).collect(),
        processes: true,
        scan_interval: Duration::from_secs(1),
        roots: Roots::default(),
    };
    let procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|s| s.parse::<u32>().is_ok()))
        .count();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            enumerate(&settings).expect("scanning");
            t0.elapsed()
        })
        .collect();
    times.sort();
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    println!("discover scan over {procs} processes: best {:?}, median {:?} of {runs}", times[0], times[runs / 2]);
}
