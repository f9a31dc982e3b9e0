//! Which format a scrape gets, from its `Accept` header, by the rules of
//! prometheus/common's expfmt.NegotiateIncludingOpenMetrics (what client_golang's
//! promhttp uses with OpenMetrics enabled), as exporters have applied them for
//! years: the media ranges in order of preference (q-value, then the more
//! specific first), and the first of them that names a format we serve wins:
//!
//! - `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily`
//!   and `encoding=delimited`: protobuf;
//! - `application/openmetrics-text` with `version=1.0.0`, `0.0.1` or none: OpenMetrics;
//! - `text/plain` with `version=0.0.4` or none: the classic text.
//!
//! Anything else, a wildcard (`*/*`, what curl sends), a missing or malformed
//! header, falls back to the classic text. Two differences from goautoneg's
//! parsing: a range with `q=0` is refused (RFC 9110: "not acceptable"), where
//! Go still tries it last, and the ordering is a stable sort. (prometheus/common
//! since 2026 (#894) lets `*/*` pick the server's first format; that would hand
//! OpenMetrics to every curl, so the established rule is kept.)

use hyper::header::HeaderValue;

/// What `/metrics` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// text/plain; version=0.0.4
    Text,
    /// application/openmetrics-text; the version asked for (1.0.0 or 0.0.1): the text is the same.
    OpenMetrics { v1: bool },
    /// application/vnd.google.protobuf, length-delimited MetricFamily messages.
    Protobuf,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics { v1: true } => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::OpenMetrics { v1: false } => "application/openmetrics-text; version=0.0.1; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }
}

/// One media range of an Accept header.
struct Range<'a> {
    kind: &'a str,
    sub: &'a str,
    params: Vec<(&'a str, &'a str)>,
    q: f32,
}

impl Range<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    fn format(&self) -> Option<Format> {
        let version = self.param("version");
        let is = |kind: &str, sub: &str| self.kind.eq_ignore_ascii_case(kind) && self.sub.eq_ignore_ascii_case(sub);
        if is("application", "vnd.google.protobuf")
            && self.param("proto") == Some("io.prometheus.client.MetricFamily")
            && self.param("encoding") == Some("delimited")
        {
            return Some(Format::Protobuf);
        }
        if is("application", "openmetrics-text") {
            return match version {
                Some("1.0.0") => Some(Format::OpenMetrics { v1: true }),
                None | Some("0.0.1") => Some(Format::OpenMetrics { v1: false }),
                Some(_) => None,
            };
        }
        if is("text", "plain") && matches!(version, None | Some("0.0.4")) {
            return Some(Format::Text);
        }
        None
    }
}

/// The media ranges of `accept`, most preferred first; ranges that are not
/// `type/subtype` (or `*`) are skipped, as goautoneg does.
fn ranges(accept: &str) -> Vec<Range<'_>> {
    let mut out: Vec<Range> = accept
        .split(',')
        .filter_map(|part| {
            let mut pieces = part.split(';');
            let media = pieces.next()?.trim();
            let (kind, sub) = match media.split_once('/') {
                Some((k, s)) if !k.trim().is_empty() && !s.trim().is_empty() && !s.contains('/') => {
                    (k.trim(), s.trim())
                }
                None if media == "*" => ("*", "*"),
                _ => return None,
            };
            let mut r = Range { kind, sub, params: Vec::new(), q: 1.0 };
            for p in pieces {
                let Some((k, v)) = p.split_once('=') else { continue };
                let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                if k.eq_ignore_ascii_case("q") {
                    // An unreadable q-value is 0, as Go's ParseFloat error leaves it.
                    r.q = v.parse::<f32>().ok().filter(|q| q.is_finite()).unwrap_or(0.0);
                } else {
                    r.params.push((k, v));
                }
            }
            Some(r)
        })
        .filter(|r| r.q > 0.0)
        .collect();
    // Higher q first; at equal q, a concrete type before a wildcard one.
    out.sort_by(|a, b| {
        b.q.total_cmp(&a.q).then((a.kind == "*").cmp(&(b.kind == "*"))).then((a.sub == "*").cmp(&(b.sub == "*")))
    });
    out
}

