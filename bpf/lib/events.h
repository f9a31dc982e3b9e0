/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What a start line does to its flow: a request is counted and queued for its
 * response (HTTP/1.1 pipelining, HG_PIPELINE_DEPTH deep); a final status
 * settles the oldest one and is observed in the latency histogram; 101, or a
 * 2xx to CONNECT, stops the parsing of the flow.
 */
#ifndef HG_LIB_EVENTS_H
#define HG_LIB_EVENTS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "http_golden.h"
#include "lib/aggregate.h"
#include "lib/scan.h"

/*
 * The connection is shown to be real: the requests held back until now are
 * counted. Requests beyond the queue on an unverified flow are not (their
 * methods were not kept). Global: it is rare, and verified once for its
 * callers here and in lib/flow.h.
 */
__noinline int hg_verify(struct hg_flow *f, const struct hg_flow_key *key)
{
	if (!f || !key || !(f->flags & HG_FLOW_UNVERIFIED))
		return 0;
	f->flags &= ~HG_FLOW_UNVERIFIED;
	/* Only flows a request started are counted as unverified (see hg_new_flow). */
	if (!f->handshake_ack)
		hg_stat_inc(HG_STAT_UNVERIFIED_CONFIRMED);
	for (__u32 i = 0; i < HG_PIPELINE_DEPTH; i++) {
		if (i >= f->pending)
			break;
		__u32 at = (f->head + i) % HG_PIPELINE_DEPTH;

		hg_count_request(key, f->ifindex, f->req_method[at], f->req_route[at]);
		hg_stat_inc(HG_STAT_REQUESTS_TRACKED);
	}
	return 0;
}

/* A request line on the flow's request stream, at the cursor. */
static __always_inline void hg_on_request(struct hg_flow *f, struct hg_scratch *x, __u8 method, __u8 route)
{
	f->req.method = method;
	if (!(f->flags & HG_FLOW_UNVERIFIED)) {
		hg_count_request(hg_key_of(x), f->ifindex, method, route);
		hg_stat_inc(HG_STAT_REQUESTS_TRACKED);
	}
	/*
	 * Once a request could not be queued, later ones must not be either, or
	 * the FIFO would pair a response with the wrong request.
	 */
	if (f->pending >= HG_PIPELINE_DEPTH || f->skipped) {
		if (f->skipped < 255)
			f->skipped++;
		hg_stat_inc(HG_STAT_PIPELINE_OVERFLOW);
		return;
	}
	__u32 idx = (f->head + f->pending) % HG_PIPELINE_DEPTH;

	f->req_ts[idx] = bpf_ktime_get_ns();
	f->req_method[idx] = method;
	f->req_route[idx] = route;
	f->pending++;
}

static __always_inline void hg_upgrade(struct hg_flow *f)
{
	f->flags |= HG_FLOW_UPGRADED;
	f->req.state = HG_ST_UNTIL_CLOSE;
	f->resp.state = HG_ST_UNTIL_CLOSE;
	hg_stat_inc(HG_STAT_UPGRADED);
}

/* A status line on the flow's response stream, at the cursor. */
static __always_inline void hg_on_response(struct hg_flow *f, struct hg_scratch *x, __u16 code)
{
	__u64 now = bpf_ktime_get_ns();

	/* A status line from the server side: whatever it says, the connection is real. */
	if (f->flags & HG_FLOW_UNVERIFIED)
		hg_verify(f, hg_key_of(x));
	/* 100 Continue, 102, 103 Early Hints: no body, and the final status is still to come. */
	if (code < 200 && code != 101) {
		f->resp.flags |= HG_SF_NO_BODY;
		return;
	}
	if (f->pending == 0) {
		if (f->skipped) {
			f->skipped--;
			hg_stat_inc(HG_STAT_REQUESTS_ANSWERED);
		} else {
			hg_stat_inc(HG_STAT_RESPONSE_NO_REQUEST);
		}
		return;
	}
	__u32 idx = f->head % HG_PIPELINE_DEPTH;
	__u64 start = f->req_ts[idx];
	__u8 method = f->req_method[idx];
	__u8 route = f->req_route[idx];

	f->head = (f->head + 1) % HG_PIPELINE_DEPTH;
	f->pending--;
	hg_stat_inc(HG_STAT_REQUESTS_ANSWERED);
	hg_observe(hg_key_of(x), f->ifindex, method, route, code, now > start ? now - start : 0);

	if (method == HG_METHOD_HEAD || code == 204 || code == 304)
		f->resp.flags |= HG_SF_NO_BODY;
	if (code == 101 || (method == HG_METHOD_CONNECT && code < 300))
		hg_upgrade(f);
}

#endif
