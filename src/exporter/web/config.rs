//! The web config file in the Prometheus exporter-toolkit format (YAML), as
//! node_exporter's `--web.config.file` reads it: `tls_server_config`,
//! `basic_auth_users` (bcrypt), `http_server_config.headers`, `rate_limit`.
//! Unknown keys are errors (exporter-toolkit parses strictly too); relative
//! file paths are relative to the config file's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::tls;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    http_server_config: Option<HttpFile>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
}

/// `tls_server_config`; an empty string means unset, as in Go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct TlsFile {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub client_auth_type: Option<String>,
    pub client_ca_file: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub curve_preferences: Option<Vec<String>>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub prefer_server_cipher_suites: Option<bool>,
    pub client_allowed_sans: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct HttpFile {
    /// Accepted for compatibility: this server speaks HTTP/1.1 only.
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RateLimitFile {
    burst: u32,
    interval: Option<String>,
}

/// A loaded, validated web config.
pub struct WebConfig {
    /// None: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// (burst, one token per interval), exporter-toolkit's `rate_limit`.
    pub rate_limit: Option<(u32, Duration)>,
    /// Every file it was read from (the config, certificates, keys, CAs), to watch for changes.
    pub files: Vec<PathBuf>,
}

/// Headers an operator may set, and the values allowed where they are an
/// enumeration (exporter-toolkit's list, kept identical across the ecosystem).
const HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

fn set(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

impl TlsFile {
    /// exporter-toolkit's IsEnabled: any TLS field set turns TLS on.
    fn is_enabled(&self) -> bool {
        [
            &self.cert,
            &self.key,
            &self.client_ca,
            &self.cert_file,
            &self.key_file,
            &self.client_ca_file,
            &self.client_auth_type,
        ]
        .iter()
        .any(|f| set(f).is_some())
    }

    /// (PEM text, where it came from) of a field given inline or as a file.
    pub(super) fn pem(
        &self,
        inline: &Option<String>,
        file: &Option<String>,
        what: &str,
        dir: &Path,
        files: &mut Vec<PathBuf>,
    ) -> Result<Option<Vec<u8>>> {
        if let Some(f) = set(file) {
            let p = dir.join(f);
            let data = std::fs::read(&p).with_context(|| format!("reading {what}_file {}", p.display()))?;
            files.push(p);
            return Ok(Some(data));
        }
        Ok(set(inline).map(|s| s.as_bytes().to_vec()))
    }
}

pub fn load(path: &Path) -> Result<WebConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading web config {}", path.display()))?;
    parse(&text, path).with_context(|| format!("web config {}", path.display()))
}

fn parse(text: &str, path: &Path) -> Result<WebConfig> {
    // An empty document (or only comments) is the empty config: plain HTTP, no auth.
    let file: File = serde_norway::from_str::<Option<File>>(text).map_err(|e| anyhow!("{e}"))?.unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut files = vec![path.to_path_buf()];

    let users = file.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        bcrypt::HashParts::from_str(hash)
            .map_err(|e| anyhow!("basic_auth_users: the password of {user:?} is not a bcrypt hash: {e}"))?;
    }

    let http = file.http_server_config.unwrap_or_default();
    if http.http2 == Some(true) {
        log::debug!("web config: http_server_config.http2 is ignored (this server speaks HTTP/1.1)");
    }
    let mut headers = Vec::new();
    for (k, v) in http.headers.unwrap_or_default() {
        let Some((_, allowed)) = HEADERS.iter().find(|(name, _)| *name == k) else {
            bail!("http_server_config.headers: HTTP header {k:?} can not be configured");
        };
        if !allowed.is_empty() && !allowed.contains(&v.as_str()) {
            bail!("http_server_config.headers: invalid value for {k}. Expected one of: {allowed:?}, but got: {v:?}");
        }
        let value =
            HeaderValue::from_str(&v).map_err(|_| anyhow!("http_server_config.headers: {k}: invalid value {v:?}"))?;
        headers.push((HeaderName::from_str(&k)?, value));
    }

    let rate_limit = match file.rate_limit {
        Some(RateLimitFile { burst, interval: Some(i) }) if !i.is_empty() => {
            let every = humantime::parse_duration(&i)
                .map_err(|e| anyhow!("rate_limit.interval {i:?} is not a duration like \"1s\": {e}"))?;
            (!every.is_zero()).then_some((burst, every))
        }
        _ => None,
    };

    let tls = match file.tls_server_config {
        Some(t) if t.is_enabled() => Some(tls::server_config(&t, dir, &mut files).context("tls_server_config")?),
        _ => None,
    };
    Ok(WebConfig { tls, users, headers, rate_limit, files })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<WebConfig, String> {
        parse(text, Path::new("/nonexistent/web.yml")).map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn empty_and_comment_only_files_are_plain_http() {
        for t in ["", "# nothing\n", "tls_server_config:\n"] {
            let c = p(t).unwrap();
            assert!(c.tls.is_none() && c.users.is_empty() && c.headers.is_empty());
        }
    }

    #[test]
    fn users_headers_and_rate_limit_parse() {
        let c = p("basic_auth_users:\n  alice: $2y$10$qRTBuFoULoYNA7AQ/F3ck.trZBPyjV64.oA4ZsSBCIWvXuvQlQTuu\n\
                   http_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=1\n\
                   rate_limit:\n  interval: 1s\n  burst: 3\n")
        .unwrap();
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.headers.len(), 2);
        assert_eq!(c.rate_limit, Some((3, Duration::from_secs(1))));
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let cases = [
            ("tls_server_confg:\n  cert_file: a\n", "unknown field"),
            ("basic_auth_users:\n  alice: plaintext\n", "not a bcrypt hash"),
            ("http_server_config:\n  headers:\n    X-Foo: bar\n", "can not be configured"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "Expected one of"),
            (
                "tls_server_config:\n  cert_file: /nonexistent/c.pem\n  key_file: /nonexistent/k.pem\n",
                "reading cert_file",
            ),
            ("tls_server_config:\n  key_file: k.pem\n", "missing one of cert or cert_file"),
            ("rate_limit:\n  interval: soon\n", "not a duration"),
            ("- a\n- b\n", "invalid type"),
        ];
        for (text, needle) in cases {
            let e = p(text).err().unwrap_or_else(|| panic!("{text:?} was accepted"));
            assert!(e.contains(needle), "{text:?} gave {e}");
        }
    }
}
