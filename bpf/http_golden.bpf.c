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

/* Bytes of payload examined at once; a power of two (indexes are masked). */
#define WINDOW 64
/* Longest prefix needed to classify a message start: "HTTP/1.1 200 " is 13. */
#define PREFIX 16
/* Header name lookahead: "transfer-encoding:" is 18 bytes, plus a value. */
#define NAME_LOOKAHEAD 32
/* Work units per packet (window loads, header lines, bodies, chunks). */
#define MAX_STEPS 512
/* Ethernet + 802.1Q + IPv4 with options + TCP with options. */
#define MAX_HDR_LEN (ETH_HLEN + 4 + 60 + 60)

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

#define DIR_REQ 0
#define DIR_RESP 1

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

struct window {
	__u8 b[WINDOW];
};

struct scratch {
	struct window w;    /* the payload bytes being looked at */
	struct window line; /* a header line joined across two segments */
};

/* Per-CPU buffers: the BPF stack (512 bytes for all frames) is too small for them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch SEC(".maps");

struct packet {
	struct hg_flow_key req_key;  /* orientation if this payload is client -> server */
	struct hg_flow_key resp_key; /* orientation if this payload is server -> client */
	__u32 seq;
	__u32 payload_off;
	__u32 payload_len;
	__u8 tcp_flags; /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
};

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* State of one pass over one segment of one stream (bpf_loop's context). */
struct scan {
	struct __sk_buff *skb;
	struct hg_flow *f;
	struct hg_stream *s;
	struct window *w;
	struct window *line;
	const struct hg_flow_key *key;
	__u32 payload_off;
	__u32 seq; /* TCP sequence number of payload byte 0 */
	__u32 pos; /* offset in the payload */
	__u32 end; /* payload length */
	__u32 win_start;
	__u32 win_len;
	__u8 dir;
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
	__u8 family;

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
		__builtin_memcpy(p->req_key.client_addr, &ip->saddr, 4);
		__builtin_memcpy(p->req_key.server_addr, &ip->daddr, 4);
		family = 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > end)
			return false;
		/* Extension headers are rare for TCP and not followed. */
		if (ip6->nexthdr != IPPROTO_TCP)
			return false;
		l4 = l3 + sizeof(*ip6);
		ip_payload = bpf_ntohs(ip6->payload_len);
		__builtin_memcpy(p->req_key.client_addr, &ip6->saddr, 16);
		__builtin_memcpy(p->req_key.server_addr, &ip6->daddr, 16);
		family = 6;
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
	p->tcp_flags = (tcp->fin ? TCP_FIN : 0) | (tcp->syn ? TCP_SYN : 0) | (tcp->rst ? TCP_RST : 0) |
		       (tcp->ack ? TCP_ACK : 0);

	/* Requests go client -> server: as if this packet were one, and as if it were a response. */
	p->req_key.client_port = bpf_ntohs(tcp->source);
	p->req_key.server_port = bpf_ntohs(tcp->dest);
	p->req_key.ifindex = skb->ifindex;
	p->req_key.target_id = cfg_target_id;
	p->req_key.family = family;
	p->req_key.role = ingress ? HG_ROLE_SERVER : HG_ROLE_CLIENT;

	__builtin_memcpy(p->resp_key.client_addr, p->req_key.server_addr, 16);
	__builtin_memcpy(p->resp_key.server_addr, p->req_key.client_addr, 16);
	p->resp_key.client_port = p->req_key.server_port;
	p->resp_key.server_port = p->req_key.client_port;
	p->resp_key.ifindex = skb->ifindex;
	p->resp_key.target_id = cfg_target_id;
	p->resp_key.family = family;
	p->resp_key.role = ingress ? HG_ROLE_CLIENT : HG_ROLE_SERVER;
	return true;
}

/* ---- message starts ---------------------------------------------------- */

static const char method_names[9][8] = {
	"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH ",
};
static const __u8 method_lens[9] = { 4, 5, 5, 4, 7, 8, 8, 6, 6 };
static const __u8 method_ids[9] = {
	HG_METHOD_GET, HG_METHOD_HEAD, HG_METHOD_POST, HG_METHOD_PUT, HG_METHOD_DELETE,
	HG_METHOD_CONNECT, HG_METHOD_OPTIONS, HG_METHOD_TRACE, HG_METHOD_PATCH,
};

