/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One packet's headers: Ethernet (+ one 802.1Q/802.1ad tag), IPv4 or IPv6,
 * and TCP, read into a struct hg_packet that holds the flow key both ways
 * (but for the target, which the `links` map gives: see lib/flow.h).
 */
#ifndef HG_LIB_PACKET_H
#define HG_LIB_PACKET_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "http_golden.h"

/* Ethernet + 802.1Q + IPv4 with options + TCP with options. */
#define HG_MAX_HDR_LEN (ETH_HLEN + 4 + 60 + 60)

#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

struct hg_packet {
	struct hg_flow_key req_key;  /* orientation if this payload is client -> server */
	struct hg_flow_key resp_key; /* orientation if this payload is server -> client */
	__u32 seq;
	__u32 ack_seq;
	__u32 payload_off;
	__u32 payload_len;
	__u8 tcp_flags; /* FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10 */
	__u16 routes;   /* the interface's target's templates (hg_link.routes): 0, paths are not read */
};

/* hg_packet.tcp_flags */
#define HG_TCP_FIN 0x01
#define HG_TCP_SYN 0x02
#define HG_TCP_RST 0x04
#define HG_TCP_ACK 0x10

/*
 * A length for bpf_skb_load_bytes, 1 <= len <= max (max a power of two), said
 * again by arithmetic in the register that is passed. The caller has already
 * checked it; verifiers before 6.8 learn no lower bound from a comparison with
 * zero and lose bounds across register copies, and reject a length that may
 * be 0. barrier_var keeps clang from folding the arithmetic away.
 */
static __always_inline __u64 hg_load_len(__u64 len, __u64 max)
{
	barrier_var(len);
	return ((len - 1) & (max - 1)) + 1;
}

/*
 * Parse Ethernet (+ one 802.1Q/802.1ad tag), IPv4 (any IHL, first fragment
 * only) or IPv6 (fixed header), and TCP. Returns false for anything else.
 */
static __always_inline bool hg_parse_packet(struct __sk_buff *skb, bool ingress, struct hg_packet *p)
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
	p->ack_seq = bpf_ntohl(tcp->ack_seq);
	p->tcp_flags = (tcp->fin ? HG_TCP_FIN : 0) | (tcp->syn ? HG_TCP_SYN : 0) |
		       (tcp->rst ? HG_TCP_RST : 0) | (tcp->ack ? HG_TCP_ACK : 0);

	/* Requests go client -> server: as if this packet were one, and as if it were a response. */
	p->req_key.client_port = bpf_ntohs(tcp->source);
	p->req_key.server_port = bpf_ntohs(tcp->dest);
	p->req_key.family = family;
	p->req_key.role = ingress ? HG_ROLE_SERVER : HG_ROLE_CLIENT;

	__builtin_memcpy(p->resp_key.client_addr, p->req_key.server_addr, 16);
	__builtin_memcpy(p->resp_key.server_addr, p->req_key.client_addr, 16);
	p->resp_key.client_port = p->req_key.server_port;
	p->resp_key.server_port = p->req_key.client_port;
	p->resp_key.family = family;
	p->resp_key.role = ingress ? HG_ROLE_CLIENT : HG_ROLE_SERVER;
	return true;
}

#endif
