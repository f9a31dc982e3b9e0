//! What the operator controls: the sort column and direction, the filter, the
//! selected row, and the keys that change them. No terminal here: keys come in as [`Key`].

use std::cmp::Ordering;

use super::reading::RowKey;
use super::rows::{by_route, Row};
use super::scroll::{Move, Scroll};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Side,
    Target,
    Container,
    Port,
    Method,
    Route,
    Rate,
    Errors,
    P50,
    P99,
}

impl Column {
    pub const ALL: [Column; 10] = [
        Column::Side,
        Column::Target,
        Column::Container,
        Column::Port,
        Column::Method,
        Column::Route,
        Column::Rate,
        Column::Errors,
        Column::P50,
        Column::P99,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Column::Side => "SIDE",
            Column::Target => "TARGET",
            Column::Container => "CONTAINER",
            Column::Port => "PORT",
            Column::Method => "METHOD",
            Column::Route => "ROUTE",
            Column::Rate => "REQ/S",
            Column::Errors => "5XX%",
            Column::P50 => "P50",
            Column::P99 => "P99",
        }
    }

    /// The key that sorts by this column: '1' for the first, '0' for the tenth.
    pub fn key(self) -> char {
        let i = Column::ALL.iter().position(|c| *c == self).unwrap_or(0);
        char::from(b'0' + ((i + 1) % 10) as u8)
    }

    pub fn numeric(self) -> bool {
        matches!(self, Column::Rate | Column::Errors | Column::P50 | Column::P99)
    }

    fn value(self, r: &Row) -> Option<f64> {
        match self {
            Column::Rate => r.rate,
            Column::Errors => r.errors,
            Column::P50 => r.p50,
            Column::P99 => r.p99,
            _ => None,
        }
    }

    /// Compares two rows by this column, ascending (two missing numbers are equal).
    fn cmp(self, a: &Row, b: &Row) -> Ordering {
        let (ka, kb) = (&a.key, &b.key);
        match self {
            Column::Side => ka.side.cmp(&kb.side),
            Column::Target => ka.target.cmp(&kb.target),
            Column::Container => ka.container.cmp(&kb.container),
            Column::Port => port(&ka.port).cmp(&port(&kb.port)),
            Column::Method => ka.method.cmp(&kb.method),
            Column::Route => ka.route.cmp(&kb.route),
            _ => match (self.value(a), self.value(b)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => Ordering::Equal,
            },
        }
    }
}

/// Ports compare as numbers ("80" before "443"), anything else after them.
fn port(p: &str) -> (bool, u32, &str) {
    match p.parse::<u32>() {
        Ok(n) => (false, n, ""),
        Err(_) => (true, 0, p),
    }
}

/// A key press, as far as `top` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    Left,
    Right,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    CtrlC,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Redraw,
    Quit,
}

#[derive(Debug, Clone)]
pub struct View {
    pub sort: Column,
    pub descending: bool,
    pub filter: String,
    /// The filter being typed after `/`, and the one before it (Esc restores it).
    pub editing: Option<String>,
    pub scroll: Scroll<RowKey>,
    /// Rows added up per route: every port and method of a target's route in one.
    pub by_route: bool,
}

impl Default for View {
    fn default() -> View {
        View {
            sort: Column::Rate,
            descending: true,
            filter: String::new(),
            editing: None,
            scroll: Scroll::default(),
            by_route: false,
        }
    }
}

impl View {
    pub fn key(&mut self, k: Key) -> Action {
        if k == Key::CtrlC {
            return Action::Quit;
        }
        if let Some(before) = &self.editing {
            match k {
                Key::Enter => self.editing = None,
                Key::Esc => {
                    self.filter = before.clone();
                    self.editing = None;
                }
                Key::Backspace => {
                    self.filter.pop();
                }
                Key::Char(c) if !c.is_control() => self.filter.push(c),
                _ => return Action::Nothing,
            }
            self.scroll.reorder();
            return Action::Redraw;
        }
        if let Some(m) = movement(k) {
            self.scroll.step(m);
            return Action::Redraw;
        }
        match k {
            Key::Char('q') => return Action::Quit,
            Key::Char('/') => self.editing = Some(std::mem::take(&mut self.filter)),
            Key::Char('r') => self.descending = !self.descending,
            Key::Esc if !self.filter.is_empty() => self.filter.clear(),
            Key::Char(c @ '0'..='9') => self.sort_by(Column::ALL[(c as usize - '0' as usize + 9) % 10]),
            Key::Char('g') => self.by_route = !self.by_route,
            Key::Left | Key::Char('<') => self.sort_by(self.step(-1)),
            Key::Right | Key::Char('>') => self.sort_by(self.step(1)),
            _ => return Action::Nothing,
        }
        self.scroll.reorder();
        Action::Redraw
    }

