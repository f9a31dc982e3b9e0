/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Only what crosses the kernel/user boundary: the layouts of map keys and
 * values and the numbers userspace reads. The generated skeleton carries all
 * of it (from the object's BTF), and the Rust side
 * (src/attacher/bpf/abi.rs) asserts on it at compile time. Kernel-only definitions live in bpf/lib/.
 */
#ifndef HTTP_GOLDEN_H
#define HTTP_GOLDEN_H

#include <linux/types.h>

/* Enum constants, not macros, so that they reach the BTF (see struct hg_abi). */
enum hg_limit {
	/* Histogram bounds come from the config; one extra slot is the +Inf bucket. */
	HG_MAX_BUCKETS = 30,
	HG_HIST_SLOTS = HG_MAX_BUCKETS + 1,
	/* Requests a flow may have outstanding before a response (HTTP/1.1 pipelining). */
	HG_PIPELINE_DEPTH = 4,
	/* A target may restrict itself to this many server ports. */
	HG_MAX_PORTS = 64,
	/* Target ids are below this (the series budget is kept per target). */
	HG_MAX_TARGETS = 1024,
	/* Interfaces (in all namespaces) the programs may be attached to at once. */
	HG_MAX_LINKS = 4096,
	/* Most bytes of a line cut by a segment's end kept for the next one (hg_stream.partial). */
	HG_PARTIAL_MAX = 31,
	/* Route templates a target may have, in the order they are tried. */
	HG_MAX_ROUTES = 32,
	/* Segments before a template's final `*` (or all of them). */
	HG_ROUTE_SEGS = 8,
	/* Bytes of a template's literal segments, all together. */
	HG_ROUTE_BYTES = 128,
	/* Bytes of a request's path read to match it. */
	HG_PATH_MAX = 128,
	/* hg_series_key.route of a request whose path matched none of its target's templates. */
	HG_ROUTE_OTHER = 255,
	/*
	 * Boundaries of the native (exponential) buckets userspace computes for the
	 * configured schema (struct hg_native_bounds), and the cells of each power
	 * of two of ns a latency's top bits pick its place in that table by.
	 */
	HG_NATIVE_TABLE = 16384,
	HG_NATIVE_CELL_BITS = 10,
	HG_NATIVE_CELLS = 64 << HG_NATIVE_CELL_BITS,
};

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
	HG_STAT_SERIES_DROPPED = 0,  /* an aggregate map was full: an observation was not recorded */
	HG_STAT_UNANSWERED_RESET,    /* requests pending when a RST ended the connection */
	HG_STAT_UNANSWERED_CLOSED,   /* requests pending when the server's FIN ended the connection */
	HG_STAT_RESPONSE_NO_REQUEST, /* a final status line with no request waiting for it */
	HG_STAT_PIPELINE_OVERFLOW,   /* requests beyond HG_PIPELINE_DEPTH: counted, not timed */
	HG_STAT_RETRANSMIT_IGNORED,  /* a data segment seen again (TCP sequence not new) */
	HG_STAT_UPGRADED,            /* 101 Switching Protocols (or CONNECT 2xx): no longer parsed */
	HG_STAT_TLS_SEEN,            /* a TLS ClientHello on a watched port */
	HG_STAT_FLOW_INSERT_FAILED,  /* the flow map refused a new flow */
	HG_STAT_FLOWS_CREATED,       /* flows inserted (userspace derives evictions from these) */
	HG_STAT_FLOWS_ENDED,         /* flows deleted on FIN/RST */
	HG_STAT_REQUESTS_TRACKED,    /* requests queued (or skipped) on a flow */
	HG_STAT_REQUESTS_ANSWERED,   /* requests settled by a final status line */
	HG_STAT_UNVERIFIED_FLOWS, /* flows a request started with no handshake seen (spoofed, or open before
				     start) */
	HG_STAT_UNVERIFIED_CONFIRMED, /* ... and later shown real (the server answered) */
	HG_STAT_NOT_LOCAL, /* a request on a connection no local socket is an end of: forwarded or bridged
			      here */
	HG_STAT_ROUTE_PATH_CUT, /* a path longer than HG_PATH_MAX (or cut by the segment's end), matched on
				   its start */
	/* A stream lost its message boundaries and fell back to the turn-around rule, because of: */
	HG_STAT_LOST_GAP,           /* bytes missing from the sequence (never seen by this hook) */
	HG_STAT_LOST_NOT_A_MESSAGE, /* bytes where a message should start that are not one */
	HG_STAT_LOST_UNREADABLE,    /* a framing header whose value could not be read */
	HG_STAT_LOST_BAD_CHUNK,     /* a malformed chunk-size line */
	HG_STAT_LOST_TOO_COMPLEX,   /* a segment needing more parsing steps than allowed */
	HG_STAT_MAX,
};

