//! The screen: a title line, a status (or error) line, the table, a key line.
//! Only layout and styles here; what to show comes from the other modules
//! (which rows fit: `scroll`, told how many at each draw).

use std::time::Duration;

use ratatui::layout::{Alignment, Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::Frame;

use super::reading::RowKey;
use super::rows::Row;
use super::scroll::range_text;
use super::table::Column;
use super::Screen;

pub fn draw(f: &mut Frame, s: &mut Screen) {
    let [title, status, table, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(1), Constraint::Length(1)])
            .areas(f.area());
    let reads = match s.tracker.period() {
        Some(p) => format!("exporter reads every {}", seconds(p)),
        None if s.tracker.rows().is_empty() => String::new(),
        None => "measuring: waiting for two new reads of the exporter".to_string(),
    };
    let every = humantime::format_duration(s.interval);
    let head = format!("http-golden-exporter top  {}  every {every}  {reads}", s.url);
    f.render_widget(Paragraph::new(head).style(Style::new().add_modifier(Modifier::BOLD)), title);

    let all = s.tracker.rows();
    let shown = s.view.apply(all);
    let row_keys: Vec<&RowKey> = shown.iter().map(|r| &r.key).collect();
    // The header takes a line of the table's area.
    let on_screen = s.view.scroll.place(&row_keys, table.height.saturating_sub(1) as usize);
    let line = match (&s.error, s.last_ok) {
        (Some((e, since)), last) => {
            let age = match last {
                Some(t) => format!("; data below is {} old", whole_seconds(t.elapsed())),
                None => String::new(),
            };
            let text = format!(
                "error: {e} (failing for {}, retrying every {}{age})",
                whole_seconds(since.elapsed()),
                humantime::format_duration(s.interval)
            );
            Line::styled(text, Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))
        }
        (None, None) => Line::raw("connecting..."),
        (None, Some(_)) if all.is_empty() => Line::raw("no HTTP series in the exposition yet (no request seen)"),
        (None, Some(_)) => {
            let dir = if s.view.descending { "descending" } else { "ascending" };
            let (n, range) = (shown.len(), range_text(&on_screen, shown.len()));
            let mut text = format!("{} rows, {n} shown; {range}; sorted by {} {dir}", all.len(), s.view.sort.title());
            if !s.view.filter.is_empty() {
                text += &format!("; filter: {}", s.view.filter);
            }
            text += quantiles_from(&shown);
            Line::raw(text)
        }
    };
    f.render_widget(Paragraph::new(line), status);

    let header = TableRow::new(Column::ALL.iter().map(|&c| {
        let mark = if c != s.view.sort {
            ""
        } else if s.view.descending {
            "▼"
        } else {
            "▲"
        };
        let style = if c == s.view.sort { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new() };
        cell(format!("{} {}{mark}", c.key(), c.title()), c).style(style)
    }))
    .style(Style::new().add_modifier(Modifier::BOLD));
    let texts: Vec<[String; 10]> = shown.iter().map(texts).collect();
    let widths: Vec<Constraint> = Column::ALL
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let title = c.title().chars().count() + 3;
            let w = texts.iter().map(|t| t[i].chars().count()).max().unwrap_or(0).max(title);
            Constraint::Length(w.min(32) as u16)
        })
        .collect();
    // Widths from every row shown, so that they do not change while scrolling.
    let cursor = s.view.scroll.cursor;
    let body = texts.into_iter().enumerate().skip(on_screen.start).take(on_screen.len()).map(|(i, t)| {
        let row = TableRow::new(t.into_iter().zip(Column::ALL).map(|(t, c)| cell(t, c)));
        if i == cursor {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    f.render_widget(Table::new(body, widths).header(header).column_spacing(2), table);

    let help = match &s.view.editing {
        Some(_) => format!("filter: {}_   (Enter: keep, Esc: cancel)", s.view.filter),
        None => "q quit  ↑↓/jk move  PgUp/PgDn page  Home/End first/last  1-9,0 sort by column (again: reverse)  \
                 </> move sort  r reverse  g group by route  / filter  Esc clear filter"
            .to_string(),
    };
    f.render_widget(Paragraph::new(help).style(Style::new().add_modifier(Modifier::DIM)), keys);
}

fn cell(text: String, c: Column) -> Cell<'static> {
    let align = if c.numeric() { Alignment::Right } else { Alignment::Left };
    Cell::from(Line::from(Span::raw(text)).alignment(align))
}

/// A row's cells as text, in the order of [`Column::ALL`].
pub fn texts(r: &Row) -> [String; 10] {
    let k = &r.key;
    let or_dash = |s: &str| if s.is_empty() { "-".to_string() } else { s.to_string() };
    [
        k.side.as_str().to_string(),
        or_dash(&k.target),
        or_dash(&k.container),
        or_dash(&k.port),
        or_dash(&k.method),
        or_dash(&k.route),
        r.rate.map_or("-".into(), rate),
        r.errors.map_or("-".into(), |e| format!("{e:.1}%")),
        r.p50.map_or("-".into(), seconds),
        r.p99.map_or("-".into(), seconds),
    ]
}

pub fn rate(r: f64) -> String {
    if r < 1000.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.0}")
    }
}

/// A latency or a period, in the unit that keeps it readable.
pub fn seconds(s: f64) -> String {
    if s < 0.001 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

fn whole_seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// Which buckets the quantiles on screen come from.
fn quantiles_from(rows: &[Row]) -> &'static str {
    let with = |native: bool| rows.iter().any(|r| r.p50.is_some() && r.native == native);
    match (with(true), with(false)) {
        (true, false) => "; quantiles from native buckets",
        (false, true) => "; quantiles from classic buckets",
        (true, true) => "; quantiles from native buckets, classic where a row has none",
        (false, false) => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{RowKey, Side};

    #[test]
    fn numbers_in_readable_units() {
        assert_eq!(seconds(0.375), "375.0ms");
        assert_eq!(seconds(0.00075), "750µs");
        assert_eq!(seconds(2.5), "2.50s");
        assert_eq!(rate(49.96), "50.0");
        assert_eq!(rate(123456.7), "123457");
    }

    #[test]
    fn missing_names_and_numbers_are_dashes() {
        let key = RowKey {
            side: Side::Client,
            target: "t".into(),
            port: "80".into(),
            method: "GET".into(),
            ..Default::default()
        };
        let r = Row {
            key,
            rate: Some(2.0),
            errors: None,
            p50: Some(0.01),
            p99: None,
            native: false,
            sums: Default::default(),
        };
        assert_eq!(texts(&r), ["client", "t", "-", "80", "GET", "-", "2.0", "-", "10.0ms", "-"].map(String::from));
    }
}
