//! The kernel parser against a million packets it was not written for:
//! valid HTTP/1 mutated byte by byte, and random payloads on open flows,
//! through BPF_PROG_TEST_RUN. Whatever they hold, a request is counted only
//! where a payload starts with an HTTP/1 request line, and every run passes
//! the packet on (no fault the verifier could not rule out shows up).

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::packet::Tcp;
use common::parser::{requests, Parser, Setup};
use hge_attacher::bpf::MapSizes;
use hge_shared::config::{StatusLabel, DEFAULT_BUCKETS};
use hge_shared::snapshot::{Method, Role, Snapshot};

const METHODS: [&[u8]; 9] =
    [b"GET ", b"HEAD ", b"POST ", b"PUT ", b"DELETE ", b"CONNECT ", b"OPTIONS ", b"TRACE ", b"PATCH "];

/// Requests and responses the mutations start from.
const SEEDS: [&[u8]; 8] = [
    b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET /pipelined HTTP/1.1\r\n\r\n",
    b"DELETE /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nGET / HTTP/1.1\r\n\r\n",
];

/// xorshift64*: deterministic, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        // Mostly the bytes HTTP is made of, sometimes anything.
        const HTTP: &[u8] = b"GETPOSHADUCNI /:.-0123456789\r\n HTTP/1.1 Content-Length Transfer-Encoding chunked";
        if self.below(4) == 0 {
            self.next() as u8
        } else {
            HTTP[self.below(HTTP.len())]
        }
    }
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(v.len().max(1));
        match rng.below(3) {
            0 if !v.is_empty() => v[at] = rng.byte(),
            1 => v.insert(at.min(v.len()), rng.byte()),
            _ if v.len() > 1 => {
                v.remove(at);
            }
            _ => v.push(rng.byte()),
        }
    }
    v
}

fn random_payload(rng: &mut Rng) -> Vec<u8> {
    let n = 1 + rng.below(300);
    (0..n).map(|_| rng.byte()).collect()
}

fn starts_a_request(p: &[u8]) -> bool {
    METHODS.iter().any(|m| p.starts_with(m))
}

/// Shorter than a method and its beginning: kept for the next segment to complete.
fn cut_request_start(p: &[u8]) -> bool {
    METHODS.iter().any(|m| p.len() < m.len() && m.starts_with(p))
}

/// A distinct connection for every index, from 198.18.0.0/15.
fn conn(i: u32, dport: u16) -> Tcp {
    let src = Ipv4Addr::new(198, 18 + ((i >> 16) & 1) as u8, (i >> 8) as u8, i as u8);
    Tcp { src: IpAddr::V4(src), sport: 1024 + (i >> 17) as u16, ..Tcp::v4([0; 4], 0, [198, 19, 255, 1], dport) }
}

fn requests_on(s: &Snapshot, port: u16) -> u64 {
    s.requests.iter().filter(|(k, _)| k.port == port && k.role == Role::Server).map(|(_, v)| v).sum()
}

const START: u16 = 8001; // payloads that begin with a request line and hold no other method
const NOT_A_START: u16 = 8002; // payloads that do not begin with one
const MORE_STARTS: u16 = 8004; // payloads that begin with one and hold another method further on

/// Where, after its first byte, a payload holds a method name: each is a place
/// a pipelined request might start, so an upper bound on the requests in it.
fn later_methods(p: &[u8]) -> u64 {
    (1..p.len()).filter(|&i| METHODS.iter().any(|m| p[i..].starts_with(m))).count() as u64
}

#[test]
fn a_million_mutated_and_random_payloads_count_only_real_request_starts() {
    let cfg = Setup {
        target_id: 0,
        status_label: StatusLabel::Class,
        buckets_s: DEFAULT_BUCKETS.to_vec(),
        ports: vec![],
        series_budget: 0,
        routes: vec![],
    };
    let Some(p) = Parser::sized(cfg, MapSizes { flows: 4096, max_series: 64 }) else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // 900,000 first segments of real (handshaken) connections: mutated HTTP.
    let (mut starts, mut others, mut more, mut room) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..900_000u32 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let payload = mutate(&mut rng, seed);
        let later = later_methods(&payload);
        let port = match (starts_a_request(&payload), later) {
            (false, _) => NOT_A_START,
            (true, 0) => START,
            (true, _) => MORE_STARTS,
        };
        let req = conn(i, port).payload(&payload);
        p.handshake(&req);
        p.ingress(&req);
        match port {
            START => starts += 1,
            NOT_A_START => others += 1,
            _ => (more, room) = (more + 1, room + later),
        }
    }
    let s = p.snap();
    assert!(others > 100_000 && starts > 100_000, "both kinds exercised: {starts} starts, {others} others");
    assert!(more > 10_000, "pipelines exercised: {more}");
    assert_eq!(requests_on(&s, NOT_A_START), 0, "a request counted from a payload that starts none");
    assert_eq!(requests_on(&s, START), starts, "each payload with one request start counted once");
    let pipelined = requests_on(&s, MORE_STARTS);
    assert!(pipelined >= more, "the first request of each counted: {pipelined} of {more}");
    assert!(pipelined <= more + room, "no more than the method names they hold: {pipelined} > {more} + {room}");

    let gets_before = requests(&s, Role::Server, Method::Get);
    // 100,000 random payloads on open flows, after a whole exchange, then a
    // real request: the garbage counts nothing; the request after it counts
    // by the turn-around rule.
    let base = 1 << 20;
    let (mut garbage_starts, mut garbage_cut) = (0u64, 0u64);
    for i in 0..100_000u32 {
        let req = conn(base + i, 8003).payload(b"GET /first HTTP/1.1\r\n\r\n");
        p.handshake(&req);
        p.ingress(&req);
        p.egress(&req.reply().payload(b"HTTP/1.1 204 No Content\r\n\r\n"));
        let garbage = random_payload(&mut rng);
        garbage_starts += u64::from(starts_a_request(&garbage));
        garbage_cut += u64::from(cut_request_start(&garbage));
        let next = req.seq + req.payload.len() as u32;
        p.ingress(&req.clone().seq(next).payload(&garbage));
        // Answers the garbage, if it was a request.
        p.egress(&req.reply().seq(50_000 + 27).payload(b"HTTP/1.1 204 No Content\r\n\r\n"));
        let after = next + garbage.len() as u32;
        p.ingress(&req.clone().seq(after).payload(b"GET /after HTTP/1.1\r\n\r\n"));
    }
    let s = p.snap();
    let counted = requests_on(&s, 8003);
    eprintln!("around the garbage: {counted} counted; {garbage_starts} garbage payloads began a request, {garbage_cut} one cut short");
    assert_eq!(requests(&s, Role::Server, Method::Get), requests_on(&s, 8003) + gets_before, "only port 8003 moved");
    // A cut method name is completed by the next segment's bytes: that one
    // real request is lost (as a framing loss), never made up.
    assert!(counted + garbage_cut >= 200_000, "the real requests around the garbage: {counted}");
    assert!(counted <= 200_000 + 2 * garbage_starts, "garbage counted as requests: {counted}");
}
