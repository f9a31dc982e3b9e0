/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The native (exponential) bucket of a latency, as Prometheus defines it:
 * bucket k holds (2^((k-1)/2^schema), 2^(k/2^schema)] seconds. Userspace
 * computes the boundaries for the configured schema once, exactly, as
 * integer ns (floor of each real boundary: for an integer latency v,
 * v <= floor(b) exactly when v <= b), into the `native_bounds` array; the
 * kernel finds the first boundary at or above v by a binary search of
 * log2(HG_NATIVE_TABLE) fixed steps, with no branch on the data (one path for
 * the verifier). Integer arithmetic only: no floating point, no rounding.
 */
#ifndef HG_LIB_NATIVE_H
#define HG_LIB_NATIVE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/config.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hg_native_bounds);
} native_bounds SEC(".maps");

/*
 * The bucket of latency_ns into *index, or *zero = 1 for the zero bucket.
 * Returns 0, or -1 when the table cannot be read (never, once loaded).
 */
static __always_inline int hg_native_bucket(__u64 latency_ns, __s32 *index, __u32 *zero)
{
	__u32 key = 0;
	const struct hg_native_bounds *t;
	__u32 pos = 0;

	*index = 0;
	*zero = 0;
	if (latency_ns <= cfg_native_zero_ns) {
		*zero = 1;
		return 0;
	}
	t = bpf_map_lookup_elem(&native_bounds, &key);
	if (!t)
		return -1;
	/*
	 * pos ends as the number of boundaries below latency_ns (the last is u64
	 * max). Branch-free: a branch per step would give the verifier two states
	 * per step (2^14 paths); the borrow of b - v, by arithmetic, is one path.
	 */
#pragma unroll
	for (__u32 step = HG_NATIVE_TABLE / 2; step; step >>= 1) {
		__u64 at = pos + step - 1;

		/*
		 * The compiler knows `at` is in the table and drops the mask; 6.1's
		 * verifier loses the bounds of the ORs it turns `pos +=` into.
		 */
		asm volatile("" : "+r"(at));
		__u64 b = t->ns[at & (HG_NATIVE_TABLE - 1)];
		/* 1 when b < latency_ns (unsigned): the borrow out of b - latency_ns */
		__u64 below = ((~b & latency_ns) | ((~b | latency_ns) & (b - latency_ns))) >> 63;

		pos += step * (__u32)below;
	}
	*index = cfg_native_kstart + (__s32)pos;
	return 0;
}

#endif
