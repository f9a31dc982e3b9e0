//! The kernel side, specified packet by packet: crafted frames go through the
//! real loaded programs (BPF_PROG_TEST_RUN) and the maps must say exactly
//! what happened. Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).

mod common;

use hge_shared::abi::{bytes_of, stat, NativeKeyRaw, SeriesKeyRaw};
use libbpf_rs::MapCore;
use std::time::Duration;

use common::packet::{self, Tcp, ACK, FIN, RST};
use common::parser::{assert_clean, requests, responses, Parser, Setup};
use hge_attacher::bpf::{maps, MapSizes};
use hge_shared::config::{seconds_to_ns, StatusLabel, DEFAULT_BUCKETS};
use hge_shared::native::boundary_ns_exact;
use hge_shared::snapshot::{Method, Role};

fn client_v4() -> Tcp {
    Tcp::v4([198, 18, 0, 2], 40000, [198, 18, 0, 1], 80)
}

fn client_v6() -> Tcp {
    Tcp::v6("fd00::2", 40000, "fd00::1", 8080)
}

/// Request in, response out: the server view, with every status class.
fn server_exchanges(p: &Parser, base: Tcp) {
    for (i, (method, line, status)) in [
        (Method::Get, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"),
        (Method::Post, "POST /b HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 404 Not Found\r\n\r\n"),
        (Method::Get, "GET /c HTTP/1.1\r\n\r\n", "HTTP/1.0 500 Internal Server Error\r\n\r\n"),
    ]
    .iter()
    .enumerate()
    {
        let mut req = base.clone().payload(line.as_bytes());
        req.sport += i as u16;
        p.handshake(&req);
        p.ingress(&req);
        p.egress(&req.reply().payload(status.as_bytes()));
        let _ = method;
    }
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 2, "{s:?}");
    assert_eq!(requests(&s, Role::Server, Method::Post), 1, "{s:?}");
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1, "{s:?}");
    assert_eq!(responses(&s, Role::Server, Method::Post, 4), 1, "{s:?}");
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 1, "{s:?}");
    assert_eq!(s.requests.iter().filter(|(k, _)| k.role == Role::Client).count(), 0);
    assert_clean(&s);
    for (k, _) in &s.requests {
        assert_eq!((k.target_id, k.port), (3, base.dport), "key carries target and server port");
    }
}

#[test]
fn ipv4_get_200_post_404_get_500() {
    let Some(p) = Parser::new() else { return };
    server_exchanges(&p, client_v4());
}

#[test]
fn ipv6_get_200_post_404_get_500() {
    let Some(p) = Parser::new() else { return };
    server_exchanges(&p, client_v6());
}

#[test]
fn vlan_tagged_get_200_post_404_get_500() {
    let Some(p) = Parser::new() else { return };
    server_exchanges(&p, client_v4().vlan(42));
}

#[test]
fn ipv4_with_options_is_parsed() {
    let Some(p) = Parser::new() else { return };
    // Record-route style option padding: 8 bytes of NOP/EOL (IHL = 7).
    server_exchanges(&p, client_v4().ip_options(&[1, 1, 1, 1, 1, 1, 1, 0]));
}

#[test]
fn a_request_sent_by_a_local_client_is_client_role() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().payload(b"DELETE /x HTTP/1.1\r\n\r\n");
    p.egress(&req);
    p.ingress(&req.reply().payload(b"HTTP/1.1 204 No Content\r\n\r\n"));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Client, Method::Delete), 1);
    assert_eq!(responses(&s, Role::Client, Method::Delete, 2), 1);
    assert_eq!(s.requests.iter().filter(|(k, _)| k.role == Role::Server).count(), 0);
    assert_eq!(s.latency[0].0.port, 80, "client series carry the remote server's port");
}

