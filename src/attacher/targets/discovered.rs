//! Namespaces a `[[discover]]` table found, held as targets of their own: one
//! target id each, so that the `container` label is a property of the id and
//! the kernel never needs to know it. Discovery (src/attacher/discover/) decides
//! when; this file only attaches, grows, renames and lets go.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;

use super::{Prepared, Targets};
use crate::discover::Attach;
use crate::netns::{self, Netns};
use hge_shared::config::{Discover, Target};

impl Attach for Targets {
    /// Whether a running target (configured, or found by another table)
    /// already counts in the namespace `key`, or a configured one names its
    /// `file` (and will follow it there within a second, even if it waits
    /// now): it is left to that one.
    fn covers(&self, key: u64, file: Option<&Path>) -> bool {
        key == self.host_netns
            || self.running.iter().any(|r| {
                (r.netns_key == key && r.waiting.is_none())
                    || (r.container.is_none() && file.is_some() && r.target.netns.as_deref() == file)
            })
    }

    /// Attach `table`'s programs to the interfaces of a found namespace,
    /// labelled `container`. None when no interface matches yet (a
    /// container's interface is moved in after its namespace appears).
    fn attach(&mut self, table: &Discover, netns: Netns, container: &str) -> Result<Option<u16>> {
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
            routes: table.routes.clone(),
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
    fn grow(&mut self, id: u16, table: &Discover, netns: Netns) -> Result<bool> {
        let candidates = netns::matching(&table.interfaces, &netns)?;
        Targets::grow(self, id, Some(Arc::new(netns)), candidates)
    }

    /// How many interfaces found namespace `id` still has attached.
    fn interfaces(&self, id: u16) -> usize {
        self.running.iter().find(|r| r.id == id).map_or(0, |r| r.interfaces.len())
    }

    /// A better name for found namespace `id`.
    fn rename(&mut self, id: u16, container: &str) {
        if let Some(r) = self.running.iter_mut().find(|r| r.id == id && r.container.is_some()) {
            r.container = Some(container.to_string());
        }
    }

    /// Let found namespace `id` go: programs detached, series removed.
    fn release(&mut self, id: u16) {
        if let Some(i) = self.running.iter().position(|r| r.id == id && r.container.is_some()) {
            let r = self.running.remove(i);
            self.release_links(&r);
        }
    }
}
