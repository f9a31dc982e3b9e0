/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One pass over one segment of one stream: the states and flags of a stream
 * (struct hg_stream in http_golden.h), the scan cursor, and loading the
 * payload window it reads through.
 *
 * The cursor lives in the per-CPU `scratch` map, not on the stack, and the
 * steps of the scan take it by pointer. What the verifier reads from map
 * memory is an unknown value, so it verifies a step once for every position
 * and length at once, instead of once per path that led there, and bpf_loop's
 * callback, which newer verifiers walk until its states repeat, repeats at
 * once (docs/kernels.md, "Why the parser stays far from the limit").
 */
#ifndef HG_LIB_SCAN_H
#define HG_LIB_SCAN_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/lines.h"
#include "lib/packet.h"
#include "lib/routes.h"

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

/* Where one pass over one segment of one stream is. */
struct hg_cursor {
	__u32 payload_off; /* of payload byte 0, in the packet */
	__u32 seq;         /* TCP sequence number of payload byte 0 */
	__u32 pos;         /* offset in the payload */
	__u32 end;         /* payload length */
	__u32 win_start;   /* the window holds payload[win_start .. win_start + win_len) */
	__u32 win_len;
	__u32 dir; /* HG_DIR_REQ or HG_DIR_RESP: which stream of the flow */
};

/*
 * The value of the per-CPU `scratch` map: what one program run works on, too
 * large for the 512-byte stack that all frames of a call chain share. A tc
 * program runs to its end on one CPU with bottom halves off, so no other run
 * on that CPU uses it meanwhile.
 */
struct hg_scratch {
	struct hg_packet pkt; /* the packet's headers */
	struct hg_cursor c;
	struct hg_window w;    /* the payload bytes being looked at */
	struct hg_window line; /* a header line joined across two segments */
	struct hg_path path;   /* a request's path, split for its route */
};

/* Per-CPU buffers: the BPF stack (512 bytes for all frames) is too small for them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hg_scratch);
} scratch SEC(".maps");

_Static_assert(__builtin_offsetof(struct hg_flow, resp) ==
		       __builtin_offsetof(struct hg_flow, req) + sizeof(struct hg_stream),
	       "hg_stream_of indexes the two streams of a flow as an array");

/*
 * The stream a cursor's direction follows. An offset, not a choice between
 * two fields: the verifier then walks the code after it once, not once per
 * stream.
 */
static __always_inline struct hg_stream *hg_stream_of(struct hg_flow *f, __u32 dir)
{
	return &f->req + (dir & 1);
}

_Static_assert(__builtin_offsetof(struct hg_packet, resp_key) ==
		       __builtin_offsetof(struct hg_packet, req_key) + sizeof(struct hg_flow_key),
	       "hg_key_of indexes the two orientations of a packet as an array");

/* The flow's key, oriented client -> server, for the stream the cursor follows: what series count under. */
static __always_inline const struct hg_flow_key *hg_key_of(const struct hg_scratch *x)
{
	return &x->pkt.req_key + (x->c.dir & 1);
}

/*
 * Make the window cover payload[pos .. pos+need) as far as the payload goes.
 * Returns the number of bytes available from pos in the window.
 */
static __always_inline __u32 hg_window_at(struct __sk_buff *skb, struct hg_scratch *x, __u32 need)
{
	struct hg_cursor *c = &x->c;
	__u32 pos = c->pos, end = c->end, win_end = c->win_start + c->win_len;

	/* Reuse the window if it covers what is asked, or everything up to the payload's end. */
	if (pos >= c->win_start && pos < win_end && (pos + need <= win_end || win_end >= end))
		return win_end - pos;
	if (pos >= end)
		return 0;
	__u64 len = end - pos;

	if (len > HG_WINDOW)
		len = HG_WINDOW;
	if (bpf_skb_load_bytes(skb, c->payload_off + pos, x->w.b, hg_load_len(len, HG_WINDOW))) {
		c->win_len = 0;
		return 0;
	}
	c->win_start = pos;
	c->win_len = len;
	return len;
}

/* The payload byte at `pos`, which the window holds. */
static __always_inline __u8 hg_byte_at(const struct hg_scratch *x, __u32 pos)
{
	return x->w.b[(pos - x->c.win_start) & (HG_WINDOW - 1)];
}

#endif
