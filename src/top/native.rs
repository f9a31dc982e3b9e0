//! Native (exponential) histograms, as the exporter sends them over protobuf:
//! bucket k of schema s holds the observations in (2^((k-1)/2^s), 2^(k/2^s)]
//! seconds, the zero bucket those at or under the zero threshold. Kept per
//! bucket, not cumulatively, so that two readings subtract bucket by bucket
//! however sparse each is, and series add up the same way.

use std::collections::BTreeMap;

use super::quantile::quantile;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Native {
    pub schema: i32,
    pub zero_threshold: f64,
    /// Observations at or under the zero threshold.
    pub zero: f64,
    /// Bucket index → its own count.
    pub buckets: BTreeMap<i32, f64>,
}

impl Native {
    /// The upper bound of bucket `k`, in seconds.
    pub fn bound(&self, k: i32) -> f64 {
        (f64::from(k) * (-f64::from(self.schema)).exp2()).exp2()
    }

    pub fn count(&self) -> f64 {
        self.zero + self.buckets.values().sum::<f64>()
    }

    /// What was added since `old` (the same series, one reading earlier), or
    /// None if that cannot be told: another schema or zero threshold, or a
    /// bucket that went down (the series was reset).
    pub fn since(&self, old: &Native) -> Option<Native> {
        if (old.schema, old.zero_threshold) != (self.schema, self.zero_threshold) || self.zero < old.zero {
            return None;
        }
        let mut out = Native { zero: self.zero - old.zero, buckets: BTreeMap::new(), ..*self };
        for (&k, &was) in &old.buckets {
            if self.buckets.get(&k).copied().unwrap_or(0.0) < was {
                return None;
            }
        }
        for (&k, &c) in &self.buckets {
            let d = c - old.buckets.get(&k).copied().unwrap_or(0.0);
            if d > 0.0 {
                out.buckets.insert(k, d);
            }
        }
        Some(out)
    }

    /// Adds `other`'s counts; false (and nothing added) when its schema or zero threshold differ.
    pub fn add(&mut self, other: &Native) -> bool {
        if (other.schema, other.zero_threshold) != (self.schema, self.zero_threshold) {
            return false;
        }
        self.zero += other.zero;
        for (&k, &c) in &other.buckets {
            *self.buckets.entry(k).or_default() += c;
        }
        true
    }

    /// The `q` quantile, interpolated linearly inside the bucket the rank falls
    /// in, between that bucket's own bounds; None with no observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        // As (upper bound, cumulative count) pairs, with each bucket's lower
        // bound listed too where the bucket below it is empty, so that no
        // interpolation spans an empty bucket.
        let mut pairs = vec![(self.zero_threshold, self.zero)];
        let mut cumulative = self.zero;
        for (&k, &c) in &self.buckets {
            let (lower, upper) = (self.bound(k - 1), self.bound(k));
            if lower > pairs.last().map_or(f64::NEG_INFINITY, |p| p.0) {
                pairs.push((lower, cumulative));
            }
            cumulative += c;
            if upper > pairs.last().map_or(f64::NEG_INFINITY, |p| p.0) {
                pairs.push((upper, cumulative));
            } else if let Some(last) = pairs.last_mut() {
                // A bucket under the zero threshold (not sent by the exporter): counted with it.
                last.1 = cumulative;
            }
        }
        pairs.push((f64::INFINITY, cumulative));
        quantile(q, &pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(schema: i32, buckets: &[(i32, f64)]) -> Native {
        Native { schema, zero_threshold: 1e-6, zero: 0.0, buckets: buckets.iter().copied().collect() }
    }

    #[test]
    fn bounds_are_powers_of_two_split_by_the_schema() {
        let n = native(3, &[]);
        assert_eq!(n.bound(0), 1.0);
        assert_eq!(n.bound(-8), 0.5);
        assert!((n.bound(-13) - 0.5f64.powf(13.0 / 8.0)).abs() < 1e-15);
        assert_eq!(native(0, &[]).bound(-3), 0.125);
        assert_eq!(native(-1, &[]).bound(-1), 0.25, "a negative schema merges powers of two");
    }

    #[test]
    fn the_quantile_stays_inside_its_own_bucket_however_far_the_bucket_below_is() {
        // Every observation in (2^(-14/8), 2^(-13/8)] s, about (0.297, 0.324]: nothing else.
        let n = native(3, &[(-13, 10.0)]);
        let (lower, upper) = (n.bound(-14), n.bound(-13));
        let p50 = n.quantile(0.5).unwrap();
        assert!((p50 - (lower + upper) / 2.0).abs() < 1e-12, "{p50}, not between 1 µs and {upper}");
        assert!((n.quantile(1.0).unwrap() - upper).abs() < 1e-12);
        // Two buckets far apart: the rank decides which, each interpolated in itself.
        let n = native(3, &[(-40, 1.0), (-13, 3.0)]);
        assert!((n.quantile(0.25).unwrap() - n.bound(-40)).abs() < 1e-15);
        let p = n.quantile(0.5).unwrap();
        assert!(p > n.bound(-14) && p < n.bound(-13), "{p}");
    }

    #[test]
    fn the_zero_bucket_ranks_first() {
        let mut n = native(3, &[(-13, 1.0)]);
        n.zero = 3.0;
        assert!(n.quantile(0.5).unwrap() <= 1e-6);
        assert!(n.quantile(0.9).unwrap() > n.bound(-14));
        assert_eq!(native(3, &[]).quantile(0.5), None, "no observations");
    }

    #[test]
    fn readings_subtract_bucket_by_bucket_and_a_reset_or_another_schema_is_none() {
        let old = native(3, &[(-13, 2.0), (-5, 1.0)]);
        let new = native(3, &[(-20, 4.0), (-13, 5.0), (-5, 1.0)]);
        let d = new.since(&old).unwrap();
        assert_eq!(d.buckets, [(-20, 4.0), (-13, 3.0)].into_iter().collect());
        assert_eq!(d.count(), 7.0);
        assert_eq!(native(3, &[(-13, 1.0)]).since(&old), None, "a bucket went down");
        assert_eq!(native(2, &[(-13, 5.0)]).since(&native(3, &[])), None);
    }

    #[test]
    fn series_add_bucket_by_bucket_when_their_schemas_agree() {
        let mut a = native(3, &[(-13, 2.0)]);
        assert!(a.add(&native(3, &[(-13, 1.0), (-2, 1.0)])));
        assert_eq!(a.buckets, [(-13, 3.0), (-2, 1.0)].into_iter().collect());
        assert!(!a.add(&native(4, &[(-13, 1.0)])));
        assert_eq!(a.count(), 4.0);
    }
}
