/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Windows of payload bytes and the line readers that work on them: what kind
 * a header line is (Content-Length, Transfer-Encoding: chunked), where the
 * next '\n' is, a chunk-size line, and a line joined across two segments.
 * No map, no config.
 */
#ifndef HG_LIB_LINES_H
#define HG_LIB_LINES_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
#define HG_LOWS 0x7f7f7f7f7f7f7f7fULL

/*
 * Eight bytes of slack past the window, so that an eight-byte load at any
 * masked index stays inside the buffer (what lies past the loaded bytes is
 * never taken for payload).
 */
struct hg_window {
	__u8 b[HG_WINDOW + 8];
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

/* The address of w[idx & (HG_WINDOW - 1)], where eight bytes can be written. */
static __always_inline void *hg_at8w(struct hg_window *w, __u32 idx)
{
	barrier_var(idx);
	void *at = &w->b[idx & (HG_WINDOW - 1)];

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

/*
 * 0x80 in each byte of y that is zero, 0 in the others: exactly (no borrow
 * runs from one byte into the next, so a byte after a zero byte is never
 * marked falsely).
 */
static __always_inline __u64 hg_zero_bytes(__u64 y)
{
	return ~(((y & HG_LOWS) + HG_LOWS) | y | HG_LOWS);
}

/*
 * Index of the lowest marked byte of m (m != 0, only top bits set), by
 * multiplication: (m & -m) >> 7 is 1 << 8k, which moves byte 7 - k of the
 * constant, k, to the top.
 */
static __always_inline __u32 hg_first_marked(__u64 m)
{
	return (((m & -m) >> 7) * 0x0001020304050607ULL) >> 56;
}

/*
 * Offset of the first '\n' in w[off .. off+avail), or -1; off + avail must not
 * pass the window. Eight bytes at a time.
 */
__noinline int hg_find_newline(const struct hg_window *w, __u32 off, __u32 avail)
{
	if (!w)
		return -1;
	for (__u32 i = 0; i < HG_WINDOW; i += 8) {
		if (i >= avail)
			break;
		__u64 m = hg_zero_bytes(hg_load8(w, off + i) ^ (HG_ONES * '\n'));

		if (m) {
			__u32 at = i + hg_first_marked(m);

			return at < avail ? (int)at : -1;
		}
	}
	return -1;
}

/* Line ends looked at in one word before the next line start is handed back as it is (see below). */
#define HG_ENDS_PER_WORD 2

/*
 * From w[off], inside a header line, past every line end in w[off .. off+avail)
 * up to the first line start that needs a closer look: one that may be empty
 * ('\r' or '\n'), may name Content-Length or Transfer-Encoding ("cont",
 * "tran" in any case), or has fewer than four bytes in the window. Returns its
 * offset from off, or -1 when the window ends inside a line. Every other line
 * is skipped here as hg_header_line would skip it.
 *
 * One pass over the window's words; in each, one '\n' after another, at most
 * HG_ENDS_PER_WORD of them. A line that is skipped has five bytes at least,
 * so a word seldom ends more; if it does, the line after the last one looked
 * at is returned as it is, and hg_header_line skips it. The bounds keep the
 * verifier's walk as short as the window.
 */
__noinline int hg_next_line(const struct hg_window *w, __u32 off, __u32 avail)
{
	if (!w)
		return -1;
	for (__u32 at = 0; at < HG_WINDOW; at += 8) {
		if (at >= avail)
			return -1;
		__u64 m = hg_zero_bytes(hg_load8(w, off + at) ^ (HG_ONES * '\n'));

		for (__u32 n = 0; m; n++) {
			__u32 i = at + hg_first_marked(m) + 1; /* the line after this '\n' */

			if (i > avail)
				return -1; /* the '\n' lies past the bytes loaded */
			if (i + 4 > avail || n == HG_ENDS_PER_WORD)
				return i;
			__u32 x = (__u32)hg_load8(w, off + i);
			__u8 b0 = x;

			if (b0 == '\r' || b0 == '\n')
				return i;
			x |= 0x20202020;
			if (x == HG_LE4('c', 'o', 'n', 't') || x == HG_LE4('t', 'r', 'a', 'n'))
				return i;
			m &= m - 1;
		}
	}
	return -1;
}

struct hg_chunk_line {
	__u64 size;
	__u32 ext; /* past the hex digits: skipping extensions up to the line's end */
};

#define HG_CHUNK_LINE_BAD -2
#define HG_CHUNK_LINE_MORE -1
/*
 * Hex digits read per window. A size of more than 13 significant digits (52
 * bits) is refused anyway; more digits than this in one window can only be
 * leading zeros, and are refused too.
 */
#define HG_CHUNK_DIGITS 32

/*
 * Feed w[off .. off+avail) to a chunk-size line in progress: hex digits, then
 * optionally ';', ' ', '\t' or '\r' and anything up to the '\n'. Returns the
 * bytes up to and including its '\n', HG_CHUNK_LINE_MORE when the line goes
 * on, HG_CHUNK_LINE_BAD when it is not a chunk-size line (also when its size
 * needs more than 52 bits, or its digits more than HG_CHUNK_DIGITS bytes of one
 * window). The line's end is found a word at a time; only the digits are read
 * a byte at a time.
 */
__noinline int hg_chunk_size_line(const struct hg_window *w, __u32 off, __u32 avail, struct hg_chunk_line *st)
{
	if (!w || !st)
		return HG_CHUNK_LINE_BAD;
	int nl = hg_find_newline(w, off, avail);
	__u32 len = nl >= 0 ? nl : avail;

	if (!st->ext) {
		/* Every way out of the loop ends the digits: the loop is walked once per byte. */
		for (__u32 i = 0; i <= HG_CHUNK_DIGITS; i++) {
			if (i >= len)
				break;
			__u8 ch = w->b[(off + i) & (HG_WINDOW - 1)];
			int v = hg_hexval(ch);

			if (v < 0) {
				if (ch != ';' && ch != ' ' && ch != '\t' && ch != '\r')
					return HG_CHUNK_LINE_BAD;
				st->ext = 1;
				break;
			}
			if (i == HG_CHUNK_DIGITS || (st->size >> 48))
				return HG_CHUNK_LINE_BAD;
			st->size = (st->size << 4) | v;
		}
	}
	return nl >= 0 ? nl + 1 : HG_CHUNK_LINE_MORE;
}

/*
 * dst = the kept start of a line (s->partial) followed by w[off..]: one
 * contiguous view of a line that straddled two segments. A word at a time:
 * all the kept bytes, then the window's bytes over those past partial_len.
 */
__noinline int hg_join_line(struct hg_window *dst, const struct hg_stream *s, const struct hg_window *w,
			    __u32 off)
{
	if (!dst || !s || !w)
		return 0;
	__u32 plen = s->partial_len;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	__builtin_memcpy(dst->b, s->partial, HG_PARTIAL_MAX + 1);
	for (__u32 k = 0; k < HG_LINE; k += 8)
		*(__u64 *)hg_at8w(dst, plen + k) = *(const __u64 *)hg_at8(w, off + k);
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