    /// The same column again reverses; another column sorts numbers from the
    /// largest and text from A.
    fn sort_by(&mut self, c: Column) {
        if c == self.sort {
            self.descending = !self.descending;
        } else {
            self.sort = c;
            self.descending = c.numeric();
        }
    }

    fn step(&self, by: isize) -> Column {
        let n = Column::ALL.len() as isize;
        let i = Column::ALL.iter().position(|c| *c == self.sort).unwrap_or(0) as isize;
        Column::ALL[(i + by).rem_euclid(n) as usize]
    }

    /// The rows that pass the filter, in order: by the sort column (rows without
    /// a number in it last, either way), then by the row's key, so that equal
    /// values keep their order between refreshes.
    pub fn apply(&self, rows: &[Row]) -> Vec<Row> {
        let terms: Vec<String> = self.filter.split_whitespace().map(str::to_lowercase).collect();
        let rows = if self.by_route { by_route(rows) } else { rows.to_vec() };
        let mut out: Vec<Row> = rows.into_iter().filter(|r| matches(r, &terms)).collect();
        let missing = |r: &Row| self.sort.numeric() && self.sort.value(r).is_none();
        out.sort_by(|a, b| {
            let o = self.sort.cmp(a, b);
            let o = if self.descending { o.reverse() } else { o };
            missing(a).cmp(&missing(b)).then(o).then_with(|| a.key.cmp(&b.key))
        });
        out
    }
}

/// Up, Down (and vi's k, j), a page up or down, the first or the last row.
fn movement(k: Key) -> Option<Move> {
    Some(match k {
        Key::Up | Key::Char('k') => Move::Up,
        Key::Down | Key::Char('j') => Move::Down,
        Key::PageUp => Move::PageUp,
        Key::PageDown => Move::PageDown,
        Key::Home => Move::Home,
        Key::End => Move::End,
        _ => return None,
    })
}

