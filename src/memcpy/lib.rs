//! memcpy and memmove for the static x86_64 build (see Cargo.toml): on x86_64
//! musl, linking this crate puts memcpy.c's in place of libc's. The root
//! package refers to it from main.rs so that it is linked at all.

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::ffi::c_void;

    extern "C" {
        fn hge_memcpy(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
        fn hge_memmove(dest: *mut c_void, src: *const c_void, n: usize) -> *mut c_void;
    }

    /// Bytes that differ from one position to the next and from the zeroes
    /// they are copied over.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + 1) as u8 | 1).collect()
    }

    #[test]
    fn memcpy_copies_every_length_at_every_alignment() {
        let src = pattern(4200);
        for n in (0..300).chain([511, 512, 1000, 2047, 2048, 2049, 4096]) {
            for (so, doff) in [(0, 0), (1, 0), (0, 3), (7, 9), (15, 1), (8, 8)] {
                let mut dst = vec![0u8; n + 32];
                let ret = unsafe { hge_memcpy(dst[doff..].as_mut_ptr().cast(), src[so..].as_ptr().cast(), n) };
                assert_eq!(ret, dst[doff..].as_mut_ptr().cast(), "returns dest");
                assert_eq!(&dst[doff..doff + n], &src[so..so + n], "n {n}, offsets {so} {doff}");
                assert!(dst[..doff].iter().chain(&dst[doff + n..]).all(|&b| b == 0), "n {n}: wrote outside");
            }
        }
    }

    #[test]
    fn memmove_copies_overlapping_ranges_both_ways() {
        for n in (0..200).chain([255, 256, 1000, 2047, 2048, 3000]) {
            for shift in [1usize, 2, 7, 8, 15, 16, 31, 32, 63, 64, 65, 100, 2100] {
                // dest after src, then before it, within one buffer.
                for dest_after in [true, false] {
                    let mut buf = pattern(n + shift + 16);
                    let want = buf.clone();
                    let (s, d) = if dest_after { (0, shift) } else { (shift, 0) };
                    let base = buf.as_mut_ptr();
                    unsafe { hge_memmove(base.add(d).cast(), base.add(s).cast(), n) };
                    let mut expect = want.clone();
                    expect.copy_within(s..s + n, d);
                    assert_eq!(buf, expect, "n {n}, shift {shift}, dest after src {dest_after}");
                }
            }
        }
    }
}
