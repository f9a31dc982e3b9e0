// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf/lib/lines.h on its own: each program runs one of its line readers on a
 * window of bytes the test lays out (tests/bpf_lib/lines.rs), through
 * BPF_PROG_TEST_RUN. The test packet is a struct lines_case; the reader's
 * result is the return value, and a struct lines_out written over the
 * packet's first bytes carries it with what the reader hands back besides.
 */
#include "lib/lines.h" /* and nothing else: the header must compile on its own */

/* A case the test could not hand over whole: no reader returns it. */
#define BAD_CASE -1000

struct lines_case {
	__u32 off;   /* where in the window the reader starts */
	__u32 avail; /* how many bytes from there it may read */
	__u64 size;  /* hg_chunk_size_line: the size read so far */
	__u32 ext;   /* ... and whether the line is past its digits */
	__u32 pad;
	struct hg_window w;
};

struct lines_out {
	__s64 ret;
	__u64 value; /* the chunk size, or the Content-Length */
	__u32 ext;
	__u32 pad;
};

_Static_assert(sizeof(struct lines_case) == 24 + HG_WINDOW + 8, "tests/bpf_lib/lines.rs lays it out");

static __always_inline int load_case(struct __sk_buff *skb, struct lines_case *c)
{
	return bpf_skb_load_bytes(skb, 0, c, sizeof(*c));
}

static __always_inline int report(struct __sk_buff *skb, int ret, __u64 value, __u32 ext)
{
	struct lines_out out = { .ret = ret, .value = value, .ext = ext };

	bpf_skb_store_bytes(skb, 0, &out, sizeof(out), 0);
	return ret;
}

SEC("tc")
int find_newline(struct __sk_buff *skb)
{
	struct lines_case c = {};

	if (load_case(skb, &c))
		return BAD_CASE;
	return report(skb, hg_find_newline(&c.w, c.off, c.avail), 0, 0);
}

SEC("tc")
int next_line(struct __sk_buff *skb)
{
	struct lines_case c = {};

	if (load_case(skb, &c))
		return BAD_CASE;
	return report(skb, hg_next_line(&c.w, c.off, c.avail), 0, 0);
}

SEC("tc")
int chunk_size_line(struct __sk_buff *skb)
{
	struct lines_case c = {};

	if (load_case(skb, &c))
		return BAD_CASE;
	struct hg_chunk_line st = { .size = c.size, .ext = c.ext };
	int ret = hg_chunk_size_line(&c.w, c.off, c.avail, &st);

	return report(skb, ret, st.size, st.ext);
}

SEC("tc")
int header_kind(struct __sk_buff *skb)
{
	struct lines_case c = {};

	if (load_case(skb, &c))
		return BAD_CASE;
	struct hg_header_value v = {};
	int kind = hg_header_kind(&c.w, c.off, c.avail, &v);

	return report(skb, kind, v.v, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
