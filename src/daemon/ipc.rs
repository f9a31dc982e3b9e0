//! The channel between the attacher (parent) and the exporter (child): a UNIX
//! SOCK_SEQPACKET socketpair made before fork. Messages are TOML documents,
//! split into chunks that fit one packet each. Either end closing is the other
//! end's signal that its partner is gone.
//!
//! The child to parent direction is the untrusted one: the exporter parses
//! the network. The attacher's end refuses messages over MAX_FROM_CHILD,
//! reads without blocking (`recv_now`), and notices a message left half sent
//! (`stalled`); child.rs judges what complete messages may change.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::topology::Topology;

/// Payload bytes per packet; the first byte of each packet says whether more follow.
const CHUNK: usize = 16 * 1024;
/// Largest message the exporter accepts from the attacher (a topology of
/// 1024 targets with their interfaces is a few MiB).
const MAX_FROM_PARENT: usize = 64 << 20;
/// Largest message the attacher accepts from the exporter: a Ready or a Pong
/// is well under 1 KiB.
pub const MAX_FROM_CHILD: usize = 64 << 10;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Msg {
    /// Parent to child: what is attached now, and the names that label it.
    Topology(Topology),
    /// Parent to child: answer with Pong (the watchdog and STATUS= are fed from it).
    Ping { seq: u64 },
    /// Parent to child: exit now, with status 0.
    Stop,
    /// Child to parent: the first read of the maps succeeded; serving.
    Ready { series: u64 },
    /// Child to parent: result of a map read made for this ping.
    Pong { seq: u64, ok: bool, series: u64, error: String },
}

impl Msg {
    /// The message's kind, never its (untrusted) content, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Topology(_) => "Topology",
            Msg::Ping { .. } => "Ping",
            Msg::Stop => "Stop",
            Msg::Ready { .. } => "Ready",
            Msg::Pong { .. } => "Pong",
        }
    }
}

pub struct Channel {
    fd: OwnedFd,
    partial: Vec<u8>,
    /// Messages longer than this are refused.
    max_message: usize,
    /// When the first packet of the message in `partial` arrived.
    partial_since: Option<Instant>,
}

/// What one packet completed.
pub enum Step {
    Msg(Msg),
    Partial,
    Eof,
}

