//! `http-golden-exporter top`: a live terminal view of a running exporter's
//! HTTP metrics, fetched over HTTP(S) like Prometheus would. A program of its
//! own (`http-golden-exporter-top`, which the daemon's `top` command runs), so
//! that the daemon links no terminal UI.
//!
//! Everything that decides what is shown is plain code with tests: `expo`
//! parses the text format and `proto` the protobuf one, `reading` groups
//! series by row, `rows` turns two readings into rates, 5xx shares and
//! quantiles (`quantile` from classic buckets, `native` from native ones, which
//! only protobuf carries), `pace` decides
//! which fetches to compare, `table` sorts and filters, `scroll` picks the rows
//! that fit on screen. `fetch` talks HTTP; `draw` and [`run`] are the thin
//! terminal layer. Nothing here imports the daemon.

mod draw;
pub mod expo;
mod fetch;
mod native;
mod pace;
mod proto;
mod quantile;
mod reading;
mod rows;
mod scroll;
mod table;

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use table::{Action, Key, View};

/// The command line of `http-golden-exporter top`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "http-golden-exporter top",
    bin_name = "http-golden-exporter top",
    version,
    about = "Live terminal view of a running exporter: request rate, 5xx share, p50 and p99 per target, container, \
             port, method and route",
    long_about = None
)]
pub struct Cli {
    #[command(flatten)]
    pub args: Args,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Metrics URL of the exporter to watch, local or remote (http or https)
    #[arg(long, value_name = "URL", default_value = "http://localhost:10114/metrics", value_parser = url)]
    pub url: String,

    /// Time between two fetches ("1s", "500ms"; at least 100ms)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    pub interval: Duration,

    /// User name for basic auth (basic_auth_users of the exporter's web config)
    #[arg(long = "basic-auth.username", value_name = "USER", requires = "password_file")]
    pub username: Option<String>,

    /// File whose first line is the basic auth password
    #[arg(long = "basic-auth.password-file", value_name = "FILE", requires = "username")]
    pub password_file: Option<PathBuf>,

    /// CA certificates (PEM) to verify the exporter's certificate with [default:
    /// the Mozilla roots built in]
    #[arg(long = "tls.ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Client certificate (PEM) for an exporter whose client_auth_type asks for one
    #[arg(long = "tls.cert-file", value_name = "FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,

    /// Private key (PEM) of the client certificate
    #[arg(long = "tls.key-file", value_name = "FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,

    /// Do not verify the exporter's certificate (for testing only)
    #[arg(long = "tls.insecure-skip-verify", conflicts_with = "ca_file")]
    pub insecure_skip_verify: bool,
}

fn url(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
    match rest {
        // The URL is shown on screen: a password in it would be too.
        Some(r) if r.split('/').next().is_some_and(|authority| authority.contains('@')) => {
            Err("no credentials in the URL: use --basic-auth.username and --basic-auth.password-file".into())
        }
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(s.to_string()),
        _ => Err("expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH".into()),
    }
}

fn interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("at least 100ms".into());
    }
    Ok(d)
}

/// What the screen shows, and since when.
pub struct Screen {
    pub url: String,
    pub interval: Duration,
    pub tracker: pace::Tracker,
    pub view: View,
    /// The last fetch failed: why, and since when it has been failing.
    pub error: Option<(String, Instant)>,
    pub last_ok: Option<Instant>,
}

/// Runs until `q` or Ctrl-C. Credentials and certificates are read first, so
/// that a wrong path is an error before the screen is taken over.
pub fn run(args: Args) -> anyhow::Result<()> {
    let client = fetch::Client::new(&args)?;
    let (tx, rx) = mpsc::channel();
    let mut screen = Screen {
        url: client.url().to_string(),
        interval: args.interval,
        tracker: pace::Tracker::default(),
        view: View::default(),
        error: None,
        last_ok: None,
    };
    // SIGTERM, SIGHUP and SIGINT (Ctrl-C is a key in raw mode) end it as q does,
    // so that the terminal is given back.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGTERM, SIGHUP, SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing a signal handler")?;
    }
    fetch::spawn(client, args.interval, tx);
    let mut terminal = ratatui::try_init().context("setting up the terminal (top needs one)")?;
    watch_hangup();
    let result = event_loop(&mut terminal, &mut screen, &rx, &stop);
    ratatui::restore();
    result
}

/// crossterm's reader loops for ever on a terminal that hung up (every read
/// returns 0 bytes), so the event loop would see no key and no stop flag again,
/// and spin: this thread ends the process once the terminal is gone (a closed
/// ssh session, a killed tmux).
fn watch_hangup() {
    let (watch_in, watch_out) = (std::io::stdin().is_terminal(), std::io::stdout().is_terminal());
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_millis(250));
        let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
        let mut polled = Vec::new();
        if watch_in {
            polled.push(PollFd::new(stdin.as_fd(), PollFlags::empty()));
        }
        if watch_out {
            polled.push(PollFd::new(stdout.as_fd(), PollFlags::empty()));
        }
        let hung_up = |p: &PollFd| p.revents().is_some_and(|r| r.contains(PollFlags::POLLHUP));
        if poll(&mut polled, PollTimeout::ZERO).is_ok() && polled.iter().any(hung_up) {
            std::process::exit(1);
        }
    });
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    screen: &mut Screen,
    rx: &mpsc::Receiver<Result<reading::Reading, String>>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut drawn = Instant::now();
    let mut dirty = true;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if dirty || drawn.elapsed() >= Duration::from_secs(1) {
            terminal.draw(|f| draw::draw(f, screen))?;
            drawn = Instant::now();
            dirty = false;
        }
        if event::poll(Duration::from_millis(50))? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let Some(key) = key(k.code, k.modifiers) else { continue };
                    match screen.view.key(key) {
                        Action::Quit => return Ok(()),
                        Action::Redraw => dirty = true,
                        Action::Nothing => {}
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        while let Ok(result) = rx.try_recv() {
            dirty = true;
            match result {
                Ok(snap) => {
                    screen.tracker.update(snap);
                    screen.error = None;
                    screen.last_ok = Some(Instant::now());
                }
                Err(e) => {
                    let since = screen.error.take().map_or_else(Instant::now, |(_, t)| t);
                    screen.error = Some((e, since));
                }
            }
        }
    }
}

fn key(code: KeyCode, mods: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        assert!(url("http://localhost:10114/metrics").is_ok());
        assert!(url("https://10.0.0.1/metrics").is_ok());
        for bad in ["localhost:10114", "ftp://h/", "http://", "http:///metrics"] {
            assert!(url(bad).is_err(), "{bad}");
        }
        assert!(url("https://prometheus:secret@host/metrics").unwrap_err().contains("--basic-auth.password-file"));
        assert!(url("http://host/metrics?user=a@b").is_ok(), "an @ after the host is no credential");
    }

    #[test]
    fn intervals_are_durations_of_at_least_100ms() {
        assert_eq!(interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval("250ms"), Ok(Duration::from_millis(250)));
        assert!(interval("10ms").is_err());
        assert!(interval("soon").is_err());
    }

    #[test]
    fn ctrl_c_is_a_key_of_its_own() {
        assert_eq!(key(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Key::CtrlC));
        assert_eq!(key(KeyCode::Char('c'), KeyModifiers::NONE), Some(Key::Char('c')));
        assert_eq!(key(KeyCode::F(1), KeyModifiers::NONE), None);
        assert_eq!(key(KeyCode::PageDown, KeyModifiers::NONE), Some(Key::PageDown));
        assert_eq!(key(KeyCode::End, KeyModifiers::NONE), Some(Key::End));
    }
}
