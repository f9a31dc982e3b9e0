//! bpf/lib/classify.h: whether the first bytes at a message position start a
//! request line, a status line or a TLS ClientHello
//! (tests/bpf/classify_test.bpf.c).

use super::{run, storage};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/classify_test.skel.rs"));
}

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Bytes of a message position looked at (HG_PREFIX).
const PREFIX: usize = 16;

/// Which stream the bytes are on (HG_DIR_REQ, HG_DIR_RESP).
const REQUEST: u32 = 0;
const RESPONSE: u32 = 1;

/// hg_classify's answers besides a method or a status code: the bytes cannot
/// start a message, or they are too few to tell (wait for the next segment).
const NOT_A_START: i32 = 0;
const TOO_FEW: i32 = -1;

/// enum hg_method.
const GET: i32 = 1;
const HEAD: i32 = 2;
const POST: i32 = 3;
const PUT: i32 = 4;
const DELETE: i32 = 5;
const CONNECT: i32 = 6;
const OPTIONS: i32 = 7;
const TRACE: i32 = 8;
const PATCH: i32 = 9;

struct Classify(skel::ClassifyTestSkel<'static>);

impl Classify {
    fn load() -> Option<Classify> {
        if !crate::common::privileged(&[]) {
            return None;
        }
        let open = skel::ClassifyTestSkelBuilder::default().open(storage()).expect("opening classify_test");
        Some(Classify(open.load().expect("loading classify_test")))
    }

    /// struct classify_case: the first bytes of `text` (at most PREFIX) are there.
    fn case(text: &[u8], n: u32, dir: u32) -> Vec<u8> {
        let mut p = [0u8; PREFIX];
        let len = text.len().min(PREFIX);
        p[..len].copy_from_slice(&text[..len]);
        [&n.to_ne_bytes()[..], &dir.to_ne_bytes(), &p].concat()
    }

    fn classify(&self, text: &[u8], dir: u32) -> i32 {
        let n = text.len().min(PREFIX) as u32;
        run(&self.0.progs.classify, &Self::case(text, n, dir)).0
    }

    fn tls_hello(&self, text: &[u8]) -> bool {
        run(&self.0.progs.tls_hello, &Self::case(text, text.len() as u32, REQUEST)).0 != 0
    }
}

#[test]
fn a_request_starts_with_a_method_and_a_space() {
    let Some(t) = Classify::load() else { return };
    let cases: &[(&[u8], i32)] = &[
        (b"GET / HTTP/1.1\r\n", GET),
        (b"HEAD / HTTP/1.1\r\n", HEAD),
        (b"POST /form HTTP/1.1\r\n", POST),
        (b"PUT /x HTTP/1.1\r\n", PUT),
        (b"DELETE /x HTTP/1.1\r\n", DELETE),
        (b"CONNECT host:443 HTTP/1.1\r\n", CONNECT),
        (b"OPTIONS * HTTP/1.1\r\n", OPTIONS),
        (b"TRACE / HTTP/1.1\r\n", TRACE),
        (b"PATCH /x HTTP/1.1\r\n", PATCH),
        // Exactly the method and its space, in fewer bytes than a word, and in a word.
        (b"PUT ", PUT),
        (b"PATCH ", PATCH),
        (b"OPTIONS ", OPTIONS),
        // Methods are case-sensitive.
        (b"get / HTTP/1.1\r\n", NOT_A_START),
        (b"Get / HTTP/1.1\r\n", NOT_A_START),
        (b"GET/ HTTP/1.1\r\n", NOT_A_START),
        (b"GETS / HTTP/1.1\r\n", NOT_A_START),
        (b"OPTIONS? HTTP/1.1", NOT_A_START),
        (b"HTTP/1.1 200 OK\r\n", NOT_A_START),
        (b"\r\nGET / HTTP/1.1", NOT_A_START),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01", NOT_A_START),
        // A method cut short by the segment's end: it may be one.
        (b"", TOO_FEW),
        (b"G", TOO_FEW),
        (b"DELE", TOO_FEW),
        (b"POST", TOO_FEW),
        (b"CONNECT", TOO_FEW),
        (b"X", NOT_A_START),
        (b"GEX", NOT_A_START),
    ];
    for (text, want) in cases {
        assert_eq!(t.classify(text, REQUEST), *want, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn a_status_line_is_http_1_0_or_1_1_and_a_code_from_100_to_599() {
    let Some(t) = Classify::load() else { return };
    let cases: &[(&[u8], i32)] = &[
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 404 Not Found\r\n", 404),
        (b"HTTP/1.1 100 Continue\r\n", 100),
        (b"HTTP/1.1 101 Switching Protocols\r\n", 101),
        (b"HTTP/1.1 599 x\r\n", 599),
        // The code is followed by a space, a line end, or nothing yet.
        (b"HTTP/1.1 204\r\n", 204),
        (b"HTTP/1.1 204\n", 204),
        (b"HTTP/1.1 204", 204),
        (b"HTTP/1.1 2040", NOT_A_START),
        (b"HTTP/1.1 200OK", NOT_A_START),
        (b"HTTP/1.1 600 x\r\n", NOT_A_START),
        (b"HTTP/1.1 099 x\r\n", NOT_A_START),
        (b"HTTP/1.1 2O0 OK\r\n", NOT_A_START),
        (b"HTTP/1.2 200 OK\r\n", NOT_A_START),
        (b"HTTP/2 200\r\n", NOT_A_START),
        (b"http/1.1 200 OK\r\n", NOT_A_START),
        (b"HTTP/1.1  200 OK\r\n", NOT_A_START),
        (b"GET / HTTP/1.1\r\n", NOT_A_START),
        // A status line cut short by the segment's end.
        (b"", TOO_FEW),
        (b"H", TOO_FEW),
        (b"HTTP/1.", TOO_FEW),
        (b"HTTP/1.1 ", TOO_FEW),
        (b"HTTP/1.1 20", TOO_FEW),
        (b"HTTX", NOT_A_START),
        (b"HTTP/1.2", NOT_A_START),
        (b"HTTP/1.1 2x", NOT_A_START),
    ];
    for (text, want) in cases {
        assert_eq!(t.classify(text, RESPONSE), *want, "{:?}", String::from_utf8_lossy(text));
    }
}

#[test]
fn more_bytes_than_a_start_needs_are_refused() {
    let Some(t) = Classify::load() else { return };
    let text = b"GET / HTTP/1.1\r\nHost: x\r\n";
    for dir in [REQUEST, RESPONSE] {
        assert_eq!(run(&t.0.progs.classify, &Classify::case(text, PREFIX as u32 + 1, dir)).0, NOT_A_START);
    }
}

#[test]
fn a_tls_client_hello_is_a_handshake_record_of_tls_1_x_carrying_a_client_hello() {
    let Some(t) = Classify::load() else { return };
    let cases: &[(&str, &[u8], bool)] = &[
        ("TLS 1.0 record", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true),
        ("TLS 1.2 record", b"\x16\x03\x03\x00\xa5\x01", true),
        ("six bytes are needed", b"\x16\x03\x01\x02\x00", false),
        ("not a handshake record", b"\x17\x03\x03\x00\xa5\x01", false),
        ("not TLS 1.x", b"\x16\x02\x00\x00\xa5\x01", false),
        ("a version after TLS 1.3", b"\x16\x03\x05\x00\xa5\x01", false),
        ("a ServerHello", b"\x16\x03\x03\x00\xa5\x02", false),
        ("HTTP", b"GET / HTTP/1.1\r\n", false),
    ];
    for (what, text, want) in cases {
        assert_eq!(t.tls_hello(text), *want, "{what}");
    }
}
