// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf/lib/classify.h on its own: each program classifies the first bytes of
 * a message position the test lays out (tests/bpf_lib/classify.rs), through
 * BPF_PROG_TEST_RUN. The test packet is a struct classify_case; the result is
 * the return value.
 */
#include "lib/classify.h" /* and nothing else: the header must compile on its own */

/* A case the test could not hand over whole: no classifier returns it. */
#define BAD_CASE -1000

struct classify_case {
	__u32 n;   /* bytes of the message position there are */
	__u32 dir; /* HG_DIR_REQ or HG_DIR_RESP */
	struct hg_prefix p;
};

_Static_assert(sizeof(struct classify_case) == 8 + HG_PREFIX, "tests/bpf_lib/classify.rs lays it out");

SEC("tc")
int classify(struct __sk_buff *skb)
{
	struct classify_case c = {};

	if (bpf_skb_load_bytes(skb, 0, &c, sizeof(c)))
		return BAD_CASE;
	return hg_classify(&c.p, c.n, c.dir);
}

SEC("tc")
int tls_hello(struct __sk_buff *skb)
{
	struct classify_case c = {};

	if (bpf_skb_load_bytes(skb, 0, &c, sizeof(c)))
		return BAD_CASE;
	return hg_looks_like_tls_hello(c.p.b, c.n);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
