/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Routes: a request's path matched against its target's templates, in the
 * kernel, so that the route is part of the series key and no request ever
 * reaches userspace. Owns the `routes` map (a target's compiled templates,
 * written by userspace).
 *
 * The path is the request-target up to the first ' ', '?' or '#', of which
 * HG_PATH_MAX bytes are read. It is split into segments once, a word at a
 * time; each template is then compared segment by segment, a literal a word
 * at a time, in list order, the first match winning. A path that cannot be
 * one a template names (no leading '/', a "." or ".." segment, a byte outside
 * visible ASCII) matches none: its route is HG_ROUTE_OTHER.
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

/* A path split into segments: the first HG_ROUTE_SEGS + 1 of them, offsets from the path's first byte. */
struct hg_path {
	__u8 n;   /* segments split; HG_ROUTE_SEGS + 1 means that many or more */
	__u8 cut; /* the path goes on past the bytes read: its last segment split is not whole */
	__u8 bad; /* no template can match it */
	__u8 seg; /* while splitting: where the segment being read starts */
	__u8 start[HG_ROUTE_SEGS + 1];
	__u8 len[HG_ROUTE_SEGS + 1];
	/* While splitting: the word being split (its offset, the '/' not yet taken, where the path ends in
	 * it). */
	__u8 word;
	__u8 next;
	__u64 slash;
	__u64 end;
};

#define HG_SLASHES (HG_ONES * '/')
#define HG_HIGHS (~HG_LOWS)
/* 0x80 in each byte of x that is visible ASCII (0x21 to 0x7e), 0 elsewhere. */
static __always_inline __u64 hg_visible_bytes(__u64 x)
{
	__u64 at_least_21 = ((x & HG_LOWS) + HG_ONES * (0x80 - 0x21)) & ~x & HG_HIGHS;

	return at_least_21 & ~hg_zero_bytes(x ^ (HG_ONES * 0x7f));
}

/* Whether the segment of `len` bytes at w[off] is "." or "..": not a path a template can name. */
static __always_inline bool hg_dot_segment(const struct hg_window *w, __u32 off, __u32 len)
{
	__u64 x = hg_load8(w, off);

	return (len == 1 && (x & 0xff) == '.') || (len == 2 && (x & 0xffff) == HG_LE4('.', '.', 0, 0));
}

/*
 * The segment being read ends at path byte `end`: note it (the first
 * HG_ROUTE_SEGS + 1 only). False if it is "." or "..". What the split has
 * found so far is read from p, in map memory, each time, not carried in
 * registers: the verifier then sees one state here, whatever came before.
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
 * Split the path at w[off] (`avail` bytes of the window from there) into p.
 * Global: verified once. One loop, each turn either loading the next word
 * (where the path ends in it, which bytes are '/', whether one cannot be in a
 * path) or taking its next '/'. Where the split is lives in p, in map memory,
 * so every turn looks the same to the verifier. Turns: a word per eight bytes
 * read, a '/' per segment noted, one to end.
 */
__noinline int hg_split_path(const struct hg_window *w, __u32 off, __u32 avail, struct hg_path *p)
{
	if (!w || !p)
		return 0;
	p->n = 0;
	p->seg = 1; /* the first segment starts after the leading '/' */
	p->cut = 1;
	p->next = 0;
	p->slash = 0;
	p->end = 0;
	p->bad = avail == 0 || (hg_load8(w, off) & 0xff) != '/';
	if (p->bad)
		return 0;
	if (avail > HG_PATH_MAX + 1)
		avail = HG_PATH_MAX + 1; /* the path's bytes and the one that ends it */
	for (__u32 turn = 0; turn < (HG_PATH_MAX + 8) / 8 + HG_ROUTE_SEGS + 2; turn++) {
		__u64 slash = p->slash;

		if (slash) {
			if (!hg_end_segment(w, off, p, p->word + hg_first_marked(slash)))
				goto bad;
			/* Past the segments a template can name, the rest is one `*`: no need to split it. */
			p->slash = p->n > HG_ROUTE_SEGS ? 0 : slash & (slash - 1);
			continue;
		}
		if (p->end) {
			__u32 e = p->word + hg_first_marked(p->end);

			/* The path "/" has no segment; any other ends with one (perhaps empty: "/a/"). */
			if (e > 1 && !hg_end_segment(w, off, p, e))
				goto bad;
			p->cut = 0;
			return 0;
		}
		__u32 at = p->next;

		if (at >= avail)
			break;
		__u64 x = hg_load8(w, off + at);
		__u64 in = avail - at >= 8 ? ~0ULL : HG_BYTES(avail - at);
		__u64 end = (hg_zero_bytes(x ^ (HG_ONES * ' ')) | hg_zero_bytes(x ^ (HG_ONES * '?')) |
			     hg_zero_bytes(x ^ (HG_ONES * '#'))) &
			    in;
		/* Only what lies before the path's end counts. */
		__u64 before = end ? (end & -end) - 1 : in;

		if (~hg_visible_bytes(x) & HG_HIGHS & before)
			goto bad;
		slash = hg_zero_bytes(x ^ HG_SLASHES) & before;
		if (at == 0)
			slash &= ~0x80ULL; /* the leading '/' starts the path, not a segment */
		p->word = at;
		p->next = at + 8;
		p->slash = p->n > HG_ROUTE_SEGS ? 0 : slash;
		p->end = end;
	}
	/* The bytes read end inside a segment: note what is known of it (not being whole, it is no dot
	 * segment). */
	__u32 n = p->n, seg = p->seg;

	if (n <= HG_ROUTE_SEGS) {
		p->start[n] = seg;
		p->len[n] = avail > seg ? avail - seg : 0;
		p->n = n + 1;
	}
	return 0;
bad:
	p->bad = 1;
	return 0;
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
		if (len != r->len[i] || !hg_same_bytes(w, off + p->start[i], r, r->off[i], len))
			return 0;
	}
	return 1;
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

	for (__u32 i = 0; i < HG_MAX_ROUTES; i++) {
		if (!(may >> i))
			break;
		if (((may >> i) & 1) && hg_route_matches(&t->r[i], w, off, p))
			return i + 1;
	}
	return HG_ROUTE_OTHER;
}

#endif
