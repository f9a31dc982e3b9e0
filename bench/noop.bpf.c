// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor any tc design pays: a program on the same TCX hooks as the
 * exporter that looks at nothing and lets every packet through.
 * TC_ACT_UNSPEC (TCX_NEXT), like http_ingress/http_egress: "not my decision".
 * SEC("tc") rather than "tcx/ingress" so Debian 12's libbpf 1.1, which loads
 * it in bench/tcx_noop.py, knows the section; the kernel only checks the
 * program type (sched_cls) when the TCX link is created.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

/* The one macro we need from libbpf's bpf_helpers.h (libbpf-dev not required). */
#define SEC(name) __attribute__((section(name), used))

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
