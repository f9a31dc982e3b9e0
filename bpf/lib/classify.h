/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Message starts: whether the bytes at a message position begin a request
 * line ("<METHOD> "), a status line ("HTTP/1.x NNN") or a TLS ClientHello.
 * Functions of the bytes alone: no map, no config.
 */
#ifndef HG_LIB_CLASSIFY_H
#define HG_LIB_CLASSIFY_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"

/* Longest prefix needed to classify a message start: "HTTP/1.1 200 " is 13. */
#define HG_PREFIX 16

/* Which direction of a flow a stream carries. */
#define HG_DIR_REQ 0
#define HG_DIR_RESP 1

static const char hg_method_names[9][8] = {
	"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH ",
};
static const __u8 hg_method_lens[9] = { 4, 5, 5, 4, 7, 8, 8, 6, 6 };
static const __u8 hg_method_ids[9] = {
	HG_METHOD_GET,     HG_METHOD_HEAD,    HG_METHOD_POST,  HG_METHOD_PUT,   HG_METHOD_DELETE,
	HG_METHOD_CONNECT, HG_METHOD_OPTIONS, HG_METHOD_TRACE, HG_METHOD_PATCH,
};

/*
 * The length of "<METHOD> " for enum hg_method `m`: a nibble each, in one
 * constant, so that no table is indexed by a value the verifier must bound.
 */
static __always_inline __u32 hg_method_len(__u32 m)
{
	return (0x6688745540ULL >> ((m & 15) * 4)) & 15;
}

/* Aligned, so that it can be read and written a word at a time. */
struct hg_prefix {
	__u8 b[HG_PREFIX];
} __attribute__((aligned(8)));

/* Bytes as little-endian words: the first byte in the lowest bits (what hg_word() returns). */
#define HG_LE4(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)
#define HG_LE8(a, b, c, d, e, f, g, h) (HG_LE4(a, b, c, d) | (__u64)HG_LE4(e, f, g, h) << 32)
/* The low n bytes of a word (n < 8). */
#define HG_BYTES(n) ((1ULL << (8 * (n))) - 1)

/* Eight bytes from an 8-aligned address, the first in the lowest bits whatever the byte order. */
static __always_inline __u64 hg_word(const void *at)
{
	__u64 x = *(const __u64 *)at;

#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x);
#endif
	return x;
}

/* The method whose "<METHOD> " the eight bytes in x begin with, or 0. */
static __always_inline int hg_method_word(__u64 x)
{
	__u32 w4 = (__u32)x;

	if (w4 == HG_LE4('G', 'E', 'T', ' '))
		return HG_METHOD_GET;
	if (w4 == HG_LE4('P', 'U', 'T', ' '))
		return HG_METHOD_PUT;
	if ((x & HG_BYTES(5)) == HG_LE8('P', 'O', 'S', 'T', ' ', 0, 0, 0))
		return HG_METHOD_POST;
	if ((x & HG_BYTES(5)) == HG_LE8('H', 'E', 'A', 'D', ' ', 0, 0, 0))
		return HG_METHOD_HEAD;
	if ((x & HG_BYTES(7)) == HG_LE8('D', 'E', 'L', 'E', 'T', 'E', ' ', 0))
		return HG_METHOD_DELETE;
	if (x == HG_LE8('C', 'O', 'N', 'N', 'E', 'C', 'T', ' '))
		return HG_METHOD_CONNECT;
	if (x == HG_LE8('O', 'P', 'T', 'I', 'O', 'N', 'S', ' '))
		return HG_METHOD_OPTIONS;
	if ((x & HG_BYTES(6)) == HG_LE8('T', 'R', 'A', 'C', 'E', ' ', 0, 0))
		return HG_METHOD_TRACE;
	if ((x & HG_BYTES(6)) == HG_LE8('P', 'A', 'T', 'C', 'H', ' ', 0, 0))
		return HG_METHOD_PATCH;
	return 0;
}

static __always_inline int hg_classify_request(const __u8 *b, __u32 n)
{
	int prefix = 0;

	for (int m = 0; m < 9; m++) {
		__u32 len = hg_method_lens[m];
		bool match = true;

		for (int i = 0; i < 8; i++) {
			if (i >= len || i >= n)
				break;
			if (b[i] != (__u8)hg_method_names[m][i]) {
				match = false;
				break;
			}
		}
		if (!match)
			continue;
		if (n >= len)
			return hg_method_ids[m];
		prefix = -1;
	}
	return prefix;
}

static __always_inline bool hg_is_digit(__u8 c)
{
	return c >= '0' && c <= '9';
}

static __always_inline int hg_classify_response(const __u8 *b, __u32 n)
{
	static const char lit[9] = "HTTP/1.1 ";

	if (n >= 12) {
		/* All twelve bytes are there: "HTTP/1." and '0' or '1' in one word, then the rest. */
		__u64 x = hg_word(b);
		__u8 minor = x >> 56;

		if ((x & HG_BYTES(7)) != HG_LE8('H', 'T', 'T', 'P', '/', '1', '.', 0) ||
		    (minor != '0' && minor != '1') || b[8] != ' ' || !hg_is_digit(b[9]) ||
		    !hg_is_digit(b[10]) || !hg_is_digit(b[11]))
			return 0;
	}

	for (int i = 0; i < 12 && n < 12; i++) {
		if (i >= n)
			return -1;
		__u8 c = b[i];
		bool ok;

		if (i == 7)
			ok = c == '0' || c == '1';
		else if (i < 9)
			ok = c == (__u8)lit[i];
		else
			ok = hg_is_digit(c);
		if (!ok)
			return 0;
	}
	if (n > 12 && b[12] != ' ' && b[12] != '\r' && b[12] != '\n')
		return 0;
	int code = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');

	return code >= 100 && code <= 599 ? code : 0;
}

/*
 * What the first n bytes of a message position hold. HG_DIR_REQ: the method if
 * they start with "<METHOD> "; HG_DIR_RESP: the code of "HTTP/1.x NNN". 0 if
 * they cannot start such a message, -1 if they are a proper prefix of one
 * (wait for the next segment). A global function: the verifier checks it once,
 * not once per path through the caller.
 */
__noinline int hg_classify(const struct hg_prefix *p, __u32 n, __u32 dir)
{
	if (!p || n > HG_PREFIX)
		return 0;
	if (dir == HG_DIR_REQ)
		/* With eight bytes or more, every method is either all there or not there. */
		return n >= 8 ? hg_method_word(hg_word(p->b)) : hg_classify_request(p->b, n);
	return hg_classify_response(p->b, n);
}

static __always_inline bool hg_looks_like_tls_hello(const __u8 *b, __u32 n)
{
	/* Handshake record, TLS 1.x legacy version, ClientHello message. */
	return n >= 6 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b[5] == 0x01;
}

#endif
