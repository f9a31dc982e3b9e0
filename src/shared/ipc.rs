//! The channel between the attacher (parent) and the exporter (child): a UNIX
//! SOCK_SEQPACKET socketpair made before fork. Messages are TOML documents,
//! split into chunks that fit one packet each. Either end closing is the other
//! end's signal that its partner is gone.
//!
//! One way to send (`send`) and one to receive (`recv`, which never waits:
//! each process waits in its own loop, the attacher in poll, the exporter in
//! tokio).
//!
//! The child to parent direction is the untrusted one: the exporter parses
//! the network. The attacher's end refuses messages over MAX_FROM_CHILD and
//! notices a message left half sent (`partial_deadline`); src/attacher/child.rs
//! judges what complete messages may change.

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

/// What one `recv` found.
#[derive(Debug)]
pub enum Recv {
    /// A whole message.
    Msg(Msg),
    /// A packet of a message not complete yet.
    Partial,
    /// Nothing waiting: the caller's poll says when to look again.
    Empty,
    /// The other end closed.
    Closed,
}

/// How long the attacher's sends wait for room before they fail: a partner
/// that stopped reading must not hold up its loop for longer.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

impl Channel {
    /// Two connected ends, close-on-exec: the parent's (the attacher's: it
    /// reads at most MAX_FROM_CHILD per message, and its sends wait at most
    /// SEND_TIMEOUT for room, since a topology can fill the socket buffer) and
    /// the child's (the exporter's: its sends never wait, as its runtime thread
    /// also serves scrapes; a lost answer is a ping not answered).
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .context("socketpair")?;
        let tv = nix::sys::time::TimeVal::new(SEND_TIMEOUT.as_secs() as _, SEND_TIMEOUT.subsec_micros() as _);
        socket::setsockopt(&a, sockopt::SendTimeout, &tv).context("SO_SNDTIMEO")?;
        let flags = nix::fcntl::fcntl(b.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(b.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
        let end = |fd, max_message| Channel { fd, partial: Vec::new(), max_message, partial_since: None };
        Ok((end(a, MAX_FROM_CHILD), end(b, MAX_FROM_PARENT)))
    }

    /// When the message begun in an earlier packet must be complete, if one is:
    /// `deadline` after its first packet.
    pub fn partial_deadline(&self, deadline: Duration) -> Option<Instant> {
        self.partial_since.map(|t| t + deadline)
    }

    /// Send one message, in as many packets as it takes.
    pub fn send(&self, msg: &Msg) -> Result<()> {
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
            let n = socket::send(self.fd.as_raw_fd(), &packet, MsgFlags::MSG_NOSIGNAL)
                .context("sending to the other process")?;
            if n != packet.len() {
                bail!("short send: {n} of {} bytes", packet.len());
            }
        }
        Ok(())
    }

    /// Read one packet if one is waiting; never waits. A message that is
    /// malformed or over the end's limit is an InvalidData error.
    pub fn recv(&mut self) -> io::Result<Recv> {
        let invalid = |this: &mut Channel, msg: String| {
            this.partial = Vec::new();
            this.partial_since = None;
            Err(io::Error::new(io::ErrorKind::InvalidData, msg))
        };
        let mut buf = vec![0u8; CHUNK + 1];
        // MSG_TRUNC: the packet's real length, so that a longer one is noticed.
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return Ok(Recv::Empty),
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(Recv::Closed);
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
            return Ok(Recv::Partial);
        }
        self.partial_since = None;
        let bytes = std::mem::take(&mut self.partial);
        let text = String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let msg = toml::from_str(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Recv::Msg(msg))
    }
}

/// Wait until `ch` has something to read, or `timeout` passes (None: for ever).
pub fn wait_readable(ch: &Channel, timeout: Option<Duration>) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let timeout = timeout.map_or(PollTimeout::NONE, |t| PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX));
    loop {
        match poll(&mut [PollFd::new(ch.fd.as_fd(), PollFlags::POLLIN)], timeout) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map(|_| ()).context("poll"),
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

    /// The next whole message, waiting for it; None once the other end has closed.
    fn recv_waiting(ch: &mut Channel) -> Result<Option<Msg>> {
        loop {
            match ch.recv().context("receiving from the other process")? {
                Recv::Msg(m) => return Ok(Some(m)),
                Recv::Closed => return Ok(None),
                Recv::Partial => {}
                Recv::Empty => wait_readable(ch, None)?,
            }
        }
    }

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
                    routes: vec![],
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
            assert_eq!(recv_waiting(&mut b).unwrap().as_ref(), Some(m));
        }
        writer.join().unwrap();
        assert_eq!(recv_waiting(&mut b).unwrap(), None, "EOF once the sender is gone");
    }

    #[test]
    fn topology_gives_names_and_attached() {
        let t = Topology {
            targets: vec![TargetNames {
                id: 2,
                name: "web".into(),
                container: None,
                interfaces: vec![],
                routes: vec![],
            }],
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
        let Some(Msg::Topology(got)) = recv_waiting(&mut b).unwrap() else { panic!("expected a topology") };
        assert_eq!(got.attached[0].direction, Direction::Egress);
        assert_eq!(got.attached[0].mode, Mode::Tc);
        assert_eq!(got, t);
    }
}
