//! The one place where numbers in BPF keys become label values.

use std::collections::HashMap;

use bytes::BytesMut;

use super::pb::LabelPair;
use super::text::pair;
use hge_shared::config::StatusLabel;
use hge_shared::snapshot::SeriesKey;
use hge_shared::topology::Topology;

/// Label values for the target ids and ifindexes in BPF keys. A number with
/// no name (a target removed since the read) keeps a recognisable fallback.
#[derive(Debug, Default, Clone)]
pub struct Names {
    targets: HashMap<u16, (String, Option<String>)>,
    interfaces: HashMap<(u16, u32), String>,
    /// Route templates, for the targets that have some.
    routes: HashMap<u16, Vec<String>>,
}

impl Names {
    pub fn from_topology(t: &Topology) -> Names {
        let mut n = Names::default();
        for target in &t.targets {
            n.targets.insert(target.id, (target.name.clone(), target.container.clone()));
            for i in &target.interfaces {
                n.interfaces.insert((target.id, i.ifindex), i.name.clone());
            }
            if !target.routes.is_empty() {
                n.routes.insert(target.id, target.routes.clone());
            }
        }
        n
    }

    /// `{target="…",container="…",interface="…",port="…",method="…",route="…"`
    /// (no `container` for a static target, no `route` for a target without
    /// routes) and the status label
    /// where `status` says how, escaped, without the closing brace (the
    /// histogram's `le` follows).
    pub fn write_series(&self, buf: &mut BytesMut, k: &SeriesKey, status: Option<StatusLabel>) {
        let mut d = [0u8; 5];
        match self.targets.get(&k.target_id) {
            Some((name, container)) => {
                pair(buf, true, "target", name);
                if let Some(c) = container {
                    pair(buf, false, "container", c);
                }
            }
            None => pair(buf, true, "target", &format!("target{}", k.target_id)),
        }
        match self.interfaces.get(&(k.target_id, k.ifindex)) {
            Some(name) => pair(buf, false, "interface", name),
            None => pair(buf, false, "interface", &format!("if{}", k.ifindex)),
        }
        pair(buf, false, "port", decimal(k.port, &mut d));
        pair(buf, false, "method", k.method.as_str());
        if k.route != 0 {
            let templates = self.routes.get(&k.target_id).map_or(&[][..], Vec::as_slice);
            pair(buf, false, "route", hge_shared::routes::label(templates, k.route));
        }
        match status {
            Some(StatusLabel::Class) => {
                pair(buf, false, "status_class", decimal(k.status, &mut d));
                // Inside the closing quote: 2 becomes "2xx".
                buf.truncate(buf.len() - 1);
                buf.extend_from_slice(b"xx\"");
            }
            Some(StatusLabel::Code) => pair(buf, false, "status_code", decimal(k.status, &mut d)),
            None => {}
        }
    }
}

impl Names {
    /// The same labels as [`Names::write_series`] writes, as label pairs
    /// (protobuf), into `out`, made again in place: the strings of the pairs
    /// already there are overwritten, so that labelling series after series
    /// allocates nothing once they are long enough.
    pub fn pairs_into(&self, out: &mut Vec<LabelPair>, k: &SeriesKey, status: Option<StatusLabel>) {
        let mut n = 0;
        // A value in pieces (a number's digits, then "xx"), copied, not formatted: this runs for every
        // series twice per protobuf scrape.
        let mut put = |name: &str, value: &[&str]| {
            if n == out.len() {
                out.push(LabelPair::default());
            }
            let pair = &mut out[n];
            n += 1;
            let old = pair.name.get_or_insert_with(String::new);
            if old != name {
                old.clear();
                old.push_str(name);
            }
            let v = pair.value.get_or_insert_with(String::new);
            v.clear();
            value.iter().for_each(|piece| v.push_str(piece));
        };
        let mut d = [0u8; 5];
        match self.targets.get(&k.target_id) {
            Some((name, container)) => {
                put("target", &[name]);
                if let Some(c) = container {
                    put("container", &[c]);
                }
            }
            None => put("target", &[&format!("target{}", k.target_id)]),
        }
        match self.interfaces.get(&(k.target_id, k.ifindex)) {
            Some(name) => put("interface", &[name]),
            None => put("interface", &[&format!("if{}", k.ifindex)]),
        }
        put("port", &[decimal(k.port, &mut d)]);
        put("method", &[k.method.as_str()]);
        if k.route != 0 {
            let templates = self.routes.get(&k.target_id).map_or(&[][..], Vec::as_slice);
            put("route", &[hge_shared::routes::label(templates, k.route)]);
        }
        match status {
            Some(StatusLabel::Class) => put("status_class", &[decimal(k.status, &mut d), "xx"]),
            Some(StatusLabel::Code) => put("status_code", &[decimal(k.status, &mut d)]),
            None => {}
        }
        out.truncate(n);
    }
}

/// `n` in decimal, in `d`, without allocating.
fn decimal(mut n: u16, d: &mut [u8; 5]) -> &str {
    let mut i = d.len();
    loop {
        i -= 1;
        d[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only: never the fallback.
    std::str::from_utf8(&d[i..]).unwrap_or("0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hge_shared::snapshot::{Method, Role};
    use hge_shared::topology::{InterfaceName, TargetNames};

    /// The label pairs, in order, written through the text writer's own `pair`.
    fn as_text(pairs: &[LabelPair]) -> Vec<u8> {
        let mut buf = BytesMut::new();
        for (i, p) in pairs.iter().enumerate() {
            pair(&mut buf, i == 0, p.name(), p.value());
        }
        buf.to_vec()
    }

    #[test]
    fn label_pairs_are_the_labels_the_text_writes_also_when_made_again_in_place() {
        let topo = Topology {
            targets: vec![
                TargetNames {
                    id: 1,
                    name: "web".into(),
                    container: Some("pod-a".into()),
                    interfaces: vec![InterfaceName { ifindex: 4, name: "eth0".into() }],
                    routes: vec!["/users/{id}".into()],
                },
                TargetNames { id: 2, name: "db".into(), container: None, interfaces: vec![], routes: vec![] },
            ],
            attached: vec![],
            discovery: vec![],
            programs: vec![],
        };
        let names = Names::from_topology(&topo);
        let key = |target_id, ifindex, port, status, route| SeriesKey {
            target_id,
            ifindex,
            role: Role::Server,
            port,
            method: Method::Post,
            status,
            route,
        };
        // Longest first, then shorter, then longer again: the reused pairs must not keep a stale one.
        let keys = [key(1, 4, 65535, 5, 1), key(2, 9, 0, 404, 0), key(7, 3, 80, 2, 0), key(1, 4, 8080, 3, 255)];
        let mut reused = Vec::new();
        for status in [Some(StatusLabel::Class), Some(StatusLabel::Code), None] {
            for k in &keys {
                let mut text = BytesMut::new();
                names.write_series(&mut text, k, status);
                names.pairs_into(&mut reused, k, status);
                assert_eq!(
                    String::from_utf8_lossy(&as_text(&reused)),
                    String::from_utf8_lossy(&text),
                    "{k:?} {status:?}"
                );
            }
        }
    }
}
