// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * HTTP/1 golden metrics at tc: find request and status lines at the start of
 * TCP payloads, pair them per connection, and aggregate counts and latency
 * histograms in per-CPU maps that userspace turns into Prometheus series.
 *
 * Only uapi headers: no CO-RE, no vmlinux.h.
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

/* Longest prefix we read: "OPTIONS " is 8 bytes, "HTTP/1.1 200 " is 13. */
#define PREFIX_LEN 16
/* Ethernet + 802.1Q + IPv4 with options + TCP with options. */
#define MAX_HDR_LEN (ETH_HLEN + 4 + 60 + 60)

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* Written by userspace before load (see src/bpf.rs). */
const volatile __u16 cfg_target_id = 0;
const volatile __u8 cfg_status_code = 0; /* 0: key by class (2 for 2xx), 1: by code */
const volatile __u32 cfg_nbuckets = 0;
const volatile __u64 cfg_bounds_ns[HG_MAX_BUCKETS] = {};
const volatile __u32 cfg_nports = 0; /* 0: every port */
const volatile __u16 cfg_ports[HG_MAX_PORTS] = {};

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

struct packet {
	struct hg_flow_key req_key;  /* orientation if this payload is a request */
	struct hg_flow_key resp_key; /* orientation if this payload is a response */
	__u32 seq;
	__u32 payload_off;
	__u32 payload_len;
	__u8 tcp_flags; /* FIN 0x01, RST 0x04 */
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline bool port_watched(__u16 port)
{
	if (cfg_nports == 0)
		return true;
	for (int i = 0; i < HG_MAX_PORTS; i++) {
		if (i >= cfg_nports)
			break;
		if (cfg_ports[i] == port)
			return true;
	}
	return false;
}

static __always_inline void set_addrs(struct packet *p, bool ingress, const void *src,
				      const void *dst, __u32 len)
{
	/* Requests go client -> server; on ingress the sender is the remote client. */
	__builtin_memcpy(p->req_key.client_addr, src, 16);
	__builtin_memcpy(p->req_key.server_addr, dst, 16);
	__builtin_memcpy(p->resp_key.client_addr, dst, 16);
	__builtin_memcpy(p->resp_key.server_addr, src, 16);
	if (len == 4) {
		/* Only the first 4 bytes are meaningful for IPv4: clear what the copy dragged in. */
		__builtin_memset(p->req_key.client_addr + 4, 0, 12);
		__builtin_memset(p->req_key.server_addr + 4, 0, 12);
		__builtin_memset(p->resp_key.client_addr + 4, 0, 12);
		__builtin_memset(p->resp_key.server_addr + 4, 0, 12);
	}
}

/*
 * Parse Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (any IHL, first fragment
 * only) or IPv6 (fixed header), and TCP. Returns false for anything else.
 */
static __always_inline bool parse(struct __sk_buff *skb, bool ingress, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 l3 = ETH_HLEN;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return false;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		__be16 *inner = data + ETH_HLEN + 2;

		if ((void *)(inner + 1) > end)
			return false;
		proto = *inner;
		l3 += 4;
	}

