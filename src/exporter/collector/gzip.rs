//! gzip for the exposition, compressed once per map read.
//!
//! The HTTP families (large, the same for every scrape between two map reads)
//! are written piece by piece straight into the deflate stream, never whole,
//! which ends with a sync flush (byte-aligned, not final); each scrape deflates
//! only the small self-metrics part and appends it as the final blocks of the
//! same deflate stream. Header, shared prefix, per-scrape suffix and trailer
//! (CRC-32 combined, length) form ONE gzip member (RFC 1952), which every gzip
//! reader accepts, not only those that read concatenated members.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::write::{DeflateEncoder, GzEncoder};
use flate2::{Compression, Crc};

use super::http::Cursor;

/// gzip header: deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The gzip header and the deflated HTTP families, sync-flushed, with their CRC.
pub struct Prefix {
    bytes: Bytes,
    crc: Crc,
}

impl Prefix {
    /// Deflate the text `fill` writes: called with a cursor, a buffer and
    /// scratch space until the cursor is done (one piece in memory at a time).
    pub fn deflate(mut fill: impl FnMut(&mut Cursor, &mut BytesMut, &mut BytesMut)) -> Prefix {
        let mut enc = DeflateEncoder::new(HEADER.to_vec(), Compression::fast());
        let (mut cur, mut buf, mut labels, mut crc) = (Cursor::default(), BytesMut::new(), BytesMut::new(), Crc::new());
        while !cur.done() {
            buf.clear();
            fill(&mut cur, &mut buf, &mut labels);
            crc.update(&buf);
            // Writing into a Vec cannot fail.
            enc.write_all(&buf).expect("deflate into memory");
        }
        // flush() is a sync flush.
        enc.flush().expect("deflate into memory");
        let mut out = std::mem::take(enc.get_mut());
        out.shrink_to_fit();
        Prefix { bytes: Bytes::from(out), crc }
    }

    /// The whole body: this prefix, then `own` deflated now as the final
    /// blocks, and the trailer.
    pub fn with(&self, own: &[u8]) -> Vec<Bytes> {
        let mut enc = DeflateEncoder::new(Vec::with_capacity(own.len() / 4 + 64), Compression::fast());
        enc.write_all(own).expect("deflate into memory");
        let tail = enc.finish().expect("deflate into memory");
        let mut crc = Crc::new();
        crc.update(own);
        let mut all = Crc::new();
        all.combine(&self.crc);
        all.combine(&crc);
        let mut suffix = BytesMut::with_capacity(tail.len() + 8);
        suffix.put_slice(&tail);
        suffix.put_u32_le(all.sum());
        suffix.put_u32_le(all.amount());
        vec![self.bytes.clone(), suffix.freeze()]
    }
}

/// A body deflated as it is sent: each piece of the inner iterator is
/// deflated when asked for, and what the deflater has put out by then is the
/// next piece, so only about a piece of either is held at a time.
pub struct Stream<I> {
    inner: I,
    enc: Option<GzEncoder<Vec<u8>>>,
}

impl<I: Iterator<Item = Bytes>> Stream<I> {
    pub fn new(inner: I) -> Stream<I> {
        Stream { inner, enc: Some(GzEncoder::new(Vec::new(), Compression::fast())) }
    }
}

impl<I: Iterator<Item = Bytes>> Iterator for Stream<I> {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let enc = self.enc.as_mut()?;
        // Writing into memory cannot fail.
        match self.inner.next() {
            Some(piece) => {
                enc.write_all(&piece).expect("gzip into memory");
                // Empty while the deflater holds back its output; the body skips empty pieces.
                Some(Bytes::from(std::mem::take(enc.get_mut())))
            }
            None => self.enc.take().map(|enc| Bytes::from(enc.finish().expect("gzip into memory"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(parts: &[Bytes]) -> Vec<u8> {
        let all = parts.concat();
        // Exactly one member: the single-member decoder reads all of it.
        let mut d = flate2::read::GzDecoder::new(&all[..]);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        out
    }

    /// A prefix of `lines` lines, written `per_piece` lines a time through the cursor protocol.
    fn prefix(lines: usize, per_piece: usize) -> (Prefix, String) {
        let text: Vec<String> = (0..lines).map(|i| format!("metric{{n=\"{i}\"}} {i}\n")).collect();
        let mut next = 0;
        let p = Prefix::deflate(|cur, buf, _| {
            for l in text.iter().skip(next).take(per_piece) {
                buf.put_slice(l.as_bytes());
            }
            next += per_piece;
            if next >= text.len() {
                *cur = Cursor::finished();
            }
        });
        (p, text.concat())
    }

    #[test]
    fn prefix_and_suffix_are_one_gzip_member() {
        let (p, big) = prefix(20_000, 300);
        for own in ["own_metric 1\n", "own_metric 2\nother 3\n", ""] {
            let parts = p.with(own.as_bytes());
            assert_eq!(gunzip(&parts), format!("{big}{own}").into_bytes());
        }
        // The prefix is computed once and shared.
        let (a, b) = (p.with(b"x"), p.with(b"y"));
        assert_eq!(a[0].as_ptr(), b[0].as_ptr());
        assert!(a[0].len() < big.len() / 3, "compressed {} of {}", a[0].len(), big.len());
    }

    #[test]
    fn empty_families_still_make_valid_gzip() {
        let (p, _) = prefix(0, 1);
        assert_eq!(gunzip(&p.with(b"a 1\n")), b"a 1\n");
        assert_eq!(gunzip(&p.with(b"")), b"");
    }

    #[test]
    fn a_stream_is_one_gzip_member_of_its_pieces_in_order() {
        let pieces: Vec<Bytes> = (0..300).map(|i| Bytes::from(format!("piece {i} ").repeat(i % 7 * 900))).collect();
        let out: Vec<Bytes> = Stream::new(pieces.clone().into_iter()).collect();
        assert_eq!(gunzip(&out), pieces.concat());
        assert!(out.iter().filter(|b| !b.is_empty()).count() > 1, "deflated as it goes, not at the end");
        assert_eq!(gunzip(&Stream::new(std::iter::empty()).collect::<Vec<_>>()), b"");
    }
}