/// The format for a request with this Accept header.
pub fn negotiate(accept: Option<&HeaderValue>) -> Format {
    let Some(accept) = accept.and_then(|h| h.to_str().ok()) else { return Format::Text };
    ranges(accept).iter().find_map(Range::format).unwrap_or(Format::Text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(accept: &'static str) -> Format {
        negotiate(Some(&HeaderValue::from_static(accept)))
    }

    const PROTO: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

    #[test]
    fn protobuf_when_asked_for_delimited_metric_families() {
        assert_eq!(f(PROTO), Format::Protobuf);
        assert_eq!(
            f("application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"),
            Format::Protobuf
        );
        // Other encodings, or other messages, are not what we serve.
        assert_eq!(
            f("application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text"),
            Format::Text
        );
        assert_eq!(f("application/vnd.google.protobuf;proto=other.Message;encoding=delimited"), Format::Text);
    }

    #[test]
    fn openmetrics_for_versions_1_0_0_0_0_1_and_none() {
        assert_eq!(f("application/openmetrics-text; version=1.0.0"), Format::OpenMetrics { v1: true });
        assert_eq!(f("application/openmetrics-text;version=0.0.1"), Format::OpenMetrics { v1: false });
        assert_eq!(f("application/openmetrics-text"), Format::OpenMetrics { v1: false });
        assert_eq!(f("application/openmetrics-text;version=2.0.0"), Format::Text);
        assert_eq!(
            Format::OpenMetrics { v1: true }.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }

    #[test]
    fn classic_text_when_asked_for_it_or_anything() {
        assert_eq!(f("text/plain;version=0.0.4"), Format::Text);
        assert_eq!(f("text/plain"), Format::Text);
        assert_eq!(f("*/*"), Format::Text, "curl's default");
        assert_eq!(negotiate(None), Format::Text);
        assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    }

    #[test]
    fn what_prometheus_2_42_sends_with_and_without_native_histograms() {
        let with = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,\
                    application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,\
                    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let without = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                       text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(f(with), Format::Protobuf);
        assert_eq!(f(without), Format::OpenMetrics { v1: true });
    }

    #[test]
    fn q_values_order_the_preferences_not_the_position() {
        let a = "text/plain;version=0.0.4;q=0.3,application/openmetrics-text;version=1.0.0;q=0.5,\
                 application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.9";
        assert_eq!(f(a), Format::Protobuf);
        let b = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.2,\
                 text/plain;q=0.7,application/openmetrics-text;q=0.6";
        assert_eq!(f(b), Format::Text);
        // At equal q, the order given.
        assert_eq!(f("application/openmetrics-text, text/plain"), Format::OpenMetrics { v1: false });
        assert_eq!(f("text/plain, application/openmetrics-text"), Format::Text);
        // q=0 means "not this".
        assert_eq!(f("application/openmetrics-text;q=0, text/plain;q=0.1"), Format::Text);
        assert_eq!(f("application/openmetrics-text;q=0.0"), Format::Text);
    }

    #[test]
    fn a_malformed_accept_falls_back_to_classic_text() {
        for bad in [
            "",
            ",,,",
            "garbage",
            "application",
            "/openmetrics-text",
            "application/openmetrics-text/extra",
            "application/openmetrics-text;q=abc",
            "application/openmetrics-text;q=NaN",
            ";;;=;",
        ] {
            assert_eq!(negotiate(Some(&HeaderValue::from_str(bad).unwrap())), Format::Text, "{bad:?}");
        }
        // Bytes that are not visible ASCII.
        assert_eq!(
            negotiate(Some(&HeaderValue::from_bytes(b"application/openmetrics-text\xff").unwrap())),
            Format::Text
        );
        // A malformed range among good ones is skipped, the rest still count.
        assert_eq!(f("garbage;;, application/openmetrics-text;version=1.0.0"), Format::OpenMetrics { v1: true });
    }

    #[test]
    fn an_unknown_type_gets_classic_text() {
        assert_eq!(f("application/json"), Format::Text);
        assert_eq!(f("text/html, application/xhtml+xml"), Format::Text);
        assert_eq!(f("text/plain;version=1.0.0"), Format::Text);
    }
}
