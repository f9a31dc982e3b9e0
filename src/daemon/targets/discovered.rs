//! Namespaces a `[[discover]]` table found, held as targets of their own: one
//! target id each, so that the `container` label is a property of the id and
//! the kernel never needs to know it. Discovery (daemon/discovery.rs) decides
//! when; this file only attaches, grows, renames and lets go.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::{Prepared, Targets};
use crate::config::{Discover, Target};
use crate::privileged::netns::{self, Netns};

impl Targets {
    /// Whether a running target (configured, or found by another table)
    /// already counts in the namespace `key`, or a configured one names its
    /// `file` (and will follow it there within a second, even if it waits
    /// now): it is left to that one.
    pub(in crate::daemon) fn covers(&self, key: u64, file: Option<&Path>) -> bool {
        key == self.host_netns
            || self.running.iter().any(|r| {
                (r.netns_key == key && r.waiting.is_none())
                    || (r.container.is_none() && file.is_some() && r.target.netns.as_deref() == file)
            })
    }

    /// Attach `table`'s programs to the interfaces of a found namespace,
    /// labelled `container`. None when no interface matches yet (a
    /// container's interface is moved in after its namespace appears).
    pub(in crate::daemon) fn attach_found(
        &mut self,
        table: &Discover,
        netns: Netns,
        container: &str,
    ) -> Result<Option<u16>> {
        let netns_key = netns.id()?;
        let interfaces = netns::matching(&table.interfaces, &netns)?;
        if interfaces.is_empty() {
            return Ok(None);
        }
        let target = Target {
            name: table.name.clone(),
            interfaces: table.interfaces.clone(),
            netns: None,
            ports: table.ports.clone(),
            up_non_loopback: false,
        };
        let id = self.free_id(&[])?;
        let fresh = Prepared {
            id,
            target,
            netns: Some(Arc::new(netns)),
            netns_key,
            interfaces,
            container: Some(container.to_string()),
        };
        let keep = self.current();
        self.apply(vec![fresh], &keep)?;
        Ok(Some(id))
    }

    /// Interfaces that appeared in found namespace `id` since it was
    /// attached: attached too. True if there were any.
    pub(in crate::daemon) fn grow_found(&mut self, id: u16, table: &Discover, netns: Netns) -> Result<bool> {
        let candidates = netns::matching(&table.interfaces, &netns)?;
        self.grow(id, Some(Arc::new(netns)), candidates)
    }

    /// How many interfaces found namespace `id` still has attached.
    pub(in crate::daemon) fn found_interfaces(&self, id: u16) -> usize {
        self.running.iter().find(|r| r.id == id).map_or(0, |r| r.interfaces.len())
    }

    /// A better name for found namespace `id`.
    pub(in crate::daemon) fn rename_found(&mut self, id: u16, container: &str) {
        if let Some(r) = self.running.iter_mut().find(|r| r.id == id && r.container.is_some()) {
            r.container = Some(container.to_string());
        }
    }

    /// Let found namespace `id` go: programs detached, series removed.
    pub(in crate::daemon) fn release_found(&mut self, id: u16) {
        if let Some(i) = self.running.iter().position(|r| r.id == id && r.container.is_some()) {
            let r = self.running.remove(i);
            self.release_links(&r);
        }
    }
}
