//! Test certificates with the openssl command: a CA and the certificates it
//! signs, EC keys, valid two days, in a directory the test owns.

use std::path::Path;
use std::process::Command;

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A new P-256 key, unencrypted.
const NEW_KEY: [&str; 5] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];

/// A self-signed EC certificate `name`.pem / `name`.key, valid two days.
pub fn self_signed(dir: &Path, name: &str, cn: &str, extra: &[&str]) {
    let (key, pem, subj) = (format!("{name}.key"), format!("{name}.pem"), format!("/CN={cn}"));
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_KEY);
    args.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// `name`.pem / `name`.key for `cn`, signed by ca.pem / ca.key in `dir`, for localhost and 127.0.0.1.
pub fn issue(dir: &Path, name: &str, cn: &str, eku: &str) {
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    let (key, csr, pem, ext) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    let subj = format!("/CN={cn}");
    let mut req = vec!["req"];
    req.extend(NEW_KEY);
    req.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
}
