//! Which rows are on screen: a cursor (the selected row) that keys move, and
//! the first row shown, kept so that the cursor is always on screen. How many
//! rows there are and how many fit are learnt at each draw ([`Scroll::place`]);
//! keys in between use the last ones.

use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
}

#[derive(Debug, Clone)]
pub struct Scroll<K> {
    /// The selected row's place in the order shown (0: the first).
    pub cursor: usize,
    /// The place of the first row on screen.
    pub offset: usize,
    /// As of the last draw: rows in the order shown, rows that fit, the selected row.
    len: usize,
    height: usize,
    selected: Option<K>,
    /// The order or the filter changed: the next draw looks for the selected row.
    follow: bool,
}

impl<K> Default for Scroll<K> {
    fn default() -> Scroll<K> {
        Scroll { cursor: 0, offset: 0, len: 0, height: 0, selected: None, follow: false }
    }
}

impl<K: Clone + PartialEq> Scroll<K> {
    /// A page moves the cursor and the rows on screen together, by as many rows as fit.
    pub fn step(&mut self, m: Move) {
        let page = self.height.max(1);
        let last = self.len.saturating_sub(1);
        match m {
            Move::Up => self.cursor = self.cursor.saturating_sub(1),
            Move::Down => self.cursor = (self.cursor + 1).min(last),
            Move::PageUp => {
                self.cursor = self.cursor.saturating_sub(page);
                self.offset = self.offset.saturating_sub(page);
            }
            Move::PageDown => {
                self.cursor = (self.cursor + page).min(last);
                self.offset += page;
            }
            Move::Home => self.cursor = 0,
            Move::End => self.cursor = last,
        }
        self.follow = false;
    }

    /// The sort or the filter changed: the selected row stays selected if it is
    /// still shown; from the first row, or when it is gone, back to the top.
    pub fn reorder(&mut self) {
        self.follow = true;
    }

    /// The rows on screen, out of `keys` (every row shown, in order) with
    /// `height` fitting. A refresh keeps the cursor's place (moved up when rows
    /// go away), a reorder the selected row; the cursor ends up on screen and the
    /// screen as full as the rows allow.
    pub fn place(&mut self, keys: &[&K], height: usize) -> Range<usize> {
        let len = keys.len();
        if std::mem::take(&mut self.follow) {
            let at = |k: &K| keys.iter().position(|x| *x == k);
            let found = self.selected.as_ref().filter(|_| self.cursor > 0).and_then(at);
            self.cursor = found.unwrap_or(0);
        }
        self.cursor = self.cursor.min(len.saturating_sub(1));
        if self.cursor < self.offset {
            self.offset = self.cursor;
        } else if self.cursor >= self.offset + height {
            self.offset = self.cursor + 1 - height.max(1);
        }
        self.offset = self.offset.min(len.saturating_sub(height));
        (self.len, self.height) = (len, height);
        self.selected = keys.get(self.cursor).map(|k| (*k).clone());
        self.offset..(self.offset + height).min(len)
    }
}

/// "rows 41-80 of 200" for the rows on screen out of `len`.
pub fn range_text(on_screen: &Range<usize>, len: usize) -> String {
    if on_screen.is_empty() {
        format!("no rows of {len}")
    } else {
        format!("rows {}-{} of {len}", on_screen.start + 1, on_screen.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: u32) -> Vec<u32> {
        (0..n).collect()
    }

    fn place(s: &mut Scroll<u32>, ks: &[u32], height: usize) -> Range<usize> {
        s.place(&ks.iter().collect::<Vec<_>>(), height)
    }

    #[test]
    fn the_first_rows_that_fit_then_the_cursor_drags_the_screen() {
        let (mut s, ks) = (Scroll::default(), keys(200));
        assert_eq!(place(&mut s, &ks, 40), 0..40);
        for _ in 0..39 {
            s.step(Move::Down);
        }
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (0..40, 39), "the last row on screen");
        s.step(Move::Down);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (1..41, 40), "one row further");
        for _ in 0..40 {
            s.step(Move::Up);
        }
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (0..40, 0));
        s.step(Move::Up);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (0..40, 0), "nothing above the first");
    }

    #[test]
    fn pages_home_and_end() {
        let (mut s, ks) = (Scroll::default(), keys(200));
        place(&mut s, &ks, 40);
        s.step(Move::PageDown);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (40..80, 40));
        assert_eq!(range_text(&(40..80), 200), "rows 41-80 of 200");
        s.step(Move::Down);
        s.step(Move::PageUp);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (0..40, 1), "the cursor stays in its place on screen");
        s.step(Move::End);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (160..200, 199));
        s.step(Move::PageDown);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (160..200, 199), "nothing below the last");
        s.step(Move::PageUp);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (120..160, 159));
        s.step(Move::Home);
        assert_eq!((place(&mut s, &ks, 40), s.cursor), (0..40, 0));
    }

    #[test]
    fn fewer_rows_than_fit_and_no_rows_at_all() {
        let mut s = Scroll::default();
        assert_eq!(place(&mut s, &keys(4), 40), 0..4);
        s.step(Move::End);
        s.step(Move::PageDown);
        assert_eq!((place(&mut s, &keys(4), 40), s.cursor), (0..4, 3));
        assert_eq!(place(&mut s, &[], 40), 0..0);
        assert_eq!(range_text(&(0..0), 0), "no rows of 0");
        assert_eq!(place(&mut s, &keys(10), 0), 0..0, "no room");
    }

    #[test]
    fn refreshes_keep_the_place_and_clamp_when_rows_go_away() {
        let mut s = Scroll::default();
        place(&mut s, &keys(200), 40);
        s.step(Move::End);
        assert_eq!(place(&mut s, &keys(200), 40), 160..200);
        let other: Vec<u32> = (0..200).rev().collect();
        assert_eq!((place(&mut s, &other, 40), s.cursor), (160..200, 199), "the same place, whichever row");
        assert_eq!((place(&mut s, &keys(100), 40), s.cursor), (60..100, 99), "the last row, still");
        assert_eq!((place(&mut s, &keys(100), 20), s.cursor), (80..100, 99), "a smaller terminal");
        assert_eq!((place(&mut s, &keys(100), 50), s.cursor), (50..100, 99), "a taller one fills up");
    }

    #[test]
    fn a_reorder_keeps_the_selected_row_or_goes_to_the_top() {
        let mut s = Scroll::default();
        place(&mut s, &keys(200), 40);
        s.step(Move::PageDown);
        s.step(Move::Down);
        assert_eq!((place(&mut s, &keys(200), 40), s.cursor), (40..80, 41));
        let reversed: Vec<u32> = (0..200).rev().collect();
        s.reorder();
        assert_eq!((place(&mut s, &reversed, 40), s.cursor), (119..159, 158), "row 41 is 159th now, at the bottom");
        s.reorder();
        assert_eq!((place(&mut s, &[1, 2, 3], 40), s.cursor), (0..3, 0), "filtered out: the top");
        place(&mut s, &keys(200), 40);
        s.reorder();
        assert_eq!((place(&mut s, &reversed, 40), s.cursor), (0..40, 0), "from the top, the top of the new order");
    }
}
