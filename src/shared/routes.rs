//! Route templates: the `routes` of a target, checked when the config is
//! read and compiled into the table the kernel matches request paths against
//! (bpf/lib/routes.h).
//!
//! A template is `/`-separated segments: a literal matches itself
//! (case-sensitive), `{name}` any one non-empty segment, and a final `*` the
//! rest of the path (zero or more segments). `/` alone is the root.

use crate::abi::{self, Route, Routes, MAX_ROUTES, PATH_MAX, ROUTE_BYTES, ROUTE_SEGS};

/// The label value of a request whose path matched no template of its target.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

/// A template, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template {
    segments: Vec<Segment>,
    star: bool,
}

fn parse(t: &str) -> Result<Template, String> {
    let rest = t.strip_prefix('/').ok_or_else(|| format!("route {t:?} must start with /"))?;
    let mut segments = Vec::new();
    let mut star = false;
    if !rest.is_empty() {
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == "*" {
                if i + 1 != parts.len() {
                    return Err(format!("route {t:?}: * may only be the last segment"));
                }
                star = true;
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("route {t:?}: {part:?} must be {{name}}, the name letters, digits or _"));
                }
                segments.push(Segment::Param);
            } else if part.is_empty() {
                return Err(format!("route {t:?} has an empty segment"));
            } else if *part == "." || *part == ".." {
                return Err(format!("route {t:?}: {part:?} segments never match (paths with them are \"other\")"));
            } else if let Some(c) = part.chars().find(|c| !c.is_ascii_graphic() || "{}*?#".contains(*c)) {
                return Err(format!("route {t:?}: {c:?} cannot be in a literal segment"));
            } else {
                segments.push(Segment::Literal(part.to_string()));
            }
        }
    }
    if segments.len() > ROUTE_SEGS {
        return Err(format!(
            "route {t:?} has {} segments before its end, the kernel's table {ROUTE_SEGS}",
            segments.len()
        ));
    }
    let literal: usize = segments.iter().map(|s| if let Segment::Literal(l) = s { l.len() } else { 0 }).sum();
    if literal > ROUTE_BYTES {
        return Err(format!("route {t:?} has {literal} bytes of literal segments, the kernel's table {ROUTE_BYTES}"));
    }
    // A path is read up to PATH_MAX bytes: the segments before `*` (or all)
    // must fit, or the template could never match.
    let fixed = t.trim_end_matches('*').len();
    if fixed > PATH_MAX {
        return Err(format!("route {t:?} is longer than the {PATH_MAX} bytes of a path the kernel reads"));
    }
    Ok(Template { segments, star })
}

/// Check a target's templates: each valid, none twice, at most MAX_ROUTES.
pub fn check(templates: &[String]) -> Result<(), String> {
    if templates.len() > MAX_ROUTES {
        return Err(format!("at most {MAX_ROUTES} routes per target (the kernel's table), got {}", templates.len()));
    }
    for (i, t) in templates.iter().enumerate() {
        parse(t)?;
        if templates[..i].contains(t) {
            return Err(format!("route {t:?} is listed twice"));
        }
    }
    Ok(())
}

/// The kernel's table for `templates` (already checked), tried in their order.
pub fn compile(templates: &[String]) -> Result<Routes, String> {
    check(templates)?;
    let mut table = Routes { n: templates.len() as u32, ..Routes::default() };
    for (index, (t, slot)) in templates.iter().zip(table.r.iter_mut()).enumerate() {
        let parsed = parse(t)?;
        let mut r = Route { nseg: parsed.segments.len() as u8, star: u8::from(parsed.star), ..Route::default() };
        let mut at = 0;
        for (i, s) in parsed.segments.iter().enumerate() {
            match s {
                Segment::Param => r.kind[i] = abi::SEG_PARAM,
                Segment::Literal(l) => {
                    r.kind[i] = abi::SEG_LITERAL;
                    r.len[i] = l.len() as u8;
                    r.off[i] = at as u8;
                    r.lit[at..at + l.len()].copy_from_slice(l.as_bytes());
                    at += l.len();
                }
            }
        }
        *slot = r;
        for n in 0..=ROUTE_SEGS + 1 {
            if may_match(&parsed, n, false) {
                table.whole[n] |= 1 << index;
            }
            if may_match(&parsed, n, true) {
                table.cut[n] |= 1 << index;
            }
        }
    }
    Ok(table)
}

/// Whether `t` can match a path split into `n` segments (ROUTE_SEGS + 1: that
/// many or more), `cut` when the kernel could not read it to its end: a
/// template without `*` needs the path whole, with exactly its segments; one
/// with `*` at least its segments, and, when cut, one more begun after them
/// (or else its last fixed segment may not be whole).
fn may_match(t: &Template, n: usize, cut: bool) -> bool {
    let fixed = t.segments.len();
    if t.star {
        n >= fixed && !(cut && fixed > 0 && n <= fixed)
    } else {
        !cut && n == fixed
    }
}

/// The `route` label of a series whose key says `route`, for a target with `templates`.
pub fn label(templates: &[String], route: u8) -> &str {
    match route {
        0 | abi::ROUTE_OTHER => OTHER,
        n => templates.get(n as usize - 1).map_or(OTHER, String::as_str),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_that_cannot_be_matched_are_errors_that_say_why() {
        for (t, why) in [
            ("users/{id}", "must start with /"),
            ("/static/*/x", "may only be the last"),
            ("/a//b", "empty segment"),
            ("/a/", "empty segment"),
            ("/a/{}", "{name}"),
            ("/a/{id-x}", "{name}"),
            ("/a/b*", "cannot be in a literal"),
            ("/a?b", "cannot be in a literal"),
            ("/a b", "cannot be in a literal"),
            ("/../x", "never match"),
            ("/1/2/3/4/5/6/7/8/9", "9 segments"),
        ] {
            let e = check(&[t.to_string()]).expect_err(t);
            assert!(e.contains(why), "{t}: {e}");
        }
        let long = format!("/{}", "a".repeat(PATH_MAX));
        assert!(check(&[long]).unwrap_err().contains("longer than the 128 bytes"));
        let many: Vec<String> = (0..=MAX_ROUTES).map(|i| format!("/r{i}")).collect();
        assert!(check(&many).unwrap_err().contains("at most 32 routes"));
        assert!(check(&["/a".into(), "/a".into()]).unwrap_err().contains("listed twice"));
    }

    #[test]
    fn templates_compile_into_the_kernels_table_in_order() {
        let t = ["/users/{id}/orders", "/static/*", "/"].map(String::from);
        let table = compile(&t).unwrap();
        assert_eq!(table.n, 3);
        let r = &table.r[0];
        assert_eq!((r.nseg, r.star), (3, 0));
        assert_eq!(r.kind[..3], [abi::SEG_LITERAL, abi::SEG_PARAM, abi::SEG_LITERAL]);
        assert_eq!((r.off[0], r.len[0], r.off[2], r.len[2]), (0, 5, 5, 6));
        assert_eq!(&r.lit[..11], b"usersorders");
        assert_eq!((table.r[1].nseg, table.r[1].star), (1, 1));
        assert_eq!((table.r[2].nseg, table.r[2].star), (0, 0));
        assert_eq!(label(&t, 2), "/static/*");
        assert_eq!(label(&t, abi::ROUTE_OTHER), "other");
        assert_eq!(label(&t, 9), "other", "a template since removed");
    }
}