#[test]
fn every_standard_method_is_recognised() {
    let Some(p) = Parser::new() else { return };
    let methods = [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("CONNECT", Method::Connect),
        ("OPTIONS", Method::Options),
        ("TRACE", Method::Trace),
        ("PATCH", Method::Patch),
    ];
    for (i, (name, _)) in methods.iter().enumerate() {
        let mut req = client_v4().payload(format!("{name} / HTTP/1.1\r\n\r\n").as_bytes());
        req.sport = 41000 + i as u16;
        p.handshake(&req);
        p.ingress(&req);
    }
    let s = p.snap();
    for (name, m) in methods {
        assert_eq!(requests(&s, Role::Server, m), 1, "{name}");
    }
    // Near misses are not requests.
    for (i, line) in ["GETX / HTTP/1.1", "get / HTTP/1.1", "PRI * HTTP/2.0", "POS", "OPTIONS"].iter().enumerate() {
        let mut req = client_v4().payload(line.as_bytes());
        req.sport = 42000 + i as u16;
        p.handshake(&req);
        p.ingress(&req);
    }
    assert_eq!(p.snap().requests.iter().map(|(_, v)| v).sum::<u64>(), 9);
}

#[test]
fn latency_lands_in_the_right_bucket() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().payload(b"GET /slow HTTP/1.1\r\n\r\n");
    p.handshake(&req);
    p.ingress(&req);
    std::thread::sleep(Duration::from_millis(30));
    p.egress(&req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    let s = p.snap();
    let (_, h) = &s.latency[0];
    assert_eq!(h.count, 1);
    assert!(h.sum_ns >= 30_000_000 && h.sum_ns < 1_000_000_000, "sum {} ns", h.sum_ns);
    // One sample: its bucket is the first bound at or above its own value (the
    // sum), and no other bucket holds anything. 30 ms lands in le=0.05 unless
    // the host stalled; either way the bucket must agree with the sum.
    let at = DEFAULT_BUCKETS.iter().position(|b| h.sum_ns <= seconds_to_ns(*b)).unwrap_or(DEFAULT_BUCKETS.len());
    let mut want = vec![0; DEFAULT_BUCKETS.len() + 1];
    want[at] = 1;
    assert_eq!(h.buckets, want, "sum {} ns", h.sum_ns);
    // The native bucket (schema 3) holds the same sample: the k with
    // floor(b(k-1)) < sum <= floor(b(k)), b(k) = 1e9 * 2^(k/8) ns.
    let k = h.native[0].0 as i64;
    assert_eq!(h.native, [(k as i32, 1)], "sum {} ns", h.sum_ns);
    assert!(
        boundary_ns_exact(3, k - 1) < h.sum_ns && h.sum_ns <= boundary_ns_exact(3, k),
        "sum {} ns in {k}",
        h.sum_ns
    );
    assert_eq!(h.native_zero, 0);
}

#[test]
fn a_request_without_response_is_counted_but_not_timed() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().payload(b"GET / HTTP/1.1\r\n\r\n");
    p.handshake(&req);
    p.ingress(&req);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert!(s.latency.is_empty(), "no latency sample without a response: {s:?}");
}

#[test]
fn a_response_without_request_is_ignored() {
    let Some(p) = Parser::new() else { return };
    p.egress(&client_v4().reply().payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    let s = p.snap();
    assert!(s.requests.is_empty() && s.latency.is_empty(), "{s:?}");
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 1);
}

#[test]
fn packets_that_are_not_http_change_nothing() {
    let Some(p) = Parser::new() else { return };
    // TCP without payload (a pure ACK), SYN, UDP carrying a request line,
    // truncated headers, a payload that is not HTTP, a runt frame.
    p.ingress(&client_v4().flags(ACK));
    p.ingress(&client_v4().flags(packet::SYN));
    p.raw_ingress(&packet::udp_v4(b"GET / HTTP/1.1\r\n\r\n"));
    p.ingress(&client_v4().payload(b"GET / HTTP/1.1\r\n\r\n").truncate(14 + 20 + 10));
    p.ingress(&client_v6().payload(b"GET / HTTP/1.1\r\n\r\n").truncate(14 + 40 + 12));
    p.ingress(&client_v4().payload(b"\x00\x01binary stuff, not HTTP at all"));
    p.ingress(&client_v4().payload(b"HTTP/1.1 2OO OK\r\n"));
    p.ingress(&client_v4().payload(b"HTTP/2.0 200 OK\r\n"));
    // (The kernel's test runner itself refuses IPv4 frames shorter than an IP header.)
    p.raw_ingress(&packet::ethernet_header(None, 0x0806));
    p.raw_ingress(&packet::ethernet_header(Some(7), 0x86DD));
    let s = p.snap();
    assert!(s.requests.is_empty() && s.latency.is_empty(), "{s:?}");
    assert_clean(&s);
    assert_eq!(s.stats[stat::FLOWS_CREATED], 0, "no flow for traffic that is not HTTP");
}

