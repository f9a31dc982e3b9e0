//! Interfaces appearing and going inside network namespaces other than ours,
//! as the kernel announces them: one rtnetlink socket per namespace, opened
//! from inside it (a netlink socket hears only the namespace it was made
//! in) and subscribed to link changes, all behind one epoll fd that the
//! attacher polls. Used for namespaces discovery found: a container's
//! interface is moved in just after its namespace appears, and is attached
//! when the kernel says so rather than at the next look.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::socket::{bind, recv, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType};

use crate::netns::{enter, Netns};

/// RTMGRP_LINK: new, changed and deleted links.
const LINK_GROUP: u32 = 1;

pub struct LinkEvents {
    epoll: Epoll,
    sockets: HashMap<u64, OwnedFd>,
}

impl AsFd for LinkEvents {
    /// Readable when a watched namespace's links changed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.0.as_fd()
    }
}

impl LinkEvents {
    pub fn new() -> Result<LinkEvents> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create1")?;
        Ok(LinkEvents { epoll, sockets: HashMap::new() })
    }

    /// Hear link changes in `netns`, reported under `token`.
    pub fn watch(&mut self, token: u64, netns: &Netns) -> Result<()> {
        if self.sockets.contains_key(&token) {
            return Ok(());
        }
        let sock = enter(Some(netns), || {
            let s = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                SockProtocol::NetlinkRoute,
            )
            .context("netlink socket")?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&s), &NetlinkAddr::new(0, LINK_GROUP)).context("netlink bind")?;
            Ok(s)
        })
        .with_context(|| format!("watching the interfaces of {netns}"))?;
        self.epoll.add(sock.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)).context("epoll_ctl netlink")?;
        self.sockets.insert(token, sock);
        Ok(())
    }

    pub fn unwatch(&mut self, token: u64) {
        if let Some(s) = self.sockets.remove(&token) {
            let _ = self.epoll.delete(s.as_fd());
        }
    }

    /// The tokens of namespaces whose links changed since the last call;
    /// what they said is read and dropped (the caller looks for itself).
    pub fn drain(&mut self) -> Vec<u64> {
        let mut ready = [EpollEvent::empty(); 64];
        let mut out = Vec::new();
        loop {
            let n = match self.epoll.wait(&mut ready, nix::poll::PollTimeout::ZERO) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            };
            for ev in &ready[..n] {
                let token = ev.data();
                if let Some(s) = self.sockets.get(&token) {
                    let mut buf = [0u8; 8192];
                    // ENOBUFS (the socket overflowed) also means "something changed".
                    while recv(std::os::fd::AsRawFd::as_raw_fd(s), &mut buf, MsgFlags::MSG_DONTWAIT)
                        .is_ok_and(|n| n > 0)
                    {}
                }
                if !out.contains(&token) {
                    out.push(token);
                }
            }
            if n < ready.len() {
                break;
            }
        }
        out
    }
}