impl Channel {
    /// Two connected ends, close-on-exec: the parent's (which reads at most
    /// MAX_FROM_CHILD per message) and the child's.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .context("socketpair")?;
        let end = |fd, max_message| Channel { fd, partial: Vec::new(), max_message, partial_since: None };
        Ok((end(a, MAX_FROM_CHILD), end(b, MAX_FROM_PARENT)))
    }

    /// A message was begun more than `deadline` ago and is still incomplete.
    pub fn stalled(&self, deadline: Duration) -> bool {
        self.partial_since.is_some_and(|t| t.elapsed() > deadline)
    }

    /// When an incomplete message must be complete, if one is pending.
    pub fn partial_deadline(&self, deadline: Duration) -> Option<Instant> {
        self.partial_since.map(|t| t + deadline)
    }

    /// A blocking send waits at most this long for room (a partner that stopped reading).
    pub fn set_send_timeout(&self, t: Duration) -> Result<()> {
        let tv = nix::sys::time::TimeVal::new(t.as_secs() as _, t.subsec_micros() as _);
        socket::setsockopt(&self.fd, sockopt::SendTimeout, &tv).context("SO_SNDTIMEO")?;
        Ok(())
    }

    pub fn set_nonblocking(&self) -> Result<()> {
        let fd = self.fd.as_raw_fd();
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(())
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with(msg, MsgFlags::empty())
    }

    /// Send without waiting for room; fails with EAGAIN when the partner lags.
    pub fn send_now(&self, msg: &Msg) -> Result<()> {
        self.send_with(msg, MsgFlags::MSG_DONTWAIT)
    }

    fn send_with(&self, msg: &Msg, flags: MsgFlags) -> Result<()> {
        let text = toml::to_string(msg).context("encoding a message")?;
        let bytes = text.as_bytes();
        let mut chunks = bytes.chunks(CHUNK).peekable();
        if bytes.is_empty() {
            bail!("empty message");
        }
        let mut packet = Vec::with_capacity(CHUNK + 1);
        while let Some(c) = chunks.next() {
            packet.clear();
            packet.push(u8::from(chunks.peek().is_some()));
            packet.extend_from_slice(c);
            // MSG_NOSIGNAL: a partner that died is an EPIPE error, not SIGPIPE.
            let n = socket::send(self.fd.as_raw_fd(), &packet, flags | MsgFlags::MSG_NOSIGNAL)
                .context("sending to the other process")?;
            if n != packet.len() {
                bail!("short send: {n} of {} bytes", packet.len());
            }
        }
        Ok(())
    }

    /// Read one packet. WouldBlock (on a non-blocking channel) is returned as an error.
    pub fn recv_step(&mut self) -> io::Result<Step> {
        self.recv_with(MsgFlags::empty())
    }

    /// Read one packet if one is waiting, without blocking (WouldBlock otherwise),
    /// whatever the fd's mode: the attacher's sends stay blocking with a timeout.
    pub fn recv_now(&mut self) -> io::Result<Step> {
        self.recv_with(MsgFlags::MSG_DONTWAIT)
    }

    /// `recv_now`, with None when nothing is waiting (and EINTR retried).
    pub fn try_recv(&mut self) -> io::Result<Option<Step>> {
        loop {
            match self.recv_now() {
                Ok(step) => return Ok(Some(step)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn recv_with(&mut self, flags: MsgFlags) -> io::Result<Step> {
        let invalid = |this: &mut Channel, msg: String| {
            this.partial = Vec::new();
            this.partial_since = None;
            Err(io::Error::new(io::ErrorKind::InvalidData, msg))
        };
        let mut buf = vec![0u8; CHUNK + 1];
        // MSG_TRUNC: the packet's real length, so that a longer one is noticed.
        let n = socket::recv(self.fd.as_raw_fd(), &mut buf, flags | MsgFlags::MSG_TRUNC).map_err(io::Error::from)?;
        if n == 0 {
            return Ok(Step::Eof);
        }
        if n > buf.len() {
            return invalid(self, format!("a packet of {n} bytes, over the {} allowed", buf.len()));
        }
        let more = buf[0] != 0;
        if self.partial.len() + n - 1 > self.max_message {
            return invalid(self, format!("a message over {} bytes", self.max_message));
        }
        self.partial.extend_from_slice(&buf[1..n]);
        self.partial_since.get_or_insert_with(Instant::now);
        if more {
            return Ok(Step::Partial);
        }
        self.partial_since = None;
        let bytes = std::mem::take(&mut self.partial);
        let text = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let msg = toml::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Step::Msg(msg))
    }

    /// Blocking receive of a whole message; None once the other end has closed.
    pub fn recv(&mut self) -> Result<Option<Msg>> {
        loop {
            match self.recv_step() {
                Ok(Step::Msg(m)) => return Ok(Some(m)),
                Ok(Step::Partial) => continue,
                Ok(Step::Eof) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("receiving from the other process"),
            }
        }
    }
}

impl AsRawFd for Channel {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Attached, Direction, Discovered, InterfaceName, Mode, Program, TargetNames};

    #[test]
    fn messages_round_trip_including_ones_larger_than_a_packet() {
        let (a, mut b) = Channel::pair().unwrap();
        let big = Topology {
            targets: (0..300)
                .map(|id| TargetNames {
                    id,
                    name: format!("target \"{id}\" with a long name {}", "x".repeat(100)),
                    container: Some(format!("container {id}")),
                    interfaces: vec![InterfaceName { ifindex: 7, name: "eth0".into() }],
                })
                .collect(),
            attached: vec![Attached {
                target: "t".into(),
                container: Some("c".into()),
                interface: "eth0".into(),
                direction: Direction::Ingress,
                mode: Mode::Tcx,
            }],
            discovery: vec![Discovered { name: "containers".into(), namespaces: 300, limit_reached: 2 }],
            programs: vec![Program { name: "hg_parse_ingress".into(), verified_instructions: 123_456 }],
        };
        // The reader runs concurrently: a message of many packets may exceed the socket buffer.
        let msgs = vec![
            Msg::Topology(big),
            Msg::Ping { seq: 3 },
            Msg::Stop,
            Msg::Ready { series: 12 },
            Msg::Pong { seq: 3, ok: false, series: 0, error: "boom".into() },
        ];
        let sent = msgs.clone();
        let writer = std::thread::spawn(move || {
            for m in &sent {
                a.send(m).unwrap();
            }
        });
        for m in &msgs {
            assert_eq!(b.recv().unwrap().as_ref(), Some(m));
        }
        writer.join().unwrap();
        assert_eq!(b.recv().unwrap(), None, "EOF once the sender is gone");
    }

    #[test]
    fn topology_gives_names_and_attached() {
        let t = Topology {
            targets: vec![TargetNames { id: 2, name: "web".into(), container: None, interfaces: vec![] }],
            attached: vec![Attached {
                target: "web".into(),
                container: None,
                interface: "veth0".into(),
                direction: Direction::Egress,
                mode: Mode::Tc,
            }],
            discovery: vec![],
            programs: vec![],
        };
        let (a, mut b) = Channel::pair().unwrap();
        a.send(&Msg::Topology(t.clone())).unwrap();
        let Some(Msg::Topology(got)) = b.recv().unwrap() else { panic!("expected a topology") };
        assert_eq!(got.attached[0].direction, Direction::Egress);
        assert_eq!(got.attached[0].mode, Mode::Tc);
        assert_eq!(got, t);
    }
}
