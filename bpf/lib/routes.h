/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Routes: a request's path matched against its target's templates, in the
 * kernel, so that the route is part of the series key and no request ever
 * reaches userspace. Owns the `routes` map (a target's compiled templates,
 * written by userspace).
 *
 * The path is the request-target up to the first ' ', '?' or '#', of which
 * HG_PATH_MAX bytes are read. It is read once, a word at a time, then split
 * at the '/'s found; the templates that take its number of segments are then
 * compared segment by segment, a literal a word at a time, in list order, the
 * first match winning. A path that cannot be one a template names (no leading
 * '/', a "." or ".." segment, a byte outside visible ASCII) matches none: its
 * route is HG_ROUTE_OTHER.
 */
#ifndef HG_LIB_ROUTES_H
#define HG_LIB_ROUTES_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/classify.h"
#include "lib/lines.h"

/* A target's templates, by target id; only targets with routes have an entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, HG_MAX_TARGETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct hg_routes);
} routes SEC(".maps");

/* Words of the bytes read: HG_PATH_MAX, and the one after that ends the path. */
#define HG_PATH_WORDS ((HG_PATH_MAX + 8) / 8)

/* A path split into segments: the first HG_ROUTE_SEGS + 1 of them, offsets from the path's first byte. */
struct hg_path {
	__u8 n;   /* segments split; HG_ROUTE_SEGS + 1 means that many or more */
	__u8 cut; /* the path goes on past the bytes read: its last segment split is not whole */
	__u8 bad; /* no template can match it */
	__u8 seg; /* while splitting: where the segment being read starts */
	__u8 start[HG_ROUTE_SEGS + 1];
	__u8 len[HG_ROUTE_SEGS + 1];
	__u8 end; /* while splitting: where the path ends, or the bytes read do */
	__u8 pad;
	/* While splitting: each word's '/'s (0x80 in their bytes) before the path's end. */
	__u64 slashes[HG_PATH_WORDS];
};
_Static_assert(__builtin_offsetof(struct hg_path, slashes) % 8 == 0, "no padding the fields do not name");

#define HG_SLASHES (HG_ONES * '/')
#define HG_HIGHS (~HG_LOWS)
/* 0x80 in each byte of x that is not visible ASCII (0x21 to 0x7e), 0 elsewhere. */
static __always_inline __u64 hg_invisible_bytes(__u64 x)
{
	__u64 at_least_21 = ((x & HG_LOWS) + HG_ONES * (0x80 - 0x21)) & ~x & HG_HIGHS;

	return ~(at_least_21 & ~hg_zero_bytes(x ^ (HG_ONES * 0x7f))) & HG_HIGHS;
}

/* Whether the segment of `len` bytes at w[off] is "." or "..": not a path a template can name. */
static __always_inline bool hg_dot_segment(const struct hg_window *w, __u32 off, __u32 len)
{
	__u64 x = hg_load8(w, off);

	return (len == 1 && (x & 0xff) == '.') || (len == 2 && (x & 0xffff) == HG_LE4('.', '.', 0, 0));
}

/*
 * The segment being read ends at path byte `end`: note it (the first
 * HG_ROUTE_SEGS + 1 only). False if it is "." or "..".
 */
static __always_inline bool hg_end_segment(const struct hg_window *w, __u32 off, struct hg_path *p, __u32 end)
{
	__u32 n = p->n, seg = p->seg;

	if (n <= HG_ROUTE_SEGS) {
		p->start[n] = seg;
		p->len[n] = end - seg;
		p->n = n + 1;
		if (hg_dot_segment(w, off + seg, end - seg))
			return false;
	}
	p->seg = end + 1;
	return true;
}

/*
 * The '/'s of the path's word at path byte `at` (0x80 in their bytes of
 * `slash`) each end a segment: note them, until HG_ROUTE_SEGS + 1 are.
 * Global: verified once, and called only for words that hold a '/'. False
 * if a segment is "." or "..".
 */
