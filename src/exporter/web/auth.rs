//! Basic auth against bcrypt hashes, as exporter-toolkit checks it: an unknown
//! user is compared against a fixed hash (no timing difference), one bcrypt
//! comparison runs at a time, and results are cached (100 entries) so that a
//! scrape every few seconds does not cost a bcrypt run each. The cache holds
//! SHA-256 digests, not passwords, and is searched in constant time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// bcrypt of "fakepassword", exporter-toolkit's stand-in for unknown users.
const FAKE_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";
const CACHE_SIZE: usize = 100;

#[derive(Default)]
pub struct Auth {
    cache: Mutex<Cache>,
    /// bcrypt is CPU-heavy: one comparison at a time.
    bcrypt: Arc<Mutex<()>>,
    /// The hash of every bcrypt comparison made, in order: what the tests see of the work done.
    #[cfg(test)]
    compared: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Cache {
    entries: Vec<([u8; 32], bool)>,
    next: usize,
}

impl Cache {
    /// Every entry is compared, whatever matches: the time does not tell which.
    fn get(&self, key: &[u8; 32]) -> Option<bool> {
        let mut found = None;
        for (k, ok) in &self.entries {
            if bool::from(k.ct_eq(key)) {
                found = Some(*ok);
            }
        }
        found
    }

    fn set(&mut self, key: [u8; 32], ok: bool) {
        if self.entries.len() < CACHE_SIZE {
            self.entries.push((key, ok));
        } else {
            self.entries[self.next] = (key, ok);
            self.next = (self.next + 1) % CACHE_SIZE;
        }
    }
}

/// The user and password of an `Authorization: Basic ...` header (Go's r.BasicAuth()).
pub fn basic_credentials(h: Option<&HeaderValue>) -> Option<(String, String)> {
    let h = h?.to_str().ok()?;
    let (scheme, rest) = h.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn digest(parts: [&str; 3]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

impl Auth {
    /// Whether the request's credentials name a user of `users` with the right password.
    pub async fn check(&self, users: &BTreeMap<String, String>, header: Option<&HeaderValue>) -> bool {
        let Some((user, pass)) = basic_credentials(header) else { return false };
        let (hash, known) = match users.get(&user) {
            Some(h) => (h.clone(), true),
            None => (FAKE_HASH.to_string(), false),
        };
        let key = digest([&user, &hash, &pass]);
        let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
        let ok = match cached {
            Some(ok) => ok,
            None => {
                #[cfg(test)]
                self.compared.lock().unwrap().push(hash.clone());
                let lock = self.bcrypt.clone();
                let verified = tokio::task::spawn_blocking(move || {
                    let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
                    bcrypt::verify(pass, &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let ok = known && verified;
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).set(key, ok);
                ok
            }
        };
        ok && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[test]
    fn credentials_parse_like_go() {
        assert_eq!(basic_credentials(Some(&header("a", "b:c"))), Some(("a".into(), "b:c".into())));
        assert_eq!(basic_credentials(Some(&HeaderValue::from_static("Bearer x"))), None);
        assert_eq!(basic_credentials(Some(&HeaderValue::from_static("basic !!!"))), None);
        assert_eq!(basic_credentials(None), None);
    }

    #[tokio::test]
    async fn right_password_passes_wrong_and_unknown_fail_also_from_the_cache() {
        let users = BTreeMap::from([("alice".to_string(), bcrypt::hash("secret", 4).unwrap())]);
        let auth = Auth::default();
        for _ in 0..2 {
            assert!(auth.check(&users, Some(&header("alice", "secret"))).await);
            assert!(!auth.check(&users, Some(&header("alice", "wrong"))).await);
            assert!(!auth.check(&users, Some(&header("mallory", "fakepassword"))).await);
            assert!(!auth.check(&users, None).await);
        }
        assert_eq!(auth.cache.lock().unwrap().entries.len(), 3);
    }

    /// exporter-toolkit's defence against telling users apart by time: an
    /// unknown user costs one bcrypt comparison, as a known one does, against
    /// a hash of the cost exporter-toolkit uses (10, htpasswd -B's default).
    #[tokio::test]
    async fn an_unknown_user_costs_a_bcrypt_comparison_as_a_known_one_does() {
        let known = bcrypt::hash("secret", 10).unwrap();
        let users = BTreeMap::from([("alice".to_string(), known.clone())]);
        let auth = Auth::default();
        assert!(!auth.check(&users, Some(&header("mallory", "secret"))).await);
        assert!(!auth.check(&users, Some(&header("alice", "wrong"))).await);
        assert_eq!(*auth.compared.lock().unwrap(), [FAKE_HASH.to_string(), known]);
        let cost = |h: &str| h.parse::<bcrypt::HashParts>().unwrap().get_cost();
        assert_eq!(cost(FAKE_HASH), 10);
        assert!(bcrypt::verify("fakepassword", FAKE_HASH).unwrap(), "a real hash, so the comparison runs in full");
    }
}
