//! Crafting Ethernet frames for BPF_PROG_TEST_RUN. Checksums are left zero:
//! a tc program sees packets before anything verifies them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Debug, Clone)]
pub struct Tcp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    /// What this segment acknowledges; 1 unless set (see `Parser::handshake`).
    pub ack: u32,
    pub flags: u8,
    pub vlan: Option<u16>,
    /// IPv4 options, a multiple of 4 bytes (IHL > 5).
    pub ip_options: Vec<u8>,
    pub payload: Vec<u8>,
    /// Cut the frame to this many bytes after building it (truncated headers).
    pub truncate: Option<usize>,
}

impl Tcp {
    pub fn v4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Tcp {
        Tcp {
            src: IpAddr::V4(Ipv4Addr::from(src)),
            dst: IpAddr::V4(Ipv4Addr::from(dst)),
            sport,
            dport,
            seq: 1000,
            ack: 1,
            flags: ACK | PSH,
            vlan: None,
            ip_options: Vec::new(),
            payload: Vec::new(),
            truncate: None,
        }
    }

    pub fn v6(src: &str, sport: u16, dst: &str, dport: u16) -> Tcp {
        Tcp {
            src: IpAddr::V6(src.parse::<Ipv6Addr>().unwrap()),
            dst: IpAddr::V6(dst.parse::<Ipv6Addr>().unwrap()),
            ..Tcp::v4([0; 4], sport, [0; 4], dport)
        }
    }

    pub fn payload(mut self, p: &[u8]) -> Tcp {
        self.payload = p.to_vec();
        self
    }

    pub fn seq(mut self, seq: u32) -> Tcp {
        self.seq = seq;
        self
    }

    pub fn ack(mut self, ack: u32) -> Tcp {
        self.ack = ack;
        self
    }

    pub fn flags(mut self, f: u8) -> Tcp {
        self.flags = f;
        self
    }

    pub fn vlan(mut self, id: u16) -> Tcp {
        self.vlan = Some(id);
        self
    }

    pub fn ip_options(mut self, opts: &[u8]) -> Tcp {
        assert_eq!(opts.len() % 4, 0);
        self.ip_options = opts.to_vec();
        self
    }

    pub fn truncate(mut self, n: usize) -> Tcp {
        self.truncate = Some(n);
        self
    }

    /// The same connection, the other way round.
    pub fn reply(&self) -> Tcp {
        Tcp {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            seq: 50_000,
            ack: 1,
            flags: ACK | PSH,
            payload: Vec::new(),
            truncate: None,
            ..self.clone()
        }
    }

    pub fn frame(&self) -> Vec<u8> {
        let mut tcp = Vec::new();
        tcp.extend(self.sport.to_be_bytes());
        tcp.extend(self.dport.to_be_bytes());
        tcp.extend(self.seq.to_be_bytes());
        tcp.extend(self.ack.to_be_bytes());
        tcp.push(5 << 4); // data offset: 20 bytes
        tcp.push(self.flags);
        tcp.extend(65535u16.to_be_bytes()); // window
        tcp.extend([0, 0, 0, 0]); // checksum, urgent
        tcp.extend(&self.payload);

        let (ethertype, ip) = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ihl = 5 + self.ip_options.len() / 4;
                let total = (ihl * 4 + tcp.len()) as u16;
                let mut ip = vec![(4 << 4) | ihl as u8, 0];
                ip.extend(total.to_be_bytes());
                ip.extend([0, 0, 0x40, 0]); // id, DF
                ip.extend([64, 6, 0, 0]); // ttl, TCP, checksum
                ip.extend(s.octets());
                ip.extend(d.octets());
                ip.extend(&self.ip_options);
                ip.extend(&tcp);
                (0x0800u16, ip)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let mut ip = vec![0x60, 0, 0, 0];
                ip.extend((tcp.len() as u16).to_be_bytes());
                ip.extend([6, 64]); // next header TCP, hop limit
                ip.extend(s.octets());
                ip.extend(d.octets());
                ip.extend(&tcp);
                (0x86DDu16, ip)
            }
            _ => panic!("mixed address families"),
        };
        let mut f = ethernet_header(self.vlan, ethertype);
        f.extend(ip);
        if let Some(n) = self.truncate {
            f.truncate(n);
        }
        f
    }
}

pub fn ethernet_header(vlan: Option<u16>, ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
    if let Some(id) = vlan {
        f.extend(0x8100u16.to_be_bytes());
        f.extend(id.to_be_bytes());
    }
    f.extend(ethertype.to_be_bytes());
    f
}

/// A UDP datagram carrying `payload` (must be ignored by the parser).
pub fn udp_v4(payload: &[u8]) -> Vec<u8> {
    let mut udp = Vec::new();
    udp.extend(40000u16.to_be_bytes());
    udp.extend(80u16.to_be_bytes());
    udp.extend(((8 + payload.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(payload);
    let mut ip = vec![0x45, 0];
    ip.extend(((20 + udp.len()) as u16).to_be_bytes());
    ip.extend([0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 2, 198, 18, 0, 1]);
    ip.extend(udp);
    let mut f = ethernet_header(None, 0x0800);
    f.extend(ip);
    f
}
