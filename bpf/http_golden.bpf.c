// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/1 golden metrics at tc.
 *
 * Each direction of a tracked connection is followed as a byte stream by TCP
 * sequence number: a message may only begin where the previous one ended
 * (start line + headers + Content-Length or chunked body). That is what keeps
 * bodies that contain "GET / HTTP/1.1" from being counted, finds pipelined
 * requests inside one segment, skips retransmitted bytes, and joins a start
 * line split across segments. When the boundaries are lost (a gap in the
 * sequence, a header we could not read), a stream falls back to the
 * turn-around rule: a request may begin only when nothing is pending, a
 * response only when something is.
 *
 * Counts and latency histograms are aggregated in per-CPU maps that userspace
 * turns into Prometheus series. Only uapi headers: no CO-RE, no vmlinux.h.
 *
 * This file holds only the two program entry points. bpf/http_golden.h is
 * what userspace reads; bpf/lib/ the rest, one concern per header: each
 * declares the maps it uses and includes the headers it needs, and compiles
 * on its own (build.rs checks). They define functions, maps and variables:
 * an object is one translation unit that includes them, this one or a test
 * program under tests/bpf/.
 */
#include "lib/config.h"
#include "lib/flow.h" /* the flow table, and under it everything a packet goes through */

/*
 * Reached only by tail call from an interface's own program (bpf/link.bpf.c).
 * TC_ACT_UNSPEC: we only observe, so the next program in the chain (or the
 * default action) decides the packet's fate.
 */
SEC("tc")
int hg_parse_ingress(struct __sk_buff *skb)
{
	return hg_handle(skb, true);
}

SEC("tc")
int hg_parse_egress(struct __sk_buff *skb)
{
	return hg_handle(skb, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
