//! Writing the maps: a removed target's series deleted, interface slots
//! filled and freed. Reading them is the exporter's (src/exporter/maps.rs).

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

use hge_shared::abi::{self, bytes_of, Link, NativeKeyRaw, SeriesKeyRaw, MAX_LINKS};

use super::{LinkConfig, SharedMaps};

/// Delete a removed target's series from the aggregate maps, and give its
/// budget back; returns how many series went.
pub fn forget_series(maps: &SharedMaps, target_id: u16) -> Result<usize> {
    let mut n = 0;
    for map in [&maps.requests, &maps.latency] {
        let doomed: Vec<Vec<u8>> = map
            .keys()
            .filter(|k| abi::read::<SeriesKeyRaw>(k, "series key").is_ok_and(|k| k.target_id == target_id))
            .collect();
        for k in doomed {
            match map.delete(&k) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let doomed: Vec<Vec<u8>> = maps
        .native
        .keys()
        .filter(|k| abi::read::<NativeKeyRaw>(k, "native key").is_ok_and(|k| k.series.target_id == target_id))
        .collect();
    for k in doomed {
        match maps.native.delete(&k) {
            Ok(()) => {}
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    for which in 0..2u32 {
        let slot = u32::from(target_id) * 2 + which;
        maps.series_count.update(&slot.to_ne_bytes(), &0u64.to_ne_bytes(), MapFlags::ANY)?;
    }
    Ok(n)
}

/// Fill `links` slot `slot` (below `abi::MAX_LINKS`): from now on the
/// interface whose programs carry that slot counts for `link.target_id`.
/// Written before those programs are attached; rewritten when a reload
/// changes the interface's target.
pub fn set_link(maps: &SharedMaps, slot: u32, link: &LinkConfig) -> Result<()> {
    let mut v = Link {
        target_id: link.target_id,
        nports: link.ports.len() as u16,
        active: 1,
        routes: link.routes,
        ..Default::default()
    };
    anyhow::ensure!(link.ports.len() <= v.ports.len(), "more than {} ports", v.ports.len());
    anyhow::ensure!(slot < MAX_LINKS, "interface slot {slot}: at most {MAX_LINKS} interfaces");
    v.ports[..link.ports.len()].copy_from_slice(&link.ports);
    maps.links.update(&slot.to_ne_bytes(), bytes_of(&v), MapFlags::ANY).context("writing the links map")
}

/// Give target `target_id` its route templates (none: no entry, and its
/// requests' paths are not read). Written before any of its interfaces'
/// slots says it has routes.
pub fn set_routes(maps: &SharedMaps, target_id: u16, templates: &[String]) -> Result<()> {
    let key = u32::from(target_id).to_ne_bytes();
    if templates.is_empty() {
        return match maps.routes.delete(&key) {
            Err(e) if e.kind() != libbpf_rs::ErrorKind::NotFound => Err(e).context("clearing a target's routes"),
            _ => Ok(()),
        };
    }
    let table = hge_shared::routes::compile(templates).map_err(|e| anyhow::anyhow!(e))?;
    maps.routes.update(&key, bytes_of(&table), MapFlags::ANY).context("writing the routes map")
}

/// Free slot `slot`: packets its programs still hand over (until they are
/// detached) are ignored.
pub fn clear_link(maps: &SharedMaps, slot: u32) -> Result<()> {
    let v = Link::default();
    maps.links.update(&slot.to_ne_bytes(), bytes_of(&v), MapFlags::ANY).context("clearing a links slot")
}
