//! The Prometheus text exposition format (version 0.0.4), one sample line at a
//! time: `name{label="value",...} value [timestamp]`. Comments and blank lines
//! carry no sample and are skipped. The one parser of the exposition in this
//! tree: `top`, the tests and the contrib checks read /metrics through it.

use std::borrow::Cow;

/// One sample. Label values are unescaped (`\\`, `\"`, `\n`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
}

impl Sample<'_> {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_ref())
    }
}

/// Every sample of `text`; a malformed line is an error naming its number.
pub fn samples(text: &str) -> impl Iterator<Item = Result<Sample<'_>, String>> {
    text.lines().enumerate().filter_map(|(i, line)| match parse_line(line) {
        Ok(s) => s.map(Ok),
        Err(e) => Some(Err(format!("line {}: {e}: {:?}", i + 1, truncate(line)))),
    })
}

/// Each family's name and type, from its `# TYPE` line.
pub fn types(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
}

fn truncate(line: &str) -> &str {
    match line.char_indices().nth(80) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// A sample, or None for a comment or a blank line.
pub fn parse_line(line: &str) -> Result<Option<Sample<'_>>, &'static str> {
    let line = line.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')).unwrap_or(line.len());
    let (name, mut rest) = line.split_at(end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name");
    }
    let mut labels = Vec::new();
    rest = rest.trim_start_matches([' ', '\t']);
    if let Some(r) = rest.strip_prefix('{') {
        rest = parse_labels(r, &mut labels)?;
    }
    let mut fields = rest.split([' ', '\t']).filter(|f| !f.is_empty());
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("bad value")?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    Ok(Some(Sample { name, labels, value }))
}

/// Labels after the `{`, up to and including the `}`; returns what follows.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(&'a str, Cow<'a, str>)>) -> Result<&'a str, &'static str> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(r) = s.strip_prefix('}') {
            return Ok(r);
        }
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        let (name, r) = s.split_at(end);
        if name.is_empty() {
            return Err("bad label name");
        }
        let r = r.trim_start_matches([' ', '\t']).strip_prefix('=').ok_or("no = after a label name")?;
        let r = r.trim_start_matches([' ', '\t']).strip_prefix('"').ok_or("label value not quoted")?;
        let (value, r) = quoted(r)?;
        out.push((name, value));
        s = r.trim_start_matches([' ', '\t']);
        if let Some(r) = s.strip_prefix(',') {
            s = r;
        } else if !s.starts_with('}') {
            return Err("no , or } after a label");
        }
    }
}

/// A label value after its opening quote: the value and what follows the closing quote.
fn quoted(s: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut owned: Option<String> = None;
    let mut start = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let value = match owned {
                    Some(mut o) => {
                        o.push_str(&s[start..i]);
                        Cow::Owned(o)
                    }
                    None => Cow::Borrowed(&s[..i]),
                };
                return Ok((value, &s[i + 1..]));
            }
            b'\\' => {
                let o = owned.get_or_insert_with(String::new);
                o.push_str(&s[start..i]);
                match bytes.get(i + 1) {
                    Some(b'n') => o.push('\n'),
                    Some(b'\\') => o.push('\\'),
                    Some(b'"') => o.push('"'),
                    // Not an escape the format defines: kept as it is.
                    Some(_) => {
                        o.push('\\');
                        start = i + 1;
                        i += 1;
                        continue;
                    }
                    None => return Err("unterminated label value"),
                }
                i += 2;
                start = i;
            }
            _ => i += 1,
        }
    }
    Err("unterminated label value")
}

/// Go's ParseFloat as Prometheus uses it: decimal, exponent, `NaN`, `+Inf`, `-Inf`.
fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) => s.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Sample<'_> {
        parse_line(line).unwrap().unwrap()
    }

    #[test]
    fn a_sample_with_labels_as_the_exporter_writes_it() {
        let s = one(r#"http_server_requests_total{target="web",interface="eth0",port="80",method="GET"} 416425"#);
        assert_eq!(s.name, "http_server_requests_total");
        assert_eq!(s.label("target"), Some("web"));
        assert_eq!(s.label("method"), Some("GET"));
        assert_eq!(s.label("container"), None);
        assert_eq!(s.labels.len(), 4);
        assert_eq!(s.value, 416425.0);
    }

    #[test]
    fn values_in_every_form_go_writes() {
        for (text, want) in [("1.5", 1.5), ("1e3", 1000.0), ("-2.5E-3", -0.0025), ("+Inf", f64::INFINITY)] {
            assert_eq!(one(&format!("m {text}")).value, want, "{text}");
        }
        assert_eq!(one("m -Inf").value, f64::NEG_INFINITY);
        assert!(one("m NaN").value.is_nan());
        for bad in ["m", "m abc", "m 1 2 3", "m 0x10", "m infinity", "m 1 notatime"] {
            assert!(parse_line(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn escapes_in_label_values_are_undone() {
        let s = one(r#"m{a="x\"y",b="back\\slash",c="new\nline",d="\q",e=""} 1"#);
        assert_eq!(s.label("a"), Some("x\"y"));
        assert_eq!(s.label("b"), Some("back\\slash"));
        assert_eq!(s.label("c"), Some("new\nline"));
        assert_eq!(s.label("d"), Some("\\q"));
        assert_eq!(s.label("e"), Some(""));
        // A quote or brace inside a value ends nothing.
        let s = one(r#"m{a="}{,=\"",b="2"} 3"#);
        assert_eq!(s.label("a"), Some("}{,=\""));
        assert_eq!(s.label("b"), Some("2"));
    }

    #[test]
    fn spacing_a_trailing_comma_and_a_timestamp_are_allowed() {
        let s = one("  m { a = \"1\" , b=\"2\", }\t7 1712345678000");
        assert_eq!((s.label("a"), s.label("b"), s.value), (Some("1"), Some("2"), 7.0));
        assert_eq!(one("m{} 3").labels.len(), 0);
        assert_eq!(one("ns:m_x 3").name, "ns:m_x");
    }

    #[test]
    fn comments_and_blank_lines_are_not_samples() {
        for line in ["", "   ", "# HELP m help text", "# TYPE m counter", "#"] {
            assert_eq!(parse_line(line), Ok(None), "{line:?}");
        }
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        for bad in
            [r#"m{a="1" 2"#, r#"m{a=1} 2"#, r#"m{a="1} 2"#, r#"m{="1"} 2"#, r#"m{a "1"} 2"#, "{a=\"1\"} 2", "9m 1"]
        {
            assert!(parse_line(bad).is_err(), "{bad} accepted");
        }
        let errs: Vec<_> = samples("a 1\n# c\nb{x} 2\n").filter_map(Result::err).collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("line 3: "), "{errs:?}");
    }

    #[test]
    fn a_whole_exposition_in_order() {
        let text = "# HELP a x\n# TYPE a counter\na{l=\"1\"} 1\na{l=\"2\"} 2\n\nb 3\n";
        let got: Vec<_> = samples(text).map(|s| s.unwrap().value).collect();
        assert_eq!(got, [1.0, 2.0, 3.0]);
    }
}
