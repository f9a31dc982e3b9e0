//! The hard cases of real HTTP/1 traffic, as packet sequences through the
//! loaded programs (BPF_PROG_TEST_RUN): keep-alive, pipelining, 1xx, bodies
//! that look like messages, split start lines, retransmissions, flow-table
//! pressure. Every assertion is an exact count.

mod common;

use hge_shared::abi::stat;
use std::time::Duration;

use common::packet::{self, Tcp, ACK, FIN, RST};
use common::parser::{assert_clean, requests, responses, Conn, Parser, Setup};
use hge_attacher::bpf::MapSizes;
use hge_shared::config::{StatusLabel, DEFAULT_BUCKETS};
use hge_shared::snapshot::{Method, Role};

fn conn() -> Conn {
    Conn::new(Tcp::v4([198, 18, 0, 2], 40000, [198, 18, 0, 1], 80))
}

/// A connection set up while the programs watch: the server's SYN-ACK seen.
fn open(p: &Parser) -> Conn {
    let c = conn();
    p.egress(&c.syn_ack());
    c
}

fn ok(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[test]
fn thousands_of_requests_on_one_keep_alive_connection() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    for i in 0..2000 {
        p.ingress(&c.client(format!("GET /item/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()));
        p.ingress(&c.base.clone().flags(ACK)); // pure ACKs in between change nothing
        p.egress(&c.server(&ok("fine")));
    }
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 2000);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 2000);
    assert_clean(&s);
}

/// Latency is timed with the kernel's monotonic clock, which `Instant` reads
/// too: each exchange's latency lies within the time measured around it, and
/// the gaps between exchanges lie outside every such window.
#[test]
fn an_idle_gap_between_exchanges_is_nobodys_latency() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    let mut exchanges = Duration::ZERO;
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        p.ingress(&c.client(b"GET / HTTP/1.1\r\n\r\n"));
        p.egress(&c.server(&ok("x")));
        exchanges += t0.elapsed();
        std::thread::sleep(Duration::from_millis(120));
    }
    let s = p.snap();
    let (_, h) = &s.latency[0];
    assert_eq!(h.count, 3);
    assert!(
        Duration::from_nanos(h.sum_ns) <= exchanges,
        "idle time leaked into latency: {} ns, though the exchanges took {exchanges:?} in all",
        h.sum_ns
    );
}

#[test]
fn several_requests_in_one_segment_and_their_responses_in_another() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nDELETE /c HTTP/1.1\r\nHost: x\r\n\r\n",
    ));
    let mut resp = ok("a");
    resp.extend(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n");
    resp.extend(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
    p.egress(&c.server(&resp));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(requests(&s, Role::Server, Method::Head), 1);
    assert_eq!(requests(&s, Role::Server, Method::Delete), 1);
    // Each response pairs with its own request: HEAD's 404 had no body despite Content-Length.
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Head, 4), 1);
    assert_eq!(responses(&s, Role::Server, Method::Delete, 5), 1);
    assert_clean(&s);
}

#[test]
fn requests_sent_before_any_response_are_answered_in_order() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /1 HTTP/1.1\r\n\r\n"));
    p.ingress(&c.client(b"POST /2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"));
    p.ingress(&c.client(b"PUT /3 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 409 Conflict\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Put, 4), 1);
    assert_clean(&s);
}

#[test]
fn pipelining_beyond_the_depth_is_counted_never_mismatched() {
    let Some(p) = Parser::new() else { return };
    let mut c = conn();
    p.egress(&c.syn_ack());
    let methods = ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"];
    let mut burst = Vec::new();
    for m in methods {
        burst.extend(format!("{m} / HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    p.ingress(&c.client(&burst));
    for code in [200, 201, 202, 203, 404, 500] {
        p.egress(&c.server(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes()));
    }
    let s = p.snap();
    assert_eq!(s.requests.iter().map(|(_, v)| v).sum::<u64>(), 6, "every request is counted");
    assert_eq!(s.stats[stat::PIPELINE_OVERFLOW], 2);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
    // The four queued requests got the first four responses; the rest are not timed.
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Head, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Put, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Delete, 2), 1);
    assert_eq!(s.latency.iter().map(|(_, h)| h.count).sum::<u64>(), 4);
    // The connection goes on normally afterwards.
    p.ingress(&c.client(b"GET /after HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n"));
    assert_eq!(responses(&p.snap(), Role::Server, Method::Get, 4), 1);
}

#[test]
fn interim_responses_in_the_same_segment_as_the_final_one() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"POST /up HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 100 Continue\r\n\r\n"));
    p.ingress(&c.client(b"data"));
    p.egress(&c.server(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Post, 1), 0, "1xx interim responses are not observations");
    assert_clean(&s);
}