	__u32 l4, ip_payload;
	__u8 src[16], dst[16];

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > end)
			return false;
		if (ip->protocol != IPPROTO_TCP)
			return false;
		/* A non-first fragment has no TCP header. */
		if (ip->frag_off & bpf_htons(0x1fff))
			return false;
		__u32 ihl = ip->ihl * 4;
		__u32 tot = bpf_ntohs(ip->tot_len);

		if (ihl < 20 || tot < ihl)
			return false;
		l4 = l3 + ihl;
		ip_payload = tot - ihl;
		__builtin_memset(src, 0, sizeof(src));
		__builtin_memset(dst, 0, sizeof(dst));
		__builtin_memcpy(src, &ip->saddr, 4);
		__builtin_memcpy(dst, &ip->daddr, 4);
		p->req_key.family = 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > end)
			return false;
		/* Extension headers are rare for TCP and not followed. */
		if (ip6->nexthdr != IPPROTO_TCP)
			return false;
		l4 = l3 + sizeof(*ip6);
		ip_payload = bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(src, &ip6->saddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
		p->req_key.family = 6;
	} else {
		return false;
	}

	if (l4 > ETH_HLEN + 4 + 60)
		return false;
	struct tcphdr *tcp = data + l4;

	if ((void *)(tcp + 1) > end)
		return false;
	__u32 doff = tcp->doff * 4;

	if (doff < 20 || doff > ip_payload)
		return false;

	p->payload_off = l4 + doff;
	p->payload_len = ip_payload - doff;
	p->seq = bpf_ntohl(tcp->seq);
	p->tcp_flags = (tcp->fin ? 0x01 : 0) | (tcp->rst ? 0x04 : 0);

	__u16 sport = bpf_ntohs(tcp->source), dport = bpf_ntohs(tcp->dest);

	set_addrs(p, ingress, src, dst, p->req_key.family == 4 ? 4 : 16);
	p->req_key.client_port = sport;
	p->req_key.server_port = dport;
	p->req_key.ifindex = skb->ifindex;
	p->req_key.target_id = cfg_target_id;
	p->req_key.role = ingress ? HG_ROLE_SERVER : HG_ROLE_CLIENT;

	p->resp_key.client_port = dport;
	p->resp_key.server_port = sport;
	p->resp_key.ifindex = skb->ifindex;
	p->resp_key.target_id = cfg_target_id;
	p->resp_key.family = p->req_key.family;
	p->resp_key.role = ingress ? HG_ROLE_CLIENT : HG_ROLE_SERVER;
	return true;
}

static __always_inline bool eq4(const __u8 *b, char c0, char c1, char c2, char c3)
{
	return b[0] == c0 && b[1] == c1 && b[2] == c2 && b[3] == c3;
}

/* Returns the method, or 0 when the payload does not start with "<METHOD> ". */
static __always_inline __u8 parse_method(const __u8 *b, __u32 n)
{
	if (n < 4)
		return 0;
	if (eq4(b, 'G', 'E', 'T', ' '))
		return HG_METHOD_GET;
	if (eq4(b, 'P', 'U', 'T', ' '))
		return HG_METHOD_PUT;
	if (n < 5)
		return 0;
	if (eq4(b, 'P', 'O', 'S', 'T') && b[4] == ' ')
		return HG_METHOD_POST;
	if (eq4(b, 'H', 'E', 'A', 'D') && b[4] == ' ')
		return HG_METHOD_HEAD;
	if (n < 6)
		return 0;
	if (eq4(b, 'P', 'A', 'T', 'C') && b[4] == 'H' && b[5] == ' ')
		return HG_METHOD_PATCH;
	if (eq4(b, 'T', 'R', 'A', 'C') && b[4] == 'E' && b[5] == ' ')
		return HG_METHOD_TRACE;
	if (n < 7)
		return 0;
	if (eq4(b, 'D', 'E', 'L', 'E') && b[4] == 'T' && b[5] == 'E' && b[6] == ' ')
		return HG_METHOD_DELETE;
	if (n < 8)
		return 0;
	if (eq4(b, 'O', 'P', 'T', 'I') && eq4(b + 4, 'O', 'N', 'S', ' '))
		return HG_METHOD_OPTIONS;
	if (eq4(b, 'C', 'O', 'N', 'N') && eq4(b + 4, 'E', 'C', 'T', ' '))
		return HG_METHOD_CONNECT;
	return 0;
}

static __always_inline bool is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

/* Returns the status code of "HTTP/1.0 NNN" or "HTTP/1.1 NNN", else 0. */
static __always_inline __u16 parse_status(const __u8 *b, __u32 n)
{
	if (n < 12)
		return 0;
	if (!eq4(b, 'H', 'T', 'T', 'P') || !eq4(b + 4, '/', '1', '.', b[7]) || b[8] != ' ')
		return 0;
	if (b[7] != '0' && b[7] != '1')
		return 0;
	if (!is_digit(b[9]) || !is_digit(b[10]) || !is_digit(b[11]))
		return 0;
	if (n > 12 && b[12] != ' ' && b[12] != '\r')
		return 0;
	__u16 code = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');

	return code >= 100 && code <= 599 ? code : 0;
}