/*
 * One TCP connection as one target sees it. Both directions map to this key:
 * it is oriented by role, not by packet direction. `role` is part of the key
 * because on loopback the same request passes egress and ingress of one
 * interface, once for each side. The interface is not: a connection seen on
 * two interfaces of one target (a bridge and its port) is one flow, owned by
 * the interface that saw it first (hg_flow.ifindex).
 */
struct hg_flow_key {
	__u8 client_addr[16]; /* IPv4 is stored in the first 4 bytes */
	__u8 server_addr[16];
	__u32 pad;         /* zero */
	__u16 client_port; /* host byte order */
	__u16 server_port;
	__u16 target_id;
	__u8 family; /* 4 or 6 */
	__u8 role;   /* enum hg_role */
};

struct hg_stream {
	__u64 left;     /* HEADERS: the Content-Length value; CHUNK_SIZE: the size so far */
	__u32 end_seq;  /* BODY, CHUNK_DATA: sequence number just after the body (or chunk + CRLF) */
	__u32 next_seq; /* TCP sequence of the first byte not yet processed */
	__u8 state;     /* enum hg_stream_state (lib/scan.h) */
	__u8 flags;     /* HG_SF_* (lib/scan.h) */
	__u8 method;    /* request stream: method of the message being parsed */
	__u8 partial_len;
	__u8 partial[HG_PARTIAL_MAX + 1]; /* a start line or header line cut short by the segment's end */
};

/* struct hg_flow.flags */
enum hg_flow_flag {
	HG_FLOW_UPGRADED = 1 << 0,
	/*
	 * Ended by the server's FIN or a RST. Kept (not deleted) so that late
	 * retransmissions are recognised as such; a SYN on the same 4-tuple, or the
	 * LRU, removes it.
	 */
	HG_FLOW_CLOSED = 1 << 1,
	/*
	 * Not (yet) shown to be a real connection: tc ingress sees packets before
	 * the firewall, from anyone. A flow is real once the client acknowledges
	 * the server's SYN-ACK (handshake_ack) or the server answers; until then
	 * its requests are queued but not counted.
	 */
	HG_FLOW_UNVERIFIED = 1 << 2,
};

struct hg_flow {
	__u64 req_ts[HG_PIPELINE_DEPTH]; /* bpf_ktime_get_ns() of each pending request line */
	__u8 req_method[HG_PIPELINE_DEPTH];
	__u8 req_route[HG_PIPELINE_DEPTH]; /* each pending request's route (hg_series_key.route) */
	__u8 head;                         /* oldest pending request */
	__u8 pending;                      /* requests waiting for a final status */
	__u8 flags;                        /* enum hg_flow_flag */
	__u8 skipped;          /* requests beyond the depth, answered before anything queued later */
	struct hg_stream req;  /* client -> server */
	struct hg_stream resp; /* server -> client */
	__u32 handshake_ack;   /* the server's ISN + 1, from its SYN-ACK: what a real client acknowledges */
	__u32 ifindex;         /* the interface that owns the flow: the only one whose segments are parsed */
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
	__u8 route; /* 0: the target has no routes; 1 + index of the template; HG_ROUTE_OTHER */
	__u8 pad;   /* zero */
	__u16 pad2; /* zero */
};