#[test]
fn head_204_and_304_have_no_body_whatever_their_headers_say() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    for (req, resp) in [
        (&b"HEAD /big HTTP/1.1\r\n\r\n"[..], &b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"[..]),
        (b"GET /none HTTP/1.1\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
        (
            b"GET /same HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\n",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n",
        ),
        (b"GET /next HTTP/1.1\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ] {
        p.ingress(&c.client(req));
        p.egress(&c.server(resp));
    }
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Head, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 2, "204 and the next 200");
    assert_eq!(responses(&s, Role::Server, Method::Get, 3), 1);
    assert_clean(&s);
}

#[test]
fn a_chunked_response_with_sizes_split_across_segments() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /stream HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1"));
    p.egress(&c.server(b"0;ext=1\r\n"));
    // 16 bytes of chunk data that look like a status line, then its CRLF split.
    p.egress(&c.server(b"HTTP/1.1 500 XXX"));
    p.egress(&c.server(b"\r"));
    p.egress(&c.server(b"\n5\r\nHTTP/\r\n0\r\nTrailer: x\r\n\r"));
    p.egress(&c.server(b"\n"));
    p.ingress(&c.client(b"GET /next HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 4), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "chunk data is not a response");
    assert_clean(&s);
}

#[test]
fn a_large_response_body_full_of_status_lines_is_not_responses() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /big HTTP/1.1\r\n\r\n"));
    let seg = b"HTTP/1.1 200 OK\r\n".repeat(80); // 1360 bytes, a status line at every segment start
    let total = 1 << 20;
    p.egress(&c.server(format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n").as_bytes()));
    let mut sent = 0;
    while sent < total {
        let n = seg.len().min(total - sent);
        p.egress(&c.server(&seg[..n]));
        sent += n;
    }
    p.ingress(&c.client(b"GET /after HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 1);
    assert_clean(&s);
}

#[test]
fn a_large_upload_full_of_request_lines_is_not_requests() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    let total = 10 << 20;
    p.ingress(&c.client(
        format!("POST /upload HTTP/1.1\r\nContent-Length: {total}\r\nExpect: 100-continue\r\n\r\n").as_bytes(),
    ));
    p.egress(&c.server(b"HTTP/1.1 100 Continue\r\n\r\n"));
    let seg = b"GET / HTTP/1.1\r\n".repeat(90); // 1440 bytes
    let mut sent = 0;
    while sent < total {
        let n = seg.len().min(total - sent);
        p.ingress(&c.client(&seg[..n]));
        sent += n;
    }
    p.egress(&c.server(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"));
    p.ingress(&c.client(b"GET /next HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("n")));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Post), 1);
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "only the real GET after the body");
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_clean(&s);
}

#[test]
fn start_lines_split_across_segments_are_joined() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    // The very first bytes of a new connection: "GE" | "T /x ...".
    p.ingress(&c.client(b"GE"));
    p.ingress(&c.client(b"T /x HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 2"));
    p.egress(&c.server(b"00 OK\r\nContent-Length: 2\r\n\r\nok"));
    // And mid-connection, one byte at a time.
    for b in b"OPTIONS * HTTP/1.1\r\n\r\n" {
        p.ingress(&c.client(&[*b]));
    }
    for b in b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n" {
        p.egress(&c.server(&[*b]));
    }
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(requests(&s, Role::Server, Method::Options), 1);
    assert_eq!(responses(&s, Role::Server, Method::Options, 4), 1);
    assert_clean(&s);
}

#[test]
fn retransmitted_and_overlapping_segments_are_parsed_once() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    let req = c.client(b"POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody");
    p.ingress(&req);
    p.ingress(&req); // the same segment again
    let first = c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab");
    p.egress(&first);
    // A retransmission that overlaps the end of the last segment and carries new bytes:
    // "b" (old) + "c" (rest of body), then a pipelined... no: the next request comes after.
    let mut overlap = first.clone();
    overlap.seq = first.seq + first.payload.len() as u32 - 1;
    overlap.payload = b"bc".to_vec();
    p.egress(&overlap);
    c.server(b"c"); // keep our own numbering in step with the overlap's new byte
    p.ingress(&c.client(b"GET /2 HTTP/1.1\r\n\r\n"));
    let resp2 = c.server(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    p.egress(&resp2);
    p.egress(&resp2);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Post), 1);
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 4), 1);
    assert_eq!(s.stats[stat::RETRANSMIT_IGNORED], 2);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
    assert_eq!(s.stats.framing_lost_total(), 0);
}

#[test]
fn a_gap_inside_a_body_is_harmless() {
    // Bytes this hook did not see (lost before it, or reordered between CPUs):
    // inside a body they can only have been body.
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /1 HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n"));
    let unseen = c.server(&[b'x'; 1500]);
    p.egress(&c.server(&[b'y'; 1500]));
    p.egress(&unseen); // arrives late: old bytes, ignored
    p.ingress(&c.client(b"GET /2 HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 500 Err\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 1);
    assert_eq!(s.stats.framing_lost_total(), 0);
}

#[test]
fn a_gap_over_a_message_boundary_falls_back_to_turn_around() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /1 HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"));
    c.server(b"0123456789HTTP/1.1 2"); // the body's end and the next start: never seen
    p.egress(&c.server(b"00 OK\r\n\r\n"));
    // Out of sync: the next response is trusted only because a request waits for it.
    p.ingress(&c.client(b"GET /2 HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 404 Nope\r\nContent-Length: 0\r\n\r\n"));
    let s = p.snap();
    assert_eq!(s.stats.framing_lost(), [1, 0, 0, 0, 0], "one gap");
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 4), 1);
    assert_eq!(s.stats[stat::RESPONSE_NO_REQUEST], 0);
}

