// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf/lib/native.h on its own: the program finds the native bucket of a
 * latency the test hands over (tests/bpf_lib/native.rs), in the boundary
 * table the test wrote into the header's `native_bounds` map for the schema
 * it set in .rodata, through BPF_PROG_TEST_RUN. The test packet is a struct
 * native_case; a struct native_out written over its first bytes is the answer.
 */
#include "lib/native.h" /* and nothing else: the header must compile on its own */

/* A case the test could not hand over whole, or a table that could not be read. */
#define BAD_CASE -1000

struct native_case {
	__u64 latency_ns;
	__u64 pad[1]; /* a test packet is at least an Ethernet header */
};

struct native_out {
	__s32 index;
	__u32 zero;
};

_Static_assert(sizeof(struct native_case) == 16, "tests/bpf_lib/native.rs lays it out");

SEC("tc")
int native_bucket(struct __sk_buff *skb)
{
	struct native_case c = {};
	struct native_out out = {};

	if (bpf_skb_load_bytes(skb, 0, &c, sizeof(c)))
		return BAD_CASE;
	if (hg_native_bucket(c.latency_ns, &out.index, &out.zero))
		return BAD_CASE;
	if (bpf_skb_store_bytes(skb, 0, &out, sizeof(out), 0))
		return BAD_CASE;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
