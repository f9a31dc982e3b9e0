/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The stream state machine: follows one direction of a tracked flow through
 * a segment by TCP sequence number, from a message start through its headers
 * and body to the next one, and falls back to the turn-around rule when the
 * boundaries are lost. Needs the `scratch` map (and what lib/aggregate.h
 * needs), declared by the includer.
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
static __always_inline int hg_step_idle(struct hg_scan *c)
{
	struct hg_stream *s = c->s;
	struct hg_prefix pre = {};
	__u32 avail = hg_window_at(c, HG_PREFIX);
	__u32 plen = s->partial_len;
	__u32 base = c->pos - c->win_start;

	if (plen > HG_PARTIAL_MAX)
		plen = 0;
	if (!plen) {
		/* The common case: the whole start is in this segment. Two words. */
		*(__u64 *)&pre.b[0] = *(const __u64 *)hg_at8(c->w, base);
		*(__u64 *)&pre.b[8] = *(const __u64 *)hg_at8(c->w, base + 8);
	} else {
		/* Read both sources every time and pick: no per-byte paths for the verifier to walk. */
		for (__u32 k = 0; k < HG_PREFIX; k++) {
			__u8 kept = s->partial[k & HG_PARTIAL_MAX];
			__u8 fresh = c->w->b[(base + k - plen) & (HG_WINDOW - 1)];

			pre.b[k] = k < plen ? kept : fresh;
		}
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
		if (c->dir == HG_DIR_REQ && c->pos == 0 && !c->f->pending &&
		    hg_looks_like_tls_hello(pre.b, n))
			hg_stat_inc(HG_STAT_TLS_SEEN);
		s->state = HG_ST_UNSYNCED;
		hg_stat_inc(HG_STAT_LOST_NOT_A_MESSAGE);
		return 1;
	}
	s->state = HG_ST_HEADERS;
	s->flags &= HG_SF_HAVE_SEQ;
	s->left = 0;
	if (c->dir == HG_DIR_REQ)
		hg_on_request(c, r);
	else
		hg_on_response(c, r);
	if (c->f->flags & HG_FLOW_UPGRADED)
		return 1;
	/* The start line itself is not a header line: the scan begins mid-line. */
	return 0;
}