struct prefix {
	__u8 b[PREFIX];
};

static __always_inline int classify_request(const __u8 *b, __u32 n)
{
	int prefix = 0;

	for (int m = 0; m < 9; m++) {
		__u32 len = method_lens[m];
		bool match = true;

		for (int i = 0; i < 8; i++) {
			if (i >= len || i >= n)
				break;
			if (b[i] != (__u8)method_names[m][i]) {
				match = false;
				break;
			}
		}
		if (!match)
			continue;
		if (n >= len)
			return method_ids[m];
		prefix = -1;
	}
	return prefix;
}

static __always_inline bool is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int classify_response(const __u8 *b, __u32 n)
{
	static const char lit[9] = "HTTP/1.1 ";

	for (int i = 0; i < 12; i++) {
		if (i >= n)
			return -1;
		__u8 c = b[i];
		bool ok;

		if (i == 7)
			ok = c == '0' || c == '1';
		else if (i < 9)
			ok = c == (__u8)lit[i];
		else
			ok = is_digit(c);
		if (!ok)
			return 0;
	}
	if (n > 12 && b[12] != ' ' && b[12] != '\r' && b[12] != '\n')
		return 0;
	int code = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');

	return code >= 100 && code <= 599 ? code : 0;
}

/*
 * What the first n bytes of a message position hold. DIR_REQ: the method if
 * they start with "<METHOD> "; DIR_RESP: the code of "HTTP/1.x NNN". 0 if
 * they cannot start such a message, -1 if they are a proper prefix of one
 * (wait for the next segment). A global function: the verifier checks it once,
 * not once per path through the caller.
 */
