//! The loaded parser programs, driven with crafted frames (BPF_PROG_TEST_RUN).

use hge_shared::abi::stat;
use std::os::fd::AsFd;
use std::sync::Arc;

use super::packet::{Tcp, ACK, SYN};
use hge_attacher::bpf::maps;
use hge_attacher::bpf::{self, LinkConfig, Loader, MapSizes, NativeConfig, ProgramConfig, Programs, SharedMaps};
use hge_shared::config::{StatusLabel, DEFAULT_BUCKETS};
use hge_shared::snapshot::{Method, Role, Snapshot};

/// TC_ACT_UNSPEC: the programs only observe, whatever they see.
const PASS: i32 = -1;

/// One target's settings, as the daemon derives them from the config.
pub struct Setup {
    pub target_id: u16,
    pub status_label: StatusLabel,
    pub buckets_s: Vec<f64>,
    pub ports: Vec<u16>,
    pub series_budget: u32,
    /// Route templates (none: requests carry no route).
    pub routes: Vec<String>,
}

impl Setup {
    fn program(&self) -> ProgramConfig {
        ProgramConfig {
            status_label: self.status_label,
            buckets_s: self.buckets_s.clone(),
            series_budget: self.series_budget,
            // The default config's native buckets: every parser test counts them too.
            native: Some(NativeConfig { schema: 3, zero_ns: 1000 }),
        }
    }

    fn link(&self) -> LinkConfig {
        LinkConfig { target_id: self.target_id, ports: self.ports.clone(), routes: self.routes.len() as u16 }
    }
}

/// The programs of one watched interface, run on crafted frames, and the maps.
pub struct Parser {
    pub progs: Programs,
    pub maps: Arc<SharedMaps>,
    nbuckets: usize,
    /// This interface's slot in `links`.
    pub slot: u32,
    /// Holds the tail-call array: the kernel empties it when its last fd closes.
    loader: Arc<Loader>,
}

impl Parser {
    pub fn new() -> Option<Parser> {
        Self::with(Setup {
            target_id: 3,
            status_label: StatusLabel::Class,
            buckets_s: DEFAULT_BUCKETS.to_vec(),
            ports: vec![],
            series_budget: 0,
            routes: vec![],
        })
    }

    pub fn with(cfg: Setup) -> Option<Parser> {
        Self::sized(cfg, MapSizes { flows: 1024, max_series: 64 })
    }

    pub fn sized(cfg: Setup, sizes: MapSizes) -> Option<Parser> {
        Some(Self::two(cfg, None, sizes)?.0)
    }

    /// One interface for target `a` and, if given, another for `b`, sharing
    /// the parser and its maps, as the daemon loads them.
    pub fn two(a: Setup, b: Option<Setup>, sizes: MapSizes) -> Option<(Parser, Option<Parser>)> {
        if !super::privileged(&[]) {
            return None;
        }
        let loader = Arc::new(Loader::new(sizes, a.program()).expect("loading the parser"));
        let maps = loader.maps();
        let interface = |slot: u32, s: &Setup| {
            maps::set_routes(&maps, s.target_id, &s.routes).unwrap();
            maps::set_link(&maps, slot, &s.link()).unwrap();
            let progs = loader.link_programs(slot).expect("loading an interface's programs");
            Parser { progs, maps: maps.clone(), nbuckets: s.buckets_s.len(), slot, loader: loader.clone() }
        };
        // Slots as the daemon gives them, the second one not 0: the slot is what tells them apart.
        Some((interface(0, &a), b.map(|b| interface(7, &b))))
    }

    /// Another interface's programs, at `slot`, sharing this parser and its
    /// maps; nothing fills that slot.
    pub fn sibling(&self, slot: u32) -> Parser {
        let progs = self.loader.link_programs(slot).expect("loading an interface's programs");
        Parser { progs, maps: self.maps.clone(), nbuckets: self.nbuckets, slot, loader: self.loader.clone() }
    }

    fn run(&self, prog: std::os::fd::BorrowedFd<'_>, frame: &[u8]) {
        assert_eq!(bpf::test_run(prog, frame).unwrap(), PASS);
    }

    /// The frame arrives (ingress) on the watched interface.
    pub fn ingress(&self, p: &Tcp) {
        self.run(self.progs.ingress.as_fd(), &p.frame());
    }

