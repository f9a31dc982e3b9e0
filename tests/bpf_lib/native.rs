//! bpf/lib/native.h: the native (exponential) bucket of a latency, at and
//! around the bucket boundaries, for schemas 0, 3 and 8
//! (tests/bpf/native_test.bpf.c). The expected bucket comes from this test's
//! own reference: an estimate in f64, settled by the boundaries computed
//! exactly with big integers (`boundary_ns_exact`: nested integer square
//! roots of 10^(9*2^s) * 2^k), not from the table the kernel searches (which
//! the attacher computes from fixed-point mantissas, with the cells that
//! start the kernel's search).

use super::{run, storage};

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/native_test.skel.rs"));
}

use hge_shared::abi::bytes_of;
use hge_shared::native::{boundary_ns_exact, bounds};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapCore;

/// The default zero threshold: 1 µs.
const ZERO_NS: u64 = 1000;

struct Native(skel::NativeTestSkel<'static>);

impl Native {
    fn load(schema: u8, zero_ns: u64) -> Option<Native> {
        if !crate::common::privileged(&[]) {
            return None;
        }
        let (kstart, b) = bounds(schema, zero_ns).expect("a table for the schema");
        let mut open = skel::NativeTestSkelBuilder::default().open(storage()).expect("opening native_test");
        let ro = open.maps.rodata_data.as_deref_mut().expect("native_test has .rodata");
        ro.cfg_native = 1;
        ro.cfg_native_zero_ns = zero_ns;
        ro.cfg_native_kstart = kstart;
        let t = Native(open.load().expect("loading native_test"));
        t.0.maps.native_bounds.update(&0u32.to_ne_bytes(), bytes_of(&*b), libbpf_rs::MapFlags::ANY).unwrap();
        Some(t)
    }

    /// The kernel's bucket of `v` ns: Some(index), or None for the zero bucket.
    fn bucket(&self, v: u64) -> Option<i32> {
        let case = [&v.to_ne_bytes()[..], &[0u8; 8]].concat();
        let (ret, out) = run(&self.0.progs.native_bucket, &case);
        assert_eq!(ret, 0);
        let index = i32::from_ne_bytes(out[0..4].try_into().unwrap());
        let zero = u32::from_ne_bytes(out[4..8].try_into().unwrap());
        match zero {
            0 => Some(index),
            _ => {
                assert_eq!(index, 0, "the zero bucket has index 0");
                None
            }
        }
    }
}

/// The bucket of `v` ns by Prometheus's definition: the k with
/// 2^((k-1)/2^s) < v/1e9 <= 2^(k/2^s); None at or under the zero threshold.
fn reference(schema: u8, zero_ns: u64, v: u64) -> Option<i32> {
    if v <= zero_ns {
        return None;
    }
    let per = f64::from(1u32 << schema);
    let mut k = ((v as f64 / 1e9).log2() * per).ceil() as i64;
    // f64 can be a bucket off near a boundary; the exact boundaries settle it
    // (an integer v is at most a real boundary b exactly when v <= floor(b)).
    while v > boundary_ns_exact(schema, k) {
        k += 1;
    }
    while v <= boundary_ns_exact(schema, k - 1) {
        k -= 1;
    }
    Some(k as i32)
}

/// Latencies at, just under and just over the boundaries of buckets spread
/// over the whole range, the zero threshold, and the ends of u64.
fn cases(schema: u8) -> Vec<u64> {
    let per = 1i64 << schema;
    let mut v = vec![0, 1, ZERO_NS - 1, ZERO_NS, ZERO_NS + 1, ZERO_NS + 2, u64::MAX - 1, u64::MAX];
    // Buckets from the zero threshold's (-20 doublings) to 2^34 s (past u64 ns), and the latencies of the
    // Prometheus test (5, 20, 45, 300 ms).
    let ks = (-20 * per..=34 * per).step_by((per as usize / 4).max(1)).chain((-3..=3).map(|d| d * per + 1));
    for k in ks {
        let b = boundary_ns_exact(schema, k);
        v.extend([b.saturating_sub(1), b, b.saturating_add(1)]);
    }
    v.extend([5_000_000, 20_000_000, 45_000_000, 300_000_000, 1_000_000_000]);
    // Every power of two and its neighbours, and latencies spread over each (a fixed pseudo-random walk).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for o in 0..64 {
        let p = 1u64 << o;
        v.extend([p - 1, p, p + 1]);
        for _ in 0..8 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            v.push(p | (x >> (64 - o.max(1))) & (p - 1).max(1));
        }
    }
    v
}

#[test]
fn each_latency_gets_the_bucket_prometheus_defines_for_schemas_0_3_and_8() {
    for schema in [0u8, 3, 8] {
        let Some(t) = Native::load(schema, ZERO_NS) else { return };
        let cases = cases(schema);
        for &v in &cases {
            assert_eq!(t.bucket(v), reference(schema, ZERO_NS, v), "schema {schema}, latency {v} ns");
        }
        eprintln!("schema {schema}: {} latencies", cases.len());
    }
}

#[test]
fn known_buckets() {
    let Some(t) = Native::load(0, ZERO_NS) else { return };
    // Schema 0: bucket 0 is (0.5 s, 1 s], bucket 1 is (1 s, 2 s].
    assert_eq!(t.bucket(1_000_000_000), Some(0));
    assert_eq!(t.bucket(1_000_000_001), Some(1));
    assert_eq!(t.bucket(500_000_001), Some(0));
    assert_eq!(t.bucket(500_000_000), Some(-1));
    let Some(t) = Native::load(3, ZERO_NS) else { return };
    // Schema 3: 2^(1/8) s = 1.0905077326652577 s ends bucket 1.
    assert_eq!(t.bucket(1_090_507_732), Some(1));
    assert_eq!(t.bucket(1_090_507_733), Some(2));
    // 20 ms: log2(0.02) * 8 = -45.15, so bucket -45.
    assert_eq!(t.bucket(20_000_000), Some(-45));
}

#[test]
fn the_zero_threshold_is_configurable() {
    let Some(t) = Native::load(3, 5_000_000) else { return };
    assert_eq!(t.bucket(5_000_000), None);
    assert_eq!(t.bucket(5_000_001), reference(3, 5_000_000, 5_000_001));
    assert_eq!(t.bucket(5_000_001), Some(-61), "log2(0.005) * 8 = -61.15");
}
