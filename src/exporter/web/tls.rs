//! `tls_server_config` → a rustls server config (ring provider), with
//! exporter-toolkit's semantics: TLS 1.2 to 1.3 by default, its names for
//! versions, cipher suites and curves, its five client_auth_type values.
//! Where rustls has no counterpart (TLS 1.0/1.1 as a maximum, CBC suites,
//! P-521, client_allowed_sans) the error says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, NamedGroup, RootCertStore, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::config::TlsFile;

/// Go's names of the suites in tls.CipherSuites(), with the IANA number;
/// those rustls lacks (CBC) are rejected below.
const CIPHERS: &[(&str, u16)] = &[
    ("TLS_AES_128_GCM_SHA256", 0x1301),
    ("TLS_AES_256_GCM_SHA384", 0x1302),
    ("TLS_CHACHA20_POLY1305_SHA256", 0x1303),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xc009),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0xc00a),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xc013),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0xc014),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xc02b),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0xc02c),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xc02f),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0xc030),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca8),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0xcca9),
];

fn version_rank(name: &str) -> Result<u8> {
    Ok(match name {
        "TLS10" => 0,
        "TLS11" => 1,
        "TLS12" => 2,
        "TLS13" => 3,
        _ => bail!("unknown TLS version: {name}"),
    })
}

fn versions(t: &TlsFile) -> Result<Vec<&'static SupportedProtocolVersion>> {
    let min = version_rank(t.min_version.as_deref().filter(|s| !s.is_empty()).unwrap_or("TLS12"))?;
    let max = version_rank(t.max_version.as_deref().filter(|s| !s.is_empty()).unwrap_or("TLS13"))?;
    if max < 2 {
        bail!("max_version {}: rustls implements TLS 1.2 and 1.3 only", t.max_version.as_deref().unwrap_or(""));
    }
    if min < 2 {
        log::warn!(
            "web config: min_version {}: rustls serves TLS 1.2 at least",
            t.min_version.as_deref().unwrap_or("")
        );
    }
    let v: Vec<_> = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(r, _)| (min..=max).contains(r))
        .map(|(_, v)| v)
        .collect();
    if v.is_empty() {
        bail!("min_version is above max_version");
    }
    Ok(v)
}

fn provider(t: &TlsFile) -> Result<CryptoProvider> {
    let mut p = ring::default_provider();
    if let Some(names) = t.cipher_suites.as_ref().filter(|n| !n.is_empty()) {
        // As in Go, the list applies to TLS 1.2; TLS 1.3 suites are always on.
        let mut wanted = Vec::new();
        for n in names {
            let Some((_, id)) = CIPHERS.iter().find(|(name, _)| name == n) else { bail!("unknown cipher: {n}") };
            let Some(s) = p.cipher_suites.iter().find(|s| u16::from(s.suite()) == *id) else {
                bail!("cipher suite {n} is not supported by rustls (it has no CBC suites)");
            };
            if s.tls13().is_none() {
                wanted.push(*s);
            }
        }
        p.cipher_suites.retain(|s| s.tls13().is_some());
        p.cipher_suites.extend(wanted);
    }
    if let Some(names) = t.curve_preferences.as_ref().filter(|n| !n.is_empty()) {
        let mut groups = Vec::new();
        for n in names {
            let g = match n.as_str() {
                "CurveP256" => NamedGroup::secp256r1,
                "CurveP384" => NamedGroup::secp384r1,
                "X25519" => NamedGroup::X25519,
                "CurveP521" => bail!("curve CurveP521 is not supported by rustls (X25519, CurveP256, CurveP384 are)"),
                _ => bail!("unknown curve: {n}"),
            };
            let kx = p.kx_groups.iter().find(|k| k.name() == g).ok_or_else(|| anyhow!("curve {n} is not available"))?;
            groups.push(*kx);
        }
        p.kx_groups = groups;
    }
    Ok(p)
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{what}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        bail!("{what}: no PEM certificate found");
    }
    Ok(certs)
}

pub(super) fn server_config(t: &TlsFile, dir: &Path, files: &mut Vec<PathBuf>) -> Result<Arc<ServerConfig>> {
    let given = |inline: &Option<String>, file: &Option<String>| {
        inline.as_deref().is_some_and(|s| !s.is_empty()) || file.as_deref().is_some_and(|s| !s.is_empty())
    };
    if !given(&t.cert, &t.cert_file) {
        bail!("missing one of cert or cert_file");
    }
    if !given(&t.key, &t.key_file) {
        bail!("missing one of key or key_file");
    }
    let cert_pem = t.pem(&t.cert, &t.cert_file, "cert", dir, files)?.unwrap_or_default();
    let key_pem = t.pem(&t.key, &t.key_file, "key", dir, files)?.unwrap_or_default();
    if t.client_allowed_sans.as_ref().is_some_and(|s| !s.is_empty()) {
        bail!("client_allowed_sans is not supported by this exporter (use a dedicated client CA instead)");
    }
    let chain = certs(&cert_pem, "cert")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| anyhow!("key: no PEM private key: {e}"))?;
    let ca_pem = t.pem(&t.client_ca, &t.client_ca_file, "client_ca", dir, files)?;

    let provider = Arc::new(provider(t)?);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(t)?)
        .context("TLS versions and cipher suites leave nothing to negotiate")?;
    let auth = t.client_auth_type.as_deref().unwrap_or("");
    let roots = match &ca_pem {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for c in certs(pem, "client_ca")? {
                roots.add(c).context("client_ca: unusable CA certificate")?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match auth {
        "" | "NoClientCert" => {
            if roots.is_some() {
                bail!("client CA's have been configured without a Client Auth Policy");
            }
            None
        }
        "RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert" => Some(Arc::new(AnyClientCert {
            mandatory: auth != "RequestClientCert",
            algs: provider.signature_verification_algorithms,
        })),
        "VerifyClientCertIfGiven" | "RequireAndVerifyClientCert" => {
            let Some(roots) = roots else { bail!("client_auth_type {auth} needs client_ca_file (or client_ca)") };
            let b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let b = if auth == "VerifyClientCertIfGiven" { b.allow_unauthenticated() } else { b };
            Some(b.build().context("client_ca")?)
        }
        other => bail!("invalid ClientAuth: {other}"),
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder.with_single_cert(chain, key).context("cert and key do not form a usable pair")?;
    cfg.ignore_client_order = t.prefer_server_cipher_suites.unwrap_or(true);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// RequestClientCert / RequireAnyClientCert: ask for a certificate and check
/// only that the client holds its key, as Go does; no chain validation.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
