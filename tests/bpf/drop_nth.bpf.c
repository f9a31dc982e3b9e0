// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Test-only packet loss (this kernel has no netem): drop every cfg_nth-th TCP
 * segment that carries data, arriving on the interface it is attached to.
 * Attached on the receiving side, so the sender's hooks see the original and
 * the retransmission (tests/hard_cases_real.rs).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Written by the test before load; 0 drops nothing. */
const volatile __u32 cfg_nth = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} seen SEC(".maps");

SEC("tc")
int drop_nth(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 payload;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_TCP || ip->ihl != 5)
			return TC_ACT_OK;
		struct tcphdr *tcp = (void *)(ip + 1);

		if ((void *)(tcp + 1) > end)
			return TC_ACT_OK;
		payload = bpf_ntohs(ip->tot_len) - 20 - tcp->doff * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP)
			return TC_ACT_OK;
		struct tcphdr *tcp = (void *)(ip6 + 1);

		if ((void *)(tcp + 1) > end)
			return TC_ACT_OK;
		payload = bpf_ntohs(ip6->payload_len) - tcp->doff * 4;
	} else {
		return TC_ACT_OK;
	}
	if (payload == 0)
		return TC_ACT_OK;

	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&seen, &key);

	if (!n)
		return TC_ACT_OK;
	__u64 count = __sync_fetch_and_add(n, 1) + 1;

	return cfg_nth && count % cfg_nth == 0 ? TC_ACT_SHOT : TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
