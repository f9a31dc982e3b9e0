/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The flow table and a packet's way through it: find the flow a packet belongs
 * to (on a watched server port), start tracking one at a request, feed the
 * segment to its stream, and close the flow on FIN, RST or a new SYN.
 */
#ifndef HG_LIB_FLOW_H
#define HG_LIB_FLOW_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "http_golden.h"
#include "lib/aggregate.h"
#include "lib/classify.h"
#include "lib/packet.h"
#include "lib/scan.h"
#include "lib/stream.h"

/* The interfaces we are on, by slot (bpf/link.bpf.c); userspace fills a slot before it attaches. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HG_MAX_LINKS);
	__type(key, __u32);
	__type(value, struct hg_link);
} links SEC(".maps");

/* The size is overridden from the config before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct hg_flow_key);
	__type(value, struct hg_flow);
} flows SEC(".maps");

/*
 * Whether the target watches server port `a` (bit 0) and `b` (bit 1) on this
 * interface. Global, so that its loop is verified once, not once per path
 * through each caller; hg_ports_watched skips it for the common "every port".
 */
__noinline int hg_ports_in_list(const struct hg_link *l, __u16 a, __u16 b)
{
	int found = 0;

	if (!l)
		return 0;
	for (int i = 0; i < HG_MAX_PORTS; i++) {
		if (i >= l->nports)
			break;
		if (l->ports[i] == a)
			found |= 1;
		if (l->ports[i] == b)
			found |= 2;
	}
	return found;
}

static __always_inline int hg_ports_watched(const struct hg_link *l, __u16 a, __u16 b)
{
	return l->nports == 0 ? 3 : hg_ports_in_list(l, a, b);
}

/* The interface's entry in `links`: NULL if the slot is not (or no longer) in use. */
static __always_inline const struct hg_link *hg_link_of(__u32 slot)
{
	const struct hg_link *l = bpf_map_lookup_elem(&links, &slot);

	return l && l->active ? l : NULL;
}

/* All zero; kept in .rodata because a struct hg_flow is too big for the stack budget. */
const struct hg_flow hg_new_flow_template = {};

/*
 * Whether a socket of this namespace is the server end of the connection a
 * packet arriving here belongs to: established (or being accepted), not a
 * listener. Else the host only forwards or bridges the packet (to a container,
 * say), and the request is counted where its socket is. tc ingress runs
 * before netfilter, so a packet a DNAT rule would send elsewhere finds none.
 */
static __always_inline bool hg_local_server(struct __sk_buff *skb, const struct hg_flow_key *k)
{
	struct bpf_sock_tuple t = {};
	__u32 len;

	if (k->family == 4) {
		__builtin_memcpy(&t.ipv4.saddr, k->client_addr, 4);
		__builtin_memcpy(&t.ipv4.daddr, k->server_addr, 4);
		t.ipv4.sport = bpf_htons(k->client_port);
		t.ipv4.dport = bpf_htons(k->server_port);
		len = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, k->client_addr, 16);
		__builtin_memcpy(t.ipv6.daddr, k->server_addr, 16);
		t.ipv6.sport = bpf_htons(k->client_port);
		t.ipv6.dport = bpf_htons(k->server_port);
		len = sizeof(t.ipv6);
	}
	struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, len, BPF_F_CURRENT_NETNS, 0);

	if (!sk)
		return false;
	bool local = sk->state != BPF_TCP_LISTEN;

	bpf_sk_release(sk);
	return local;
}

/*
 * A segment on a connection we do not track yet. A request (or the first
 * bytes of one) starts tracking, where a socket of ours is an end of the
 * connection; anything else is only counted.
 */
static __always_inline struct hg_flow *hg_new_flow(struct __sk_buff *skb, const struct hg_packet *p,
						   bool req_watched, bool resp_watched)
{
	struct hg_prefix pre = {};
	__u64 n = p->payload_len < HG_PREFIX ? p->payload_len : HG_PREFIX;

	if (n < 1 || bpf_skb_load_bytes(skb, p->payload_off, pre.b, hg_load_len(n, HG_PREFIX)))
		return NULL;
	if (req_watched) {
		int r = hg_classify(&pre, n, HG_DIR_REQ);

		if (r != 0) {
			/*
			 * A request leaving (egress) with a socket was sent by a local one: real. One
			 * arriving may be spoofed: shown real later (hg_verify).
			 */
			bool arriving = p->req_key.role == HG_ROLE_SERVER;

			if (arriving ? !hg_local_server(skb, &p->req_key) : !skb->sk) {
				if (r > 0)
					hg_stat_inc(HG_STAT_NOT_LOCAL);
				return NULL;
			}
			if (bpf_map_update_elem(&flows, &p->req_key, &hg_new_flow_template, BPF_NOEXIST)) {
				hg_stat_inc(HG_STAT_FLOW_INSERT_FAILED);
				if (r > 0 && !arriving)
					hg_count_request(&p->req_key, skb->ifindex, r,
							 p->routes ? HG_ROUTE_OTHER : 0);
				return NULL;
			}
			hg_stat_inc(HG_STAT_FLOWS_CREATED);
			struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->req_key);

			if (f)
				f->ifindex = skb->ifindex;
			if (f && arriving) {
				f->flags |= HG_FLOW_UNVERIFIED;
				hg_stat_inc(HG_STAT_UNVERIFIED_FLOWS);
			}
			return f;
		}
		if (hg_looks_like_tls_hello(pre.b, n)) {
			hg_stat_inc(HG_STAT_TLS_SEEN);
			return NULL;
		}
	}
	if (resp_watched && hg_classify(&pre, n, HG_DIR_RESP) >= 200)
		hg_stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
	return NULL;
}

