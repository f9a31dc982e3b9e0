// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor any tc design pays: a program on the same TCX hooks as the
 * exporter that looks at nothing and lets every packet through.
 * TC_ACT_UNSPEC (TCX_NEXT), like http_ingress/http_egress: "not my decision".
 * SEC("tc"), as the exporter's programs: the kernel only checks the program
 * type (sched_cls) when a TCX link is created (bench/tcx_noop.rs).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int noop_ingress(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

SEC("tc")
int noop_egress(struct __sk_buff *skb)
{
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
