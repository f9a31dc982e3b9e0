//! What the attacher owns between two turns of its loop: the configuration
//! it runs, its targets, discovery; and how it talks to systemd.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::discover::Discovery;
use crate::targets::Targets;
use hge_shared::config::Config;
use hge_shared::topology::Topology;

/// Everything the attacher owns.
pub(crate) struct Attacher {
    pub(crate) cfg: Config,
    pub(crate) targets: Targets,
    /// Started by `event_loop::main`, after the configured targets are attached.
    pub(crate) discovery: Option<Discovery>,
}

impl Attacher {
    /// Nothing attached yet: `event_loop::main` attaches what was prepared before the fork.
    pub(crate) fn new(cfg: Config, targets: Targets) -> Attacher {
        Attacher { cfg, targets, discovery: None }
    }

    pub(crate) fn topology(&self) -> Topology {
        let mut t = self.targets.topology();
        t.discovery = self.discovery.as_ref().map(Discovery::stats).unwrap_or_default();
        t
    }

    /// Drain the watchers `readable` names and attach what is due, for at
    /// most `batch`; true if the topology changed.
    pub(crate) fn discover(&mut self, readable: &[usize], batch: Duration) -> bool {
        let Some(d) = self.discovery.as_mut() else { return false };
        let mut changed = false;
        for &i in readable {
            changed |= d.drain(i, &mut self.targets);
        }
        changed | d.work(&mut self.targets, Instant::now() + batch)
    }
}

/// Tell systemd (READY, STATUS, WATCHDOG, RELOADING, STOPPING); without it, nothing.
pub(crate) fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("sd_notify: {e}");
    }
}