__noinline int hg_word_slashes(const struct hg_window *w, __u32 off, struct hg_path *p, __u32 at, __u64 slash)
{
	if (!w || !p)
		return 0;
	for (__u32 i = 0; i < 8; i++) {
		if (!slash || p->n > HG_ROUTE_SEGS)
			break;
		if (!hg_end_segment(w, off, p, at + hg_first_marked(slash)))
			return 0;
		slash &= slash - 1;
	}
	return 1;
}

/*
 * Read the path at w[off] (`avail` bytes of the window from there) into p:
 * where it ends, whether a byte before that cannot be in one, and each
 * word's '/'s. Global: verified once. A word at a time, with no call and no
 * memory but the word and its '/'s: a long path is mostly words without a
 * '/'. Splitting it (hg_split_path) follows only the words with a '/'.
 */
__noinline int hg_scan_path(const struct hg_window *w, __u32 off, __u32 avail, struct hg_path *p)
{
	if (!w || !p)
		return 0;
	p->n = 0;
	p->seg = 1; /* the first segment starts after the leading '/' */
	p->cut = 1;
	p->bad = avail == 0 || (hg_load8(w, off) & 0xff) != '/';
	if (p->bad)
		return 0;
	if (avail > HG_PATH_MAX + 1)
		avail = HG_PATH_MAX + 1; /* the path's bytes and the one that ends it */
	p->end = avail;
	for (__u32 at = 0; at < HG_PATH_WORDS * 8; at += 8) {
		if (at >= avail)
			break;
		__u64 x = hg_load8(w, off + at);
		__u64 invisible = hg_invisible_bytes(x);
		/* ' ' is not visible: the first stop ends the path, and must be ' ', '?' or '#'. */
		__u64 stop =
			invisible | hg_zero_bytes(x ^ (HG_ONES * '?')) | hg_zero_bytes(x ^ (HG_ONES * '#'));
		__u64 slash = hg_zero_bytes(x ^ HG_SLASHES);

		if (avail - at < 8) {
			stop &= HG_BYTES(avail - at);
			slash &= HG_BYTES(avail - at);
		}
		if (stop) {
			__u64 first = stop & -stop;

			if (first & invisible & ~hg_zero_bytes(x ^ (HG_ONES * ' '))) {
				p->bad = 1;
				return 0;
			}
			p->slashes[at / 8] = slash & (first - 1);
			p->end = at + hg_first_marked(stop);
			p->cut = 0;
			break;
		}
		p->slashes[at / 8] = slash;
	}
	p->slashes[0] &= ~0x80ULL; /* the leading '/' starts the path, not a segment */
	return 0;
}

/*
 * Split the path at w[off] (`avail` bytes of the window from there) into p.
 * Inline in hg_route_of: called from a function of its own, hg_word_slashes
 * would deepen the deepest call chain, and 6.1 counts at least 32 bytes of
 * stack for each frame against the 512 allowed.
 */
static __always_inline void hg_split_path(const struct hg_window *w, __u32 off, __u32 avail,
					  struct hg_path *p)
{
	hg_scan_path(w, off, avail, p);
	if (p->bad)
		return;
	for (__u32 k = 0; k < HG_PATH_WORDS; k++) {
		/* Past the segments a template can name, the rest is one `*`: no need to split it. */
		if (k * 8 >= p->end || p->n > HG_ROUTE_SEGS)
			break;
		__u64 slash = p->slashes[k];

		if (slash && !hg_word_slashes(w, off, p, k * 8, slash))
			goto bad;
	}
	if (!p->cut) {
		__u32 end = p->end;

		/* The path "/" has no segment; any other ends with one (perhaps empty: "/a/"). */
		if (end > 1 && !hg_end_segment(w, off, p, end))
			goto bad;
		return;
	}
	/* The bytes read end inside a segment: note what is known of it (not being whole, it is no dot
	 * segment). */
	__u32 n = p->n, seg = p->seg;

	if (n <= HG_ROUTE_SEGS) {
		p->start[n] = seg;
		p->len[n] = p->end > seg ? p->end - seg : 0;
		p->n = n + 1;
	}
	return;
bad:
	p->bad = 1;
}

/* Eight bytes of r's literals from lit[idx], the first in the lowest bits. */
static __always_inline __u64 hg_lit8(const struct hg_route *r, __u32 idx)
{
	barrier_var(idx);
	const void *at = &r->lit[idx & (HG_ROUTE_BYTES - 1)];

	barrier_var(at);
	return hg_word(at);
}

