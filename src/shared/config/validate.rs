//! Validators for every value a user can give, in the config file or on the
//! command line. The `deserialize_with` helpers wrap the plain ones, so that
//! toml's error names the line and key; the CLI calls the plain ones.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use super::{Config, Target, MAX_BUCKETS, MAX_PORTS, MAX_TARGETS};

/// ":10114" (every address, as node_exporter), "127.0.0.1:10114", "[::1]:10114".
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("listen address {s:?}: {port:?} is not a port"))?;
        return Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("listen address {s:?} is not \":PORT\", \"IPv4:PORT\" or \"[IPv6]:PORT\""))
}

/// An absolute URL path for the metrics, other than the landing page's "/".
pub fn valid_telemetry_path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') || s == "/" || s.contains(char::is_whitespace) {
        return Err(format!("telemetry_path must be an absolute path other than \"/\" without spaces, got {s:?}"));
    }
    Ok(())
}

/// A user name as passwd(5) can hold it: no empty name, separators or whitespace.
pub fn valid_user(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || s.contains([':', '/']) || s.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("user {s:?} is not a valid user name"));
    }
    Ok(())
}

/// The exporter-toolkit web config: any non-empty path (read by the exporter process).
pub fn valid_web_config_file(s: &str) -> Result<(), String> {
    if s.is_empty() || s.contains('\0') {
        return Err(format!("web.config_file must be a file path, got {s:?}"));
    }
    Ok(())
}

pub fn seconds_to_ns(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    E::custom(msg)
}

/// A string that `check` accepts, with its error as the deserializer's.
fn checked<'de, D: Deserializer<'de>>(d: D, check: fn(&str) -> Result<(), String>) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check(&s).map_err(invalid)?;
    Ok(s)
}

/// An integer in `range`, named `key` in the error.
fn bounded<'de, D: Deserializer<'de>>(d: D, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, D::Error> {
    let n = i64::deserialize(d)?;
    if !range.contains(&n) {
        return Err(invalid(format!("{key} must be between {} and {}, got {n}", range.start(), range.end())));
    }
    Ok(n)
}

pub(super) fn user<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    checked(d, valid_user).map(Some)
}

pub(super) fn listen_address<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked(d, |s| parse_listen_address(s).map(|_| ()))
}

pub(super) fn telemetry_path<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    checked(d, valid_telemetry_path)
}

pub(super) fn max_requests<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, "max_requests", 1..=10_000).map(|n| n as usize)
}

pub(super) fn max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    bounded(d, "max_connections", 16..=1_000_000).map(|n| n as usize)
}

pub(super) fn web_config_file<'de, D: Deserializer<'de>>(d: D) -> Result<Option<std::path::PathBuf>, D::Error> {
    checked(d, valid_web_config_file).map(|s| Some(s.into()))
}

/// A web deadline: "10s", "500ms", between 100ms and 1h.
pub(super) fn web_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    duration_between(d, Duration::from_millis(100), Duration::from_secs(3600))
}

fn duration_between<'de, D: Deserializer<'de>>(d: D, min: Duration, max: Duration) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s)
        .map_err(|e| invalid(format!("{s:?} is not a duration like \"5s\" or \"200ms\": {e}")))?;
    if v < min || v > max {
        return Err(invalid(format!(
            "duration must be between {} and {}, got {s:?}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(v)
}

pub(super) fn max_series<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, "max_series", 1..=1_000_000).map(|n| n as u32)
}

pub(super) fn max_series_per_target<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    bounded(d, "max_series_per_target", 1..=1_000_000).map(|n| Some(n as u32))
}

pub(super) fn flow_table_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, "flow_table_size", 64..=16_777_216).map(|n| n as u32)
}

pub(super) fn interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s)
        .map_err(|e| invalid(format!("scrape_interval {s:?} is not a duration like \"5s\" or \"200ms\": {e}")))?;
    if v < Duration::from_millis(100) || v > Duration::from_secs(3600) {
        return Err(invalid(format!("scrape_interval must be between 100ms and 1h, got {s:?}")));
    }
    Ok(v)
}

pub(super) fn native_schema<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    bounded(d, "native_schema", 0..=i64::from(crate::native::MAX_SCHEMA)).map(|n| n as u8)
}

pub(super) fn native_zero_threshold<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    let v = humantime::parse_duration(&s).map_err(|e| {
        invalid(format!("native_zero_threshold {s:?} is not a duration like \"1us\" or \"500ns\": {e}"))
    })?;
    // Below 1 ns every latency is above it; the kernel's table holds the buckets from 1 ns up.
    if v < Duration::from_nanos(1) || v > Duration::from_secs(1) {
        return Err(invalid(format!("native_zero_threshold must be between 1ns and 1s, got {s:?}")));
    }
    Ok(v)
}

