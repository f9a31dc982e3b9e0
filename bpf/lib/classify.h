/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Message starts: whether the bytes at a message position begin a request
 * line ("<METHOD> "), a status line ("HTTP/1.x NNN") or a TLS ClientHello.
 * Functions of the bytes alone: needs no map or config, only the includer's
 * uapi and libbpf headers.
 */
#ifndef HG_LIB_CLASSIFY_H
#define HG_LIB_CLASSIFY_H

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

struct hg_prefix {
	__u8 b[HG_PREFIX];
};

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

	for (int i = 0; i < 12; i++) {
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
	return dir == HG_DIR_REQ ? hg_classify_request(p->b, n) : hg_classify_response(p->b, n);
}

static __always_inline bool hg_looks_like_tls_hello(const __u8 *b, __u32 n)
{
	/* Handshake record, TLS 1.x legacy version, ClientHello message. */
	return n >= 6 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && b[5] == 0x01;
}

#endif
