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
 * This file holds the read-only config, the maps and the two program entry
 * points. bpf/http_golden.h is what userspace reads; bpf/lib/ the rest, one
 * concern per header, each saying what it needs from its includer. The lib/
 * headers define functions and are for this one translation unit.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "http_golden.h"

/*
 * Written by userspace before load (see src/bpf/loader.rs): what every target
 * shares. Which target a packet belongs to comes from the `links` map, so one
 * verified program serves every interface.
 */
const volatile __u8 cfg_status_code = 0; /* 0: key by class (2 for 2xx), 1: by code */
const volatile __u32 cfg_nbuckets = 0;
const volatile __u64 cfg_bounds_ns[HG_MAX_BUCKETS] = {};
const volatile __u32 cfg_series_budget = 0; /* series per aggregate map for each target; 0: no budget */

/*
 * Never read. Makes the boundary enums part of the object's BTF, so the
 * generated Rust skeleton carries them (src/bpf/abi.rs asserts on them).
 */
const volatile struct hg_abi hg_abi = {};

/* After the config, so that .rodata stays ahead of the string literals' section. */
#include "lib/classify.h"
#include "lib/lines.h"

/*
 * Series each target holds in each aggregate map (key: target_id * 2, +1 for
 * latency), so that no target fills the maps for the others. Userspace
 * resets a removed target's counts when it deletes its series.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HG_MAX_TARGETS * 2);
	__type(key, __u32);
	__type(value, __u64);
} series_count SEC(".maps");

/* The interfaces we are on, by slot (bpf/link.bpf.c); userspace fills a slot before it attaches. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HG_MAX_LINKS);
	__type(key, __u32);
	__type(value, struct hg_link);
} links SEC(".maps");

/* Sizes are overridden from the config before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct hg_flow_key);
	__type(value, struct hg_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct hg_series_key);
	__type(value, __u64);
} requests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct hg_series_key);
	__type(value, struct hg_hist);
} latency SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HG_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

/* Zero template for new histogram entries: too large for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hg_hist);
} hist_zero SEC(".maps");

/* After the maps and the config they use. */
#include "lib/packet.h"
#include "lib/aggregate.h"
#include "lib/scan.h"
#include "lib/events.h"
#include "lib/stream.h"
#include "lib/flow.h"

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
