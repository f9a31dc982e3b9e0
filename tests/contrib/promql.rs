//! Just enough of PromQL's lexical structure to list what an expression names:
//! metric names, the label names of each selector's matchers, and the label
//! names of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
//! Whether the expression parses is promtool's business; this only reads names.

/// What one expression names.
#[derive(Debug, Default)]
pub struct Names {
    pub metrics: Vec<String>,
    /// (the selector's metric name, the label name of one of its matchers)
    pub matchers: Vec<(String, String)>,
    pub grouping: Vec<String>,
}

const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    expr: &'a str,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).map(|&b| b as char)
    }

    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
            } else if c.is_whitespace() {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(ident_char) {
            self.i += 1;
        }
        self.expr[start..self.i].to_string()
    }

    /// A string literal starting at the cursor; returns its raw contents.
    fn string(&mut self) -> String {
        let quote = self.peek().unwrap();
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == '\\' && quote != '`' {
                self.i += 2;
                continue;
            }
            self.i += 1;
            if c == quote {
                return self.expr[start..self.i - 1].to_string();
            }
        }
        panic!("unterminated string in {}", self.expr)
    }

    fn expect(&mut self, want: char) {
        self.skip_space();
        assert_eq!(self.peek(), Some(want), "expected {want:?} at byte {} of {}", self.i, self.expr);
        self.i += 1;
    }

    /// `( a, b, )` after a grouping keyword.
    fn label_list(&mut self) -> Vec<String> {
        self.expect('(');
        let mut out = Vec::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(')') => {
                    self.i += 1;
                    return out;
                }
                Some(',') => self.i += 1,
                Some(c) if ident_start(c) => out.push(self.ident()),
                other => panic!("unexpected {other:?} in a label list of {}", self.expr),
            }
        }
    }

    /// `{ l="v", m=~"w" }`: the label names, and the value of a `__name__=` matcher.
    fn matchers(&mut self) -> (Vec<String>, Option<String>) {
        self.expect('{');
        let (mut labels, mut name) = (Vec::new(), None);
        loop {
            self.skip_space();
            match self.peek() {
                Some('}') => {
                    self.i += 1;
                    return (labels, name);
                }
                Some(',') => self.i += 1,
                Some(c) if ident_start(c) => {
                    let label = self.ident();
                    self.skip_space();
                    let op_start = self.i;
                    while self.peek().is_some_and(|c| matches!(c, '=' | '!' | '~')) {
                        self.i += 1;
                    }
                    let op = self.expr[op_start..self.i].to_string();
                    self.skip_space();
                    let value = self.string();
                    if label == "__name__" {
                        assert_eq!(op, "=", "only __name__=\"…\" is understood here: {}", self.expr);
                        name = Some(value);
                    } else {
                        labels.push(label);
                    }
                }
                other => panic!("unexpected {other:?} in the matchers of {}", self.expr),
            }
        }
    }
}

/// The names `expr` uses. Grafana variables must have been substituted: a `$`
/// left over fails.
pub fn names(expr: &str) -> Names {
    let mut lx = Lexer { s: expr.as_bytes(), i: 0, expr };
    let mut out = Names::default();
    loop {
        lx.skip_space();
        let Some(c) = lx.peek() else { return out };
        match c {
            '"' | '\'' | '`' => {
                lx.string();
            }
            '[' => {
                while lx.peek().is_some_and(|c| c != ']') {
                    lx.i += 1;
                }
                lx.i += 1;
            }
            '{' => {
                let (labels, name) = lx.matchers();
                let name = name.unwrap_or_else(|| panic!("a selector without a metric name in {expr}"));
                out.matchers.extend(labels.into_iter().map(|l| (name.clone(), l)));
                out.metrics.push(name);
            }
            '$' => panic!("unsubstituted Grafana variable at byte {} of {expr}", lx.i),
            c if c.is_ascii_digit() || c == '.' => {
                while lx.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == '.') {
                    lx.i += 1;
                }
            }
            c if ident_start(c) => {
                let word = lx.ident();
                lx.skip_space();
                let next = lx.peek();
                if GROUPING.contains(&word.as_str()) {
                    if next == Some('(') {
                        out.grouping.extend(lx.label_list());
                    }
                } else if next == Some('(')
                    || AGGREGATIONS.contains(&word.as_str())
                    || KEYWORDS.contains(&word.as_str())
                {
                    // A function, an aggregation or an operator.
                } else if next == Some('{') {
                    let (labels, _) = lx.matchers();
                    out.matchers.extend(labels.into_iter().map(|l| (word.clone(), l)));
                    out.metrics.push(word);
                } else {
                    out.metrics.push(word);
                }
            }
            _ => lx.i += 1,
        }
    }
}

#[test]
fn the_scanner_finds_names_and_skips_everything_else() {
    let n = names(
        "sum by (instance, le) (rate(a_total{x=\"1\", y=~\"b|c\"}[5m] offset 1h)) / on (instance) group_left \
         b:recorded > 0.5 * 1e3 or label_replace(c, \"d\", \"e\", \"\", \"\") unless {__name__=\"f\", z!=\"q\"}",
    );
    assert_eq!(n.metrics, ["a_total", "b:recorded", "c", "f"]);
    assert_eq!(n.matchers, [("a_total".into(), "x".into()), ("a_total".into(), "y".into()), ("f".into(), "z".into())]);
    assert_eq!(n.grouping, ["instance", "le", "instance"]);
}
