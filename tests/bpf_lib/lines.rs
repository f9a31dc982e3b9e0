//! bpf/lib/lines.h: where a line ends, which header lines the scan must look
//! at, chunk-size lines, and the two framing headers, on a window of payload
//! bytes as the parser holds one (tests/bpf/lines_test.bpf.c).

use super::{run, storage};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/lines_test.skel.rs"));
}

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Bytes of payload the window holds (HG_WINDOW), and the slack after them.
const WINDOW: usize = 256;
const SLACK: usize = 8;

/// hg_chunk_size_line: a malformed chunk-size line, and one that goes on past the bytes given.
const BAD: i32 = -2;
const MORE: i32 = -1;

/// hg_header_kind's answers.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Header {
    Other,
    Length(u64),
    Chunked,
    /// A framing header whose value could not be read.
    Unread,
}

/// A reader's input: `text` at offset `off` of the window, of which it may
/// read `avail` bytes from `off`. Every other byte of the window is '\n', the
/// byte most likely to mislead a line reader that reads past what it may.
#[derive(Clone, Copy)]
struct Case<'a> {
    text: &'a [u8],
    off: u32,
    avail: u32,
    size: u64,
    ext: bool,
}

impl<'a> Case<'a> {
    /// All of `text`, at the window's start.
    fn new(text: &'a [u8]) -> Self {
        Case { text, off: 0, avail: text.len() as u32, size: 0, ext: false }
    }

    fn at(mut self, off: u32) -> Self {
        self.off = off;
        self
    }

    fn avail(mut self, avail: u32) -> Self {
        self.avail = avail;
        self
    }

    /// A chunk-size line resumed: the size read so far, and whether the digits are behind.
    fn resumed(mut self, size: u64, ext: bool) -> Self {
        self.size = size;
        self.ext = ext;
        self
    }

    /// struct lines_case.
    fn bytes(&self) -> Vec<u8> {
        let mut w = vec![b'\n'; WINDOW + SLACK];
        let off = self.off as usize;
        w[off..off + self.text.len()].copy_from_slice(self.text);
        let mut c = Vec::new();
        c.extend(self.off.to_ne_bytes());
        c.extend(self.avail.to_ne_bytes());
        c.extend(self.size.to_ne_bytes());
        c.extend(u32::from(self.ext).to_ne_bytes());
        c.extend([0; 4]);
        c.extend(w);
        c
    }
}

/// struct lines_out: the reader's result, and the value and extension state it hands back.
fn out(bytes: &[u8]) -> (u64, bool) {
    let value = u64::from_ne_bytes(bytes[8..16].try_into().unwrap());
    let ext = u32::from_ne_bytes(bytes[16..20].try_into().unwrap());
    (value, ext != 0)
}