#[test]
fn a_full_flow_table_forgets_old_flows_counts_them_and_never_makes_up_latency() {
    let Some(p) = Parser::sized(
        Setup {
            target_id: 0,
            status_label: StatusLabel::Class,
            buckets_s: DEFAULT_BUCKETS.to_vec(),
            ports: vec![],
            series_budget: 0,
            routes: vec![],
        },
        MapSizes { flows: 64, max_series: 64 },
    ) else {
        return;
    };
    let mut conns: Vec<Conn> = (0..300u16).map(|i| Conn::new(Tcp { sport: 10000 + i, ..conn().base })).collect();
    for c in conns.iter_mut() {
        p.egress(&c.syn_ack());
        p.ingress(&c.client(b"GET / HTTP/1.1\r\n\r\n"));
    }
    std::thread::sleep(Duration::from_millis(50));
    for c in conns.iter_mut() {
        p.egress(&c.server(&ok("late")));
    }
    let s = p.snap();
    let flows = s.flows.expect("flow table scanned");
    assert_eq!(requests(&s, Role::Server, Method::Get), 300, "every request counted");
    let answered = responses(&s, Role::Server, Method::Get, 2);
    assert!(flows.live <= 64, "{flows:?}");
    assert_eq!(answered + s.stats[stat::RESPONSE_NO_REQUEST], 300, "each response is timed or reported");
    assert_eq!(flows.evicted, 300 - flows.live);
    assert_eq!(flows.evicted_unanswered, 300 - answered, "{flows:?}");
    assert!(flows.evicted >= 300 - 64, "{flows:?}");
    // The kernel reports no eviction. What the evictions did is seen apart
    // from the derived count: each response that found no request belongs to
    // a distinct connection whose flow was forgotten. The derived count must
    // cover at least those.
    assert!(s.stats[stat::RESPONSE_NO_REQUEST] >= 300 - 64, "evictions happened and were seen: {:?}", s.stats);
    assert!(flows.evicted >= s.stats[stat::RESPONSE_NO_REQUEST], "{flows:?} {:?}", s.stats);
    // No made-up sample: every observation is from a request 50 ms old, none from another's.
    let (_, h) = s.latency.iter().find(|(k, _)| k.status == 2).unwrap();
    assert!(h.sum_ns >= answered * 50_000_000, "{h:?}");
}

