//! bpf/lib/routes.h: a request's path against its target's templates, the
//! first that matches winning (tests/bpf/routes_test.bpf.c). The expected
//! route comes from a matcher of this test's own, each template turned into
//! a regular expression, not from the exporter's template code; only the
//! table written into the map is compiled by it.

use super::{run, storage};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/routes_test.skel.rs"));
}

use hge_shared::abi::bytes_of;
use hge_shared::routes::compile;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapCore;

/// Bytes of the window (HG_WINDOW), its slack, and of a path the kernel reads (HG_PATH_MAX).
const WINDOW: usize = 256;
const SLACK: usize = 8;
const PATH_MAX: usize = 128;
/// The route of a path no template matches (HG_ROUTE_OTHER).
const OTHER: i32 = 255;

/// The templates of the example, and a catch-all-free root.
const TEMPLATES: &[&str] = &["/users/{id}", "/users/{id}/orders", "/static/*", "/", "/api/v1/{kind}/{id}/*"];
/// Target ids: one with TEMPLATES, one with none.
const ROUTED: u32 = 7;
const UNROUTED: u32 = 8;

struct Routes(skel::RoutesTestSkel<'static>);

impl Routes {
    fn load() -> Option<Routes> {
        if !crate::common::privileged(&[]) {
            return None;
        }
        let open = skel::RoutesTestSkelBuilder::default().open(storage()).expect("opening routes_test");
        let t = Routes(open.load().expect("loading routes_test"));
        t.set(ROUTED, TEMPLATES);
        Some(t)
    }

    fn set(&self, target: u32, templates: &[&str]) {
        let owned: Vec<String> = templates.iter().map(|t| t.to_string()).collect();
        let table = compile(&owned).expect("valid templates");
        self.0.maps.routes.update(&target.to_ne_bytes(), bytes_of(&table), libbpf_rs::MapFlags::ANY).unwrap();
    }

    /// The route of the request-target `text` (what follows the method and
    /// its space, up to the end of the bytes given): 1 + index, or OTHER; and
    /// whether the kernel saw the path go on past the bytes it reads.
    fn route(&self, target: u32, text: &[u8]) -> (i32, bool) {
        // What follows the bytes given is a ' ', the end of a request-target.
        let mut w = vec![b' '; WINDOW + SLACK];
        let len = text.len().min(WINDOW - 1);
        w[..len].copy_from_slice(&text[..len]);
        let case = [&target.to_ne_bytes()[..], &(len as u32 + 1).to_ne_bytes(), &w].concat();
        let (ret, out) = run(&self.0.progs.route_of, &case);
        assert_eq!(i32::from_ne_bytes(out[..4].try_into().unwrap()), ret);
        (ret, out[5] != 0)
    }
}

/// The reference: what the README says a template matches, as a regular
/// expression over the whole path ({name}: one non-empty segment; a final
/// `*`: the rest, zero or more segments).
fn regex_of(template: &str) -> regex::bytes::Regex {
    let body = template.strip_suffix("/*");
    let mut re = String::from("(?s-u)^");
    for seg in body.unwrap_or(template).split('/').skip(1).filter(|s| !s.is_empty()) {
        re.push('/');
        re.push_str(&if seg.starts_with('{') { "[^/]+".to_string() } else { regex::escape(seg) });
    }
    re.push_str(match (body, template) {
        (Some(_), _) => "(/.*)?$",
        (None, "/") => "/$",
        (None, _) => "$",
    });
    regex::bytes::Regex::new(&re).unwrap()
}

/// The route README gives the request-target `target`, whose path ends at
/// '?', '#' or ' ': the first template that matches, or "other". The kernel
/// reads PATH_MAX bytes of a path and the byte that ends it; a path it cannot
/// read to its end is cut. A path no template can name is "other": not
/// starting with '/', a byte read that is not visible ASCII, or a "." or ".."
/// among the first nine whole segments read. A cut path can only match a
/// template ending in `*` whose segments before it were read whole.
fn expected(templates: &[&str], target: &[u8]) -> i32 {
    let end = target.iter().position(|b| b"?# ".contains(b)).unwrap_or(target.len());
    let path = &target[..end];
    let cut = path.len() > PATH_MAX;
    let read = &path[..path.len().min(PATH_MAX + 1)];
    let mut whole: Vec<&[u8]> = read.split(|b| *b == b'/').skip(1).collect();
    if cut {
        whole.pop();
    }
    let nameable = path.first() == Some(&b'/')
        && read.iter().all(|b| (0x21..0x7f).contains(b))
        && !whole.iter().take(9).any(|s| *s == b"." || *s == b"..");
    if !nameable {
        return OTHER;
    }
    for (i, t) in templates.iter().enumerate() {
        if !regex_of(t).is_match(path) {
            continue;
        }
        if cut {
            let Some(fixed) = t.strip_suffix('*') else { continue };
            // The '/' after the fixed segments must be among the bytes read.
            let slashes = fixed.matches('/').count();
            let at = path.iter().enumerate().filter(|(_, b)| **b == b'/').nth(slashes - 1).map(|(at, _)| at);
            if at.is_none_or(|at| at > PATH_MAX) {
                continue;
            }
        }
        return i as i32 + 1;
    }
    OTHER
}

#[test]
fn the_first_template_that_matches_the_path_is_its_route() {
    let Some(t) = Routes::load() else { return };
    let long_id = "9".repeat(200);
    let cases: &[(&str, String, i32)] = &[
        ("a literal and a parameter", "/users/42".into(), 1),
        ("then the request line's version", "/users/42 HTTP/1.1".into(), 1),
        ("the query is not part of the path", "/users/42?x=/orders".into(), 1),
        ("nor the fragment", "/users/42#/orders".into(), 1),
        ("a longer template, listed later", "/users/42/orders".into(), 2),
        ("a parameter is not empty", "/users/".into(), OTHER),
        ("a parameter is one segment", "/users/42/43".into(), OTHER),
        ("a trailing slash is an empty segment", "/users/42/orders/".into(), OTHER),
        ("literals are case-sensitive", "/Users/42".into(), OTHER),
        ("a literal is the whole segment", "/users42".into(), OTHER),
        ("* takes no segment", "/static".into(), 3),
        ("* takes an empty one", "/static/".into(), 3),
        ("* takes many", "/static/css/site.css".into(), 3),
        ("the root", "/".into(), 4),
        ("the root with a query", "/?q=1".into(), 4),
        ("parameters, then *", "/api/v1/pods/p1".into(), 5),
        ("parameters, then * of several", "/api/v1/pods/p1/logs/today".into(), 5),
        ("too few segments for the parameters", "/api/v1/pods".into(), OTHER),
        ("no leading slash", "users/42".into(), OTHER),
        ("an absolute URI", "http://x/users/42".into(), OTHER),
        ("a dot segment", "/static/../etc/passwd".into(), OTHER),
        ("a single dot", "/users/.".into(), OTHER),
        ("percent-encoding is not decoded", "/users/%2e%2e".into(), 1),
        ("a control byte", "/users/4\x012".into(), OTHER),
        ("nothing", "".into(), OTHER),
        ("a path longer than what is read, under *", format!("/static/{long_id}"), 3),
        ("a path longer than what is read, without *", format!("/users/{long_id}"), OTHER),
        ("the fixed segments past what is read", format!("/api/v1/{long_id}/x/y"), OTHER),
    ];
    for (what, path, want) in cases {
        assert_eq!(t.route(ROUTED, path.as_bytes()).0, *want, "{what}: {path:?}");
        assert_eq!(expected(TEMPLATES, path.as_bytes()), *want, "the reference, {what}: {path:?}");
    }
    assert_eq!(t.route(UNROUTED, b"/users/42").0, OTHER, "a target without templates");
}

#[test]
fn a_path_is_cut_where_the_kernel_stops_reading() {
    let Some(t) = Routes::load() else { return };
    let path = |n: usize| format!("/static/{}", "a".repeat(n - 8));
    assert_eq!(t.route(ROUTED, format!("{} HTTP/1.1", path(PATH_MAX)).as_bytes()), (3, false));
    assert_eq!(t.route(ROUTED, format!("{} HTTP/1.1", path(PATH_MAX + 1)).as_bytes()), (3, true));
    let users = format!("/users/{}", "1".repeat(PATH_MAX - 7));
    assert_eq!(t.route(ROUTED, format!("{users} HTTP/1.1").as_bytes()), (1, false), "128 bytes are read whole");
    assert_eq!(t.route(ROUTED, format!("{users}1 HTTP/1.1").as_bytes()), (OTHER, true), "129 are not");
}

/// xorshift64*: the same paths on every run, so that a failure repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// A path built from pieces that hit the templates' edges: their literals,
/// near misses, empty and dot segments, long ones, queries, bytes outside
/// visible ASCII.
fn random_path(rng: &mut Rng) -> Vec<u8> {
    const STARTS: &[&str] =
        &["", "/", "/users", "/users/42", "/users/42/orders", "/static", "/api/v1/pods/p1", "/api/v1", "users"];
    const PIECES: &[&str] = &[
        "users", "Users", "orders", "static", "api", "v1", "42", "", ".", "..", "%2F", "x y", "a\x7f", "\u{e9}",
        "{id}", "*",
    ];
    let mut p = rng.pick(STARTS).as_bytes().to_vec();
    for _ in 0..rng.next() % 4 {
        p.extend_from_slice(b"/");
        match rng.next() % 8 {
            0 => p.extend(std::iter::repeat_n(b'z', (rng.next() % 150) as usize)),
            _ => p.extend_from_slice(rng.pick(PIECES).as_bytes()),
        }
    }
    match rng.next() % 6 {
        0 => p.extend_from_slice(b"?a=/users/1"),
        1 => p.extend_from_slice(b" HTTP/1.1\r\n"),
        _ => {}
    }
    p
}

#[test]
fn random_paths_get_the_route_the_reference_matcher_gives() {
    let Some(t) = Routes::load() else { return };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut routes = std::collections::BTreeMap::new();
    for _ in 0..5_000 {
        let path = random_path(&mut rng);
        let got = t.route(ROUTED, &path).0;
        assert_eq!(got, expected(TEMPLATES, &path), "{:?}", String::from_utf8_lossy(&path));
        *routes.entry(got).or_insert(0u32) += 1;
    }
    // The paths must reach every template and "other", or the test proves little.
    for route in (1..=TEMPLATES.len() as i32).chain([OTHER]) {
        assert!(routes.get(&route).is_some_and(|n| *n > 10), "route {route} seldom reached: {routes:?}");
    }
}
