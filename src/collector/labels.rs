//! The one place where numbers in BPF keys become label values.

use std::collections::HashMap;

use prometheus::proto::LabelPair;

use super::text::label;
use crate::bpf::SeriesKey;
use crate::config::StatusLabel;
use crate::topology::Topology;

/// Label values for the target ids and ifindexes in BPF keys. A number with
/// no name (a target removed since the read) keeps a recognisable fallback.
#[derive(Debug, Default, Clone)]
pub struct Names {
    targets: HashMap<u16, String>,
    interfaces: HashMap<(u16, u32), String>,
}

impl Names {
    pub fn from_topology(t: &Topology) -> Names {
        let mut n = Names::default();
        for target in &t.targets {
            n.targets.insert(target.id, target.name.clone());
            for i in &target.interfaces {
                n.interfaces.insert((target.id, i.ifindex), i.name.clone());
            }
        }
        n
    }

    fn target(&self, id: u16) -> String {
        self.targets.get(&id).cloned().unwrap_or_else(|| format!("target{id}"))
    }

    fn interface(&self, target_id: u16, ifindex: u32) -> String {
        self.interfaces.get(&(target_id, ifindex)).cloned().unwrap_or_else(|| format!("if{ifindex}"))
    }

    /// target, interface, port, method, and the status label where `status` says how.
    pub fn series(&self, k: &SeriesKey, status: Option<StatusLabel>) -> Vec<LabelPair> {
        let mut l = vec![
            label("target", &self.target(k.target_id)),
            label("interface", &self.interface(k.target_id, k.ifindex)),
            label("port", &k.port.to_string()),
            label("method", k.method.as_str()),
        ];
        match status {
            Some(StatusLabel::Class) => l.push(label("status_class", &format!("{}xx", k.status))),
            Some(StatusLabel::Code) => l.push(label("status_code", &k.status.to_string())),
            None => {}
        }
        l
    }
}