/* A RST or FIN may move this far past the last byte seen from its sender. */
#define HG_SEQ_WINDOW (1 << 16)

/*
 * Whether a RST or FIN from this side of the flow falls where its sender's
 * stream is. The kernel ignores one that does not (RFC 5961), and so must we:
 * a stranger can send it. With nothing seen from that side yet, it is taken.
 */
static __always_inline bool hg_in_window(const struct hg_flow *f, const struct hg_packet *p, bool from_server)
{
	const struct hg_stream *s = from_server ? &f->resp : &f->req;
	__u32 next;

	if (s->flags & HG_SF_HAVE_SEQ)
		next = s->next_seq;
	else if (from_server && f->handshake_ack)
		next = f->handshake_ack;
	else
		return true;
	__u32 end = p->seq + p->payload_len;

	return !hg_seq_before(end, next) && hg_seq_before(p->seq, next + HG_SEQ_WINDOW);
}

/* The connection is over: pending requests will never be answered. Global: verified once. */
__noinline int hg_end_flow(struct hg_flow *f, __u32 reason)
{
	if (!f || (f->flags & HG_FLOW_CLOSED))
		return 0;
	/* Requests on a flow never shown real were never counted, so none is unanswered. */
	__u32 n = f->flags & HG_FLOW_UNVERIFIED ? 0 : f->pending + f->skipped;

	f->pending = 0;
	f->skipped = 0;
	f->flags |= HG_FLOW_CLOSED;
	hg_stat_inc(HG_STAT_FLOWS_ENDED);
	if (n)
		hg_stat_add(reason, n);
	return 0;
}

/* A RST or FIN from one side (`from_server`: the key's server sent it), if it is in the window. */
static __always_inline void hg_close_flow(const struct hg_packet *p, const struct hg_flow_key *key,
					  bool from_server, __u32 reason)
{
	struct hg_flow *f = bpf_map_lookup_elem(&flows, key);

	if (f && hg_in_window(f, p, from_server))
		hg_end_flow(f, reason);
}

/*
 * A local server's SYN-ACK (egress): a connection is being set up. Track it
 * now, so that the client's acknowledgement of this ISN shows it real. A
 * SYN-ACK is only sent for a new connection: a live flow on this 4-tuple is
 * stale (its end was missed) and is replaced.
 */
static __always_inline void hg_on_syn_ack(struct __sk_buff *skb, const struct hg_packet *p)
{
	/* Only a local listener's: one the host forwards belongs to a server elsewhere. */
	if (!skb->sk)
		return;
	struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->resp_key);

	if (f) {
		if ((f->flags & HG_FLOW_UNVERIFIED) && f->handshake_ack == p->seq + 1)
			return; /* the same SYN-ACK again */
		hg_end_flow(f, HG_STAT_UNANSWERED_CLOSED);
	}
	if (bpf_map_update_elem(&flows, &p->resp_key, &hg_new_flow_template, BPF_ANY)) {
		hg_stat_inc(HG_STAT_FLOW_INSERT_FAILED);
		return;
	}
	f = bpf_map_lookup_elem(&flows, &p->resp_key);
	if (!f)
		return;
	f->flags = HG_FLOW_UNVERIFIED;
	f->handshake_ack = p->seq + 1;
	f->ifindex = skb->ifindex;
	hg_stat_inc(HG_STAT_FLOWS_CREATED);
	/*
	 * Not counted as unverified: a connection that ends before its first
	 * request (a health check, a port probe) is ordinary, not an anomaly.
	 */
}

/*
 * A client segment on a flow whose SYN-ACK we saw: acknowledging the server's
 * ISN (or data the server has sent since) shows that the client received the
 * SYN-ACK, which a stranger spoofing the client's address cannot.
 */
static __always_inline void hg_check_handshake(struct hg_flow *f, const struct hg_packet *p)
{
	if (!(f->flags & HG_FLOW_UNVERIFIED) || !f->handshake_ack || !(p->tcp_flags & HG_TCP_ACK))
		return;
	__u32 highest = f->resp.flags & HG_SF_HAVE_SEQ ? f->resp.next_seq : f->handshake_ack;

	if (!hg_seq_before(p->ack_seq, f->handshake_ack) && !hg_seq_before(highest, p->ack_seq))
		hg_verify(f, &p->req_key);
}

/*
 * FIN from the server side ends the flow: anything still pending will never be
 * answered. A client FIN is a half-close; the server may still answer.
 * The key whose server is this packet's sender is resp_key. A SYN starts a
 * new connection on a 4-tuple we may still remember.
 */
