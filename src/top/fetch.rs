//! Fetching `/metrics` over HTTP(S), with the credentials of the exporter's
//! web config: basic auth, a CA to verify its certificate with (or none), a
//! client certificate. A background thread fetches every interval, so that a
//! slow or unreachable exporter never holds up the keyboard.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use base64::Engine;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::reading::Reading;
use super::Args;

/// Protobuf first, as Prometheus with native histograms asks, then the text.
const ACCEPT: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,\
                      text/plain;version=0.0.4;q=0.3";

/// Largest exposition read: the exporter at 100,000 series per map writes tens of MB.
const MAX_BODY: u64 = 512 << 20;

/// A response body, by the format the exporter chose.
pub enum Exposition {
    Protobuf(Vec<u8>),
    Text(Vec<u8>),
}

impl Exposition {
    pub fn reading(&self, at: Instant) -> Result<Reading, String> {
        match self {
            Exposition::Protobuf(body) => Reading::from_protobuf(body, at),
            Exposition::Text(body) => {
                let text = std::str::from_utf8(body).map_err(|e| format!("the exposition is not UTF-8: {e}"))?;
                Reading::parse(text, at)
            }
        }
    }
}

pub struct Client {
    agent: ureq::Agent,
    url: String,
    authorization: Option<String>,
}

impl Client {
    /// Reads the password, CA and client certificate files; every problem with them is an error now.
    pub fn new(a: &Args) -> anyhow::Result<Client> {
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &a.ca_file {
            let certs = certificates(ca)?;
            tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
        }
        if let (Some(cert), Some(key)) = (&a.cert_file, &a.key_file) {
            let chain = certificates(cert)?;
            let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let key = PrivateKey::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
        tls = tls.disable_verification(a.insecure_skip_verify);
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.build())
            // Non-2xx answers are read and reported, not turned into bare numbers.
            .http_status_as_error(false)
            .timeout_global(Some(a.interval.max(Duration::from_secs(10))))
            .user_agent(concat!("http-golden-exporter-top/", env!("CARGO_PKG_VERSION")))
            // Protobuf carries the native buckets; any other exporter answers text.
            .accept(ACCEPT)
            .build()
            .new_agent();
        let authorization = match (&a.username, &a.password_file) {
            (Some(user), Some(file)) => {
                let password = password(file)?;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
            _ => None,
        };
        Ok(Client { agent, url: a.url.clone(), authorization })
    }

    /// The exposition, or what went wrong in one line.
    pub fn fetch(&self) -> Result<Exposition, String> {
        let mut req = self.agent.get(&self.url);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| describe(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let hint = match status.as_u16() {
                401 => " (check --basic-auth.username and --basic-auth.password-file)",
                404 => " (check the path in --url)",
                _ => "",
            };
            return Err(format!("HTTP {status}{hint}"));
        }
        let protobuf = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("application/vnd.google.protobuf"));
        let body = resp.body_mut().with_config().limit(MAX_BODY).read_to_vec().map_err(|e| describe(&e))?;
        Ok(if protobuf { Exposition::Protobuf(body) } else { Exposition::Text(body) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Io(io) => io.to_string(),
        e => e.to_string(),
    }
}

/// The first line of the file, without its line end: a password may hold spaces.
fn password(file: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        bail!("{}: the first line (the password) is empty", file.display());
    }
    Ok(line.to_string())
}

fn certificates(file: &std::path::Path) -> anyhow::Result<Vec<Certificate<'static>>> {
    let pem = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate in it", file.display());
    }
    Ok(certs)
}

/// Fetch and parse every `interval` until the receiver is gone.
pub fn spawn(client: Client, interval: Duration, tx: Sender<Result<Reading, String>>) {
    std::thread::spawn(move || loop {
        let start = Instant::now();
        let result = client.fetch().and_then(|body| body.reading(Instant::now()));
        if tx.send(result).is_err() {
            return;
        }
        std::thread::sleep(interval.saturating_sub(start.elapsed()));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("hge-top-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn the_password_is_the_first_line_without_its_end() {
        let p = write("pw", "s3cret with space\r\nignored\n");
        assert_eq!(password(&p).unwrap(), "s3cret with space");
        let empty = write("empty", "\n");
        assert!(password(&empty).unwrap_err().to_string().contains("empty"));
        assert!(password(std::path::Path::new("/nonexistent/pw")).unwrap_err().to_string().contains("/nonexistent/pw"));
        let _ = std::fs::remove_file(p);
        let _ = std::fs::remove_file(empty);
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error_that_names_it() {
        let p = write("ca", "not a certificate\n");
        let e = certificates(&p).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate") && e.contains(&p.display().to_string()), "{e}");
        let _ = std::fs::remove_file(p);
    }
}
