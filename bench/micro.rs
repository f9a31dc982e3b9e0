//! What one run of the tc programs costs, by kind of packet, next to a no-op
//! program: BPF_PROG_TEST_RUN on crafted packets, the kernel timing each run.
//! `bench/micro` builds and runs it (as root); docs/performance.md keeps the
//! figures. Each kind is run as real traffic would reach it: request and
//! response packets at the next sequence number of one keep-alive connection,
//! body segments at the next offset of a long body, each once; packets whose
//! cost does not depend on state (pure ACKs, unwatched ports) sent again.

#[path = "../tests/common/packet.rs"]
#[allow(dead_code)]
mod packet;

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod noop {
    include!(concat!(env!("OUT_DIR"), "/noop.skel.rs"));
}

use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hge_attacher::bpf::{maps, test_run_timed, LinkConfig, Loader, MapSizes, ProgramConfig};
use hge_shared::config::{StatusLabel, DEFAULT_BUCKETS};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use packet::{Tcp, ACK, SYN};

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.1\r\nUser-Agent: wrk\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 30 Nov 2026 18:00:00 GMT\r\n\
Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn watch(ports: Vec<u16>) -> LinkConfig {
    LinkConfig { target_id: 0, ports }
}

fn run(prog: std::os::fd::BorrowedFd<'_>, packet: &Tcp, repeat: u32) -> Result<Duration> {
    let (ret, took) = test_run_timed(prog, &packet.frame(), repeat)?;
    if ret != -1 {
        bail!("the program returned {ret}, not TC_ACT_UNSPEC");
    }
    Ok(took)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args.get(i + 1).context("usage: bpf-micro [--runs N]")?.parse().context("--runs takes a number")?,
        None => 20_000u32,
    };

    let mut storage = MaybeUninit::uninit();
    let noop = noop::NoopSkelBuilder::default().open(&mut storage).context("opening the no-op object")?;
    let noop = noop.load().context("loading the no-op program")?;
    let noop_prog = &noop.progs.noop_ingress;

    let sizes = MapSizes { flows: 65_536, max_series: 10_000 };
    let cfg = ProgramConfig { status_label: StatusLabel::Class, buckets_s: DEFAULT_BUCKETS.to_vec(), series_budget: 0 };
    let loading = std::time::Instant::now();
    let loader = Loader::new(sizes, cfg)?;
    let load_time = loading.elapsed();
    let shared = loader.maps();
    // One interface, slot 0; a slot never filled is an interface we are not on.
    maps::set_link(&shared, 0, &watch(vec![]))?;
    let all = loader.link_programs(0)?;
    let unused = loader.link_programs(1)?;

    let client = Tcp::v4([198, 18, 0, 2], 40_000, [198, 18, 0, 1], 80);
    let ack = client.clone().flags(ACK).payload(b"");
    let request = client.clone().payload(REQUEST);

    let mut rows: Vec<(&str, Duration)> = Vec::new();
    // Every kind is timed one run per call, so the kernel's timer costs
    // each the same and the ratios compare like with like.
    let same = |prog, p: &Tcp| -> Result<Duration> {
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(run(prog, p, 1)?);
        }
        Ok(median(v))
    };
    rows.push(("no-op program", same(noop_prog.as_fd(), &request)?));
    rows.push(("payload on a slot not in use", same(unused.ingress.as_fd(), &request)?));
    maps::set_link(&shared, 0, &watch(vec![9]))?;
    rows.push(("pure ACK", same(all.ingress.as_fd(), &ack)?));
    rows.push(("payload on an unwatched port", same(all.ingress.as_fd(), &request)?));
    maps::set_link(&shared, 0, &watch(vec![]))?;

    // One keep-alive connection, set up as a real one is (the server's SYN-ACK).
    let isn = 7_000u32;
    let mut req_seq = 1_000u32;
    let mut resp_seq = isn + 1;
    let base = client.clone().ack(resp_seq);
    run(all.egress.as_fd(), &base.reply().flags(SYN | ACK).seq(isn).ack(req_seq).payload(b""), 1)?;
    let (mut reqs, mut resps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        reqs.push(run(all.ingress.as_fd(), &base.clone().seq(req_seq).payload(REQUEST), 1)?);
        req_seq = req_seq.wrapping_add(REQUEST.len() as u32);
        resps.push(run(all.egress.as_fd(), &base.reply().seq(resp_seq).payload(RESPONSE), 1)?);
        resp_seq = resp_seq.wrapping_add(RESPONSE.len() as u32);
    }
    rows.push(("request packet (3 header lines)", median(reqs)));
    rows.push(("response packet (7 header lines)", median(resps)));

    // A long body: every segment after the headers carries no message start.
    let big = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n";
    run(all.ingress.as_fd(), &base.clone().seq(req_seq).payload(REQUEST), 1)?;
    run(all.egress.as_fd(), &base.reply().seq(resp_seq).payload(big), 1)?;
    resp_seq = resp_seq.wrapping_add(big.len() as u32);
    let chunk = vec![b'x'; 1400];
    let mut body = Vec::new();
    for _ in 0..runs {
        body.push(run(all.egress.as_fd(), &base.reply().seq(resp_seq).payload(&chunk), 1)?);
        resp_seq = resp_seq.wrapping_add(chunk.len() as u32);
    }
    rows.push(("body segment (1400 bytes)", median(body)));

    let floor = rows[0].1.as_nanos().max(1) as f64;
    println!("{:<36} {:>10} {:>9}", "packet", "ns/run", "x no-op");
    for (what, d) in &rows {
        println!("{what:<36} {:>10} {:>9.2}", d.as_nanos(), d.as_nanos() as f64 / floor);
    }
    println!(
        "(median of {runs} runs each; kernel {}; loading and verifying the programs took {} ms)",
        kernel(),
        load_time.as_millis()
    );
    Ok(())
}

fn kernel() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}