static __always_inline void hg_on_flags(struct __sk_buff *skb, const struct hg_packet *p,
					const struct hg_link *l)
{
	if (p->tcp_flags & HG_TCP_RST) {
		hg_close_flow(p, &p->resp_key, true, HG_STAT_UNANSWERED_RESET);
		hg_close_flow(p, &p->req_key, false, HG_STAT_UNANSWERED_RESET);
	} else if (p->tcp_flags & HG_TCP_FIN) {
		hg_close_flow(p, &p->resp_key, true, HG_STAT_UNANSWERED_CLOSED);
	} else if ((p->tcp_flags & (HG_TCP_SYN | HG_TCP_ACK)) == HG_TCP_SYN) {
		struct hg_flow *f = bpf_map_lookup_elem(&flows, &p->req_key);

		/*
		 * A local client's SYN (egress) starts a new connection on this
		 * 4-tuple. One arriving on a live flow is ignored, as the kernel
		 * ignores it (a stranger may send it); on a closed one it starts anew.
		 */
		if (!f || (p->req_key.role == HG_ROLE_SERVER && !(f->flags & HG_FLOW_CLOSED)))
			return;
		hg_end_flow(f, HG_STAT_UNANSWERED_CLOSED);
		bpf_map_delete_elem(&flows, &p->req_key);
	} else if ((p->tcp_flags & (HG_TCP_SYN | HG_TCP_ACK)) == (HG_TCP_SYN | HG_TCP_ACK) &&
		   p->resp_key.role == HG_ROLE_SERVER &&
		   (hg_ports_watched(l, p->resp_key.server_port, 0) & 1)) {
		hg_on_syn_ack(skb, p);
	}
}

/* One packet, in either program: its stream, then what its TCP flags end or start. */
static __always_inline int hg_handle(struct __sk_buff *skb, bool ingress)
{
	/* The interface's slot, from its program; cleared so that programs after us find cb as without us. */
	__u32 slot = skb->cb[0], zero = 0;

	skb->cb[0] = 0;

	struct hg_scratch *x = bpf_map_lookup_elem(&scratch, &zero);

	if (!x)
		return TC_ACT_UNSPEC;
	struct hg_packet *p = &x->pkt;

	__builtin_memset(p, 0, sizeof(*p));
	if (!hg_parse_packet(skb, ingress, p)) {
		/* Headers beyond the linear area (rare): pull them in once and retry. */
		if (skb->len <= skb->data_end - skb->data)
			return TC_ACT_UNSPEC;
		if (bpf_skb_pull_data(skb, skb->len < HG_MAX_HDR_LEN ? skb->len : HG_MAX_HDR_LEN))
			return TC_ACT_UNSPEC;
		if (!hg_parse_packet(skb, ingress, p))
			return TC_ACT_UNSPEC;
	}
	/* Pure ACKs, the most common packets, need nothing more. */
	if (p->payload_len == 0 && !(p->tcp_flags & (HG_TCP_FIN | HG_TCP_SYN | HG_TCP_RST)))
		return TC_ACT_UNSPEC;

	const struct hg_link *l = hg_link_of(slot);

	if (!l)
		return TC_ACT_UNSPEC;
	p->req_key.target_id = l->target_id;
	p->resp_key.target_id = l->target_id;
	p->routes = l->routes;

	if (p->payload_len > 0) {
		int watched = hg_ports_watched(l, p->req_key.server_port, p->resp_key.server_port);
		bool req_watched = watched & 1;
		bool resp_watched = watched & 2;
		/*
		 * One flow lookup, most of the time: try first the orientation whose
		 * server port is the lower (clients' ephemeral ports are high). A
		 * 4-tuple has a flow in at most one orientation.
		 */
		bool resp_first = resp_watched && p->resp_key.server_port < p->req_key.server_port;
		struct hg_flow *f = NULL;
		__u8 dir = HG_DIR_RESP;

		if (resp_first)
			f = bpf_map_lookup_elem(&flows, &p->resp_key);
		if (!f && req_watched) {
			f = bpf_map_lookup_elem(&flows, &p->req_key);
			dir = HG_DIR_REQ;
		}
		if (!f && resp_watched && !resp_first) {
			f = bpf_map_lookup_elem(&flows, &p->resp_key);
			dir = HG_DIR_RESP;
		}
		/*
		 * A segment of a flow another interface of this target owns: the same
		 * bytes passing a bridge and then its port. Parsed once, where the
		 * flow was first seen.
		 */
		if (f && f->ifindex != skb->ifindex)
			goto flags;
		if (f && dir == HG_DIR_REQ)
			hg_check_handshake(f, p);
		if (!f && (req_watched || resp_watched)) {
			f = hg_new_flow(skb, p, req_watched, resp_watched);
			dir = HG_DIR_REQ;
		}
		if (f)
			hg_process_segment(skb, x, f, dir);
	}

flags:
	if (p->tcp_flags & (HG_TCP_FIN | HG_TCP_SYN | HG_TCP_RST))
		hg_on_flags(skb, p, l);
	return TC_ACT_UNSPEC;
}

#endif
