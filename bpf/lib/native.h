/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The native (exponential) bucket of a latency, as Prometheus defines it:
 * bucket k holds (2^((k-1)/2^schema), 2^(k/2^schema)] seconds. Userspace
 * computes the boundaries for the configured schema once, exactly, as
 * integer ns (floor of each real boundary: for an integer latency v,
 * v <= floor(b) exactly when v <= b), into the `native_bounds` array. The
 * kernel finds the first boundary at or above v in two steps: v's power of
 * two and the next HG_NATIVE_CELL_BITS bits pick a cell, which names that
 * boundary or the one before it (the cells are narrower than the buckets);
 * one comparison with the exact boundary decides. No branch on the data (one
 * path for the verifier), integer arithmetic only: no floating point, no
 * rounding.
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
	/* o = floor(log2(latency_ns)), branch-free (latency_ns > 0 here). */
	__u64 x = latency_ns;
	__u64 o = 0;

#pragma unroll
	for (__u32 sh = 32; sh; sh >>= 1) {
		__u64 y = x >> sh; /* below 2^sh: x is below 2^(2 sh) */

		/* Hidden from the compiler, which would turn the next line into a branch. */
		asm volatile("" : "+r"(y));
		__u64 nz = (y + (1ULL << sh) - 1) >> sh; /* 1 when y is not 0 */

		x ^= (x ^ y) & -nz;
		o += sh * nz;
	}
	/* The HG_NATIVE_CELL_BITS bits after the top one pick the cell. */
	__u64 c = ((latency_ns << (63 - o)) << 1) >> (64 - HG_NATIVE_CELL_BITS);
	__u64 at = (o << HG_NATIVE_CELL_BITS) | c;

	/* The compiler knows the bounds and drops the masks; 6.1's verifier loses them in the ORs. */
	asm volatile("" : "+r"(at));
	pos = t->cell[at & (HG_NATIVE_CELLS - 1)];
	at = pos;
	asm volatile("" : "+r"(at));
	__u64 b = t->ns[at & (HG_NATIVE_TABLE - 1)];
	/* 1 when b < latency_ns (unsigned): the borrow out of b - latency_ns, with no branch */
	__u64 below = ((~b & latency_ns) | ((~b | latency_ns) & (b - latency_ns))) >> 63;

	pos += (__u32)below;
	*index = cfg_native_kstart + (__s32)pos;
	return 0;
}

#endif
