//! bpf/lib/flow.h: TCP sequence numbers compared across the wrap, and the
//! window a RST or FIN must fall in to end a flow (tests/bpf/flow_test.bpf.c).

use super::{run, storage};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/flow_test.skel.rs"));
}

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// How far past the last byte seen from its sender a RST or FIN may be (HG_SEQ_WINDOW).
const WINDOW: u32 = 1 << 16;

/// struct seq_case.
#[derive(Default, Clone, Copy)]
struct Case {
    a: u32,
    b: u32,
    seq: u32,
    len: u32,
    next_seq: u32,
    have_seq: bool,
    handshake_ack: u32,
    from_server: bool,
}

impl Case {
    fn bytes(&self) -> Vec<u8> {
        [
            self.a,
            self.b,
            self.seq,
            self.len,
            self.next_seq,
            u32::from(self.have_seq),
            self.handshake_ack,
            u32::from(self.from_server),
        ]
        .iter()
        .flat_map(|v| v.to_ne_bytes())
        .collect()
    }
}

struct Flow(skel::FlowTestSkel<'static>);

impl Flow {
    fn load() -> Option<Flow> {
        if !crate::common::privileged(&[]) {
            return None;
        }
        let mut open = skel::FlowTestSkelBuilder::default().open(storage()).expect("opening flow_test");
        // The header brings the parser's maps; these programs use none of them.
        open.maps.flows.set_max_entries(1024).unwrap();
        Some(Flow(open.load().expect("loading flow_test")))
    }

    fn seq_before(&self, a: u32, b: u32) -> bool {
        run(&self.0.progs.seq_before, &Case { a, b, ..Case::default() }.bytes()).0 != 0
    }

    fn in_window(&self, c: Case) -> bool {
        run(&self.0.progs.in_window, &c.bytes()).0 != 0
    }
}

#[test]
fn seq_before_compares_by_signed_distance_across_the_wrap() {
    let Some(t) = Flow::load() else { return };
    let cases: &[(u32, u32, bool)] = &[
        (1, 2, true),
        (2, 1, false),
        (5, 5, false),
        (0xffff_ffff, 0, true),
        (0, 0xffff_ffff, false),
        (0xffff_fff0, 0x10, true),
        (0x10, 0xffff_fff0, false),
        // Up to just under half the sequence space ahead is after; farther is behind.
        (0, 0x7fff_ffff, true),
        (0, 0x8000_0001, false),
    ];
    for (a, b, want) in cases {
        assert_eq!(t.seq_before(*a, *b), *want, "{a:#x} before {b:#x}");
    }
}

#[test]
fn a_rst_or_fin_ends_a_flow_only_where_its_senders_stream_is() {
    let Some(t) = Flow::load() else { return };
    let seen = |next_seq, from_server| Case { next_seq, have_seq: true, from_server, ..Case::default() };
    let at = |c: Case, seq, len| Case { seq, len, ..c };
    let server_isn_plus_1 = Case { handshake_ack: 1000, from_server: true, ..Case::default() };
    let wrapping = seen(0xffff_fff0, true);
    let cases: &[(&str, Case, bool)] = &[
        ("nothing seen from the client: taken", at(Case::default(), 12345, 0), true),
        ("nothing seen from the server: taken", at(Case { from_server: true, ..Case::default() }, 12345, 0), true),
        (
            "the server's SYN-ACK says nothing of the client's stream",
            at(Case { handshake_ack: 1000, ..Case::default() }, 12345, 0),
            true,
        ),
        ("at the server's ISN + 1", at(server_isn_plus_1, 1000, 0), true),
        ("before it", at(server_isn_plus_1, 999, 0), false),
        ("before it, with data up to it", at(server_isn_plus_1, 999, 1), true),
        ("at the window's last byte", at(server_isn_plus_1, 1000 + WINDOW - 1, 0), true),
        ("past the window", at(server_isn_plus_1, 1000 + WINDOW, 0), false),
        ("at the next byte expected", at(seen(5000, false), 5000, 0), true),
        ("on bytes seen already, with data up to the next", at(seen(5000, false), 4990, 10), true),
        ("on bytes seen already", at(seen(5000, false), 4000, 10), false),
        ("the stream's next byte, not the ISN", at(Case { handshake_ack: 1000, ..seen(5000, true) }, 1000, 0), false),
        ("across the wrap", at(wrapping, 0x10, 0), true),
        ("up to the wrap", at(wrapping, 0xffff_ffe0, 0x10), true),
        ("short of it, before the wrap", at(wrapping, 0xffff_ffe0, 0xf), false),
        ("the window's last byte, after the wrap", at(wrapping, 0xffef, 0), true),
        ("past the window, after the wrap", at(wrapping, 0xfff0, 0), false),
    ];
    for (what, c, want) in cases {
        assert_eq!(t.in_window(*c), *want, "{what}");
    }
}