/// Every term is part of one of the row's names (side, target, container, port, method, route), case aside.
fn matches(r: &Row, terms: &[String]) -> bool {
    let k = &r.key;
    let fields = [k.side.as_str(), &k.target, &k.container, &k.port, &k.method, &k.route];
    terms.iter().all(|t| fields.iter().any(|f| f.to_lowercase().contains(t.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{RowKey, Side};

    fn row(side: Side, target: &str, port: &str, rate: Option<f64>, errors: Option<f64>) -> Row {
        let key = RowKey { side, target: target.into(), port: port.into(), method: "GET".into(), ..Default::default() };
        Row { key, rate, errors, p50: rate.map(|r| 1.0 / r), p99: None, native: false, sums: Default::default() }
    }

    fn rows() -> Vec<Row> {
        vec![
            row(Side::Server, "web", "80", Some(50.0), Some(20.0)),
            row(Side::Server, "api", "8080", Some(2.0), None),
            row(Side::Client, "web", "443", Some(10.0), Some(0.0)),
            row(Side::Client, "batch", "9", None, None),
        ]
    }

    fn targets(v: &View, rows: &[Row]) -> Vec<String> {
        v.apply(rows).iter().map(|r| format!("{}:{}", r.key.target, r.key.port)).collect()
    }

    #[test]
    fn rate_descending_first_missing_numbers_last() {
        let v = View::default();
        assert_eq!(targets(&v, &rows()), ["web:80", "web:443", "api:8080", "batch:9"]);
    }

    #[test]
    fn each_digit_sorts_by_its_column_and_again_reverses() {
        let (mut v, rows) = (View::default(), rows());
        assert_eq!(v.key(Key::Char('4')), Action::Redraw);
        assert_eq!((v.sort, v.descending), (Column::Port, false));
        assert_eq!(targets(&v, &rows), ["batch:9", "web:80", "web:443", "api:8080"], "ports as numbers");
        v.key(Key::Char('4'));
        assert_eq!(targets(&v, &rows), ["api:8080", "web:443", "web:80", "batch:9"]);
        v.key(Key::Char('8'));
        assert_eq!((v.sort, v.descending), (Column::Errors, true));
        assert_eq!(targets(&v, &rows), ["web:80", "web:443", "api:8080", "batch:9"]);
        v.key(Key::Char('8'));
        assert_eq!(targets(&v, &rows), ["web:443", "web:80", "api:8080", "batch:9"], "missing last ascending too");
        v.key(Key::Char('2'));
        assert_eq!(targets(&v, &rows), ["api:8080", "batch:9", "web:80", "web:443"]);
        v.key(Key::Char('1'));
        assert_eq!(targets(&v, &rows)[..2], ["api:8080", "web:80"], "servers first, then by key");
        v.key(Key::Char('r'));
        assert!(v.descending);
        for c in Column::ALL {
            v.key(Key::Char(c.key()));
            assert_eq!(v.sort, c);
        }
        assert_eq!(Column::P99.key(), '0', "the tenth column");
    }

    #[test]
    fn arrows_move_the_sort_column_and_wrap() {
        let mut v = View::default();
        v.key(Key::Right);
        assert_eq!(v.sort, Column::Errors);
        v.key(Key::Char('1'));
        v.key(Key::Left);
        assert_eq!(v.sort, Column::P99);
        v.key(Key::Char('>'));
        assert_eq!(v.sort, Column::Side);
    }

    #[test]
    fn slash_types_a_filter_enter_keeps_it_esc_restores_or_clears() {
        let (mut v, rows) = (View::default(), rows());
        v.key(Key::Char('/'));
        for c in "WEB".chars() {
            v.key(Key::Char(c));
        }
        assert_eq!(targets(&v, &rows), ["web:80", "web:443"], "filters while typing, case aside");
        assert_eq!(v.key(Key::Char('q')), Action::Redraw, "q is text while typing");
        v.key(Key::Backspace);
        v.key(Key::Enter);
        assert_eq!((v.filter.as_str(), v.editing.is_none()), ("WEB", true));
        v.key(Key::Char('/'));
        assert_eq!(v.filter, "", "a new filter starts empty");
        v.key(Key::Char('x'));
        v.key(Key::Esc);
        assert_eq!(v.filter, "WEB", "Esc while typing restores the filter before");
        v.key(Key::Esc);
        assert_eq!(v.filter, "", "Esc clears it");
    }

    #[test]
    fn every_term_must_match_some_name() {
        let (mut v, rows) = (View::default(), rows());
        v.filter = "client web".into();
        assert_eq!(targets(&v, &rows), ["web:443"]);
        v.filter = "8080".into();
        assert_eq!(targets(&v, &rows), ["api:8080"]);
        v.filter = "nothing".into();
        assert!(v.apply(&rows).is_empty());
    }

    #[test]
    fn arrows_j_k_pages_home_and_end_move_the_cursor_but_not_while_typing() {
        let (mut v, rows) = (View::default(), rows());
        let shown = v.apply(&rows);
        let keys: Vec<&RowKey> = shown.iter().map(|r| &r.key).collect();
        v.scroll.place(&keys, 2);
        for (k, cursor) in [(Key::Down, 1), (Key::Char('j'), 2), (Key::Char('k'), 1), (Key::End, 3), (Key::Up, 2)] {
            assert_eq!(v.key(k), Action::Redraw);
            assert_eq!(v.scroll.cursor, cursor, "{k:?}");
        }
        v.key(Key::PageUp);
        assert_eq!(v.scroll.cursor, 0);
        v.key(Key::PageDown);
        assert_eq!(v.scroll.cursor, 2);
        v.key(Key::Home);
        assert_eq!(v.scroll.cursor, 0);
        v.key(Key::Char('/'));
        assert_eq!((v.key(Key::Down), v.key(Key::Char('j'))), (Action::Nothing, Action::Redraw), "j is text");
        assert_eq!((v.scroll.cursor, v.filter.as_str()), (0, "j"));
    }

    #[test]
    fn g_groups_the_rows_by_route_and_back_and_6_sorts_by_route() {
        let mut rows = rows();
        rows[1].key.route = "/users/{id}".into();
        let mut v = View::default();
        assert_eq!(v.key(Key::Char('g')), Action::Redraw);
        let grouped = v.apply(&rows);
        assert!(grouped.iter().all(|r| r.key.port == "*" && r.key.method == "*"), "{grouped:?}");
        v.filter = "users".into();
        assert_eq!(targets(&v, &rows), ["api:*"], "the filter matches routes");
        v.filter.clear();
        v.key(Key::Char('6'));
        assert_eq!(v.sort, Column::Route);
        v.key(Key::Char('g'));
        assert_eq!(v.apply(&rows).len(), rows.len(), "g again: every row");
    }

    #[test]
    fn q_and_ctrl_c_quit_even_while_typing_for_ctrl_c() {
        let mut v = View::default();
        assert_eq!(v.key(Key::Char('q')), Action::Quit);
        v.key(Key::Char('/'));
        assert_eq!(v.key(Key::CtrlC), Action::Quit);
        assert_eq!(View::default().key(Key::Char('z')), Action::Nothing);
    }
}