__noinline int classify(const struct prefix *p, __u32 n, __u32 dir)
{
	if (!p || n > PREFIX)
		return 0;
	return dir == DIR_REQ ? classify_request(p->b, n) : classify_response(p->b, n);
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

/* ---- aggregation ------------------------------------------------------- */

/*
 * The series for this flow, method and status (0 for request counters),
 * created from `zero` if new. NULL when the map is full: counted as a drop,
 * and no existing series is ever evicted, so counters stay monotonic.
 */
static __always_inline void *series(void *map, const struct hg_flow_key *fk, __u8 method, __u16 status,
				    const void *zero)
{
	struct hg_series_key sk = {
		.ifindex = fk->ifindex,
		.target_id = fk->target_id,
		.port = fk->server_port,
		.role = fk->role,
		.method = method,
		.status = status,
	};
	void *v = bpf_map_lookup_elem(map, &sk);

	if (v)
		return v;
	long err = bpf_map_update_elem(map, &sk, zero, BPF_NOEXIST);

	if (err && err != -17 /* EEXIST: another CPU won the race */) {
		stat_inc(HG_STAT_SERIES_DROPPED);
		return NULL;
	}
	return bpf_map_lookup_elem(map, &sk);
}

static __always_inline void count_request(const struct hg_flow_key *fk, __u8 method)
{
	__u64 zero = 0;
	__u64 *v = series(&requests, fk, method, 0, &zero);

	if (v)
		*v += 1;
}

static __always_inline void observe(const struct hg_flow_key *fk, __u8 method, __u16 code,
				    __u64 latency_ns)
{
	__u32 zero_idx = 0;
	struct hg_hist *zero = bpf_map_lookup_elem(&hist_zero, &zero_idx);

	if (!zero)
		return;
	struct hg_hist *h = series(&latency, fk, method, cfg_status_code ? code : code / 100, zero);

	if (!h)
		return;

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

/* ---- request / response events ----------------------------------------- */

static __always_inline void on_request(struct scan *c, __u8 method)
{
	struct hg_flow *f = c->f;

	c->s->method = method;
	count_request(c->key, method);
	stat_inc(HG_STAT_REQUESTS_TRACKED);
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

static __always_inline void upgrade(struct hg_flow *f)
{
	f->flags |= HG_FLOW_UPGRADED;
	f->req.state = HG_ST_UNTIL_CLOSE;
	f->resp.state = HG_ST_UNTIL_CLOSE;
	stat_inc(HG_STAT_UPGRADED);
}

static __always_inline void on_response(struct scan *c, __u16 code)
{
	struct hg_flow *f = c->f;
	__u64 now = bpf_ktime_get_ns();

	/* 100 Continue, 102, 103 Early Hints: no body, and the final status is still to come. */
	if (code < 200 && code != 101) {
		c->s->flags |= HG_SF_NO_BODY;
		return;
	}
	if (f->pending == 0) {
		if (f->skipped) {
			f->skipped--;
			stat_inc(HG_STAT_REQUESTS_ANSWERED);
		} else {
			stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
		}
		return;
	}
	__u32 idx = f->head % HG_PIPELINE_DEPTH;
	__u64 start = f->req_ts[idx];
	__u8 method = f->req_method[idx];

	f->head = (f->head + 1) % HG_PIPELINE_DEPTH;
	f->pending--;
	stat_inc(HG_STAT_REQUESTS_ANSWERED);
	observe(c->key, method, code, now > start ? now - start : 0);

	if (method == HG_METHOD_HEAD || code == 204 || code == 304)
		c->s->flags |= HG_SF_NO_BODY;
	if (code == 101 || (method == HG_METHOD_CONNECT && code < 300))
		upgrade(f);
}

/* ---- the stream state machine ------------------------------------------ */

/*
 * Make the window cover payload[pos .. pos+need) as far as the payload goes.
 * Returns the number of bytes available from pos in the window.
 */
static __always_inline __u32 window_at(struct scan *c, __u32 need)
{
	__u32 win_end = c->win_start + c->win_len;

	/* Reuse the window if it covers what is asked, or everything up to the payload's end. */
	if (c->pos >= c->win_start && c->pos < win_end && (c->pos + need <= win_end || win_end >= c->end))
		return win_end - c->pos;
	if (c->pos >= c->end)
		return 0;
	/* 64-bit, so no zero-extension copy separates the checked register from the passed one. */
	__u64 len = c->end - c->pos;

	if (len > WINDOW)
		len = WINDOW;
	barrier_var(len);
	if (len < 1 || len > WINDOW)
		return 0;
	if (bpf_skb_load_bytes(c->skb, c->payload_off + c->pos, c->w->b, len)) {
		c->win_len = 0;
		return 0;
	}
	c->win_start = c->pos;
	c->win_len = len;
	return len;
}

static __always_inline __u8 byte_at(struct scan *c, __u32 pos)
{
	return c->w->b[(pos - c->win_start) & (WINDOW - 1)];
}

static __always_inline __u8 lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static __always_inline int hexval(__u8 ch)
{
	if (is_digit(ch))
		return ch - '0';
	ch = lower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Case-insensitive match of a lower-case literal at w[off..]. */
static __always_inline bool name_at(const struct window *w, __u32 off, const char *lit, __u32 len)
{
	for (__u32 i = 0; i < NAME_LOOKAHEAD; i++) {
		if (i >= len)
			return true;
		if (lower(w->b[(off + i) & (WINDOW - 1)]) != (__u8)lit[i])
			return false;
	}
	return true;
}

#define HDR_OTHER 0
#define HDR_LENGTH 1  /* Content-Length, value in *value */
#define HDR_CHUNKED 2 /* Transfer-Encoding naming chunked */
#define HDR_UNREAD 3  /* a framing header whose value we could not read */

struct header_value {
	__u64 v;
};

/*
 * Classify the header line starting at w[off], with avail bytes of it in the
 * window. Global, so the verifier checks its loops once.
 */
__noinline int header_kind(const struct window *w, __u32 off, __u32 avail, struct header_value *out)
{
	if (!w || !out || off >= WINDOW)
		return HDR_OTHER;
	if (avail >= 15 && name_at(w, off, "content-length:", 15)) {
		__u64 v = 0;
		__u32 i = 15;
		bool digits = false;

		for (; i < NAME_LOOKAHEAD; i++) {
			if (i >= avail)
				break;
			__u8 ch = w->b[(off + i) & (WINDOW - 1)];

			if ((ch == ' ' || ch == '\t') && !digits)
				continue;
			if (!is_digit(ch))
				break;
			v = v * 10 + (ch - '0');
			digits = true;
		}
		/* The value must end inside what we can see, or it may go on. */
		if (!digits || i >= avail)
			return HDR_UNREAD;
		out->v = v;
		return HDR_LENGTH;
	}
	if (avail >= 18 && name_at(w, off, "transfer-encoding:", 18)) {
		/* "chunked" is the final coding whenever it is present. */
		for (__u32 i = 18; i + 7 <= NAME_LOOKAHEAD; i++) {
			if (i + 7 > avail)
				break;
			if (name_at(w, off + i, "chunked", 7))
				return HDR_CHUNKED;
		}
		/* A value longer than we look at may still name chunked. */
		return avail > NAME_LOOKAHEAD ? HDR_UNREAD : HDR_OTHER;
	}
	return HDR_OTHER;
}

/* Where a message should begin: classify it, joining a start kept from the last segment. */
static __always_inline int step_idle(struct scan *c)
{
	struct hg_stream *s = c->s;
	struct prefix pre = {};
	__u32 avail = window_at(c, PREFIX);
	__u32 plen = s->partial_len;
	__u32 base = c->pos - c->win_start;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	/* Read both sources every time and pick: no per-byte paths for the verifier to walk. */
	for (__u32 k = 0; k < PREFIX; k++) {
		__u8 kept = s->partial[k & HG_PARTIAL_MAX];
		__u8 fresh = c->w->b[(base + k - plen) & (WINDOW - 1)];

		pre.b[k] = k < plen ? kept : fresh;
	}
	__u32 n = plen + avail;

	if (n > PREFIX)
		n = PREFIX;

	int r = classify(&pre, n, c->dir);

	if (r < 0 && c->pos + avail >= c->end && n < PREFIX) {
		/* A start line cut short by the segment's end: keep it for the next one. */
		for (__u32 k = 0; k < PREFIX; k++)
			s->partial[k] = pre.b[k];
		s->partial_len = n;
		c->pos = c->end;
		return 1;
	}
	s->partial_len = 0;
	if (r <= 0) {
		if (c->dir == DIR_REQ && c->pos == 0 && !c->f->pending && looks_like_tls_hello(pre.b, n))
			stat_inc(HG_STAT_TLS_SEEN);
		s->state = HG_ST_UNSYNCED;
		stat_inc(HG_STAT_LOST_NOT_A_MESSAGE);
		return 1;
	}
	s->state = HG_ST_HEADERS;
	s->flags &= HG_SF_HAVE_SEQ;
	s->left = 0;
	if (c->dir == DIR_REQ)
		on_request(c, r);
	else
		on_response(c, r);
	if (c->f->flags & HG_FLOW_UPGRADED)
		return 1;
	/* The start line itself is not a header line: the scan begins mid-line. */
	return 0;
}

/* The header block (or the trailers) is complete at c->pos. */
static __always_inline void headers_done(struct scan *c)
{
	struct hg_stream *s = c->s;
	__u8 fl = s->flags;

	s->flags &= HG_SF_HAVE_SEQ;
	if (s->state == HG_ST_TRAILERS || (fl & HG_SF_NO_BODY)) {
		s->state = HG_ST_IDLE;
	} else if (fl & HG_SF_CHUNKED) {
		s->state = HG_ST_CHUNK_SIZE;
		s->left = 0;
	} else if (fl & HG_SF_HAS_CL) {
		if (s->left == 0) {
			s->state = HG_ST_IDLE;
		} else if (s->left < 0x7fffffff) {
			/* An absolute end: reordered or racing segments inside the body cannot shift it. */
			s->end_seq = c->seq + c->pos + (__u32)s->left;
			s->state = HG_ST_BODY;
		} else {
			/* Beyond half the sequence space: not representable, so not followed. */
			s->state = HG_ST_UNSYNCED;
			stat_inc(HG_STAT_LOST_UNREADABLE);
			return;
		}
	} else if (c->dir == DIR_REQ) {
		/* No length, no body (RFC 9112 6.3) -- unless a header went unread. */
		bool bodyless = s->method == HG_METHOD_GET || s->method == HG_METHOD_HEAD;

		s->state = (fl & HG_SF_UNSURE) && !bodyless ? HG_ST_UNSYNCED : HG_ST_IDLE;
	} else {
		s->state = (fl & HG_SF_UNSURE) ? HG_ST_UNSYNCED : HG_ST_UNTIL_CLOSE;
	}
	if (s->state == HG_ST_UNSYNCED)
		stat_inc(HG_STAT_LOST_UNREADABLE);
}

/* Offset of the first '\n' in w[off .. off+avail), or -1. */
__noinline int find_newline(const struct window *w, __u32 off, __u32 avail)
{
	if (!w)
		return -1;
	for (__u32 i = 0; i < WINDOW; i++) {
		if (i >= avail)
			break;
		__u32 idx = (off + i) & (WINDOW - 1);

		barrier_var(idx); /* keep the mask: it is what bounds the index for the verifier */
		if (w->b[idx] == '\n')
			return i;
	}
	return -1;
}

struct chunk_line {
	__u64 size;
	__u32 ext; /* past the hex digits: skipping extensions up to the line's end */
};

#define CHUNK_LINE_BAD -2
#define CHUNK_LINE_MORE -1

/*
 * Feed w[off .. off+avail) to a chunk-size line in progress. Returns the
 * bytes up to and including its '\n', CHUNK_LINE_MORE when the line goes on,
 * CHUNK_LINE_BAD when it is not a chunk-size line.
 */
__noinline int chunk_size_line(const struct window *w, __u32 off, __u32 avail, struct chunk_line *st)
{
	if (!w || !st)
		return CHUNK_LINE_BAD;
	for (__u32 i = 0; i < WINDOW; i++) {
		if (i >= avail)
			break;
		__u32 idx = (off + i) & (WINDOW - 1);

		barrier_var(idx);
		__u8 ch = w->b[idx];

		if (ch == '\n')
			return i + 1;
		if (st->ext)
			continue;
		int v = hexval(ch);

		if (v >= 0) {
			if (st->size >> 48)
				return CHUNK_LINE_BAD;
			st->size = (st->size << 4) | v;
		} else if (ch == ';' || ch == ' ' || ch == '\t' || ch == '\r') {
			st->ext = 1;
		} else {
			return CHUNK_LINE_BAD;
		}
	}
	return CHUNK_LINE_MORE;
}

/*
 * dst = the kept start of a line (s->partial) followed by w[off..]: one
 * contiguous view of a line that straddled two segments.
 */
__noinline int join_line(struct window *dst, const struct hg_stream *s, const struct window *w, __u32 off)
{
	if (!dst || !s || !w)
		return 0;
	__u32 plen = s->partial_len;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	for (__u32 k = 0; k < WINDOW; k++) {
		__u8 kept = s->partial[k & HG_PARTIAL_MAX];
		__u8 fresh = w->b[(off + k - plen) & (WINDOW - 1)];

		dst->b[k] = k < plen ? kept : fresh;
	}
	return plen;
}

/* Keep the first n bytes of dst (a line cut by the segment's end) for the next segment. */
__noinline int keep_line(struct hg_stream *s, const struct window *src, __u32 n)
{
	if (!s || !src || n > HG_PARTIAL_MAX)
		return 0;
	for (__u32 k = 0; k < HG_PARTIAL_MAX; k++)
		s->partial[k] = src->b[k];
	s->partial_len = n;
	return n;
}

/*
 * A header line starts at c->pos (its first bytes may have been kept from the
 * last segment). Note Content-Length and Transfer-Encoding: chunked. Returns 1
 * when the line's start is cut by the segment's end and was kept instead.
 */
static __always_inline int header_line(struct scan *c, __u32 avail)
{
	struct hg_stream *s = c->s;
	struct header_value hv = {};

	/*
	 * Only "Content-Length" and "Transfer-Encoding" matter, and both start
	 * with "cont" or "tran": every other whole line is skipped for the price
	 * of four byte compares (most header lines are Host, Date, Accept, ...).
	 */
	if (!s->partial_len && avail >= 4) {
		__u8 a = lower(byte_at(c, c->pos)), b = lower(byte_at(c, c->pos + 1));
		__u8 d = lower(byte_at(c, c->pos + 2)), e = lower(byte_at(c, c->pos + 3));
		bool cont = a == 'c' && b == 'o' && d == 'n' && e == 't';
		bool tran = a == 't' && b == 'r' && d == 'a' && e == 'n';

		if (!cont && !tran)
			return 0;
	}
	struct window *line = c->line;
	__u32 plen = join_line(line, s, c->w, c->pos - c->win_start);
	__u32 total = plen + avail;

	if (total > WINDOW)
		total = WINDOW;
	int nl = find_newline(line, 0, total);

	if (nl < 0 && total < NAME_LOOKAHEAD && c->pos + avail >= c->end) {
		keep_line(s, line, total);
		c->pos = c->end;
		return 1;
	}
	s->partial_len = 0;
	switch (header_kind(line, 0, nl >= 0 ? nl + 1 : total, &hv)) {
	case HDR_LENGTH:
		s->left = hv.v;
		s->flags |= HG_SF_HAS_CL;
		break;
	case HDR_CHUNKED:
		s->flags |= HG_SF_CHUNKED;
		break;
	case HDR_UNREAD:
		s->flags |= HG_SF_UNSURE;
		break;
	}
	return 0;
}

/* Inside a start line, header block or trailers: one line (or one window of it) per step. */
static __always_inline int step_headers(struct scan *c)
{
	struct hg_stream *s = c->s;

	if (s->flags & HG_SF_LINE_START) {
		__u32 avail = window_at(c, NAME_LOOKAHEAD);

		if (!avail)
			return 1;
		__u8 b0 = byte_at(c, c->pos);

		if (s->partial_len) {
			/* The rest of a header line whose start was kept: not an empty line. */
		} else if (s->flags & HG_SF_LINE_START_CR) {
			/* The previous segment ended in "\r\n\r": this '\n' ends the block. */
			s->flags &= ~(HG_SF_LINE_START | HG_SF_LINE_START_CR);
			if (b0 == '\n') {
				c->pos += 1;
				headers_done(c);
				return 0;
			}
		} else if (b0 == '\r') {
			if (avail < 2) {
				s->flags |= HG_SF_LINE_START_CR;
				c->pos += 1;
				return 1;
			}
			if (byte_at(c, c->pos + 1) == '\n') {
				c->pos += 2;
				headers_done(c);
				return 0;
			}
		} else if (b0 == '\n') {
			c->pos += 1;
			headers_done(c);
			return 0;
		}
		if (s->state == HG_ST_HEADERS && header_line(c, avail))
			return 1;
		s->flags &= ~HG_SF_LINE_START;
	}

	__u32 avail = window_at(c, 1);

	if (!avail)
		return 1;
	int nl = find_newline(c->w, c->pos - c->win_start, avail);

	if (nl >= 0 && nl < WINDOW) {
		c->pos += nl + 1;
		s->flags |= HG_SF_LINE_START;
		return 0;
	}
	c->pos += avail;
	return c->pos >= c->end;
}

/* Skip body bytes up to the body's end. */
static __always_inline int step_body(struct scan *c)
{
	struct hg_stream *s = c->s;
	__s32 to_end = s->end_seq - (c->seq + c->pos);

	if (to_end <= 0 || (__u32)to_end <= c->end - c->pos) {
		if (to_end > 0)
			c->pos += to_end;
		s->state = s->state == HG_ST_CHUNK_DATA ? HG_ST_CHUNK_SIZE : HG_ST_IDLE;
		s->left = 0; /* the next chunk-size line accumulates from zero */
		return 0;
	}
	c->pos = c->end;
	return 1;
}

static __always_inline int lose_sync(struct scan *c)
{
	c->s->state = HG_ST_UNSYNCED;
	stat_inc(HG_STAT_LOST_BAD_CHUNK);
	c->pos = c->end;
	return 1;
}

/* A chunk-size line: hex digits, optional extensions, CRLF; it may straddle segments. */
static __always_inline int step_chunk_size(struct scan *c)
{
	struct hg_stream *s = c->s;
	struct chunk_line st = { .size = s->left, .ext = !!(s->flags & HG_SF_CHUNK_EXT) };
	__u32 avail = window_at(c, 1);

	if (!avail)
		return 1;
	int used = chunk_size_line(c->w, c->pos - c->win_start, avail, &st);

	if (used == CHUNK_LINE_BAD)
		return lose_sync(c);
	s->left = st.size;
	if (used == CHUNK_LINE_MORE) {
		if (st.ext)
			s->flags |= HG_SF_CHUNK_EXT;
		c->pos += avail;
		return c->pos >= c->end;
	}
	c->pos += used & (2 * WINDOW - 1);
	s->flags &= ~HG_SF_CHUNK_EXT;
	if (s->left == 0) {
		s->state = HG_ST_TRAILERS;
		s->flags |= HG_SF_LINE_START;
	} else if (s->left < 0x7fffffff) {
		s->state = HG_ST_CHUNK_DATA;
		s->end_seq = c->seq + c->pos + (__u32)s->left + 2; /* and the CRLF after the data */
	} else {
		return lose_sync(c);
	}
	return 0;
}

/*
 * Boundaries lost: a message may begin only at a segment start, and only
 * when the other direction says it is this one's turn.
 */
static __always_inline int step_unsynced(struct scan *c)
{
	struct hg_flow *f = c->f;
	struct prefix pre = {};

	if (c->pos != 0) {
		c->pos = c->end;
		return 1;
	}
	__u32 avail = window_at(c, PREFIX);

	for (__u32 k = 0; k < PREFIX; k++)
		pre.b[k] = c->w->b[k & (WINDOW - 1)];
	int r = classify(&pre, avail < PREFIX ? avail : PREFIX, c->dir);
	bool turn = c->dir == DIR_REQ ? !f->pending && !f->skipped : f->pending || f->skipped;

	if (r > 0 && turn) {
		c->s->state = HG_ST_IDLE;
		c->s->partial_len = 0;
		return 0;
	}
	c->pos = c->end;
	return 1;
}

static long step(__u32 i, void *ctx)
{
	struct scan *c = ctx;

	if (c->pos >= c->end)
		return 1;
	switch (c->s->state) {
	case HG_ST_IDLE:
		return step_idle(c);
	case HG_ST_HEADERS:
	case HG_ST_TRAILERS:
		return step_headers(c);
	case HG_ST_BODY:
	case HG_ST_CHUNK_DATA:
		return step_body(c);
	case HG_ST_CHUNK_SIZE:
		return step_chunk_size(c);
	case HG_ST_UNSYNCED:
		return step_unsynced(c);
	default: /* HG_ST_UNTIL_CLOSE */
		c->pos = c->end;
		return 1;
	}
}

/*
 * Advance one stream of a tracked flow over this segment's payload. Global:
 * the verifier walks the state machine once, not once per way of getting here.
 */
__noinline int process_segment(struct __sk_buff *skb, const struct packet *p, struct hg_flow *f, __u32 dir)
{
	if (!skb || !p || !f)
		return 0;
	struct hg_stream *s = dir == DIR_REQ ? &f->req : &f->resp;
	const struct hg_flow_key *key = dir == DIR_REQ ? &p->req_key : &p->resp_key;
	__u32 seq = p->seq, len = p->payload_len, start = 0;

	if (!(s->flags & HG_SF_HAVE_SEQ)) {
		s->next_seq = seq;
		s->flags |= HG_SF_HAVE_SEQ;
	} else if (!seq_before(s->next_seq, seq + len)) {
		/* Every byte was seen before: a retransmission, or the same packet again. */
		stat_inc(HG_STAT_RETRANSMIT_IGNORED);
		return 0;
	} else if (seq_before(seq, s->next_seq)) {
		start = s->next_seq - seq; /* partly new: resume where we stopped */
	} else if (seq != s->next_seq) {
		/*
		 * Bytes we have not seen (lost before this hook, or still on another
		 * CPU). Inside a body they were body; elsewhere the boundaries are
		 * lost until the turn-around says otherwise.
		 */
		bool in_body = (s->state == HG_ST_BODY || s->state == HG_ST_CHUNK_DATA) &&
			       !seq_before(s->end_seq, seq);

		if (!in_body && s->state != HG_ST_UNTIL_CLOSE && s->state != HG_ST_UNSYNCED) {
			s->state = HG_ST_UNSYNCED;
			stat_inc(HG_STAT_LOST_GAP);
		}
		if (!in_body)
			s->partial_len = 0;
	}
	s->next_seq = seq + len;
	if (f->flags & (HG_FLOW_UPGRADED | HG_FLOW_CLOSED))
		return 0;

	__u32 zero = 0;
	struct scratch *buf = bpf_map_lookup_elem(&scratch, &zero);

	if (!buf)
		return 0;
	struct scan c = {
		.skb = skb,
		.f = f,
		.s = s,
		.w = &buf->w,
		.line = &buf->line,
		.key = key,
		.payload_off = p->payload_off,
		.seq = seq,
		.pos = start,
		.end = len,
		.dir = dir,
	};

	long steps = bpf_loop(MAX_STEPS, step, &c, 0);

	/* Stopping early is normal (an upgrade, a kept partial line); running out of steps is not. */
	if (steps >= MAX_STEPS && c.pos < c.end && s->state != HG_ST_UNSYNCED) {
		/* Out of steps (a pathological header block): give up on this stream's boundaries. */
		s->state = HG_ST_UNSYNCED;
		stat_inc(HG_STAT_LOST_TOO_COMPLEX);
	}
	return 0;
}

/* All zero; kept in .rodata because a struct hg_flow is too big for the stack budget. */
const struct hg_flow new_flow_template = {};

/*
 * A segment on a connection we do not track yet. A request (or the first
 * bytes of one) starts tracking; anything else is only counted.
 */
static __always_inline struct hg_flow *new_flow(struct __sk_buff *skb, const struct packet *p,
						bool req_watched, bool resp_watched)
{
	struct prefix pre = {};
	__u64 n = p->payload_len < PREFIX ? p->payload_len : PREFIX;

	barrier_var(n);
	if (n < 1 || n > PREFIX || bpf_skb_load_bytes(skb, p->payload_off, pre.b, n))
		return NULL;
	if (req_watched) {
		int r = classify(&pre, n, DIR_REQ);

		if (r != 0) {
			if (bpf_map_update_elem(&flows, &p->req_key, &new_flow_template, BPF_NOEXIST)) {
				stat_inc(HG_STAT_FLOW_INSERT_FAILED);
				if (r > 0)
					count_request(&p->req_key, r);
				return NULL;
			}
			stat_inc(HG_STAT_FLOWS_CREATED);
			return bpf_map_lookup_elem(&flows, &p->req_key);
		}
		if (looks_like_tls_hello(pre.b, n)) {
			stat_inc(HG_STAT_TLS_SEEN);
			return NULL;
		}
	}
	if (resp_watched && classify(&pre, n, DIR_RESP) >= 200)
		stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
	return NULL;
}

/* The connection is over: pending requests will never be answered. */
static __always_inline void close_flow(const struct hg_flow_key *key, __u32 reason)
{
	struct hg_flow *f = bpf_map_lookup_elem(&flows, key);

	if (!f || (f->flags & HG_FLOW_CLOSED))
		return;
	__u32 n = f->pending + f->skipped;

	f->pending = 0;
	f->skipped = 0;
	f->flags |= HG_FLOW_CLOSED;
	stat_inc(HG_STAT_FLOWS_ENDED);
	for (__u32 i = 0; i < HG_PIPELINE_DEPTH + 255 && i < n; i++)
		stat_inc(reason);
}

/*
 * FIN from the server side ends the flow: anything still pending will never be
 * answered. A client FIN is a half-close; the server may still answer.
 * The key whose server is this packet's sender is resp_key. A SYN starts a
 * new connection on a 4-tuple we may still remember.
 */
static __always_inline void on_flags(const struct packet *p)
{
	if (p->tcp_flags & TCP_RST) {
		close_flow(&p->resp_key, HG_STAT_UNANSWERED_RESET);
		close_flow(&p->req_key, HG_STAT_UNANSWERED_RESET);
	} else if (p->tcp_flags & TCP_FIN) {
		close_flow(&p->resp_key, HG_STAT_UNANSWERED_CLOSED);
	} else if ((p->tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		close_flow(&p->req_key, HG_STAT_UNANSWERED_CLOSED);
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
		bool req_watched = port_watched(p.req_key.server_port);
		bool resp_watched = port_watched(p.resp_key.server_port);
		struct hg_flow *f = NULL;
		__u8 dir = DIR_REQ;

		if (req_watched)
			f = bpf_map_lookup_elem(&flows, &p.req_key);
		if (!f && resp_watched) {
			f = bpf_map_lookup_elem(&flows, &p.resp_key);
			dir = DIR_RESP;
		}
		if (!f && (req_watched || resp_watched)) {
			f = new_flow(skb, &p, req_watched, resp_watched);
			dir = DIR_REQ;
		}
		if (f)
			process_segment(skb, &p, f, dir);
	}

	if (p.tcp_flags & (TCP_FIN | TCP_SYN | TCP_RST))
		on_flags(&p);
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