pub(super) fn buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let v = Vec::<f64>::deserialize(d)?;
    if v.is_empty() || v.len() > MAX_BUCKETS {
        return Err(invalid(format!("buckets must hold 1 to {MAX_BUCKETS} bounds, got {}", v.len())));
    }
    for (i, b) in v.iter().enumerate() {
        // One nanosecond is the resolution of the kernel clock we bucket with.
        if !b.is_finite() || *b < 1e-9 || *b > 3600.0 {
            return Err(invalid(format!("bucket bound {b} must be a number of seconds in [1e-9, 3600]")));
        }
        if i > 0 && seconds_to_ns(*b) <= seconds_to_ns(v[i - 1]) {
            return Err(invalid(format!("buckets must be strictly increasing: {} follows {}", b, v[i - 1])));
        }
    }
    Ok(v)
}

pub(super) fn label_value<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.len() > 128 || s.chars().any(|c| c.is_control()) {
        return Err(invalid(format!("target name must be 1 to 128 printable characters, got {s:?}")));
    }
    Ok(s)
}

pub(super) fn interfaces<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if v.is_empty() {
        return Err(invalid("interfaces must name at least one interface or glob"));
    }
    for name in &v {
        // IFNAMSIZ is 16 including the NUL.
        if name.is_empty() || name.len() > 15 || name.contains('/') || name.contains(char::is_whitespace) {
            return Err(invalid(format!("{name:?} is not a valid interface name or glob")));
        }
        glob::Pattern::new(name).map_err(|e| invalid(format!("bad interface glob {name:?}: {e}")))?;
    }
    Ok(v)
}

/// A network namespace file: an absolute path (a relative one would depend on
/// the daemon's working directory, which systemd sets to /).
pub(super) fn netns<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let s = String::deserialize(d)?;
    if !s.starts_with('/') || s.len() > 4096 || s.contains('\0') {
        return Err(invalid(format!(
            "netns {s:?} must be an absolute path such as /run/netns/NAME or /proc/PID/ns/net"
        )));
    }
    Ok(Some(PathBuf::from(s)))
}

pub(super) fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    let v = Vec::<i64>::deserialize(d)?;
    if v.len() > MAX_PORTS {
        return Err(invalid(format!("at most {MAX_PORTS} ports per target, got {}", v.len())));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(v.len());
    for p in v {
        if !(1..=65535).contains(&p) {
            return Err(invalid(format!("port {p} is not in 1..65535")));
        }
        if !seen.insert(p) {
            return Err(invalid(format!("port {p} is listed twice")));
        }
        out.push(p as u16);
    }
    Ok(out)
}

pub(super) fn routes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    crate::routes::check(&v).map_err(invalid)?;
    Ok(v)
}

pub(super) fn netns_dirs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for s in &v {
        if !s.starts_with('/') || s.len() > 4096 || s.contains('\0') {
            return Err(invalid(format!("netns_dirs: {s:?} must be an absolute directory path such as /run/netns")));
        }
    }
    Ok(v.into_iter().map(PathBuf::from).collect())
}

pub(super) fn max_namespaces<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    bounded(d, "max_namespaces", 1..=MAX_TARGETS as i64).map(|n| n as u32)
}

/// A `target` label value names one thing: a static target or a `[[discover]]` table.
pub(super) fn names_once(cfg: &Config) -> Result<(), String> {
    let mut names = HashSet::new();
    let all = cfg.targets.iter().map(|t| (&t.name, "target")).chain(cfg.discover.iter().map(|d| (&d.name, "discover")));
    for (name, what) in all {
        if !names.insert(name.as_str()) {
            return Err(format!(
                "{what} name {name:?} is used twice (targets and [[discover]] tables share the `target` label)"
            ));
        }
    }
    Ok(())
}

pub(super) fn targets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Target>, D::Error> {
    let v = Vec::<Target>::deserialize(d)?;
    if v.len() > MAX_TARGETS {
        return Err(invalid(format!("at most {MAX_TARGETS} targets, got {}", v.len())));
    }
    let mut names = HashSet::new();
    for t in &v {
        if !names.insert(t.name.as_str()) {
            return Err(invalid(format!("target name {:?} is used twice", t.name)));
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_in_node_exporter_forms() {
        assert_eq!(parse_listen_address(":10114").unwrap(), "[::]:10114".parse().unwrap());
        assert_eq!(parse_listen_address("127.0.0.1:1").unwrap(), "127.0.0.1:1".parse().unwrap());
        assert_eq!(parse_listen_address("[::1]:80").unwrap(), "[::1]:80".parse().unwrap());
        assert!(parse_listen_address(":http").is_err());
        assert!(parse_listen_address("localhost").is_err());
        assert!(parse_listen_address(":70000").is_err());
    }
}