#[test]
fn server_fin_with_requests_pending_counts_them_unanswered() {
    let Some(p) = Parser::new() else { return };
    let mut c = conn();
    p.egress(&c.syn_ack());
    p.ingress(&c.client(b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("1")));
    // The FIN where the server's stream is (a FIN anywhere else is ignored, as the kernel ignores it).
    p.egress(&c.server(b"").flags(FIN | ACK));
    let s = p.snap();
    assert_eq!(s.stats[stat::UNANSWERED_CLOSED], 1);
    assert_eq!(s.flows.unwrap().live, 0);
    assert_eq!(s.flows.unwrap().evicted, 0);
}

/// Framing-loss counters in the order of FRAMING_LOST_REASONS:
/// gap, not_a_message, unreadable_header, bad_chunk, too_complex.
fn lost(s: &hge_shared::snapshot::Snapshot) -> [u64; 5] {
    s.stats.framing_lost().try_into().expect("five framing-loss slots")
}

#[test]
fn bytes_where_a_request_should_start_that_are_not_one_lose_framing_as_not_a_message() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(&ok("a")));
    p.ingress(&c.client(b"HELLO there, this is no request\r\n\r\n"));
    let s = p.snap();
    assert_eq!(lost(&s), [0, 1, 0, 0, 0], "{:?}", s.stats);
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "the stray bytes are not a request");
    // The turn-around rule takes over: the next request still counts.
    p.ingress(&c.client(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(&ok("b")));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 2);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 2);
}

#[test]
fn a_content_length_past_two_gib_is_an_unreadable_header() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /huge HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nContent-Length: 3000000000\r\n\r\n"));
    // Body bytes that look like a status line must not be taken for one.
    p.egress(&c.server(b"HTTP/1.1 500 Oops\r\n\r\n"));
    let s = p.snap();
    assert_eq!(lost(&s), [0, 0, 1, 0, 0], "{:?}", s.stats);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "body bytes are not a response");
}

#[test]
fn a_transfer_encoding_we_cannot_read_is_an_unreadable_header() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /te HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, deflate, chunked\r\n\r\n"));
    let s = p.snap();
    assert_eq!(lost(&s), [0, 0, 1, 0, 0], "{:?}", s.stats);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
}

#[test]
fn a_malformed_chunk_size_is_a_bad_chunk() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /chunks HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHTTP/1.1 500 No\r\n\r\n"));
    let s = p.snap();
    assert_eq!(lost(&s), [0, 0, 0, 1, 0], "{:?}", s.stats);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "bytes after a bad chunk are not a response");
}

#[test]
fn a_chunk_size_of_32_digits_is_read_and_of_33_is_a_bad_chunk() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /zeros HTTP/1.1\r\n\r\n"));
    let size = format!("{:0>32}", "5");
    p.egress(&c.server(
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nHTTP/\r\n0\r\n\r\n").as_bytes(),
    ));
    p.ingress(&c.client(b"GET /more-zeros HTTP/1.1\r\n\r\n"));
    let size = format!("{:0>33}", "5");
    p.egress(&c.server(
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nHTTP/\r\n0\r\n\r\n").as_bytes(),
    ));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 2);
    assert_eq!(lost(&s), [0, 0, 0, 1, 0], "only the 33-digit size is refused: {:?}", s.stats);
}

