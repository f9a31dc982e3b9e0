// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bpf/lib/routes.h on its own: the program matches a path the test lays out
 * (tests/bpf_lib/routes.rs) against the templates the test wrote into the
 * header's `routes` map, through BPF_PROG_TEST_RUN. The test packet is a
 * struct routes_case; the route is the return value, and a struct routes_out
 * written over the packet's first bytes says how the path was split.
 */
#include "lib/routes.h" /* and nothing else: the header must compile on its own */

/* A case the test could not hand over whole: no match returns it. */
#define BAD_CASE -1000

struct routes_case {
	__u32 target; /* whose templates */
	__u32 avail;  /* bytes of the path (and what follows it) there are */
	struct hg_window w;
};

struct routes_out {
	__s32 route;
	__u8 n;   /* segments split */
	__u8 cut; /* the path goes on past the bytes read */
	__u8 bad; /* no template can match it */
	__u8 pad;
};

_Static_assert(sizeof(struct routes_case) == 8 + HG_WINDOW + 8, "tests/bpf_lib/routes.rs lays it out");

/* The BPF stack is too small for a window and a split path. */
struct routes_scratch {
	struct routes_case c;
	struct hg_path p;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct routes_scratch);
} routes_scratch SEC(".maps");

SEC("tc")
int route_of(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct routes_scratch *s = bpf_map_lookup_elem(&routes_scratch, &zero);

	if (!s || bpf_skb_load_bytes(skb, 0, &s->c, sizeof(s->c)))
		return BAD_CASE;
	int route = hg_route_of(s->c.target, &s->c.w, 0, s->c.avail, &s->p);
	struct routes_out out = { .route = route, .n = s->p.n, .cut = s->p.cut, .bad = s->p.bad };

	bpf_skb_store_bytes(skb, 0, &out, sizeof(out), 0);
	return route;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
