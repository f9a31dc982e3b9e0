/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One pass over one segment of one stream: the states and flags of a stream
 * (struct hg_stream in http_golden.h), the scan cursor that is bpf_loop's
 * context, and loading the payload window it reads through. Needs no map or
 * config.
 */
#ifndef HG_LIB_SCAN_H
#define HG_LIB_SCAN_H

#include "http_golden.h"
#include "lib/lines.h"

/* Where the next message of one direction of a connection can begin (hg_stream.state). */
enum hg_stream_state {
	HG_ST_IDLE = 0,    /* a message starts at next_seq */
	HG_ST_HEADERS,     /* inside a start line + header block */
	HG_ST_BODY,        /* a Content-Length body, ending at end_seq */
	HG_ST_CHUNK_SIZE,  /* reading a chunk-size line; `left` accumulates the size */
	HG_ST_CHUNK_DATA,  /* chunk data and its CRLF, ending at end_seq */
	HG_ST_TRAILERS,    /* after the last chunk, until the empty line */
	HG_ST_UNTIL_CLOSE, /* body delimited by the connection's end, or upgraded */
	HG_ST_UNSYNCED,    /* boundaries lost: only segment starts are tried (turn-around rule) */
};

/* hg_stream.flags */
#define HG_SF_HAVE_SEQ (1 << 0)      /* next_seq is valid */
#define HG_SF_LINE_START (1 << 1)    /* positioned at the start of a header line */
#define HG_SF_LINE_START_CR (1 << 2) /* ... whose '\r' ended the previous segment */
#define HG_SF_CHUNKED (1 << 3)       /* current message: Transfer-Encoding: chunked */
#define HG_SF_HAS_CL (1 << 4)        /* current message: Content-Length seen (value in left) */
#define HG_SF_NO_BODY (1 << 5)       /* HEAD response, 1xx, 204, 304: no body whatever the headers say */
#define HG_SF_UNSURE (1 << 6)        /* a header name straddled a segment boundary unread */
#define HG_SF_CHUNK_EXT (1 << 7)     /* in a chunk-size line, past the hex digits */

/*
 * Lengths from here on cannot be followed to their end in 32-bit sequence
 * space: so much is skipped as body, then boundaries count as lost.
 */
#define HG_UNTRUSTED_BODY 0x7fffffffu

/* Sequence numbers wrap: compare by signed distance. */
static __always_inline bool hg_seq_before(__u32 a, __u32 b)
{
	return (__s32)(a - b) < 0;
}

/* State of one pass over one segment of one stream (bpf_loop's context). */
struct hg_scan {
	struct __sk_buff *skb;
	struct hg_flow *f;
	struct hg_stream *s;
	struct hg_window *w;
	struct hg_window *line;
	const struct hg_flow_key *key;
	__u32 payload_off;
	__u32 seq; /* TCP sequence number of payload byte 0 */
	__u32 pos; /* offset in the payload */
	__u32 end; /* payload length */
	__u32 win_start;
	__u32 win_len;
	__u8 dir;
};

/*
 * Make the window cover payload[pos .. pos+need) as far as the payload goes.
 * Returns the number of bytes available from pos in the window.
 */
static __always_inline __u32 hg_window_at(struct hg_scan *c, __u32 need)
{
	__u32 win_end = c->win_start + c->win_len;

	/* Reuse the window if it covers what is asked, or everything up to the payload's end. */
	if (c->pos >= c->win_start && c->pos < win_end && (c->pos + need <= win_end || win_end >= c->end))
		return win_end - c->pos;
	if (c->pos >= c->end)
		return 0;
	/* 64-bit, so no zero-extension copy separates the checked register from the passed one. */
	__u64 len = c->end - c->pos;

	if (len > HG_WINDOW)
		len = HG_WINDOW;
	barrier_var(len);
	if (len < 1 || len > HG_WINDOW)
		return 0;
	if (bpf_skb_load_bytes(c->skb, c->payload_off + c->pos, c->w->b, len)) {
		c->win_len = 0;
		return 0;
	}
	c->win_start = c->pos;
	c->win_len = len;
	return len;
}

static __always_inline __u8 hg_byte_at(struct hg_scan *c, __u32 pos)
{
	return c->w->b[(pos - c->win_start) & (HG_WINDOW - 1)];
}

#endif
