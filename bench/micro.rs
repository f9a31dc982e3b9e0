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
use hge_attacher::bpf::{maps, test_run_timed, LinkConfig, Loader, MapSizes, NativeConfig, ProgramConfig};
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
    LinkConfig { target_id: 0, ports, routes: 0 }
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
        Some(i) => args
            .get(i + 1)
            .context("usage: bpf-micro [--runs N] [--native-off]")?
            .parse()
            .context("--runs takes a number")?,
        None => 20_000u32,
    };

    let mut storage = MaybeUninit::uninit();
    let noop = noop::NoopSkelBuilder::default().open(&mut storage).context("opening the no-op object")?;
    let noop = noop.load().context("loading the no-op program")?;
    let noop_prog = &noop.progs.noop_ingress;

    let sizes = MapSizes { flows: 65_536, max_series: 10_000 };
    // --native-off: classic buckets only (the cost before native buckets).
    let native = (!args.iter().any(|a| a == "--native-off")).then_some(NativeConfig { schema: 3, zero_ns: 1000 });
    let cfg = ProgramConfig {
        status_label: StatusLabel::Class,
        buckets_s: DEFAULT_BUCKETS.to_vec(),
        series_budget: 0,
        native,
    };
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

    let mut rows: Vec<(String, Duration)> = Vec::new();
    // Every kind is timed one run per call, so the kernel's timer costs
    // each the same and the ratios compare like with like.
    let same = |prog, p: &Tcp| -> Result<Duration> {
        let mut v = Vec::new();
        for _ in 0..runs {
            v.push(run(prog, p, 1)?);
        }
        Ok(median(v))
    };
    rows.push(("no-op program".into(), same(noop_prog.as_fd(), &request)?));
    rows.push(("payload on a slot not in use".into(), same(unused.ingress.as_fd(), &request)?));
    maps::set_link(&shared, 0, &watch(vec![9]))?;
    rows.push(("pure ACK".into(), same(all.ingress.as_fd(), &ack)?));
    rows.push(("payload on an unwatched port".into(), same(all.ingress.as_fd(), &request)?));
    maps::set_link(&shared, 0, &watch(vec![]))?;

    // One keep-alive connection, set up as a real one is (the server's SYN-ACK).
    let (ingress, egress) = (all.ingress.as_fd(), all.egress.as_fd());
    let (req, resp, base, req_seq, mut resp_seq) = keep_alive(ingress, egress, &client, REQUEST, runs)?;
    rows.push(("request packet (3 header lines)".into(), req));
    rows.push(("response packet (7 header lines)".into(), resp));

    // Requests whose paths are 10, 40 and 120 bytes long, without routes and then with 20 templates
    // (the path matching the 20th, the 8th and the 20th): a longer request line costs more to scan
    // whatever the routes, so each is timed both ways.
    maps::set_routes(&shared, 0, &templates())?;
    for routes in [0, 20] {
        maps::set_link(&shared, 0, &LinkConfig { routes, ..watch(vec![]) })?;
        for (port, path) in [(40_001, path(10)), (40_002, path(40)), (40_003, path(120))] {
            let request = format!("GET {path} HTTP/1.1\r\nHost: 198.18.0.1\r\nUser-Agent: wrk\r\n\r\n");
            let other = Tcp::v4([198, 18, 0, 2], port + routes, [198, 18, 0, 1], 80);
            let (req, ..) = keep_alive(ingress, egress, &other, request.as_bytes(), runs)?;
            rows.push((format!("request, {routes} routes, {}-byte path", path.len()), req));
        }
    }
    maps::set_link(&shared, 0, &watch(vec![]))?;

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
    rows.push(("body segment (1400 bytes)".into(), median(body)));

    let floor = rows[0].1.as_nanos().max(1) as f64;
    println!("{:<38} {:>10} {:>9}", "packet", "ns/run", "x no-op");
    for (what, d) in &rows {
        println!("{what:<38} {:>10} {:>9.2}", d.as_nanos(), d.as_nanos() as f64 / floor);
    }
    let verified: Vec<String> = loader.verified().iter().map(|v| format!("{} {}", v.program, v.instructions)).collect();
    println!(
        "(median of {runs} runs each; kernel {}; loading and verifying the programs took {} ms; verified \
         instructions: {})",
        kernel(),
        load_time.as_millis(),
        verified.join(", ")
    );
    Ok(())
}

/// A keep-alive connection of `client`, set up as a real one is (the
/// server's SYN-ACK), then `runs` requests carrying `request` and as many
/// responses: their median costs, and the connection and where its two
/// streams are, for more.
fn keep_alive(
    ingress: std::os::fd::BorrowedFd<'_>,
    egress: std::os::fd::BorrowedFd<'_>,
    client: &Tcp,
    request: &[u8],
    runs: u32,
) -> Result<(Duration, Duration, Tcp, u32, u32)> {
    let isn = 7_000u32;
    let mut req_seq = 1_000u32;
    let mut resp_seq = isn + 1;
    let base = client.clone().ack(resp_seq);
    run(egress, &base.reply().flags(SYN | ACK).seq(isn).ack(req_seq).payload(b""), 1)?;
    let (mut reqs, mut resps) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        reqs.push(run(ingress, &base.clone().seq(req_seq).payload(request), 1)?);
        req_seq = req_seq.wrapping_add(request.len() as u32);
        resps.push(run(egress, &base.reply().seq(resp_seq).payload(RESPONSE), 1)?);
        resp_seq = resp_seq.wrapping_add(RESPONSE.len() as u32);
    }
    Ok((median(reqs), median(resps), base, req_seq, resp_seq))
}

/// 20 templates of an API: 19 that share their first two segments with the
/// paths below and fail on a later one, then the catch-all `/api/v1/*`.
fn templates() -> Vec<String> {
    let mut t: Vec<String> = (0..19).map(|i| format!("/api/v1/items{i}/{{id}}")).collect();
    t[7] = "/api/v1/items7/{id}/x".into();
    t.push("/api/v1/*".into());
    t
}

/// A path of `len` bytes: /api/v1/… (10 matches the 20th template, 40 the
/// 8th, 120 the 20th again, after comparing the 19 before it).
fn path(len: usize) -> String {
    if len == 40 {
        format!("/api/v1/items7/{}/x", "1".repeat(40 - 17))
    } else {
        format!("/api/v1/{}", "a".repeat(len - 8))
    }
}

fn kernel() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}
