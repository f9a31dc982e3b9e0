/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The stream state machine: follows one direction of a tracked flow through
 * a segment by TCP sequence number, from a message start through its headers
 * and body to the next one, and falls back to the turn-around rule when the
 * boundaries are lost. Needs what lib/aggregate.h needs.
 *
 * bpf_loop runs one step per call of its callback; each step is a global
 * function of (skb, flow, scratch), and so is each state's handler, so that
 * the verifier checks each once (lib/scan.h says why).
 */
#ifndef HG_LIB_STREAM_H
#define HG_LIB_STREAM_H

#include "http_golden.h"
#include "lib/aggregate.h"
#include "lib/classify.h"
#include "lib/events.h"
#include "lib/lines.h"
#include "lib/packet.h"
#include "lib/scan.h"

/* Work units per packet (window loads, header lines, bodies, chunks). */
#define HG_MAX_STEPS 512

/* Where a message should begin: classify it, joining a start kept from the last segment. */
static __always_inline int hg_step_idle(struct __sk_buff *skb, struct hg_flow *f, struct hg_scratch *x)
{
	if (!skb || !f || !x)
		return 1;
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
		hg_on_request(f, x, r);
	else
		hg_on_response(f, x, r);
	if (f->flags & HG_FLOW_UPGRADED)
		return 1;
	/* The start line itself is not a header line: the scan begins mid-line. */
	return 0;
}

/* The header block (or the trailers) is complete at the cursor. */
static __always_inline int hg_headers_done(struct hg_flow *f, struct hg_scratch *x)
{
	if (!f || !x)
		return 0;
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
			return 0;
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
	return 0;
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
	if (!f || !x)
		return 0;
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
	if (!skb || !f || !x)
		return 1;
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

/* Skip body bytes up to the body's end. */
__noinline int hg_step_body(struct hg_flow *f, struct hg_scratch *x)
{
	if (!f || !x)
		return 1;
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);
	__s32 to_end = s->end_seq - (c->seq + c->pos);

	if (to_end <= 0 || (__u32)to_end <= c->end - c->pos) {
		if (to_end > 0)
			c->pos += to_end;
		if (s->state == HG_ST_CHUNK_DATA)
			s->state = HG_ST_CHUNK_SIZE;
		else /* the end of a body whose length we could not follow: boundaries are lost */
			s->state = s->left >= HG_UNTRUSTED_BODY ? HG_ST_UNSYNCED : HG_ST_IDLE;
		s->left = 0; /* the next chunk-size line accumulates from zero */
		return 0;
	}
	c->pos = c->end;
	return 1;
}

/* A chunk-size line: hex digits, optional extensions, CRLF; it may straddle segments. */
__noinline int hg_step_chunk_size(struct __sk_buff *skb, struct hg_flow *f, struct hg_scratch *x)
{
	if (!skb || !f || !x)
		return 1;
	struct hg_cursor *c = &x->c;
	struct hg_stream *s = hg_stream_of(f, c->dir);
	struct hg_chunk_line st = { .size = s->left, .ext = !!(s->flags & HG_SF_CHUNK_EXT) };
	__u32 avail = hg_window_at(skb, x, 1);

	if (!avail)
		return 1;
	int used = hg_chunk_size_line(&x->w, c->pos - c->win_start, avail, &st);

	if (used == HG_CHUNK_LINE_BAD) {
		s->state = HG_ST_UNSYNCED;
		hg_stat_inc(HG_STAT_LOST_BAD_CHUNK);
		c->pos = c->end;
		return 1;
	}
	s->left = st.size;
	if (used == HG_CHUNK_LINE_MORE) {
		if (st.ext)
			s->flags |= HG_SF_CHUNK_EXT;
		c->pos += avail;
		return c->pos >= c->end;
	}
	c->pos += used & (2 * HG_WINDOW - 1);
	s->flags &= ~HG_SF_CHUNK_EXT;
	if (s->left == 0) {
		s->state = HG_ST_TRAILERS;
		s->flags |= HG_SF_LINE_START;
	} else if (s->left < HG_UNTRUSTED_BODY) {
		s->state = HG_ST_CHUNK_DATA;
		s->end_seq = c->seq + c->pos + (__u32)s->left + 2; /* and the CRLF after the data */
	} else {
		/* As a Content-Length past 2 GiB: 2 GiB of body, then the turn-around rule. */
		s->end_seq = c->seq + c->pos + HG_UNTRUSTED_BODY;
		s->state = HG_ST_BODY;
		hg_stat_inc(HG_STAT_LOST_BAD_CHUNK);
	}
	return 0;
}

/*
 * Boundaries lost: a message may begin only at a segment start, and only
 * when the other direction says it is this one's turn.
 */
__noinline int hg_step_unsynced(struct __sk_buff *skb, struct hg_flow *f, struct hg_scratch *x)
{
	if (!skb || !f || !x)
		return 1;
	struct hg_cursor *c = &x->c;
	struct hg_prefix pre = {};

	if (c->pos != 0) {
		c->pos = c->end;
		return 1;
	}
	__u32 avail = hg_window_at(skb, x, HG_PREFIX);

	for (__u32 k = 0; k < HG_PREFIX; k++)
		pre.b[k] = x->w.b[k & (HG_WINDOW - 1)];
	int r = hg_classify(&pre, avail < HG_PREFIX ? avail : HG_PREFIX, c->dir);
	bool turn = c->dir == HG_DIR_REQ ? !f->pending && !f->skipped : f->pending || f->skipped;

	if (r > 0 && turn) {
		struct hg_stream *s = hg_stream_of(f, c->dir);

		s->state = HG_ST_IDLE;
		s->partial_len = 0;
		return 0;
	}
	c->pos = c->end;
	return 1;
}

