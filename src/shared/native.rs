//! Native (exponential) histogram buckets, as Prometheus defines them: for a
//! schema s, bucket k holds latencies in (2^((k-1)/2^s), 2^(k/2^s)] seconds.
//! The kernel finds a latency's bucket in a table of the boundaries as
//! integer ns (bpf/lib/native.h); this computes that table, exactly: each
//! entry is the floor of the real boundary, so that for an integer latency v,
//! `v <= entry` holds exactly when `v <= boundary`.

use anyhow::{ensure, Result};
use num_bigint::BigUint;

use crate::abi::{NativeBounds, NATIVE_CELLS, NATIVE_CELL_BITS, NATIVE_TABLE};

/// Schemas the config accepts: 2^schema buckets per doubling.
pub const MAX_SCHEMA: u8 = 8;

/// Bits of the fixed-point mantissas 2^(r/2^s) (< 2^97): times 1e9 (< 2^30)
/// they fit a u128, and the floor of a boundary below 2^64 ns is decided
/// unless it lies within 2^-32 ns of an integer (then it is computed exactly).
const MANTISSA_BITS: u32 = 96;

/// floor(x^(1/2^s)), exactly: nested integer square roots
/// (floor(sqrt(floor(sqrt(x)))) = floor(x^(1/4)), and so on).
fn root_pow2(mut x: BigUint, s: u8) -> BigUint {
    for _ in 0..s {
        x = x.sqrt();
    }
    x
}

fn saturate(n: &BigUint) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// floor(1e9 * 2^(k/2^s)) in ns, saturated to u64::MAX, computed exactly
/// (slow: the fallback of `table`, and the tests' reference).
pub fn boundary_ns_exact(schema: u8, k: i64) -> u64 {
    let base = BigUint::from(10u32).pow(9 << schema);
    let n = if k >= 0 { base << (k as u64) } else { base >> k.unsigned_abs() };
    saturate(&root_pow2(n, schema))
}

/// The kernel's table: the index of its first entry, and NATIVE_TABLE
/// boundaries from there (u64::MAX past the last below 2^64 ns). Every
/// latency above `zero_ns` has its bucket in it.
pub fn table(schema: u8, zero_ns: u64) -> Result<(i32, Vec<u64>)> {
    ensure!(schema <= MAX_SCHEMA, "native_schema must be 0 to {MAX_SCHEMA}, got {schema}");
    let per = 1i64 << schema;
    // floor(2^(r/2^s) * 2^MANTISSA_BITS): below the real value for r > 0 (irrational), exact for r = 0.
    let mantissa: Vec<u128> = (0..per)
        .map(|r| {
            let m = root_pow2(BigUint::from(1u8) << (r as u64 + (u64::from(MANTISSA_BITS) << schema)), schema);
            u128::try_from(&m).expect("a mantissa below 2^97")
        })
        .collect();
    let boundary = |k: i64| -> u64 {
        let (q, r) = (k.div_euclid(per), k.rem_euclid(per) as usize);
        if q >= 35 {
            return u64::MAX; // 1e9 * 2^35 ns is past 2^64 ns
        }
        // 1e9 * 2^q * m / 2^MANTISSA_BITS: for q in [-31, 34] (zero_ns >= 1) a right shift of 62 to 127 bits.
        let shift = i64::from(MANTISSA_BITS) - q;
        if !(1..128).contains(&shift) {
            return boundary_ns_exact(schema, k);
        }
        let floor = |m: u128| u64::try_from((1_000_000_000 * m) >> shift).unwrap_or(u64::MAX);
        let lo = floor(mantissa[r]);
        if r == 0 || lo == floor(mantissa[r] + 1) {
            lo
        } else {
            boundary_ns_exact(schema, k)
        }
    };
    // The bucket of zero_ns + 1 (the smallest latency not in the zero bucket) or one below it.
    let first = (((zero_ns + 1) as f64 / 1e9).log2() * per as f64).floor() as i64 - 1;
    let mut kstart = first;
    while boundary(kstart - 1) > zero_ns {
        kstart -= 1;
    }
    let ns: Vec<u64> = (0..NATIVE_TABLE as i64).map(|i| boundary(kstart + i)).collect();
    ensure!(
        ns[NATIVE_TABLE - 1] == u64::MAX,
        "native_zero_threshold of {zero_ns} ns is too small for native_schema {schema}: the buckets above it do not fit the kernel's table"
    );
    Ok((i32::try_from(kstart)?, ns))
}

