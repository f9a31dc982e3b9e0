/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Windows of payload bytes and the line readers that work on them: what kind
 * a header line is (Content-Length, Transfer-Encoding: chunked), where the
 * next '\n' is, a chunk-size line, and a line joined across two segments.
 * Defines struct hg_scratch, the value of the per-CPU `scratch` map, so it is
 * included before that map is declared. Needs no map or config.
 */
#ifndef HG_LIB_LINES_H
#define HG_LIB_LINES_H

#include "http_golden.h"
#include "lib/classify.h"

/* Bytes of payload loaded at once; a power of two (indexes are masked). */
#define HG_WINDOW 256
/* A header line joined across two segments: its first bytes, all that is read of it. */
#define HG_LINE 64
/* Header name lookahead: "transfer-encoding:" is 18 bytes, plus a value. */
#define HG_NAME_LOOKAHEAD 32
/* Every byte of a word. */
#define HG_ONES 0x0101010101010101ULL
#define HG_HIGHS 0x8080808080808080ULL

/*
 * Eight bytes of slack past the window, so that an eight-byte load at any
 * masked index stays inside the buffer (what lies past the loaded bytes is
 * never taken for payload).
 */
struct hg_window {
	__u8 b[HG_WINDOW + 8];
	__u32 spill; /* see hg_next_line */
};

struct hg_scratch {
	struct hg_window w;    /* the payload bytes being looked at */
	struct hg_window line; /* a header line joined across two segments */
};