#[test]
fn short_header_lines_several_to_a_word_hide_no_content_length() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    // Lines of three to five bytes (bare LF ends too, which recipients accept): up to three line ends
    // in the eight bytes the parser reads at once.
    let short = "a:1\r\nb:2\r\na:\nb:\nc:\nd:\ne:\nf:\ng:\nh:\n";
    p.ingress(&c.client(
        format!("POST /form HTTP/1.1\r\n{short}Content-Length: 20\r\n{short}\r\nGET /body HTTP/1.1\r\n").as_bytes(),
    ));
    p.egress(&c.server(
        format!("HTTP/1.1 200 OK\r\n{short}Content-Length: 19\r\n{short}\r\nHTTP/1.1 500 body\r\n").as_bytes(),
    ));
    p.ingress(&c.client(b"GET /next HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("n")));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Post), 1);
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "the GET in the body is body");
    assert_eq!(responses(&s, Role::Server, Method::Post, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "the status line in the body is body");
    assert_clean(&s);
}

#[test]
fn a_segment_needing_more_steps_than_allowed_is_too_complex() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GET /many HTTP/1.1\r\nHost: x\r\n\r\n"));
    // 450 one-byte chunks: a size line and a data step each, 900 steps > 512.
    let mut resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    resp.extend(b"1\r\na\r\n".repeat(450));
    p.egress(&c.server(&resp));
    let s = p.snap();
    assert_eq!(lost(&s), [0, 0, 0, 0, 1], "{:?}", s.stats);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1);
}

#[test]
fn latency_of_a_split_start_line_starts_at_the_segment_that_completes_it() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    p.ingress(&c.client(b"GE"));
    std::thread::sleep(Duration::from_millis(200));
    let completed = std::time::Instant::now();
    p.ingress(&c.client(b"T /split HTTP/1.1\r\nHost: x\r\n\r\n"));
    p.egress(&c.server(&ok("s")));
    let upper = completed.elapsed();
    let s = p.snap();
    let (_, h) = s.latency.iter().find(|(k, _)| k.status == 2).expect("one timed response");
    assert_eq!(h.count, 1);
    assert!(
        Duration::from_nanos(h.sum_ns) <= upper,
        "{} ns: timed from the completing segment, not from the first fragment 200 ms earlier",
        h.sum_ns
    );
}

// ---------------------------------------------------------------------------
// Only real connections count (tc ingress sees packets before the firewall).

#[test]
fn spoofed_requests_to_any_port_create_no_series_and_no_counts() {
    let Some(p) = Parser::new() else { return };
    // No handshake, no answer: what a stranger can send from anywhere.
    for port in 1..=5_000u16 {
        let spoof = Tcp { sport: 10_000 + port, dport: port, ..conn().base }.payload(b"GET / HTTP/1.1\r\n\r\n");
        p.ingress(&spoof);
        // The kernel answers a segment for no connection with a RST.
        p.egress(&spoof.reply().seq(1).flags(RST | ACK));
    }
    let s = p.snap();
    assert!(s.requests.is_empty(), "{} series from spoofed segments", s.requests.len());
    assert!(s.latency.is_empty());
    assert_eq!(s.stats[stat::SERIES_DROPPED], 0);
    assert_eq!(
        (s.stats[stat::UNANSWERED_RESET], s.stats[stat::UNANSWERED_CLOSED]),
        (0, 0),
        "never counted, so never unanswered"
    );
    // No socket here is an end of those connections: not even tracked.
    assert_eq!(s.stats[stat::NOT_LOCAL], 5_000, "{:?}", s.stats);
    assert_eq!(s.stats[stat::FLOWS_CREATED], 0, "{:?}", s.stats);
}

#[test]
fn a_client_that_never_saw_the_syn_ack_is_not_believed() {
    let Some(p) = Parser::new() else { return };
    let mut c = conn();
    p.egress(&c.syn_ack());
    // A stranger guessing: the right 4-tuple, a wrong acknowledgement.
    let guess = c.client(b"GET /guess HTTP/1.1\r\n\r\n").ack(0x1234_5678);
    p.ingress(&guess);
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 0, "not counted on a guess");
}