/// The whole value of the kernel's `native_bounds` array: `table`'s
/// boundaries, and the cells that say where in them each latency's search
/// starts (bpf/lib/native.h). Fails if a cell would hold latencies of more
/// than two buckets, which the kernel's one comparison could not tell apart.
pub fn bounds(schema: u8, zero_ns: u64) -> Result<(i32, Box<NativeBounds>)> {
    let (kstart, ns) = table(schema, zero_ns)?;
    let mut b = Box::new(NativeBounds { ns: [0; NATIVE_TABLE], cell: [0; NATIVE_CELLS] });
    b.ns.copy_from_slice(&ns);
    // The first i with v <= ns[i].
    let pos = |v: u64| ns.partition_point(|&x| x < v);
    for o in 0..64u32 {
        for c in 0..(1u64 << NATIVE_CELL_BITS) {
            // The latencies v with top bit o and c in the next NATIVE_CELL_BITS bits.
            let (lo, hi) = if o >= NATIVE_CELL_BITS {
                let width = 1u128 << (o - NATIVE_CELL_BITS);
                let lo = (1u128 << o) + u128::from(c) * width;
                (lo, lo + width - 1)
            } else {
                // Fewer bits than that after the top one: c holds them, then zeros.
                let shift = NATIVE_CELL_BITS - o;
                if c & ((1 << shift) - 1) != 0 {
                    continue; // no latency has this cell
                }
                let v = (1u128 << o) + u128::from(c >> shift);
                (v, v)
            };
            let (lo, hi) = (lo.max(u128::from(zero_ns) + 1), hi);
            if lo > hi {
                continue; // all in the zero bucket
            }
            let (lo, hi) = (lo as u64, hi as u64);
            let first = pos(lo);
            ensure!(pos(hi) <= first + 1, "native cell {o}/{c} spans more than two buckets at schema {schema}");
            b.cell[(o << NATIVE_CELL_BITS) as usize | c as usize] = u16::try_from(first)?;
        }
    }
    Ok((kstart, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_agrees_with_the_exact_roots() {
        for schema in [0u8, 3, 8] {
            let (kstart, ns) = table(schema, 1000).unwrap();
            assert!(ns.windows(2).all(|w| w[0] <= w[1]), "sorted");
            assert!(ns[0] <= 1000, "the first bucket starts at or below the zero threshold");
            for i in (0..NATIVE_TABLE).step_by(97).chain([NATIVE_TABLE - 1]) {
                assert_eq!(ns[i], boundary_ns_exact(schema, i64::from(kstart) + i as i64), "schema {schema} entry {i}");
            }
        }
    }

    #[test]
    fn known_boundaries() {
        let (kstart, ns) = table(0, 1000).unwrap();
        // Schema 0: bucket 0 ends at 1 s, bucket -1 at 0.5 s, bucket 1 at 2 s.
        assert_eq!(ns[(0 - kstart) as usize], 1_000_000_000);
        assert_eq!(ns[(-1 - kstart) as usize], 500_000_000);
        assert_eq!(ns[(1 - kstart) as usize], 2_000_000_000);
        let (kstart, ns) = table(3, 1000).unwrap();
        // Schema 3: bucket 1 ends at 2^(1/8) s = 1.0905077326652577 s.
        assert_eq!(ns[(1 - kstart) as usize], 1_090_507_732);
    }

    #[test]
    fn every_cell_holds_at_most_two_buckets_for_every_schema() {
        for schema in 0..=MAX_SCHEMA {
            for zero_ns in [1, 1000, 999_999_999] {
                bounds(schema, zero_ns).unwrap();
            }
        }
    }

    #[test]
    fn a_tiny_zero_threshold_at_schema_8_still_fits() {
        assert!(table(8, 1).is_ok());
        assert!(table(9, 1000).is_err());
    }
}