static __always_inline bool looks_like_tls_hello(const __u8 *b, __u32 n)
{
	/* Handshake record, TLS 1.x legacy version, ClientHello message. */
	return n >= 6 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b[5] == 0x01;
}

/* Sequence numbers wrap: compare by signed distance. */
static __always_inline bool seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

static __always_inline void count_request(const struct hg_flow_key *fk, __u8 method)
{
	struct hg_series_key sk = {
		.ifindex = fk->ifindex,
		.target_id = fk->target_id,
		.port = fk->server_port,
		.role = fk->role,
		.method = method,
		.status = 0,
	};
	__u64 *v = bpf_map_lookup_elem(&requests, &sk);

	if (!v) {
		__u64 zero = 0;
		long err = bpf_map_update_elem(&requests, &sk, &zero, BPF_NOEXIST);

		if (err && err != -17 /* EEXIST: another CPU won the race */) {
			stat_inc(HG_STAT_SERIES_DROPPED);
			return;
		}
		v = bpf_map_lookup_elem(&requests, &sk);
		if (!v)
			return;
	}
	*v += 1;
}

static __always_inline void observe(const struct hg_flow_key *fk, __u8 method, __u16 code,
				    __u64 latency_ns)
{
	struct hg_series_key sk = {
		.ifindex = fk->ifindex,
		.target_id = fk->target_id,
		.port = fk->server_port,
		.role = fk->role,
		.method = method,
		.status = cfg_status_code ? code : code / 100,
	};
	struct hg_hist *h = bpf_map_lookup_elem(&latency, &sk);

	if (!h) {
		__u32 zero_idx = 0;
		struct hg_hist *zero = bpf_map_lookup_elem(&hist_zero, &zero_idx);

		if (!zero)
			return;
		long err = bpf_map_update_elem(&latency, &sk, zero, BPF_NOEXIST);

		if (err && err != -17) {
			stat_inc(HG_STAT_SERIES_DROPPED);
			return;
		}
		h = bpf_map_lookup_elem(&latency, &sk);
		if (!h)
			return;
	}

	__u32 slot = 0;

	for (; slot < HG_MAX_BUCKETS; slot++) {
		if (slot >= cfg_nbuckets || latency_ns <= cfg_bounds_ns[slot])
			break;
	}
	if (slot < HG_HIST_SLOTS)
		h->slots[slot] += 1;
	h->sum_ns += latency_ns;
	h->count += 1;
}

static __always_inline void on_request(const struct packet *p, __u8 method)
{
	struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->req_key);

	if (!f) {
		struct hg_flow fresh = {};

		if (bpf_map_update_elem(&flows, &p->req_key, &fresh, BPF_ANY)) {
			stat_inc(HG_STAT_FLOW_INSERT_FAILED);
			count_request(&p->req_key, method);
			return;
		}
		f = bpf_map_lookup_elem(&flows, &p->req_key);
		if (!f)
			return;
	} else {
		if (f->flags & HG_FLOW_UPGRADED)
			return;
		if ((f->flags & HG_FLOW_HAVE_REQ_SEQ) && seq_before(p->seq, f->req_seq_end)) {
			stat_inc(HG_STAT_RETRANSMIT_IGNORED);
			return;
		}
	}
	f->req_seq_end = p->seq + p->payload_len;
	f->flags |= HG_FLOW_HAVE_REQ_SEQ;
	count_request(&p->req_key, method);

	/*
	 * Once a request could not be queued, later ones must not be either, or
	 * the FIFO would pair a response with the wrong request.
	 */
	if (f->pending >= HG_PIPELINE_DEPTH || f->skipped) {
		if (f->skipped < 255)
			f->skipped++;
		stat_inc(HG_STAT_PIPELINE_OVERFLOW);
		return;
	}
	__u32 idx = (f->head + f->pending) % HG_PIPELINE_DEPTH;

	f->req_ts[idx] = bpf_ktime_get_ns();
	f->req_method[idx] = method;
	f->pending++;
}