#[test]
fn a_request_line_in_a_truncated_payload_still_counts_when_whole() {
    // Short payloads (fewer bytes than the parser's prefix) must be read exactly.
    let Some(p) = Parser::new() else { return };
    p.handshake(&client_v4());
    p.ingress(&client_v4().payload(b"GET / HTTP/1.1\r\n"));
    p.egress(&client_v4().reply().payload(b"HTTP/1.1 301 "));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 3), 1);
}

#[test]
fn keep_alive_pairs_each_response_with_its_request() {
    let Some(p) = Parser::new() else { return };
    let mut seq = 1;
    let mut rseq = 100;
    p.handshake(&client_v4());
    for status in [200, 404, 200, 503, 200] {
        let line = b"GET /k HTTP/1.1\r\n\r\n";
        let req = client_v4().seq(seq).payload(line);
        seq += line.len() as u32;
        p.ingress(&req);
        let resp = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        p.egress(&req.reply().seq(rseq).payload(resp.as_bytes()));
        rseq += resp.len() as u32;
    }
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 5);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 3);
    assert_eq!(responses(&s, Role::Server, Method::Get, 4), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 1);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
}

#[test]
fn a_retransmitted_request_or_response_is_counted_once() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().seq(7).payload(b"GET / HTTP/1.1\r\n\r\n");
    p.handshake(&req);
    p.ingress(&req);
    p.ingress(&req);
    let resp = req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n");
    p.egress(&resp);
    p.egress(&resp);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(s.stats[stat::RETRANSMIT_IGNORED], 2);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
}

