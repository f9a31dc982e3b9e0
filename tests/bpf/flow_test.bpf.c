// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf/lib/flow.h on its own: TCP sequence order (hg_seq_before, from
 * lib/scan.h) and the window a RST or FIN must fall in (hg_in_window), run on
 * numbers the test lays out (tests/bpf_lib/flow.rs) through
 * BPF_PROG_TEST_RUN. The test packet is a struct seq_case; the result is the
 * return value. The header brings every map of the parser along; the test
 * shrinks the flow table before load.
 */
#include "lib/flow.h" /* and nothing else: the header must compile on its own */

/* A case the test could not hand over whole: neither function returns it. */
#define BAD_CASE -1000

struct seq_case {
	__u32 a, b;          /* hg_seq_before(a, b) */
	__u32 seq, len;      /* hg_in_window: the segment carrying the RST or FIN */
	__u32 next_seq;      /* the next byte expected from its sender ... */
	__u32 have_seq;      /* ... if anything was seen from it (HG_SF_HAVE_SEQ) */
	__u32 handshake_ack; /* the server's ISN + 1, if its SYN-ACK was seen; else 0 */
	__u32 from_server;   /* the server sent it (else the client) */
};

_Static_assert(sizeof(struct seq_case) == 32, "tests/bpf_lib/flow.rs lays it out");

SEC("tc")
int seq_before(struct __sk_buff *skb)
{
	struct seq_case c = {};

	if (bpf_skb_load_bytes(skb, 0, &c, sizeof(c)))
		return BAD_CASE;
	return hg_seq_before(c.a, c.b);
}

SEC("tc")
int in_window(struct __sk_buff *skb)
{
	struct seq_case c = {};
	struct hg_flow f = {};
	struct hg_packet p = {};

	if (bpf_skb_load_bytes(skb, 0, &c, sizeof(c)))
		return BAD_CASE;
	struct hg_stream *s = c.from_server ? &f.resp : &f.req;

	if (c.have_seq) {
		s->flags = HG_SF_HAVE_SEQ;
		s->next_seq = c.next_seq;
	}
	f.handshake_ack = c.handshake_ack;
	p.seq = c.seq;
	p.payload_len = c.len;
	return hg_in_window(&f, &p, c.from_server);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