static __always_inline __u8 hg_lower(__u8 c)
{
	return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

static __always_inline int hg_hexval(__u8 ch)
{
	if (hg_is_digit(ch))
		return ch - '0';
	ch = hg_lower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* The address of w[idx & (HG_WINDOW - 1)], where eight bytes can be read. */
static __always_inline const void *hg_at8(const struct hg_window *w, __u32 idx)
{
	barrier_var(idx); /* keep the mask, even where clang knows idx is in range: it bounds the index */
	const void *at = &w->b[idx & (HG_WINDOW - 1)];

	/* Hides the byte array the address came from, or clang reads a word a byte at a time. */
	barrier_var(at);
	return at;
}

/* Eight bytes from w[idx], the first in the lowest bits whatever the byte order. */
static __always_inline __u64 hg_load8(const struct hg_window *w, __u32 idx)
{
	return hg_word(hg_at8(w, idx));
}

/* Or-ing 0x20 lower-cases a letter, and makes no other byte a letter: or it only where lit has one. */
#define HG_L 0x20
/* Whether the word x starts with the n bytes of lit (n <= 8), letters in any case (fold: HG_L there). */
static __always_inline bool hg_word_is(__u64 x, __u64 fold, __u64 lit, __u32 n)
{
	__u64 keep = n >= 8 ? ~0ULL : HG_BYTES(n);

	return ((x | fold) & keep) == lit;
}

#define HG_HDR_OTHER 0
#define HG_HDR_LENGTH 1  /* Content-Length, value in *value */
#define HG_HDR_CHUNKED 2 /* Transfer-Encoding naming chunked */
#define HG_HDR_UNREAD 3  /* a framing header whose value we could not read */

struct hg_header_value {
	__u64 v;
};

/*
 * Classify the header line starting at w[off], with avail bytes of it in the
 * window. Global, so the verifier checks its loops once.
 */
__noinline int hg_header_kind(const struct hg_window *w, __u32 off, __u32 avail, struct hg_header_value *out)
{
	if (!w || !out || off >= HG_WINDOW)
		return HG_HDR_OTHER;
	if (avail >= 15 &&
	    hg_word_is(hg_load8(w, off), HG_LE8(HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, 0),
		       HG_LE8('c', 'o', 'n', 't', 'e', 'n', 't', '-'), 8) &&
	    hg_word_is(hg_load8(w, off + 8), HG_LE8(HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, 0, 0),
		       HG_LE8('l', 'e', 'n', 'g', 't', 'h', ':', 0), 7)) {
		__u64 v = 0;
		__u32 i = 15;
		bool digits = false;

		for (; i < HG_NAME_LOOKAHEAD; i++) {
			if (i >= avail)
				break;
			__u8 ch = w->b[(off + i) & (HG_WINDOW - 1)];

			if ((ch == ' ' || ch == '\t') && !digits)
				continue;
			if (!hg_is_digit(ch))
				break;
			v = v * 10 + (ch - '0');
			digits = true;
		}
		/* The value must end inside what we can see, or it may go on. */
		if (!digits || i >= avail)
			return HG_HDR_UNREAD;
		out->v = v;
		return HG_HDR_LENGTH;
	}
	if (avail >= 18 &&
	    hg_word_is(hg_load8(w, off), HG_ONES * HG_L, HG_LE8('t', 'r', 'a', 'n', 's', 'f', 'e', 'r'), 8) &&
	    hg_word_is(hg_load8(w, off + 8), HG_LE8(0, HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, HG_L),
		       HG_LE8('-', 'e', 'n', 'c', 'o', 'd', 'i', 'n'), 8) &&
	    hg_word_is(hg_load8(w, off + 16), HG_LE8(HG_L, 0, 0, 0, 0, 0, 0, 0),
		       HG_LE8('g', ':', 0, 0, 0, 0, 0, 0), 2)) {
		/* "chunked" is the final coding whenever it is present. */
		for (__u32 i = 18; i + 7 <= HG_NAME_LOOKAHEAD; i++) {
			if (i + 7 > avail)
				break;
			if (hg_word_is(hg_load8(w, off + i),
				       HG_LE8(HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, HG_L, 0),
				       HG_LE8('c', 'h', 'u', 'n', 'k', 'e', 'd', 0), 7))
				return HG_HDR_CHUNKED;
		}
		/* A value longer than we look at may still name chunked. */
		return avail > HG_NAME_LOOKAHEAD ? HG_HDR_UNREAD : HG_HDR_OTHER;
	}
	return HG_HDR_OTHER;
}

/* Index of the lowest byte whose top bit is set in m (m != 0, only top bits set). */
static __always_inline __u32 hg_first_marked(__u64 m)
{
	__u32 n = 0;

	if (!(m & 0xffffffffULL)) {
		n += 4;
		m >>= 32;
	}
	if (!(m & 0xffff)) {
		n += 2;
		m >>= 16;
	}
	if (!(m & 0xff))
		n += 1;
	return n;
}

/*
 * Offset of the first '\n' in w[off .. off+avail), or -1; off + avail must not
 * pass the window. Eight bytes at a time: a byte of x ^ "\n\n\n\n\n\n\n\n" is
 * zero where there is a '\n', and (y - 0x01..01) & ~y & 0x80..80 marks the
 * lowest zero byte of y exactly (bytes above it may be marked falsely, through
 * the borrow: only the lowest mark is used).
 */
__noinline int hg_find_newline(const struct hg_window *w, __u32 off, __u32 avail)
{
	if (!w)
		return -1;
	for (__u32 i = 0; i < HG_WINDOW; i += 8) {
		if (i >= avail)
			break;
		__u64 y = hg_load8(w, off + i) ^ (HG_ONES * '\n');
		__u64 m = (y - HG_ONES) & ~y & HG_HIGHS;

		if (m) {
			__u32 at = i + hg_first_marked(m);

			return at < avail ? (int)at : -1;
		}
	}
	return -1;
}

/*
 * From w[off], inside a header line, past every line end in w[off .. off+avail)
 * up to the first line start that needs a closer look: one that may be empty
 * ('\r' or '\n'), may name Content-Length or Transfer-Encoding ("cont",
 * "tran" in any case), or has fewer than four bytes in the window. Returns its
 * offset from off, or -1 when the window ends inside a line. Every other line
 * is skipped here as hg_header_line would skip it. A line needs at least five
 * bytes to be skipped, so a window holds fewer than HG_WINDOW / 4 of them.
 */
__noinline int hg_next_line(struct hg_window *w, __u32 off, __u32 avail)
{
	if (!w)
		return -1;
	__u32 i = 0;

	for (__u32 line = 0; line < HG_WINDOW / 4; line++) {
		/*
		 * Through memory, where the verifier does not follow it: every way
		 * into this line then has the same unknown i, and is one state.
		 */
		*(volatile __u32 *)&w->spill = i;
		i = *(volatile __u32 *)&w->spill;
		__u64 m = 0;

		/* The line's end, a word at a time: the loads do not wait on each other. */
		for (__u32 n = 0; n <= HG_WINDOW / 8; n++) {
			if (i >= avail)
				return -1;
			__u64 y = hg_load8(w, off + i) ^ (HG_ONES * '\n');

			m = (y - HG_ONES) & ~y & HG_HIGHS;
			if (m)
				break;
			i += 8;
		}
		if (!m)
			return -1;
		/*
		 * Past the '\n': the lowest mark's byte index k, by multiplication
		 * ((m & -m) >> 7 is 1 << 8k, which moves byte 7 - k of the constant, k,
		 * to the top).
		 */
		i += ((((m & -m) >> 7) * 0x0001020304050607ULL) >> 56) + 1;
		if (i > avail)
			return -1; /* the '\n' lies past the bytes loaded */
		if (i + 4 > avail)
			return i;
		__u32 x = (__u32)hg_load8(w, off + i);
		__u8 b0 = x;

		if (b0 == '\r' || b0 == '\n')
			return i;
		x |= 0x20202020;
		if (x == HG_LE4('c', 'o', 'n', 't') || x == HG_LE4('t', 'r', 'a', 'n'))
			return i;
	}
	return i; /* not reached; if it were, a line start all the same */
}

struct hg_chunk_line {
	__u64 size;
	__u32 ext; /* past the hex digits: skipping extensions up to the line's end */
};

#define HG_CHUNK_LINE_BAD -2
#define HG_CHUNK_LINE_MORE -1

/*
 * Feed w[off .. off+avail) to a chunk-size line in progress. Returns the
 * bytes up to and including its '\n', HG_CHUNK_LINE_MORE when the line goes on,
 * HG_CHUNK_LINE_BAD when it is not a chunk-size line.
 */
__noinline int hg_chunk_size_line(const struct hg_window *w, __u32 off, __u32 avail, struct hg_chunk_line *st)
{
	if (!w || !st)
		return HG_CHUNK_LINE_BAD;
	for (__u32 i = 0; i < HG_WINDOW; i++) {
		if (i >= avail)
			break;
		__u32 idx = (off + i) & (HG_WINDOW - 1);

		barrier_var(idx);
		__u8 ch = w->b[idx];

		if (ch == '\n')
			return i + 1;
		if (st->ext)
			continue;
		int v = hg_hexval(ch);

		if (v >= 0) {
			if (st->size >> 48)
				return HG_CHUNK_LINE_BAD;
			st->size = (st->size << 4) | v;
		} else if (ch == ';' || ch == ' ' || ch == '\t' || ch == '\r') {
			st->ext = 1;
		} else {
			return HG_CHUNK_LINE_BAD;
		}
	}
	return HG_CHUNK_LINE_MORE;
}

/*
 * dst = the kept start of a line (s->partial) followed by w[off..]: one
 * contiguous view of a line that straddled two segments.
 */
__noinline int hg_join_line(struct hg_window *dst, const struct hg_stream *s, const struct hg_window *w,
			    __u32 off)
{
	if (!dst || !s || !w)
		return 0;
	__u32 plen = s->partial_len;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	for (__u32 k = 0; k < HG_LINE; k++) {
		__u8 kept = s->partial[k & HG_PARTIAL_MAX];
		__u8 fresh = w->b[(off + k - plen) & (HG_WINDOW - 1)];

		dst->b[k] = k < plen ? kept : fresh;
	}
	return plen;
}

/* Keep the first n bytes of dst (a line cut by the segment's end) for the next segment. */
__noinline int hg_keep_line(struct hg_stream *s, const struct hg_window *src, __u32 n)
{
	if (!s || !src || n > HG_PARTIAL_MAX)
		return 0;
	for (__u32 k = 0; k < HG_PARTIAL_MAX; k++)
		s->partial[k] = src->b[k];
	s->partial_len = n;
	return n;
}

#endif
