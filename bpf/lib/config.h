/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The read-only config: what userspace writes into .rodata before load (see
 * src/attacher/bpf/loader.rs), what every target shares. Which target a packet belongs
 * to comes from the `links` map (lib/flow.h), so one verified program serves
 * every interface. Being constant once loaded, the values are known to the
 * verifier, which prunes the paths they rule out.
 */
#ifndef HG_LIB_CONFIG_H
#define HG_LIB_CONFIG_H

#include <linux/types.h>

#include "http_golden.h"

const volatile __u8 cfg_status_code = 0; /* 0: key by class (2 for 2xx), 1: by code */
const volatile __u32 cfg_nbuckets = 0;
const volatile __u64 cfg_bounds_ns[HG_MAX_BUCKETS] = {};
const volatile __u32 cfg_series_budget = 0;  /* series per aggregate map for each target; 0: no budget */
const volatile __u8 cfg_native = 0;          /* 1: count native (exponential) buckets too (lib/native.h) */
const volatile __u64 cfg_native_zero_ns = 0; /* latencies at or under it go to the zero bucket */
const volatile __s32 cfg_native_kstart = 0;  /* bucket index of hg_native_bounds.ns[0] */

/*
 * Never read. Makes the boundary enums part of the object's BTF, so the
 * generated Rust skeleton carries them (src/attacher/bpf/abi.rs asserts on them).
 */
const volatile struct hg_abi hg_abi = {};

#endif