struct Lines(skel::LinesTestSkel<'static>);

impl Lines {
    fn load() -> Option<Lines> {
        if !crate::common::privileged(&[]) {
            return None;
        }
        let open = skel::LinesTestSkelBuilder::default().open(storage()).expect("opening lines_test");
        Some(Lines(open.load().expect("loading lines_test")))
    }

    fn find_newline(&self, c: Case) -> Option<u32> {
        let (ret, _) = run(&self.0.progs.find_newline, &c.bytes());
        u32::try_from(ret).ok()
    }

    fn next_line(&self, c: Case) -> Option<u32> {
        let (ret, _) = run(&self.0.progs.next_line, &c.bytes());
        u32::try_from(ret).ok()
    }

    /// The bytes up to and past the line's '\n' (or BAD, MORE), the size, and
    /// whether the line is past its digits.
    fn chunk_size_line(&self, c: Case) -> (i32, u64, bool) {
        let (ret, bytes) = run(&self.0.progs.chunk_size_line, &c.bytes());
        let (size, ext) = out(&bytes);
        (ret, size, ext)
    }

    fn header_kind(&self, c: Case) -> Header {
        let (ret, bytes) = run(&self.0.progs.header_kind, &c.bytes());
        match ret {
            0 => Header::Other,
            1 => Header::Length(out(&bytes).0),
            2 => Header::Chunked,
            3 => Header::Unread,
            other => panic!("hg_header_kind returned {other}"),
        }
    }
}

#[test]
fn find_newline_gives_the_first_line_end_among_the_bytes_it_may_read() {
    let Some(t) = Lines::load() else { return };
    let far = [&[b'x'; 255][..], b"\n"].concat();
    let cases: &[(&str, Case, Option<u32>)] = &[
        ("nothing to read", Case::new(b""), None),
        ("a line end alone", Case::new(b"\n"), Some(0)),
        ("a start line", Case::new(b"GET / HTTP/1.1\r\n"), Some(15)),
        ("the first of two", Case::new(b"ab\ncd\n"), Some(2)),
        ("the last byte of a word", Case::new(b"abcdefg\n"), Some(7)),
        ("the first byte of the next word", Case::new(b"abcdefgh\n"), Some(8)),
        ("the last byte it may read", Case::new(b"Host: x\r\n").avail(9), Some(8)),
        ("just past the bytes it may read, in the same word", Case::new(b"Host:\r\n").avail(6), None),
        ("just past the bytes it may read, in the next word", Case::new(b"Host: x\r").avail(8), None),
        ("the last byte of the window", Case::new(&far), Some(255)),
        ("counted from where it starts", Case::new(b"Host: x\r\n").at(100), Some(8)),
    ];
    for (what, c, want) in cases {
        assert_eq!(t.find_newline(*c), *want, "{what}");
    }
}

#[test]
fn next_line_skips_header_lines_to_the_first_that_needs_a_closer_look() {
    let Some(t) = Lines::load() else { return };
    let cases: &[(&str, Case, Option<u32>)] = &[
        ("nothing to read", Case::new(b""), None),
        ("Content-Length", Case::new(b"Host: a\r\nDate: b\r\nContent-Length: 5\r\n\r\n"), Some(18)),
        ("Transfer-Encoding", Case::new(b"Host: a\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(9)),
        ("in capitals", Case::new(b"Host: a\r\nCONTENT-LENGTH: 5\r\n\r\n"), Some(9)),
        ("any name starting with cont", Case::new(b"Host: a\r\nContent-Type: x\r\n\r\n"), Some(9)),
        ("not Connection", Case::new(b"Host: a\r\nConnection: close\r\n\r\n"), Some(28)),
        ("the empty line that ends the block", Case::new(b"Host: a\r\n\r\nbody"), Some(9)),
        ("lines ended by a bare LF", Case::new(b"Host: a\nDate: b\nContent-Length: 1\n\n"), Some(16)),
        ("an empty line that is a bare LF", Case::new(b"Host: a\n\nbody"), Some(8)),
        ("a line start with fewer than four bytes after it", Case::new(b"Host: a\r\nab"), Some(9)),
        ("a line end on the last byte it may read", Case::new(b"Host: a\r\n"), Some(9)),
        ("a line end past the bytes it may read", Case::new(b"Host:\r").avail(6), None),
        ("the bytes end inside a line", Case::new(b"Host: a\r\nDate: b"), None),
        // Lines under five bytes are not HTTP's, but a word may end three: the
        // line after the third is handed back as it is, for a closer look.
        ("three line ends in one word", Case::new(b"x\nab\nc\ndate: 1\r\n\r\n"), Some(7)),
        ("two line ends in one word", Case::new(b"xxx\nabc\nDate: 1\r\n\r\n"), Some(17)),
        (
            "counted from where it starts",
            Case::new(b"Host: a\r\nDate: b\r\nContent-Length: 5\r\n\r\n").at(100),
            Some(18),
        ),
    ];
    for (what, c, want) in cases {
        assert_eq!(t.next_line(*c), *want, "{what}");
    }
}

#[test]
fn chunk_size_line_reads_the_hex_size_up_to_the_line_end() {
    let Some(t) = Lines::load() else { return };
    let zeros = |n: usize, last: &str| format!("{}{last}\r\n", "0".repeat(n));
    let (z32, z33) = (zeros(31, "1"), zeros(32, "1"));
    let cases: &[(&str, &[u8], i32, u64)] = &[
        ("a size", b"1a\r\n", 4, 0x1a),
        ("the last chunk", b"0\r\n", 3, 0),
        ("in capitals", b"FF\r\n", 4, 0xff),
        ("in mixed case", b"aBc\r\n", 5, 0xabc),
        ("with an extension", b"5;name=value\r\n", 14, 5),
        ("with spaces and tabs before it", b"5 \t;x\r\n", 7, 5),
        ("ended by a bare LF", b"5\n", 2, 5),
        ("32 digits, leading zeros", z32.as_bytes(), 34, 1),
        ("13 significant digits (52 bits)", b"fffffffffffff\r\n", 15, (1 << 52) - 1),
        ("leading zeros and 13 significant digits", b"000fffffffffffff\r\n", 18, (1 << 52) - 1),
        ("14 significant digits", b"10000000000000\r\n", BAD, 0),
        ("33 digits, leading zeros", z33.as_bytes(), BAD, 0),
        ("not a hex digit", b"g\r\n", BAD, 0),
        ("a hex digit, then not one", b"1g\r\n", BAD, 0),
        ("a sign", b"-1\r\n", BAD, 0),
    ];
    for (what, text, want, size) in cases {
        let (got, got_size, _) = t.chunk_size_line(Case::new(text));
        assert_eq!(got, *want, "{what}: {:?}", String::from_utf8_lossy(text));
        if *want != BAD {
            assert_eq!(got_size, *size, "{what}: the size");
        }
    }
}

#[test]
fn chunk_size_line_goes_on_in_the_next_segment() {
    let Some(t) = Lines::load() else { return };
    // (what, this segment's bytes, the state it starts in) -> (result, size, past the digits)
    let cases: &[(&str, Case, (i32, u64, bool))] = &[
        ("nothing to read", Case::new(b""), (MORE, 0, false)),
        ("digits, no line end yet", Case::new(b"ff"), (MORE, 0xff, false)),
        ("digits and an extension, no line end yet", Case::new(b"ff;x"), (MORE, 0xff, true)),
        ("a CR at the segment's end", Case::new(b"1a\r"), (MORE, 0x1a, true)),
        ("its LF first in the next", Case::new(b"\n").resumed(0x1a, true), (1, 0x1a, true)),
        ("more digits of the same size", Case::new(b"f\r\n").resumed(0xf, false), (3, 0xff, true)),
        ("the rest of an extension: no digits read", Case::new(b"ab;cd\r\n").resumed(0x10, true), (7, 0x10, true)),
        (
            "a size read in two segments is held to 52 bits too",
            Case::new(b"0\r\n").resumed(1 << 48, false),
            (BAD, 1 << 48, false),
        ),
        ("a line end past the bytes it may read", Case::new(b"12\r\n").avail(3), (MORE, 0x12, true)),
    ];
    for (what, c, want) in cases {
        let got = t.chunk_size_line(*c);
        if want.0 == BAD {
            assert_eq!(got.0, BAD, "{what}");
        } else {
            assert_eq!(got, *want, "{what}");
        }
    }
}

#[test]
fn header_kind_reads_content_length_and_chunked_in_any_case() {
    let Some(t) = Lines::load() else { return };
    use Header::*;
    let cases: &[(&str, Case, Header)] = &[
        ("Content-Length", Case::new(b"Content-Length: 42\r\n"), Length(42)),
        ("in lower case, no space", Case::new(b"content-length:42\r\n"), Length(42)),
        ("in capitals", Case::new(b"CONTENT-LENGTH: 7\r\n"), Length(7)),
        ("spaces and tabs before the value", Case::new(b"Content-Length:\t \t9\r\n"), Length(9)),
        ("zero", Case::new(b"Content-Length: 0\r\n"), Length(0)),
        ("13 digits", Case::new(b"Content-Length: 1234567890123\r\n"), Length(1_234_567_890_123)),
        ("ended by a bare LF", Case::new(b"Content-Length: 3\n"), Length(3)),
        ("counted from where it starts", Case::new(b"Content-Length: 42\r\n").at(100), Length(42)),
        ("no value", Case::new(b"Content-Length: \r\n"), Unread),
        ("not a number", Case::new(b"Content-Length: x\r\n"), Unread),
        ("a value that may go on past the bytes given", Case::new(b"Content-Length: 12"), Unread),
        ("the name and nothing after it", Case::new(b"Content-Length:"), Unread),
        ("a name cut short", Case::new(b"Content-Lengt"), Other),
        ("another header", Case::new(b"Content-Type: text/plain\r\n"), Other),
        ("a longer name", Case::new(b"Content-Lengthy: 5\r\n"), Other),
        ("a name that ends in it", Case::new(b"X-Content-Length: 5\r\n"), Other),
        ("Transfer-Encoding: chunked", Case::new(b"Transfer-Encoding: chunked\r\n"), Chunked),
        ("in lower case, no space", Case::new(b"transfer-encoding:chunked\r\n"), Chunked),
        ("in capitals", Case::new(b"TRANSFER-ENCODING: CHUNKED\r\n"), Chunked),
        ("after another coding", Case::new(b"Transfer-Encoding: gzip, chunked\r\n"), Chunked),
        ("another coding alone", Case::new(b"Transfer-Encoding: gzip\r\n"), Other),
        ("a value longer than is looked at", Case::new(b"Transfer-Encoding: gzip, deflate, chunked\r\n"), Unread),
        ("a longer name, chunked", Case::new(b"Transfer-Encodings: chunked\r\n"), Other),
    ];
    for (what, c, want) in cases {
        assert_eq!(t.header_kind(*c), *want, "{what}");
    }
}