    /// The frame leaves (egress) through the watched interface.
    pub fn egress(&self, p: &Tcp) {
        self.run(self.progs.egress.as_fd(), &p.frame());
    }

    /// The server's SYN-ACK (egress) for the connection of this client segment,
    /// with ISN 0: the client's segments, which acknowledge 1 unless told
    /// otherwise, then show the connection real, as after a real handshake.
    pub fn handshake(&self, client: &Tcp) {
        self.egress(&client.reply().flags(SYN | ACK).seq(0).payload(b""));
    }

    pub fn raw_ingress(&self, frame: &[u8]) {
        self.run(self.progs.ingress.as_fd(), frame);
    }

    pub fn raw_egress(&self, frame: &[u8]) {
        self.run(self.progs.egress.as_fd(), frame);
    }

    pub fn snap(&self) -> Snapshot {
        hge_exporter::maps::read(&self.maps.reader().unwrap(), self.nbuckets).unwrap()
    }
}

pub fn requests(s: &Snapshot, role: Role, method: Method) -> u64 {
    s.requests.iter().filter(|(k, _)| k.role == role && k.method == method).map(|(_, v)| v).sum()
}

pub fn responses(s: &Snapshot, role: Role, method: Method, status: u16) -> u64 {
    s.latency
        .iter()
        .filter(|(k, _)| k.role == role && k.method == method && k.status == status)
        .map(|(_, h)| h.count)
        .sum()
}

/// Every accuracy counter is zero: nothing was dropped, lost, unanswered or ignored.
pub fn assert_clean(s: &Snapshot) {
    let st = &s.stats;
    let anomalies = [
        ("series_dropped", st[stat::SERIES_DROPPED]),
        ("unanswered_reset", st[stat::UNANSWERED_RESET]),
        ("unanswered_closed", st[stat::UNANSWERED_CLOSED]),
        ("response_no_request", st[stat::RESPONSE_NO_REQUEST]),
        ("pipeline_overflow", st[stat::PIPELINE_OVERFLOW]),
        ("retransmit_ignored", st[stat::RETRANSMIT_IGNORED]),
        ("upgraded", st[stat::UPGRADED]),
        ("tls_seen", st[stat::TLS_SEEN]),
        ("flow_insert_failed", st[stat::FLOW_INSERT_FAILED]),
        ("framing_lost", st.framing_lost_total()),
    ];
    for (name, v) in anomalies {
        assert_eq!(v, 0, "{name} on clean traffic: {st:?}");
    }
    // Native buckets are on in every parser test: each series' hold as many
    // observations as its classic buckets (the count is read as the native
    // sum, so it is the classic slots that are compared).
    for (k, h) in &s.latency {
        let native: u64 = h.native.iter().map(|(_, n)| n).sum::<u64>() + h.native_zero;
        assert_eq!(native, h.buckets.iter().sum::<u64>(), "native buckets of {k:?}: {h:?}");
    }
}

/// One TCP connection, its two byte streams numbered as TCP would.
pub struct Conn {
    pub base: Tcp,
    req_seq: u32,
    resp_seq: u32,
}

impl Conn {
    pub fn new(base: Tcp) -> Conn {
        // Near the wrap point, so sequence arithmetic is exercised too. The
        // client acknowledges the server's first byte, as after a handshake.
        let resp_seq = 0x7fff_fff0;
        Conn { req_seq: 0xffff_f000, resp_seq, base: base.ack(resp_seq) }
    }

    /// The server's SYN-ACK that starts this connection (send it with `egress`):
    /// after it, the client's segments show the connection real.
    pub fn syn_ack(&self) -> Tcp {
        self.base.reply().flags(SYN | ACK).seq(self.resp_seq.wrapping_sub(1)).ack(self.req_seq)
    }

    /// The next client -> server segment.
    pub fn client(&mut self, payload: &[u8]) -> Tcp {
        let t = self.base.clone().seq(self.req_seq).payload(payload);
        self.req_seq = self.req_seq.wrapping_add(payload.len() as u32);
        t
    }

    /// The next server -> client segment.
    pub fn server(&mut self, payload: &[u8]) -> Tcp {
        let t = self.base.reply().seq(self.resp_seq).payload(payload);
        self.resp_seq = self.resp_seq.wrapping_add(payload.len() as u32);
        t
    }
}
