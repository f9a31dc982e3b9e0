/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What userspace reads: the series for a flow, method and status (looked up,
 * or created), request counters, latency histograms, and the self-metric
 * counters, in the maps declared here.
 */
#ifndef HG_LIB_AGGREGATE_H
#define HG_LIB_AGGREGATE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/config.h"
#include "lib/native.h"

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

/* Sizes are overridden from the config before load. */
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

/*
 * The native buckets of the latency series, one entry per bucket hit (sparse):
 * see lib/native.h. Sized from the config before load (1 when off).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 10000);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct hg_native_key);
	__type(value, __u64);
} native SEC(".maps");

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

static __always_inline void hg_stat_add(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);

	if (v)
		*v += n;
}

static __always_inline void hg_stat_inc(__u32 idx)
{
	hg_stat_add(idx, 1);
}

/* The series key for this flow, method, route and status (0 for request counters). */
static __always_inline void hg_series_key_of(struct hg_series_key *sk, const struct hg_flow_key *fk,
					     __u32 ifindex, __u8 method, __u8 route, __u16 status)
{
	sk->ifindex = ifindex;
	sk->target_id = fk->target_id;
	sk->port = fk->server_port;
	sk->role = fk->role;
	sk->method = method;
	sk->status = status;
	sk->route = route;
}

/*
 * The value at `key`, created from `zero` if new; NULL when the map is full
 * (counted as a drop).
 */
static __always_inline void *hg_lookup_or_create(void *map, const void *key, const void *zero)
{
	void *v = bpf_map_lookup_elem(map, key);

	if (v)
		return v;
	long err = bpf_map_update_elem(map, key, zero, BPF_NOEXIST);

	if (err && err != -17 /* EEXIST: another CPU won the race */) {
		hg_stat_inc(HG_STAT_SERIES_DROPPED);
		return NULL;
	}
	return bpf_map_lookup_elem(map, key);
}

/*
 * The series `sk`, created from `zero` if new. NULL when the map is full, or
 * this target has used its budget in it (`which`: 0 requests, 1 latency):
 * counted as a drop, and no existing series is ever evicted, so counters stay
 * monotonic.
 */
static __always_inline void *hg_series(void *map, __u32 which, const struct hg_series_key *sk,
				       const void *zero)
{
	void *v = bpf_map_lookup_elem(map, sk);

	if (v)
		return v;
	__u32 slot = sk->target_id * 2 + which;
	__u64 *used = bpf_map_lookup_elem(&series_count, &slot);

	if (cfg_series_budget && (!used || *used >= cfg_series_budget)) {
		hg_stat_inc(HG_STAT_SERIES_DROPPED);
		return NULL;
	}
	long err = bpf_map_update_elem(map, sk, zero, BPF_NOEXIST);

	if (err && err != -17 /* EEXIST: another CPU won the race */) {
		hg_stat_inc(HG_STAT_SERIES_DROPPED);
		return NULL;
	}
	if (!err && used)
		__sync_fetch_and_add(used, 1);
	return bpf_map_lookup_elem(map, sk);
}

static __always_inline void hg_count_request(const struct hg_flow_key *fk, __u32 ifindex, __u8 method,
					     __u8 route)
{
	__u64 zero = 0;
	struct hg_series_key sk = {};

	hg_series_key_of(&sk, fk, ifindex, method, route, 0);
	__u64 *v = hg_series(&requests, 0, &sk, &zero);

	if (v)
		*v += 1;
}

static __always_inline void hg_observe(const struct hg_flow_key *fk, __u32 ifindex, __u8 method, __u8 route,
				       __u16 code, __u64 latency_ns)
{
	__u32 zero_idx = 0;
	struct hg_hist *zero = bpf_map_lookup_elem(&hist_zero, &zero_idx);

	if (!zero)
		return;
	struct hg_native_key nk = {};

	hg_series_key_of(&nk.series, fk, ifindex, method, route, cfg_status_code ? code : code / 100);
	struct hg_hist *h = hg_series(&latency, 1, &nk.series, zero);

	if (!h)
		return;

	/*
	 * The native bucket first: if its map is full the observation counts in
	 * neither histogram (a drop), so the native buckets of a series always add
	 * up to its classic count.
	 */
	__u64 *nb = NULL;

	if (cfg_native) {
		__u64 none = 0;

		if (hg_native_bucket(latency_ns, &nk.index, &nk.zero))
			return;
		nb = hg_lookup_or_create(&native, &nk, &none);
		if (!nb)
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
	if (nb)
		*nb += 1;
}

#endif