/* bpf_loop's context: pointers only, so that every call of the callback starts from the same state. */
struct hg_loop {
	struct __sk_buff *skb;
	struct hg_flow *f;
	struct hg_scratch *x;
};

/*
 * A step function's result as bpf_loop's callback must return it: 0 or 1, in
 * a way the verifier can see (clang knows the callee returns nothing else,
 * and would drop the test).
 */
static __always_inline long hg_stop(int r)
{
	barrier_var(r);
	return r ? 1 : 0;
}

/* One step at the cursor, by the state of its stream: 0 to go on, 1 to stop. */
static long hg_step(__u32 i, void *ctx)
{
	struct hg_loop *l = ctx;
	struct __sk_buff *skb = l->skb;
	struct hg_flow *f = l->f;
	struct hg_scratch *x = l->x;

	if (x->c.pos >= x->c.end)
		return 1;
	switch (hg_stream_of(f, x->c.dir)->state) {
	case HG_ST_IDLE:
		/* A message's start line and the header lines after it in one step. */
		if (hg_stop(hg_step_idle(skb, f, x)))
			return 1;
		return hg_stop(hg_step_headers(skb, f, x));
	case HG_ST_HEADERS:
	case HG_ST_TRAILERS:
		return hg_stop(hg_step_headers(skb, f, x));
	case HG_ST_BODY:
	case HG_ST_CHUNK_DATA:
		return hg_stop(hg_step_body(f, x));
	case HG_ST_CHUNK_SIZE:
		return hg_stop(hg_step_chunk_size(skb, f, x));
	case HG_ST_UNSYNCED:
		return hg_stop(hg_step_unsynced(skb, f, x));
	default: /* HG_ST_UNTIL_CLOSE */
		x->c.pos = x->c.end;
		return 1;
	}
}

/*
 * Advance one stream of a tracked flow over this segment's payload. Global:
 * the verifier walks it once, not once per way of getting here.
 */
__noinline int hg_process_segment(struct __sk_buff *skb, struct hg_scratch *x, struct hg_flow *f, __u32 dir)
{
	if (!skb || !x || !f)
		return 0;
	struct hg_stream *s = hg_stream_of(f, dir);
	__u32 seq = x->pkt.seq, len = x->pkt.payload_len, start = 0;

	if (!(s->flags & HG_SF_HAVE_SEQ)) {
		s->next_seq = seq;
		s->flags |= HG_SF_HAVE_SEQ;
	} else if (!hg_seq_before(s->next_seq, seq + len)) {
		/* Every byte was seen before: a retransmission, or the same packet again. */
		hg_stat_inc(HG_STAT_RETRANSMIT_IGNORED);
		return 0;
	} else if (hg_seq_before(seq, s->next_seq)) {
		start = s->next_seq - seq; /* partly new: resume where we stopped */
	} else if (seq != s->next_seq) {
		/*
		 * Bytes we have not seen (lost before this hook, or still on another
		 * CPU). Inside a body they were body; elsewhere the boundaries are
		 * lost until the turn-around says otherwise.
		 */
		bool in_body = (s->state == HG_ST_BODY || s->state == HG_ST_CHUNK_DATA) &&
			       !hg_seq_before(s->end_seq, seq);

		if (!in_body && s->state != HG_ST_UNTIL_CLOSE && s->state != HG_ST_UNSYNCED) {
			s->state = HG_ST_UNSYNCED;
			hg_stat_inc(HG_STAT_LOST_GAP);
		}
		if (!in_body)
			s->partial_len = 0;
	}
	s->next_seq = seq + len;
	if (f->flags & (HG_FLOW_UPGRADED | HG_FLOW_CLOSED) || s->state == HG_ST_UNTIL_CLOSE)
		return 0;
	if (s->state == HG_ST_BODY || s->state == HG_ST_CHUNK_DATA) {
		/* Inside a body that goes on past this segment (hg_step_body's case): nothing to read. */
		__s32 to_end = s->end_seq - (seq + start);

		if (to_end > 0 && (__u32)to_end > len - start)
			return 0;
	}

	x->c.payload_off = x->pkt.payload_off;
	x->c.seq = seq;
	x->c.pos = start;
	x->c.end = len;
	x->c.win_start = 0;
	x->c.win_len = 0;
	x->c.dir = dir;

	struct hg_loop l = { .skb = skb, .f = f, .x = x };
	long steps = bpf_loop(HG_MAX_STEPS, hg_step, &l, 0);

	/* Stopping early is normal (an upgrade, a kept partial line); running out of steps is not. */
	if (steps >= HG_MAX_STEPS && x->c.pos < x->c.end && s->state != HG_ST_UNSYNCED) {
		/* Out of steps (a pathological header block): give up on this stream's boundaries. */
		s->state = HG_ST_UNSYNCED;
		hg_stat_inc(HG_STAT_LOST_TOO_COMPLEX);
	}
	return 0;
}

#endif
