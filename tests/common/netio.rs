//! Sockets inside a test namespace, and a small HTTP/1 reader for the client
//! side, so tests can write byte-exact traffic (split lines, pipelining, RST).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use hge_attacher::netns::in_netns;

fn ns_path(ns: &str) -> PathBuf {
    PathBuf::from(format!("/run/netns/{ns}"))
}

/// A socket's namespace is fixed when it is created: make it there.
pub fn connect(ns: &str, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let s = in_netns(Some(&ns_path(ns)), move || Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5))?))
        .unwrap_or_else(|e| panic!("connecting to {addr} in {ns}: {e:#}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Like `connect`, with IPv4 options on every packet of the connection.
pub fn connect_with_ip_options(ns: &str, addr: &str, options: &[u8]) -> TcpStream {
    use std::os::fd::AsRawFd;
    let addr: SocketAddr = addr.parse().unwrap();
    let options = options.to_vec();
    in_netns(Some(&ns_path(ns)), move || {
        let sock = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::empty(),
            None,
        )?;
        // SAFETY: plain setsockopt with a live buffer.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_OPTIONS,
                options.as_ptr().cast(),
                options.len() as u32,
            )
        };
        anyhow::ensure!(r == 0, "IP_OPTIONS: {}", std::io::Error::last_os_error());
        let s = TcpStream::from(sock);
        let sa = nix::sys::socket::SockaddrIn::from(match addr {
            SocketAddr::V4(v4) => v4,
            _ => anyhow::bail!("IPv4 only"),
        });
        nix::sys::socket::connect(s.as_raw_fd(), &sa)?;
        Ok(s)
    })
    .unwrap_or_else(|e| panic!("connecting with IP options: {e:#}"))
}

pub fn listen(ns: &str, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    in_netns(Some(&ns_path(ns)), move || Ok(TcpListener::bind(addr)?)).expect("listening in the namespace")
}

/// Reads one response; `head` says it answers a HEAD (no body whatever the headers).
/// Returns the final status (1xx interim responses are read and skipped).
pub fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> u16 {
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("status line");
        let status: u16 =
            line.get(9..12).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut length = None;
        let mut chunked = false;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = Some(v.trim().parse::<usize>().unwrap());
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        if status < 200 && status != 101 {
            continue;
        }
        if head || status == 204 || status == 304 || status == 101 {
            return status;
        }
        if chunked {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
                let mut skip = vec![0; n + 2];
                r.read_exact(&mut skip).unwrap();
                if n == 0 {
                    break;
                }
            }
        } else if let Some(n) = length {
            let mut body = vec![0; n];
            r.read_exact(&mut body).unwrap();
        }
        return status;
    }
}

pub fn write_all(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("writing to the server");
}

/// One connection (one descriptor), requests written as given, responses read in order.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn new(ns: &str, addr: &str) -> Client {
        Client::from_stream(connect(ns, addr))
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).unwrap();
        Client { reader: BufReader::new(stream) }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        write_all(self.reader.get_mut(), bytes);
    }

    pub fn get(&mut self, path: &str) -> u16 {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        read_response(&mut self.reader, false)
    }

    pub fn response(&mut self, head: bool) -> u16 {
        read_response(&mut self.reader, head)
    }
}
