/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * A message's start and its header block, the steps most packets take: where
 * a message should begin (its start line classified, joined with a start
 * kept from the last segment), and its header lines, of which only
 * Content-Length and Transfer-Encoding are read, up to the empty line that
 * decides what follows. Inline in bpf_loop's callback (lib/stream.h): a global
 * call would cost on every packet.
 */
#ifndef HG_LIB_MESSAGE_H
#define HG_LIB_MESSAGE_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/aggregate.h"
#include "lib/classify.h"
#include "lib/events.h"
#include "lib/lines.h"
#include "lib/scan.h"

/*
 * The route of the request line at the cursor (method `method`, its start
 * joined in x->line when `joined`): its path read from the window, or from
 * the joined line, and matched against the target's templates.
 */
static __always_inline __u8 hg_request_route(struct __sk_buff *skb, struct hg_scratch *x, __u32 joined,
					     __u32 method)
{
	__u32 mlen = hg_method_len(method);
	const struct hg_window *line = &x->line;
	__u32 off = mlen, avail = HG_LINE;

	if (!joined) {
		avail = hg_window_at(skb, x, HG_PATH_MAX + 16);
		line = &x->w;
		off = x->c.pos - x->c.win_start + mlen;
	}
	avail = avail > mlen ? avail - mlen : 0;
	__u8 route = hg_route_of(x->pkt.req_key.target_id, line, off, avail, &x->path);

	if (x->path.cut)
		hg_stat_inc(HG_STAT_ROUTE_PATH_CUT);
	return route;
}

/* Where a message should begin: classify it, joining a start kept from the last segment. */
static __always_inline int hg_step_idle(struct __sk_buff *skb, struct hg_flow *f, struct hg_scratch *x)
{
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);
	struct hg_prefix pre = {};
	__u32 avail = hg_window_at(skb, x, HG_PREFIX);
	__u32 plen = s->partial_len;
	__u32 base = c->pos - c->win_start;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	if (plen) {
		/* A start kept from the last segment: joined with what follows, then read as below. */
		hg_join_line(&x->line, s, &x->w, base);
		*(__u64 *)&pre.b[0] = *(const __u64 *)hg_at8(&x->line, 0);
		*(__u64 *)&pre.b[8] = *(const __u64 *)hg_at8(&x->line, 8);
	} else {
		/* The common case: the whole start is in this segment. Two words. */
		*(__u64 *)&pre.b[0] = *(const __u64 *)hg_at8(&x->w, base);
		*(__u64 *)&pre.b[8] = *(const __u64 *)hg_at8(&x->w, base + 8);
	}
	__u32 n = plen + avail;

	if (n > HG_PREFIX)
		n = HG_PREFIX;

	int r = hg_classify(&pre, n, c->dir);

	if (r < 0 && c->pos + avail >= c->end && n < HG_PREFIX) {
		/* A start line cut short by the segment's end: keep it for the next one. */
		for (__u32 k = 0; k < HG_PREFIX; k++)
			s->partial[k] = pre.b[k];
		s->partial_len = n;
		c->pos = c->end;
		return 1;
	}
	s->partial_len = 0;
	if (r <= 0) {
		if (c->dir == HG_DIR_REQ && c->pos == 0 && !f->pending && hg_looks_like_tls_hello(pre.b, n))
			hg_stat_inc(HG_STAT_TLS_SEEN);
		s->state = HG_ST_UNSYNCED;
		hg_stat_inc(HG_STAT_LOST_NOT_A_MESSAGE);
		return 1;
	}
	s->state = HG_ST_HEADERS;
	s->flags &= HG_SF_HAVE_SEQ;
	s->left = 0;
	if (c->dir == HG_DIR_REQ)
		hg_on_request(f, x, r, x->pkt.routes ? hg_request_route(skb, x, plen, r) : 0);
	else
		hg_on_response(f, x, r);
	if (f->flags & HG_FLOW_UPGRADED)
		return 1;
	/* The start line itself is not a header line: the scan begins mid-line. */
	return 0;
}

/* The header block (or the trailers) is complete at the cursor. */
static __always_inline void hg_headers_done(struct hg_flow *f, struct hg_scratch *x)
{
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);
	__u8 fl = s->flags;

	s->flags &= HG_SF_HAVE_SEQ;
	if (s->state == HG_ST_TRAILERS || (fl & HG_SF_NO_BODY)) {
		s->state = HG_ST_IDLE;
	} else if (fl & HG_SF_CHUNKED) {
		s->state = HG_ST_CHUNK_SIZE;
		s->left = 0;
	} else if (fl & HG_SF_HAS_CL) {
		if (s->left == 0) {
			s->state = HG_ST_IDLE;
		} else if (s->left < HG_UNTRUSTED_BODY) {
			/* An absolute end: reordered or racing segments inside the body cannot shift it. */
			s->end_seq = c->seq + c->pos + (__u32)s->left;
			s->state = HG_ST_BODY;
		} else {
			/*
			 * Beyond half the sequence space: its end is not representable.
			 * Its first 2 GiB are body all the same (no message starts there,
			 * whoever answered); then the turn-around rule. `left` stays
			 * this large, which is how hg_step_body knows.
			 */
			s->end_seq = c->seq + c->pos + HG_UNTRUSTED_BODY;
			s->state = HG_ST_BODY;
			hg_stat_inc(HG_STAT_LOST_UNREADABLE);
			return;
		}
	} else if (c->dir == HG_DIR_REQ) {
		/* No length, no body (RFC 9112 6.3) -- unless a header went unread. */
		bool bodyless = s->method == HG_METHOD_GET || s->method == HG_METHOD_HEAD;

		s->state = (fl & HG_SF_UNSURE) && !bodyless ? HG_ST_UNSYNCED : HG_ST_IDLE;
	} else {
		s->state = (fl & HG_SF_UNSURE) ? HG_ST_UNSYNCED : HG_ST_UNTIL_CLOSE;
	}
	if (s->state == HG_ST_UNSYNCED)
		hg_stat_inc(HG_STAT_LOST_UNREADABLE);
}