#[test]
fn interim_1xx_does_not_end_the_request_and_101_ends_parsing() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().seq(1).payload(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\n\r\n");
    p.handshake(&req);
    p.ingress(&req);
    p.egress(&req.reply().seq(10).payload(b"HTTP/1.1 100 Continue\r\n\r\n"));
    p.egress(&req.reply().seq(35).payload(b"HTTP/1.1 201 Created\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Post, 1), 0);

    let ws = Tcp { sport: 50000, ..client_v4() }.seq(1).payload(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    p.handshake(&ws);
    p.ingress(&ws);
    p.egress(&ws.reply().seq(10).payload(b"HTTP/1.1 101 Switching Protocols\r\n\r\n"));
    // WebSocket frames that happen to look like HTTP are not messages.
    p.ingress(&ws.clone().seq(500).payload(b"GET / HTTP/1.1\r\n\r\n"));
    p.egress(&ws.reply().seq(900).payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 1), 1);
    assert_eq!(s.stats[stat::UPGRADED], 1);
    assert_eq!(s.stats.framing_lost_total(), 0, "an upgrade is not a loss of framing");
}

#[test]
fn rst_and_server_fin_end_the_flow_and_count_unanswered() {
    let Some(p) = Parser::new() else { return };
    let a = client_v4().payload(b"GET /a HTTP/1.1\r\n\r\n");
    p.handshake(&a);
    p.ingress(&a);
    p.ingress(&a.clone().seq(2000).flags(RST | ACK).payload(b""));
    let b = Tcp { sport: 40001, ..client_v4() }.payload(b"GET /b HTTP/1.1\r\n\r\n");
    p.handshake(&b);
    p.ingress(&b);
    // A client half-close keeps the request alive; the server's FIN ends it.
    p.ingress(&b.clone().seq(2000).flags(FIN | ACK).payload(b""));
    p.egress(&b.reply().flags(FIN | ACK));
    // Bytes after the end (a late response, a retransmission) belong to a closed
    // connection: never timed, never an anomaly.
    p.egress(&a.reply().seq(60_000).payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    p.ingress(&b.clone().payload(b"GET /b HTTP/1.1\r\n\r\n"));
    let s = p.snap();
    assert_eq!(s.stats[stat::UNANSWERED_RESET], 1);
    assert_eq!(s.stats[stat::UNANSWERED_CLOSED], 1);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
    assert_eq!(s.stats[stat::RETRANSMIT_IGNORED], 1, "b's request line again");
    assert!(s.latency.is_empty());
    assert_eq!(s.flows.unwrap().live, 0, "closed flows are not live");
    // A new connection on the same 4-tuple (SYN) starts from scratch.
    p.ingress(&b.clone().seq(7_000_000).flags(packet::SYN).payload(b""));
    p.egress(&b.reply().flags(packet::SYN | ACK).seq(9_000_000).ack(7_000_001).payload(b""));
    p.ingress(&b.clone().seq(7_000_001).ack(9_000_001).payload(b"GET /again HTTP/1.1\r\n\r\n"));
    p.egress(&b.reply().seq(9_000_001).payload(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(s.flows.unwrap().live, 1);
}

#[test]
fn only_configured_ports_are_watched() {
    let Some(p) = Parser::with(Setup {
        target_id: 0,
        status_label: StatusLabel::Code,
        buckets_s: vec![0.1],
        ports: vec![8080],
        series_budget: 0,
        routes: vec![],
    }) else {
        return;
    };
    let watched = Tcp { dport: 8080, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
    let other = client_v4().payload(b"GET / HTTP/1.1\r\n\r\n");
    for r in [&watched, &other] {
        p.handshake(r);
        p.ingress(r);
        p.egress(&r.reply().payload(b"HTTP/1.1 418 I'm a teapot\r\n\r\n"));
    }
    let s = p.snap();
    assert_eq!(s.requests.len(), 1);
    assert_eq!(s.requests[0].0.port, 8080);
    assert_eq!(responses(&s, Role::Server, Method::Get, 418), 1, "status_label=code keys by code");
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0, "an unwatched port's response is not an anomaly");
}

#[test]
fn a_full_aggregate_map_drops_new_series_and_counts_them() {
    let Some(p) = Parser::new() else { return }; // max_series = 64
    for port in 1..=70u16 {
        let req = Tcp { dport: port, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
        p.handshake(&req);
        p.ingress(&req);
    }
    // An existing series keeps counting.
    let again = Tcp { dport: 1, sport: 1234, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
    p.handshake(&again);
    p.ingress(&again);
    let s = p.snap();
    assert_eq!(s.requests.len(), 64);
    assert_eq!(s.stats[stat::SERIES_DROPPED], 6);
    assert_eq!(s.requests.iter().find(|(k, _)| k.port == 1).unwrap().1, 2);
}

/// The native map holds 32 buckets per series on average (2,048 here). Full,
/// a response whose bucket is not in it yet counts in neither histogram: a
/// series' native buckets always add up to its classic count, and the
/// observation is a drop.
#[test]
fn with_the_native_map_full_a_new_bucket_counts_in_neither_histogram_and_is_a_drop() {
    let Some(p) = Parser::new() else { return }; // max_series = 64: 2,048 native entries
    let exchange = |port: u16| {
        let req = Tcp { dport: port, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
        p.handshake(&req);
        p.ingress(&req);
        p.egress(&req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    };
    exchange(80);
    let s = p.snap();
    assert_eq!(s.latency.len(), 1);
    assert_eq!(s.latency[0].1.count, 1);
    assert_eq!(s.stats[stat::SERIES_DROPPED], 0);

    // The rest of the map: buckets of a series no packet makes (target 99).
    let cpus = libbpf_rs::num_possible_cpus().unwrap();
    let zero = vec![vec![0u8; 8]; cpus];
    let mut filled = 0;
    for index in 0..4096 {
        let key =
            NativeKeyRaw { series: SeriesKeyRaw { target_id: 99, port: 1, ..Default::default() }, index, zero: 0 };
        if p.maps.native.update_percpu(bytes_of(&key), &zero, libbpf_rs::MapFlags::NO_EXIST).is_err() {
            break;
        }
        filled += 1;
    }
    assert_eq!(filled + 1, 32 * 64, "the native map took {filled} more entries");

    // A new series: its native bucket cannot be made.
    exchange(8080);
    let s = p.snap();
    assert_eq!(s.stats[stat::SERIES_DROPPED], 1, "the observation is a drop");
    let (_, h) = s.latency.iter().find(|(k, _)| k.port == 8080).expect("the series itself was made");
    assert_eq!((h.count, h.buckets.iter().sum::<u64>(), h.sum_ns), (0, 0, 0), "counted in neither: {h:?}");
    assert!(h.native.is_empty() && h.native_zero == 0, "{h:?}");
    let (_, first) = s.latency.iter().find(|(k, _)| k.port == 80).unwrap();
    assert_eq!((first.count, first.buckets.iter().sum::<u64>()), (1, 1), "the first series is unchanged");
    // The requests themselves are counted: only the latency had nowhere to go.
    assert_eq!(requests(&s, Role::Server, Method::Get), 2);
}

#[test]
fn a_tls_client_hello_is_counted_as_opaque() {
    let Some(p) = Parser::new() else { return };
    p.ingress(&Tcp { dport: 443, ..client_v4() }.payload(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]));
    let s = p.snap();
    assert_eq!(s.stats[stat::TLS_SEEN], 1);
    assert!(s.requests.is_empty());
}

#[test]
fn the_same_request_on_loopback_counts_once_per_side() {
    // On lo a packet passes egress then ingress of the same interface: the
    // client and the server are both local, and each is counted in its role.
    let Some(p) = Parser::new() else { return };
    let req = Tcp::v4([127, 0, 0, 1], 40000, [127, 0, 0, 1], 80).payload(b"GET / HTTP/1.1\r\n\r\n");
    let resp = req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n");
    p.handshake(&req);
    p.egress(&req);
    p.ingress(&req);
    p.egress(&resp);
    p.ingress(&resp);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(requests(&s, Role::Client, Method::Get), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Client, Method::Get, 2), 1);
    assert_clean(&s);
}

/// The target comes from the interface's slot: programs whose slot holds no
/// target count nothing, and clearing a slot stops the counting at once.
#[test]
fn only_interfaces_with_a_filled_slot_count() {
    let Some(p) = Parser::new() else { return };
    let exchange = |on: &Parser, sport: u16| {
        let req = Tcp { sport, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
        on.handshake(&req);
        on.ingress(&req);
        on.egress(&req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    };
    let stranger = p.sibling(p.slot + 5);
    exchange(&stranger, 40001);
    let s = p.snap();
    assert!(s.requests.is_empty() && s.latency.is_empty(), "{s:?}");
    assert_eq!(s.stats[stat::FLOWS_CREATED], 0, "not even tracked");

    exchange(&p, 40002);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert!(s.requests.iter().all(|(k, _)| k.target_id == 3), "the slot's target: {s:?}");

    maps::clear_link(&p.maps, p.slot).unwrap();
    exchange(&p, 40003);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "nothing after the slot was cleared");
    assert_eq!(s.stats[stat::FLOWS_CREATED], 1);
}

#[test]
fn one_target_cannot_use_up_the_series_of_another() {
    let cfg = |target_id| Setup {
        target_id,
        status_label: StatusLabel::Class,
        buckets_s: DEFAULT_BUCKETS.to_vec(),
        ports: vec![],
        series_budget: 10,
        routes: vec![],
    };
    let Some((a, Some(b))) = Parser::two(cfg(0), Some(cfg(1)), MapSizes { flows: 1024, max_series: 64 }) else {
        return;
    };
    // Target 0 sees real requests on 70 ports: more than the whole map holds.
    for port in 1..=70u16 {
        let req = Tcp { dport: port, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
        a.handshake(&req);
        a.ingress(&req);
    }
    let s = a.snap();
    assert_eq!(s.requests.iter().filter(|(k, _)| k.target_id == 0).count(), 10, "its budget, no more");
    assert_eq!(s.stats[stat::SERIES_DROPPED], 60);
    // Target 1 still has room for its own.
    let req = Tcp { dport: 8080, ..client_v4() }.payload(b"GET / HTTP/1.1\r\n\r\n");
    b.handshake(&req);
    b.ingress(&req);
    b.egress(&req.reply().payload(b"HTTP/1.1 200 OK\r\n\r\n"));
    let s = b.snap();
    assert_eq!(s.requests.iter().filter(|(k, _)| k.target_id == 1).count(), 1);
    assert_eq!(s.latency.iter().filter(|(k, _)| k.target_id == 1).count(), 1);
    assert_eq!(s.stats[stat::SERIES_DROPPED], 60, "nothing of target 1 dropped");
}

// ---------------------------------------------------------------------------
// Frames the parser follows, and those it leaves alone (docs/accuracy.md, "Out
// of scope"). Each left-alone frame carries a request on a real connection,
// and the same request in a plain frame right after counts: only the framing
// kept the first from counting.

/// The frame with its 802.1Q tag's type changed to 802.1ad (a service tag).
fn as_8021ad(mut f: Vec<u8>) -> Vec<u8> {
    assert_eq!(f[12..14], [0x81, 0x00], "a tagged frame");
    f[12..14].copy_from_slice(&0x88A8u16.to_be_bytes());
    f
}

#[test]
fn one_802_1ad_tag_is_followed_as_an_802_1q_one_is_and_two_tags_are_not() {
    let Some(p) = Parser::new() else { return };
    let req = client_v4().vlan(42).payload(b"GET /ad HTTP/1.1\r\n\r\n");
    p.handshake(&req);
    p.raw_ingress(&as_8021ad(req.frame()));
    p.raw_egress(&as_8021ad(req.reply().payload(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").frame()));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "{s:?}");
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1, "{s:?}");

    // QinQ: an 802.1ad tag outside an 802.1Q one.
    let two = Tcp { sport: 40001, ..client_v4() }.vlan(7).payload(b"GET /qinq HTTP/1.1\r\n\r\n");
    p.handshake(&two);
    let mut f = two.frame();
    f.splice(12..12, [0x88, 0xA8, 0x00, 0x07]);
    p.raw_ingress(&f);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 1, "two tags: not followed");
    p.ingress(&two);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 2, "the same request with one tag");
}

#[test]
fn ipv6_with_an_extension_header_is_not_followed() {
    let Some(p) = Parser::new() else { return };
    let req = client_v6().payload(b"GET /ext HTTP/1.1\r\n\r\n");
    p.handshake(&req);
    // A Destination Options header (8 bytes of padding) between IPv6 and TCP.
    let mut f = req.frame();
    f[14 + 6] = 60;
    let len = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&len.to_be_bytes());
    f.splice(54..54, [6, 0, 1, 4, 0, 0, 0, 0]);
    p.raw_ingress(&f);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 0, "{s:?}");
    p.ingress(&req);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 1, "the same request without it");
}

#[test]
fn ipv4_fragments_after_the_first_are_not_followed() {
    let Some(p) = Parser::new() else { return };
    // A first fragment (more fragments follow, offset 0) holds the TCP header: followed.
    let first = client_v4().payload(b"GET /first HTTP/1.1\r\n\r\n");
    p.handshake(&first);
    let mut f = first.frame();
    f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    p.raw_ingress(&f);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 1, "a first fragment");
    // A later one (offset 185 x 8 bytes) whose bytes look like a request segment of a real connection: not.
    let later = Tcp { sport: 40001, ..client_v4() }.payload(b"GET /later HTTP/1.1\r\n\r\n");
    p.handshake(&later);
    let mut f = later.frame();
    f[20..22].copy_from_slice(&185u16.to_be_bytes());
    p.raw_ingress(&f);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 1, "a later fragment");
    p.ingress(&later);
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 2, "the same bytes unfragmented");
}

/// On an interface without Ethernet (WireGuard, tun) a packet begins with its
/// IP header; the parser reads the first 14 bytes as Ethernet and finds no IP there.
#[test]
fn packets_without_an_ethernet_header_are_not_followed() {
    let Some(p) = Parser::new() else { return };
    for (i, base) in [client_v4(), client_v6()].into_iter().enumerate() {
        let req = Tcp { sport: 41000 + i as u16, ..base }.payload(b"GET /tun HTTP/1.1\r\n\r\n");
        p.handshake(&req);
        p.raw_ingress(&req.frame()[14..]);
        assert_eq!(requests(&p.snap(), Role::Server, Method::Get), i as u64, "{req:?} without Ethernet");
        p.ingress(&req);
        assert_eq!(requests(&p.snap(), Role::Server, Method::Get), i as u64 + 1, "{req:?} with Ethernet");
    }
}
