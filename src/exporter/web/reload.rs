//! The web config as the exporter serves with it: loaded at start (a bad file
//! is fatal), then re-read when the file or any certificate, key or CA it names
//! changes (checked at most once a second, on new connections and requests),
//! so certificates rotate without a restart. A bad file later keeps the last
//! good config and is logged.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;

use super::config::{self, WebConfig};

const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What identifies a file's content cheaply: device, inode, size, mtime, ctime.
type Stamp = Option<(u64, u64, u64, i64, i64, i64, i64)>;

fn stamp(p: &Path) -> Stamp {
    // metadata() follows symlinks: a rotated `..data` link (Kubernetes secrets) counts.
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

pub struct Watched {
    path: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    current: Arc<WebConfig>,
    stamps: Vec<(PathBuf, Stamp)>,
    checked: Instant,
}

fn stamps(files: &[PathBuf]) -> Vec<(PathBuf, Stamp)> {
    files.iter().map(|f| (f.clone(), stamp(f))).collect()
}

impl Watched {
    pub fn load(path: &Path) -> Result<Watched> {
        let cfg = config::load(path)?;
        let inner = Inner { stamps: stamps(&cfg.files), current: Arc::new(cfg), checked: Instant::now() };
        Ok(Watched { path: path.to_path_buf(), inner: Mutex::new(inner) })
    }

    pub fn is_tls(&self) -> bool {
        self.lock().current.tls.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The config to use now, re-read first if a file changed.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut g = self.lock();
        if g.checked.elapsed() < CHECK_EVERY {
            return g.current.clone();
        }
        g.checked = Instant::now();
        if g.stamps.iter().all(|(p, s)| stamp(p) == *s) {
            return g.current.clone();
        }
        match config::load(&self.path) {
            Ok(cfg) if cfg.tls.is_some() != g.current.tls.is_some() => {
                log::error!(
                    "web config {}: switching between TLS and plain HTTP needs a restart; keeping the last good config",
                    self.path.display()
                );
                g.stamps = stamps(&cfg.files);
            }
            Ok(cfg) => {
                log::info!("web config {}: re-read (certificates, users, headers)", self.path.display());
                g.stamps = stamps(&cfg.files);
                g.current = Arc::new(cfg);
            }
            Err(e) => {
                log::error!("{e:#}; keeping the last good web config");
                // Wait for the next change before trying again; keep watching what we watched.
                let files: Vec<PathBuf> = g.stamps.iter().map(|(p, _)| p.clone()).collect();
                g.stamps = stamps(&files);
            }
        }
        g.current.clone()
    }
}