/* The header block (or the trailers) is complete at c->pos. */
static __always_inline void hg_headers_done(struct hg_scan *c)
{
	struct hg_stream *s = c->s;
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
 * A header line starts at c->pos (its first bytes may have been kept from the
 * last segment). Note Content-Length and Transfer-Encoding: chunked. Returns 1
 * when the line's start is cut by the segment's end and was kept instead.
 * avail: bytes in the window from c->pos, at least HG_NAME_LOOKAHEAD + 1 unless
 * the payload ends sooner.
 */
static __always_inline int hg_header_line(struct hg_scan *c, __u32 avail)
{
	struct hg_stream *s = c->s;
	struct hg_header_value hv = {};
	const struct hg_window *line = c->w;
	__u32 off = c->pos - c->win_start, total = avail;

	if (s->partial_len) {
		/* The line's start was kept: read it joined with what follows. */
		total += hg_join_line(c->line, s, c->w, off);
		line = c->line;
		off = 0;
	} else if (avail >= 4) {
		/*
		 * Only "Content-Length" and "Transfer-Encoding" matter, and both
		 * start with "cont" or "tran": every other whole line is skipped for
		 * the price of one compare (most header lines are Host, Date, ...).
		 * Or-ing 0x20 lower-cases a letter and matches no other byte to one.
		 */
		__u32 x = (__u32)hg_load8(c->w, off) | 0x20202020;

		if (x != HG_LE4('c', 'o', 'n', 't') && x != HG_LE4('t', 'r', 'a', 'n'))
			return 0;
	}
	if (total > HG_LINE)
		total = HG_LINE;
	int nl = hg_find_newline(line, off, total);

	if (nl < 0 && total < HG_NAME_LOOKAHEAD && c->pos + avail >= c->end) {
		if (line == c->w)
			hg_join_line(c->line, s, c->w, off);
		hg_keep_line(s, c->line, total);
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
	if (line == c->w && nl > 0 && nl < HG_LINE)
		c->pos += nl;
	return 0;
}

/* Inside a start line, header block or trailers: one line (or one window of it) per step. */
static __always_inline int hg_step_headers(struct hg_scan *c)
{
	struct hg_stream *s = c->s;

	if (s->flags & HG_SF_LINE_START) {
		__u32 avail = hg_window_at(c, HG_NAME_LOOKAHEAD + 1);

		if (!avail)
			return 1;
		__u8 b0 = hg_byte_at(c, c->pos);

		if (s->partial_len) {
			/* The rest of a header line whose start was kept: not an empty line. */
		} else if (s->flags & HG_SF_LINE_START_CR) {
			/* The previous segment ended in "\r\n\r": this '\n' ends the block. */
			s->flags &= ~(HG_SF_LINE_START | HG_SF_LINE_START_CR);
			if (b0 == '\n') {
				c->pos += 1;
				hg_headers_done(c);
				return 0;
			}
		} else if (b0 == '\r') {
			if (avail < 2) {
				s->flags |= HG_SF_LINE_START_CR;
				c->pos += 1;
				return 1;
			}
			if (hg_byte_at(c, c->pos + 1) == '\n') {
				c->pos += 2;
				hg_headers_done(c);
				return 0;
			}
		} else if (b0 == '\n') {
			c->pos += 1;
			hg_headers_done(c);
			return 0;
		}
		if (s->state == HG_ST_HEADERS && hg_header_line(c, avail))
			return 1;
		s->flags &= ~HG_SF_LINE_START;
	}

	__u32 avail = hg_window_at(c, 1);

	if (!avail)
		return 1;
	/* Past the lines that need no look, to the next that does (hg_header_line's skip, in bulk). */
	int next = hg_next_line(c->w, c->pos - c->win_start, avail);

	if (next >= 0 && next <= HG_WINDOW) {
		c->pos += next;
		s->flags |= HG_SF_LINE_START;
		return 0;
	}
	c->pos += avail;
	return c->pos >= c->end;
}

/* Skip body bytes up to the body's end. */
static __always_inline int hg_step_body(struct hg_scan *c)
{
	struct hg_stream *s = c->s;
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

static __always_inline int hg_lose_sync(struct hg_scan *c)
{
	c->s->state = HG_ST_UNSYNCED;
	hg_stat_inc(HG_STAT_LOST_BAD_CHUNK);
	c->pos = c->end;
	return 1;
}

/* A chunk-size line: hex digits, optional extensions, CRLF; it may straddle segments. */
static __always_inline int hg_step_chunk_size(struct hg_scan *c)
{
	struct hg_stream *s = c->s;
	struct hg_chunk_line st = { .size = s->left, .ext = !!(s->flags & HG_SF_CHUNK_EXT) };
	__u32 avail = hg_window_at(c, 1);

	if (!avail)
		return 1;
	int used = hg_chunk_size_line(c->w, c->pos - c->win_start, avail, &st);

	if (used == HG_CHUNK_LINE_BAD)
		return hg_lose_sync(c);
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
static __always_inline int hg_step_unsynced(struct hg_scan *c)
{
	struct hg_flow *f = c->f;
	struct hg_prefix pre = {};

	if (c->pos != 0) {
		c->pos = c->end;
		return 1;
	}
	__u32 avail = hg_window_at(c, HG_PREFIX);

	for (__u32 k = 0; k < HG_PREFIX; k++)
		pre.b[k] = c->w->b[k & (HG_WINDOW - 1)];
	int r = hg_classify(&pre, avail < HG_PREFIX ? avail : HG_PREFIX, c->dir);
	bool turn = c->dir == HG_DIR_REQ ? !f->pending && !f->skipped : f->pending || f->skipped;

	if (r > 0 && turn) {
		c->s->state = HG_ST_IDLE;
		c->s->partial_len = 0;
		return 0;
	}
	c->pos = c->end;
	return 1;
}

static long hg_step(__u32 i, void *ctx)
{
	struct hg_scan *c = ctx;

	if (c->pos >= c->end)
		return 1;
	switch (c->s->state) {
	case HG_ST_IDLE:
		/* A message's start line and the header lines after it in one step. */
		if (hg_step_idle(c))
			return 1;
		return hg_step_headers(c);
	case HG_ST_HEADERS:
	case HG_ST_TRAILERS:
		return hg_step_headers(c);
	case HG_ST_BODY:
	case HG_ST_CHUNK_DATA:
		return hg_step_body(c);
	case HG_ST_CHUNK_SIZE:
		return hg_step_chunk_size(c);
	case HG_ST_UNSYNCED:
		return hg_step_unsynced(c);
	default: /* HG_ST_UNTIL_CLOSE */
		c->pos = c->end;
		return 1;
	}
}

/*
 * Advance one stream of a tracked flow over this segment's payload. Global:
 * the verifier walks the state machine once, not once per way of getting here.
 */
__noinline int hg_process_segment(struct __sk_buff *skb, const struct hg_packet *p, struct hg_flow *f,
				  __u32 dir)
{
	if (!skb || !p || !f)
		return 0;
	struct hg_stream *s = dir == HG_DIR_REQ ? &f->req : &f->resp;
	const struct hg_flow_key *key = dir == HG_DIR_REQ ? &p->req_key : &p->resp_key;
	__u32 seq = p->seq, len = p->payload_len, start = 0;

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

	__u32 zero = 0;
	struct hg_scratch *buf = bpf_map_lookup_elem(&scratch, &zero);

	if (!buf)
		return 0;
	struct hg_scan c = {
		.skb = skb,
		.f = f,
		.s = s,
		.w = &buf->w,
		.line = &buf->line,
		.key = key,
		.payload_off = p->payload_off,
		.seq = seq,
		.pos = start,
		.end = len,
		.dir = dir,
	};

	long steps = bpf_loop(HG_MAX_STEPS, hg_step, &c, 0);

	/* Stopping early is normal (an upgrade, a kept partial line); running out of steps is not. */
	if (steps >= HG_MAX_STEPS && c.pos < c.end && s->state != HG_ST_UNSYNCED) {
		/* Out of steps (a pathological header block): give up on this stream's boundaries. */
		s->state = HG_ST_UNSYNCED;
		hg_stat_inc(HG_STAT_LOST_TOO_COMPLEX);
	}
	return 0;
}

#endif