/* Whether the `len` bytes at w[at] are r's literal bytes from lit[from]. Global: verified once. */
__noinline int hg_same_bytes(const struct hg_window *w, __u32 at, const struct hg_route *r, __u32 from,
			     __u32 len)
{
	if (!w || !r)
		return 0;
	for (__u32 k = 0; k < HG_ROUTE_BYTES; k += 8) {
		if (k >= len)
			break;
		__u64 keep = len - k >= 8 ? ~0ULL : HG_BYTES(len - k);

		if ((hg_load8(w, at + k) ^ hg_lit8(r, from + k)) & keep)
			return 0;
	}
	return 1;
}

/* Whether template r matches the split path p of the path at w[off]. Global: verified once for every
 * template. */
__noinline int hg_route_matches(const struct hg_route *r, const struct hg_window *w, __u32 off,
				const struct hg_path *p)
{
	if (!r || !w || !p || p->bad)
		return 0;
	__u32 nseg = r->nseg;

	if (nseg > HG_ROUTE_SEGS)
		return 0;
	if (r->star) {
		/* The fixed segments must be there, and whole: a later one, or the path's end, shows it. */
		if (p->n < nseg || (p->cut && nseg > 0 && p->n <= nseg))
			return 0;
	} else if (p->cut || p->n != nseg) {
		return 0;
	}
	for (__u32 i = 0; i < HG_ROUTE_SEGS; i++) {
		if (i >= nseg)
			break;
		__u32 len = p->len[i];

		if (r->kind[i] == HG_SEG_PARAM) {
			if (len == 0)
				return 0;
			continue;
		}
		if (len != r->len[i])
			return 0;
		__u32 at = off + p->start[i];

		/* Most literals are a word or less (1 to 8 bytes): compared here, without a call. */
		if (len - 1 < 8) {
			if ((hg_load8(w, at) ^ hg_lit8(r, r->off[i])) & (~0ULL >> (64 - 8 * len)))
				return 0;
		} else if (!hg_same_bytes(w, at, r, r->off[i], len)) {
			return 0;
		}
	}
	return 1;
}

/* The index of the lowest bit set in m (m != 0): the bits below it, counted without a branch. */
static __always_inline __u32 hg_lowest_set(__u32 m)
{
	__u32 v = (m & -m) - 1;

	v = v - ((v >> 1) & 0x55555555);
	v = (v & 0x33333333) + ((v >> 2) & 0x33333333);
	v = (v + (v >> 4)) & 0x0f0f0f0f;
	return (v * 0x01010101) >> 24;
}

/*
 * The route of the request whose path is at w[off] (`avail` bytes from there),
 * for target `target`: 1 + the index of the first template that matches, or
 * HG_ROUTE_OTHER. `p` is scratch space. Sets *cut when the path was longer
 * than what could be read.
 */
__noinline int hg_route_of(__u32 target, const struct hg_window *w, __u32 off, __u32 avail, struct hg_path *p)
{
	if (!w || !p)
		return HG_ROUTE_OTHER;
	const struct hg_routes *t = bpf_map_lookup_elem(&routes, &target);

	if (!t)
		return HG_ROUTE_OTHER;
	hg_split_path(w, off, avail, p);
	if (p->bad)
		return HG_ROUTE_OTHER;
	__u32 n = p->n;

	if (n > HG_ROUTE_SEGS + 1)
		return HG_ROUTE_OTHER;
	/* Only the templates that take a path of this many segments: most fail here, for nothing. */
	__u32 may = p->cut ? t->cut[n] : t->whole[n];

	for (__u32 k = 0; k < HG_MAX_ROUTES; k++) {
		if (!may)
			break;
		__u32 i = hg_lowest_set(may);

		/* clang may read it from a table of bytes: keep the mask the verifier needs. */
		barrier_var(i);
		i &= HG_MAX_ROUTES - 1;

		may &= may - 1;
		if (hg_route_matches(&t->r[i], w, off, p))
			return i + 1;
	}
	return HG_ROUTE_OTHER;
}

#endif
