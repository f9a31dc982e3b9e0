// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The program put on each interface: it tells the parser which interface the
 * packet is on (the `links` slot userspace gave it), then tail-calls it.
 *
 * The parser (http_golden.bpf.c) is large and verified once; this is verified
 * once per interface, and costs the verifier next to nothing. So attaching to
 * a new interface, in any network namespace, takes milliseconds, and the
 * parser needs no way of its own to tell namespaces apart (ifindexes repeat
 * across them, and tc programs cannot read a device's namespace without BTF).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"

/* Written by userspace before load: this interface's slot in `links`. */
const volatile __u32 cfg_link = 0;

/* The parser's two programs (enum hg_parser); userspace fills it, every interface's copy shares it. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, HG_PARSERS);
	__type(key, __u32);
	__type(value, __u32);
} hg_parsers SEC(".maps");

/*
 * skb->cb is the tc layer's scratch space for BPF programs; the parser reads
 * the slot from cb[0] and clears it. If the tail call fails (no parser in the
 * array), the packet simply passes: TC_ACT_UNSPEC, as the parser returns.
 */
static __always_inline int hg_hand_over(struct __sk_buff *skb, __u32 parser)
{
	skb->cb[0] = cfg_link;
	bpf_tail_call(skb, &hg_parsers, parser);
	skb->cb[0] = 0;
	return TC_ACT_UNSPEC;
}

SEC("tc")
int http_ingress(struct __sk_buff *skb)
{
	return hg_hand_over(skb, HG_PARSE_INGRESS);
}

SEC("tc")
int http_egress(struct __sk_buff *skb)
{
	return hg_hand_over(skb, HG_PARSE_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