/*
 * A header line starts at the cursor (its first bytes may have been kept from
 * the last segment). Note Content-Length and Transfer-Encoding: chunked.
 * Returns 1 when the line's start is cut by the segment's end and was kept
 * instead. avail: bytes in the window from the cursor, at least
 * HG_NAME_LOOKAHEAD + 1 unless the payload ends sooner.
 */
static __always_inline int hg_header_line(struct hg_flow *f, struct hg_scratch *x, __u32 avail)
{
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);
	struct hg_header_value hv = {};
	const struct hg_window *line = &x->w;
	__u32 off = c->pos - c->win_start, total = avail;

	if (s->partial_len) {
		/* The line's start was kept: read it joined with what follows. */
		total += hg_join_line(&x->line, s, &x->w, off);
		line = &x->line;
		off = 0;
	} else if (avail >= 4) {
		/*
		 * Only "Content-Length" and "Transfer-Encoding" matter, and both
		 * start with "cont" or "tran": every other whole line is skipped for
		 * the price of one compare (most header lines are Host, Date, ...).
		 * Or-ing 0x20 lower-cases a letter and matches no other byte to one.
		 */
		__u32 w4 = (__u32)hg_load8(&x->w, off) | 0x20202020;

		if (w4 != HG_LE4('c', 'o', 'n', 't') && w4 != HG_LE4('t', 'r', 'a', 'n'))
			return 0;
	}
	if (total > HG_LINE)
		total = HG_LINE;
	int nl = hg_find_newline(line, off, total);

	if (nl < 0 && total < HG_NAME_LOOKAHEAD && c->pos + avail >= c->end) {
		if (line == &x->w)
			hg_join_line(&x->line, s, &x->w, off);
		hg_keep_line(s, &x->line, total);
		c->pos = c->end;
		return 1;
	}
	s->partial_len = 0;
	switch (hg_header_kind(line, off, nl >= 0 ? nl + 1 : total, &hv)) {
	case HG_HDR_LENGTH:
		s->left = hv.v;
		s->flags |= HG_SF_HAS_CL;
		break;
	case HG_HDR_CHUNKED:
		s->flags |= HG_SF_CHUNKED;
		break;
	case HG_HDR_UNREAD:
		s->flags |= HG_SF_UNSURE;
		break;
	}
	/* Its '\n' is known: the scan for the next line starts there, not at the line's start. */
	if (line == &x->w && nl > 0 && nl < HG_LINE)
		c->pos += nl;
	return 0;
}

/* Inside a start line, header block or trailers: one line (or one window of it) per step. */
static __always_inline int hg_step_headers(struct __sk_buff *skb, struct hg_flow *f, struct hg_scratch *x)
{
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);

	if (s->flags & HG_SF_LINE_START) {
		__u32 avail = hg_window_at(skb, x, HG_NAME_LOOKAHEAD + 1);

		if (!avail)
			return 1;
		__u8 b0 = hg_byte_at(x, c->pos);

		if (s->partial_len) {
			/* The rest of a header line whose start was kept: not an empty line. */
		} else if (s->flags & HG_SF_LINE_START_CR) {
			/* The previous segment ended in "\r\n\r": this '\n' ends the block. */
			s->flags &= ~(HG_SF_LINE_START | HG_SF_LINE_START_CR);
			if (b0 == '\n') {
				c->pos += 1;
				hg_headers_done(f, x);
				return 0;
			}
		} else if (b0 == '\r') {
			if (avail < 2) {
				s->flags |= HG_SF_LINE_START_CR;
				c->pos += 1;
				return 1;
			}
			if (hg_byte_at(x, c->pos + 1) == '\n') {
				c->pos += 2;
				hg_headers_done(f, x);
				return 0;
			}
		} else if (b0 == '\n') {
			c->pos += 1;
			hg_headers_done(f, x);
			return 0;
		}
		if (s->state == HG_ST_HEADERS && hg_header_line(f, x, avail))
			return 1;
		s->flags &= ~HG_SF_LINE_START;
	}

	__u32 avail = hg_window_at(skb, x, 1);

	if (!avail)
		return 1;
	/* Past the lines that need no look, to the next that does (hg_header_line's skip, in bulk). */
	int next = hg_next_line(&x->w, c->pos - c->win_start, avail);

	if (next >= 0 && next <= HG_WINDOW) {
		c->pos += next;
		s->flags |= HG_SF_LINE_START;
		return 0;
	}
	c->pos += avail;
	return c->pos >= c->end;
}

#endif