struct hg_hist {
	__u64 slots[HG_HIST_SLOTS]; /* NOT cumulative: slot i counts bounds[i-1] < v <= bounds[i] */
	__u64 sum_ns;
	__u64 count;
};

/*
 * One native bucket of one latency series: the value is its count. Sparse:
 * only buckets that were hit have an entry. `zero` set: the zero bucket
 * (latencies at or under the zero threshold), and index is 0.
 */
struct hg_native_key {
	struct hg_series_key series;
	__s32 index; /* bucket (2^((index-1)/2^schema), 2^(index/2^schema)] seconds */
	__u32 zero;
};

/*
 * The native buckets' upper boundaries in ns, the value of the one-entry
 * `native_bounds` array: ns[i] = floor(1e9 * 2^((cfg_native_kstart + i) / 2^schema)),
 * and u64 max past the last boundary below 2^64 ns. For an integer v, v <= ns[i]
 * exactly when v <= the real boundary, so the first i with v <= ns[i] is v's bucket.
 */
struct hg_native_bounds {
	__u64 ns[HG_NATIVE_TABLE];
	/*
	 * cell[o << HG_NATIVE_CELL_BITS | c]: for the latencies v with 2^o <= v < 2^(o+1)
	 * whose HG_NATIVE_CELL_BITS bits after the top one are c, the first i with
	 * v <= ns[i] is cell[..] or the one after it (userspace checks it).
	 */
	__u16 cell[HG_NATIVE_CELLS];
};

/* The parser's programs in the per-interface programs' tail-call array (bpf/link.bpf.c). */
enum hg_parser {
	HG_PARSE_INGRESS = 0,
	HG_PARSE_EGRESS = 1,
	HG_PARSERS = 2,
};

/*
 * One interface the programs are on: a slot of the `links` array, which the
 * interface's own program (bpf/link.bpf.c) hands to the parser. It says which
 * target the interface belongs to and the server ports watched there.
 */
struct hg_link {
	__u16 target_id;
	__u16 nports; /* 0: every port */
	__u16 active; /* 0: a free slot; the parser ignores the packet */
	__u16 routes; /* templates of the target's (the `routes` map); 0: request paths are not read */
	__u16 ports[HG_MAX_PORTS];
};

/* hg_route.kind */
enum hg_segment {
	HG_SEG_LITERAL = 0, /* the bytes lit[off .. off+len), exactly */
	HG_SEG_PARAM = 1,   /* `{name}`: any one non-empty segment */
};

/*
 * One path template, compiled by userspace: `nseg` segments, each a literal
 * or a parameter, then, if `star`, anything (zero or more segments).
 */
struct hg_route {
	__u8 nseg;
	__u8 star;
	__u8 kind[HG_ROUTE_SEGS]; /* enum hg_segment */
	__u8 len[HG_ROUTE_SEGS];  /* a literal's length */
	__u8 off[HG_ROUTE_SEGS];  /* a literal's first byte in lit */
	__u8 pad[6];
	__u8 lit[HG_ROUTE_BYTES + 8]; /* eight bytes of slack: literals are compared a word at a time */
};

/*
 * A target's templates, tried in order: the value of the `routes` map, keyed
 * by target id. A path split into n segments (HG_ROUTE_SEGS + 1: that many or
 * more) can only match the templates whose bits are set in whole[n], or, when
 * it was cut, in cut[n]: the others are not tried at all.
 */
struct hg_routes {
	__u32 n;
	__u32 pad;
	__u32 whole[HG_ROUTE_SEGS + 2];
	__u32 cut[HG_ROUTE_SEGS + 2];
	struct hg_route r[HG_MAX_ROUTES];
};

/*
 * Never read. http_golden.bpf.c declares one (hg_abi) so that these enums are
 * part of the object's BTF: enums only used inside inline functions do not
 * reach it, and the generated skeleton carries only what the BTF has.
 */
struct hg_abi {
	enum hg_role role;
	enum hg_method method;
	enum hg_stat stat;
	enum hg_flow_flag flow_flag;
	enum hg_limit limit;
	enum hg_parser parser;
	enum hg_segment segment;
};

#endif
