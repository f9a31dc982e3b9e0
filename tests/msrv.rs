//! The minimum Rust version Cargo.toml declares is true: no locked dependency
//! needs a newer one, and README states the same.

use std::process::Command;

fn version(v: &str) -> (u32, u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn no_dependency_needs_a_newer_rust_than_the_declared_rust_version() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(!ours.is_empty(), "Cargo.toml declares a rust-version");
    let packages = meta["packages"].as_array().unwrap();
    assert!(packages.len() > 50, "the whole locked graph: {} packages", packages.len());
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (version(needs) > version(ours)).then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(too_new.is_empty(), "rust-version {ours} is too low: {too_new:?}");
}

#[test]
fn readme_states_the_declared_rust_version() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(readme.contains(&format!("Rust ≥ {ours}")), "README should say \"Rust ≥ {ours}\"");
}