static __always_inline void on_response(const struct packet *p, __u16 code)
{
	__u64 now = bpf_ktime_get_ns();
	struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->resp_key);

	if (!f) {
		stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
		return;
	}
	if (f->flags & HG_FLOW_UPGRADED)
		return;
	if ((f->flags & HG_FLOW_HAVE_RESP_SEQ) && seq_before(p->seq, f->resp_seq_end)) {
		stat_inc(HG_STAT_RETRANSMIT_IGNORED);
		return;
	}
	f->resp_seq_end = p->seq + p->payload_len;
	f->flags |= HG_FLOW_HAVE_RESP_SEQ;

	/* 100 Continue, 102, 103 Early Hints: the final status is still to come. */
	if (code < 200 && code != 101)
		return;

	if (f->pending == 0) {
		if (f->skipped)
			f->skipped--;
		else
			stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
		return;
	}
	__u32 idx = f->head % HG_PIPELINE_DEPTH;
	__u64 start = f->req_ts[idx];
	__u8 method = f->req_method[idx];

	f->head = (f->head + 1) % HG_PIPELINE_DEPTH;
	f->pending--;
	observe(&p->resp_key, method, code, now > start ? now - start : 0);

	if (code == 101) {
		f->flags |= HG_FLOW_UPGRADED;
		stat_inc(HG_STAT_UPGRADED);
	}
}

/*
 * FIN from the server side ends the flow: anything still pending will never be
 * answered. A client FIN is a half-close; the server may still answer.
 * The key whose server is this packet's sender is resp_key.
 */
static __always_inline void on_close(const struct packet *p)
{
	struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->resp_key);
	bool reset = p->tcp_flags & 0x04;

	if (f) {
		__u32 n = f->pending + f->skipped;

		for (__u32 i = 0; i < HG_PIPELINE_DEPTH * 2 && i < n; i++)
			stat_inc(reset ? HG_STAT_UNANSWERED_RESET : HG_STAT_UNANSWERED_CLOSED);
		bpf_map_delete_elem(&flows, &p->resp_key);
	}
	if (!reset)
		return;
	f = bpf_map_lookup_elem(&flows, &p->req_key);
	if (f) {
		__u32 n = f->pending + f->skipped;

		for (__u32 i = 0; i < HG_PIPELINE_DEPTH * 2 && i < n; i++)
			stat_inc(HG_STAT_UNANSWERED_RESET);
		bpf_map_delete_elem(&flows, &p->req_key);
	}
}

static __always_inline int handle(struct __sk_buff *skb, bool ingress)
{
	struct packet p = {};

	if (!parse(skb, ingress, &p)) {
		/* Headers beyond the linear area (rare): pull them in once and retry. */
		if (skb->len <= skb->data_end - skb->data)
			return TC_ACT_UNSPEC;
		if (bpf_skb_pull_data(skb, skb->len < MAX_HDR_LEN ? skb->len : MAX_HDR_LEN))
			return TC_ACT_UNSPEC;
		if (!parse(skb, ingress, &p))
			return TC_ACT_UNSPEC;
	}

	if (p.payload_len > 0) {
		__u8 buf[PREFIX_LEN] = {};
		__u32 n = p.payload_len < PREFIX_LEN ? p.payload_len : PREFIX_LEN;

		/* The payload may sit in paged fragments (GRO/GSO): copy, don't point. */
		if (n >= 1 && n <= PREFIX_LEN && bpf_skb_load_bytes(skb, p.payload_off, buf, n) == 0) {
			__u8 method = parse_method(buf, n);

			if (method) {
				if (port_watched(p.req_key.server_port))
					on_request(&p, method);
			} else {
				__u16 code = parse_status(buf, n);

				if (code) {
					if (port_watched(p.resp_key.server_port))
						on_response(&p, code);
				} else if (looks_like_tls_hello(buf, n) &&
					   port_watched(p.req_key.server_port)) {
					stat_inc(HG_STAT_TLS_SEEN);
				}
			}
		}
	}

	if (p.tcp_flags)
		on_close(&p);
	return TC_ACT_UNSPEC;
}

/*
 * TC_ACT_UNSPEC: we only observe, so the next program in the chain (or the
 * default action) decides the packet's fate.
 */
SEC("tcx/ingress")
int http_ingress(struct __sk_buff *skb)
{
	return handle(skb, true);
}

SEC("tcx/egress")
int http_egress(struct __sk_buff *skb)
{
	return handle(skb, false);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