#[test]
fn a_connection_open_before_the_exporter_is_adopted_at_its_first_response() {
    let Some(p) = Parser::new() else { return };
    // A real connection of this namespace, open before we started (no SYN-ACK seen):
    // the test run's packets are looked up here, and its socket found.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), listener.local_addr().unwrap().port());
    let mut c = Conn::new(Tcp::v4([127, 0, 0, 1], cport, [127, 0, 0, 1], sport));
    p.ingress(&c.client(b"GET /1 HTTP/1.1\r\n\r\n"));
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 0, "not yet shown real");
    p.egress(&c.server(&ok("1")));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "counted once the server answered");
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1, "and timed");
    // From then on, as any connection.
    p.ingress(&c.client(b"GET /2 HTTP/1.1\r\n\r\n"));
    assert_eq!(requests(&p.snap(), Role::Server, Method::Get), 2);
    assert_eq!(p.snap().flows.unwrap().never_confirmed, 0);
    assert_eq!(p.snap().stats[stat::NOT_LOCAL], 0);
}

#[test]
fn a_blind_rst_outside_the_window_changes_nothing() {
    let Some(p) = Parser::new() else { return };
    let mut c = conn();
    p.egress(&c.syn_ack());
    for i in 0..3 {
        p.ingress(&c.client(format!("GET /{i} HTTP/1.1\r\n\r\n").as_bytes()));
        p.egress(&c.server(&ok("x")));
    }
    // Far from where either side's stream is: the kernel ignores these.
    p.ingress(&c.base.clone().seq(0x1000_0000).flags(RST | ACK).payload(b""));
    p.ingress(&c.base.clone().seq(0x1000_0000).flags(packet::SYN).payload(b""));
    p.ingress(&c.base.clone().seq(0x1000_0000).flags(FIN | ACK).payload(b""));
    p.egress(&c.base.reply().seq(0x1000_0000).flags(RST | ACK).payload(b""));
    p.ingress(&c.client(b"GET /after HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("y")));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), 4);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 4, "the flow lived on and times the 4th");
    assert_eq!(s.stats[stat::UNANSWERED_RESET], 0);
    assert_eq!(s.flows.unwrap().live, 1);
    // A RST where the client's stream is does end it.
    p.ingress(&c.client(b"GET /last HTTP/1.1\r\n\r\n"));
    p.ingress(&c.client(b"").flags(RST | ACK));
    let s = p.snap();
    assert_eq!(s.stats[stat::UNANSWERED_RESET], 1);
    assert_eq!(s.flows.unwrap().live, 0);
}

#[test]
fn the_first_two_gib_of_an_untrusted_body_are_body_whoever_answered() {
    let Some(p) = Parser::new() else { return };
    let mut c = conn();
    p.egress(&c.syn_ack());
    p.ingress(&c.client(b"POST /big HTTP/1.1\r\nContent-Length: 3000000000\r\n\r\n"));
    // The server refuses early: nothing is pending any more.
    p.egress(&c.server(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n"));
    // The client goes on sending its body; parts of it look like requests.
    p.ingress(&c.client(b"GET /evil HTTP/1.1\r\n\r\n"));
    let far = c.base.clone().seq(c.client(b"").seq.wrapping_add(1_500_000_000));
    p.ingress(&far.payload(b"DELETE /evil HTTP/1.1\r\n\r\n"));
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Post), 1);
    assert_eq!(requests(&s, Role::Server, Method::Get), 0, "body bytes are not requests");
    assert_eq!(requests(&s, Role::Server, Method::Delete), 0, "nor 1.5 GB into the body");
    assert_eq!(lost(&s), [0, 0, 1, 0, 0], "the length could not be followed: {:?}", s.stats);
}

#[test]
fn a_connection_closed_before_its_first_request_is_no_anomaly() {
    let Some(p) = Parser::new() else { return };
    let c = conn();
    // A health check: the handshake, then the client resets without a request.
    p.egress(&c.syn_ack());
    p.ingress(&c.base.clone().flags(RST | ACK).payload(b""));
    let s = p.snap();
    assert_eq!(s.flows.unwrap().never_confirmed, 0, "{:?}", s.flows);
    assert_eq!(s.flows.unwrap().live, 0, "the RST ended it");
    assert_eq!((s.stats[stat::UNANSWERED_RESET], s.stats[stat::RESPONSE_NO_REQUEST]), (0, 0));
}

#[test]
fn header_blocks_longer_than_a_window_split_anywhere_are_framed_exactly() {
    let Some(p) = Parser::new() else { return };
    let mut c = open(&p);
    // Lines longer than the parser's 256-byte window, names in any case,
    // names that begin like the framing headers, and a body that would be a
    // response if the framing were missed: each split at every byte.
    let body = "HTTP/1.1 500 X\r\n\r\n";
    let by_length = format!(
        "HTTP/1.1 200 OK\r\nServer: t\r\nSet-Cookie: a={}\r\nContent-Type: text/plain\r\nX-Long: {}\r\n\
         CONTENT-LENGTH: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        "a".repeat(300),
        "b".repeat(200),
        body.len()
    );
    let chunked = format!(
        "HTTP/1.1 200 OK\r\nX-Long: {}\r\nContent-type: x\r\ntransfer-ENCODING: chunked\r\nDate: x\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        "c".repeat(280),
        body.len()
    );
    let mut n = 0;
    for resp in [by_length.as_bytes(), chunked.as_bytes()] {
        for k in 1..resp.len() {
            p.ingress(&c.client(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
            p.egress(&c.server(&resp[..k]));
            p.egress(&c.server(&resp[k..]));
            n += 1;
        }
    }
    let s = p.snap();
    assert_eq!(requests(&s, Role::Server, Method::Get), n);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), n);
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "a body taken for a response");
    assert_clean(&s);
}

// ---------------------------------------------------------------------------
// The edges docs/accuracy.md states.

#[test]
fn a_2xx_to_connect_ends_parsing_and_other_answers_to_connect_do_not() {
    let Some(p) = Parser::new() else { return };
    // Refused by a proxy: the connection carries HTTP on.
    let mut c = open(&p);
    p.ingress(&c.client(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n"));
    p.egress(&c.server(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"));
    p.ingress(&c.client(b"GET /after HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("x")));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Connect, 4), 1);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1, "HTTP goes on after a refused CONNECT");
    assert_eq!(s.stats[stat::UPGRADED], 0);
    // Accepted: a tunnel from then on, whatever its bytes look like.
    let mut t = Conn::new(Tcp { sport: 41000, ..conn().base });
    p.egress(&t.syn_ack());
    p.ingress(&t.client(b"CONNECT b.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n"));
    p.egress(&t.server(b"HTTP/1.1 200 Connection Established\r\n\r\n"));
    p.ingress(&t.client(b"GET / HTTP/1.1\r\n\r\n"));
    p.egress(&t.server(b"HTTP/1.1 500 Oops\r\n\r\n"));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Connect, 2), 1, "the CONNECT itself is timed");
    assert_eq!(requests(&s, Role::Server, Method::Get), 1, "nothing in the tunnel counts");
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0);
    assert_eq!(s.stats[stat::UPGRADED], 1);
    assert_eq!(s.stats.framing_lost_total(), 0, "a tunnel is not a loss of framing");
}

#[test]
fn a_rst_is_honoured_up_to_64_kib_past_its_senders_stream_and_not_one_byte_further() {
    let Some(p) = Parser::new() else { return };
    let window = 64 * 1024u32;
    for (sport, past, honoured) in [(42000, 0, true), (42001, window - 1, true), (42002, window, false)] {
        let mut c = Conn::new(Tcp { sport, ..conn().base });
        p.egress(&c.syn_ack());
        p.ingress(&c.client(b"GET /pending HTTP/1.1\r\n\r\n"));
        let next = c.client(b"").seq;
        let before = p.snap().stats[stat::UNANSWERED_RESET];
        p.ingress(&c.base.clone().seq(next.wrapping_add(past)).flags(RST | ACK).payload(b""));
        let reset = p.snap().stats[stat::UNANSWERED_RESET] - before;
        assert_eq!(reset == 1, honoured, "a RST {past} bytes past the client's stream: {reset} unanswered");
    }
    // One byte before the stream's position is outside too.
    let mut c = Conn::new(Tcp { sport: 42003, ..conn().base });
    p.egress(&c.syn_ack());
    p.ingress(&c.client(b"GET /pending HTTP/1.1\r\n\r\n"));
    let next = c.client(b"").seq;
    p.ingress(&c.base.clone().seq(next.wrapping_sub(1)).flags(RST | ACK).payload(b""));
    p.egress(&c.server(&ok("x")));
    let s = p.snap();
    assert_eq!(s.stats[stat::UNANSWERED_RESET], 2, "{:?}", s.stats);
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 1, "the flow before the window lived on");
}

/// A header line cut by a segment's end is kept, up to 31 bytes, and read
/// joined with the next segment; cut later, a Content-Length that cannot be
/// read whole is a framing loss, never a wrong body length.
#[test]
fn a_header_line_cut_after_31_bytes_is_joined_and_after_32_is_an_unreadable_header() {
    let Some(p) = Parser::new() else { return };
    // The value's one digit ends the cut part; its line end comes next. The
    // body looks like a response, so a misread length would count one.
    let body = "HTTP/1.1 500 X\r\n\r\n";
    let exchange = |p: &Parser, c: &mut Conn, spaces: usize| {
        let cut = format!("Content-Length:{}{}", " ".repeat(spaces), body.len());
        p.ingress(&c.client(b"GET / HTTP/1.1\r\n\r\n"));
        p.egress(&c.server(format!("HTTP/1.1 200 OK\r\n{cut}").as_bytes()));
        p.egress(&c.server(format!("\r\n\r\n{body}").as_bytes()));
        cut.len()
    };
    let mut c = open(&p);
    assert_eq!(exchange(&p, &mut c, 14), 31);
    p.ingress(&c.client(b"GET /next HTTP/1.1\r\n\r\n"));
    p.egress(&c.server(&ok("n")));
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 2, "31 bytes kept: the length read, the body skipped");
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0);
    assert_clean(&s);

    let mut c = Conn::new(Tcp { sport: 43000, ..conn().base });
    p.egress(&c.syn_ack());
    assert_eq!(exchange(&p, &mut c, 15), 32);
    let s = p.snap();
    assert_eq!(responses(&s, Role::Server, Method::Get, 2), 3, "the response itself still counts");
    assert_eq!(responses(&s, Role::Server, Method::Get, 5), 0, "its body is never a response");
    assert_eq!(lost(&s), [0, 0, 1, 0, 0], "32 bytes: an unreadable header: {:?}", s.stats);
}

/// A stranger who guesses the 4-tuple of a connection open before the
/// exporter (no handshake seen) starts a flow whose request waits for the
/// server; ended before the server answers, that flow is counted, and its
/// request never is.
#[test]
fn a_flow_started_by_a_request_no_server_ever_answered_is_never_confirmed() {
    let Some(p) = Parser::new() else { return };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let (cport, sport) = (client.local_addr().unwrap().port(), listener.local_addr().unwrap().port());
    let mut c = Conn::new(Tcp::v4([127, 0, 0, 1], cport, [127, 0, 0, 1], sport));
    p.ingress(&c.client(b"GET /spoofed HTTP/1.1\r\n\r\n"));
    assert_eq!(p.snap().flows.unwrap().live, 1, "the socket lookup found the connection: a flow");
    p.ingress(&c.client(b"").flags(RST | ACK));
    let s = p.snap();
    let flows = s.flows.unwrap();
    assert_eq!((flows.live, flows.never_confirmed), (0, 1), "{flows:?}");
    assert_eq!(requests(&s, Role::Server, Method::Get), 0, "its request never counted");
    assert_eq!((s.stats[stat::UNANSWERED_RESET], s.stats[stat::UNANSWERED_CLOSED]), (0, 0), "nor as unanswered");
}
