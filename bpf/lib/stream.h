/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The stream state machine: follows one direction of a tracked flow through
 * a segment by TCP sequence number, from a message start through its headers
 * and body to the next one, and falls back to the turn-around rule when the
 * boundaries are lost.
 *
 * bpf_loop runs one step per call of its callback. A message's start and its
 * header lines (lib/message.h), the steps of most packets, are inline there;
 * the rarer steps here (bodies that end in the segment, chunk-size lines,
 * lost framing) are global functions, which the verifier checks once, apart
 * from its walk of the callback (docs/kernels.md).
 */
#ifndef HG_LIB_STREAM_H
#define HG_LIB_STREAM_H

#include <stdbool.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/aggregate.h"
#include "lib/classify.h"
#include "lib/events.h"
#include "lib/lines.h"
#include "lib/message.h"
#include "lib/packet.h"
#include "lib/scan.h"

/* Work units per packet (window loads, header lines, bodies, chunks). */
#define HG_MAX_STEPS 512

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
