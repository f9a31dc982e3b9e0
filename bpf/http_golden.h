/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Everything that crosses the kernel/user boundary. src/maps.rs mirrors these
 * layouts; tests/bpf_parser.rs checks the sizes against the generated skeleton.
 */
#ifndef HTTP_GOLDEN_H
#define HTTP_GOLDEN_H

/* Histogram bounds come from the config; one extra slot is the +Inf bucket. */
#define HG_MAX_BUCKETS 30
#define HG_HIST_SLOTS (HG_MAX_BUCKETS + 1)
/* Requests a flow may have outstanding before a response (HTTP/1.1 pipelining). */
#define HG_PIPELINE_DEPTH 4
/* A target may restrict itself to this many server ports. */
#define HG_MAX_PORTS 64

enum hg_role {
	HG_ROLE_SERVER = 0, /* request arrived on ingress: a local service answered it */
	HG_ROLE_CLIENT = 1, /* request left on egress: a local client sent it */
};

enum hg_method {
	HG_METHOD_GET = 1,
	HG_METHOD_HEAD,
	HG_METHOD_POST,
	HG_METHOD_PUT,
	HG_METHOD_DELETE,
	HG_METHOD_CONNECT,
	HG_METHOD_OPTIONS,
	HG_METHOD_TRACE,
	HG_METHOD_PATCH,
};

/* Self-metric slots in the `stats` per-CPU array. */
enum hg_stat {
	HG_STAT_SERIES_DROPPED = 0,    /* an aggregate map was full: an observation was not recorded */
	HG_STAT_UNANSWERED_RESET,      /* requests pending when a RST ended the connection */
	HG_STAT_UNANSWERED_CLOSED,     /* requests pending when the server's FIN ended the connection */
	HG_STAT_RESPONSE_NO_REQUEST,   /* a status line with no request waiting for it */
	HG_STAT_PIPELINE_OVERFLOW,     /* requests beyond HG_PIPELINE_DEPTH: counted, not timed */
	HG_STAT_RETRANSMIT_IGNORED,    /* a message start seen again (TCP sequence not new) */
	HG_STAT_UPGRADED,              /* 101 Switching Protocols: the flow is no longer parsed */
	HG_STAT_TLS_SEEN,              /* a TLS ClientHello on a watched port */
	HG_STAT_FLOW_INSERT_FAILED,    /* the flow map refused a new flow */
	HG_STAT_MAX,
};

/*
 * One TCP connection as seen by one program instance on one interface. Both
 * directions map to this key: it is oriented by role, not by packet direction.
 * `role` is part of the key because on loopback (and bridges) the same request
 * passes egress and ingress of one interface, once for each side.
 */
struct hg_flow_key {
	__u8 client_addr[16]; /* IPv4 is stored in the first 4 bytes */
	__u8 server_addr[16];
	__u32 ifindex;
	__u16 client_port; /* host byte order */
	__u16 server_port;
	__u16 target_id;
	__u8 family; /* 4 or 6 */
	__u8 role;   /* enum hg_role */
};

#define HG_FLOW_HAVE_REQ_SEQ (1 << 0)
#define HG_FLOW_HAVE_RESP_SEQ (1 << 1)
#define HG_FLOW_UPGRADED (1 << 2)

struct hg_flow {
	__u64 req_ts[HG_PIPELINE_DEPTH]; /* bpf_ktime_get_ns() of each pending request line */
	__u8 req_method[HG_PIPELINE_DEPTH];
	__u8 head;    /* oldest pending request */
	__u8 pending; /* requests waiting for a final status */
	__u8 flags;
	__u8 skipped; /* requests beyond the depth, answered before anything queued later */
	__u32 req_seq_end;  /* TCP sequence just after the last request start we counted */
	__u32 resp_seq_end; /* same for responses */
};

/*
 * One time series. Request counters use status = 0; histograms carry the status
 * class (2 for 2xx) or the code (200), depending on cfg_status_code.
 */
struct hg_series_key {
	__u32 ifindex;
	__u16 target_id;
	__u16 port; /* server port: local for HG_ROLE_SERVER, remote for HG_ROLE_CLIENT */
	__u8 role;
	__u8 method;
	__u16 status;
};

struct hg_hist {
	__u64 slots[HG_HIST_SLOTS]; /* NOT cumulative: slot i counts bounds[i-1] < v <= bounds[i] */
	__u64 sum_ns;
	__u64 count;
};

#endif
