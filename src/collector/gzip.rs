//! gzip for the exposition, compressed once per map read.
//!
//! The HTTP families (large, the same for every scrape between two map reads)
//! are deflated once, ending with a sync flush (byte-aligned, not final); each
//! scrape deflates only the small self-metrics part and appends it as the
//! final blocks of the same deflate stream. Header, shared prefix, per-scrape
//! suffix and trailer (CRC-32 combined, length) form ONE gzip member (RFC 1952),
//! which every gzip reader accepts, not only those that read concatenated members.

use std::io::Write;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::write::DeflateEncoder;
use flate2::{Compression, Crc};

/// gzip header: deflate, no flags, no mtime, no extra flags, OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The HTTP families of one map read, as sent: plain, and gzipped on first demand.
#[derive(Default)]
pub struct HttpText {
    pub plain: Bytes,
    gzip: OnceLock<Prefix>,
}

/// The gzip header and the deflated HTTP families, sync-flushed, with their CRC.
struct Prefix {
    bytes: Bytes,
    crc: Crc,
}

impl HttpText {
    pub fn new(plain: Bytes) -> HttpText {
        HttpText { plain, gzip: OnceLock::new() }
    }

    /// The response body, gzipped: the shared prefix (deflated at most once per
    /// map read; concurrent callers wait for the one doing it) and `own`
    /// deflated now. Blocks for a while on the first call: run it off the runtime.
    pub fn gzip_with(&self, own: &[u8]) -> Vec<Bytes> {
        let prefix = self.gzip.get_or_init(|| {
            let mut enc = DeflateEncoder::new(Vec::with_capacity(self.plain.len() / 8 + 64), Compression::fast());
            let mut out = HEADER.to_vec();
            // Writing into a Vec cannot fail; flush() is a sync flush.
            enc.write_all(&self.plain).and_then(|()| enc.flush()).expect("deflate into memory");
            out.append(enc.get_mut());
            let mut crc = Crc::new();
            crc.update(&self.plain);
            Prefix { bytes: Bytes::from(out), crc }
        });
        let mut enc = DeflateEncoder::new(Vec::with_capacity(own.len() / 4 + 64), Compression::fast());
        enc.write_all(own).expect("deflate into memory");
        let tail = enc.finish().expect("deflate into memory");
        let mut crc = Crc::new();
        crc.update(own);
        let mut all = Crc::new();
        all.combine(&prefix.crc);
        all.combine(&crc);
        let mut suffix = BytesMut::with_capacity(tail.len() + 8);
        suffix.put_slice(&tail);
        suffix.put_u32_le(all.sum());
        suffix.put_u32_le(all.amount());
        vec![prefix.bytes.clone(), suffix.freeze()]
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

    #[test]
    fn prefix_and_suffix_are_one_gzip_member() {
        let big: String = (0..20_000).map(|i| format!("metric{{n=\"{i}\"}} {i}\n")).collect();
        let t = HttpText::new(Bytes::from(big.clone()));
        for own in ["own_metric 1\n", "own_metric 2\nother 3\n", ""] {
            let parts = t.gzip_with(own.as_bytes());
            assert_eq!(gunzip(&parts), format!("{big}{own}").into_bytes());
        }
        // The prefix is computed once and shared.
        let (a, b) = (t.gzip_with(b"x"), t.gzip_with(b"y"));
        assert_eq!(a[0].as_ptr(), b[0].as_ptr());
        assert!(a[0].len() < big.len() / 3, "compressed {} of {}", a[0].len(), big.len());
    }

    #[test]
    fn empty_families_still_make_valid_gzip() {
        let t = HttpText::default();
        assert_eq!(gunzip(&t.gzip_with(b"a 1\n")), b"a 1\n");
        assert_eq!(gunzip(&t.gzip_with(b"")), b"");
    }
}
