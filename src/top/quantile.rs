//! `histogram_quantile` as Prometheus computes it from classic buckets:
//! find the bucket the rank falls in, then interpolate linearly inside it.

/// The `q` quantile (0 ≤ q ≤ 1) of a histogram given as (upper bound,
/// cumulative count) pairs sorted by bound, the last one `+Inf`. None when
/// there is nothing to tell: no observations, or no `+Inf` bucket, or fewer
/// than two buckets.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    if buckets.len() < 2 || buckets.last()?.0 != f64::INFINITY || !(0.0..=1.0).contains(&q) {
        return None;
    }
    // Counts that go down (a scrape that was not atomic) are raised, as Prometheus does.
    let mut counts: Vec<f64> = buckets.iter().map(|b| b.1).collect();
    for i in 1..counts.len() {
        counts[i] = counts[i].max(counts[i - 1]);
    }
    let observations = *counts.last()?;
    if observations <= 0.0 || observations.is_nan() {
        return None;
    }
    let mut rank = q * observations;
    // The first bucket (the +Inf one excluded) whose count reaches the rank.
    let b = counts[..counts.len() - 1].iter().position(|&c| c >= rank).unwrap_or(counts.len() - 1);
    if b == buckets.len() - 1 {
        // In the +Inf bucket: the highest finite bound is all that is known.
        return Some(buckets[buckets.len() - 2].0);
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return Some(buckets[0].0);
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, counts[b]);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= counts[b - 1];
        rank -= counts[b - 1];
    }
    Some(start + (end - start) * (rank / count))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INF: f64 = f64::INFINITY;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn interpolates_linearly_inside_the_bucket_the_rank_falls_in() {
        // 10 observations: 4 in (0, 0.1], 4 in (0.1, 0.5], 2 in (0.5, 1].
        let h = [(0.1, 4.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)];
        assert!(close(quantile(0.5, &h), 0.1 + 0.4 * (1.0 / 4.0)));
        assert!(close(quantile(0.2, &h), 0.05));
        assert!(close(quantile(0.99, &h), 0.5 + 0.5 * (1.9 / 2.0)));
        assert!(close(quantile(0.4, &h), 0.1), "a rank equal to a bucket's count ends in that bucket");
        assert!(close(quantile(0.0, &h), 0.0));
        assert!(close(quantile(1.0, &h), 1.0));
    }

    #[test]
    fn all_in_one_bucket_gives_the_fraction_of_its_width() {
        // The case tests/top.rs relies on: every request took 0.3 s, bucket (0.25, 0.5].
        let h = [(0.1, 0.0), (0.25, 0.0), (0.5, 7.0), (1.0, 7.0), (INF, 7.0)];
        assert!(close(quantile(0.5, &h), 0.375));
        assert!(close(quantile(0.99, &h), 0.4975));
    }

    #[test]
    fn a_rank_in_the_inf_bucket_is_the_highest_finite_bound() {
        let h = [(0.1, 1.0), (0.5, 2.0), (INF, 10.0)];
        assert_eq!(quantile(0.5, &h), Some(0.5));
        assert_eq!(quantile(0.99, &h), Some(0.5));
    }

    #[test]
    fn nothing_to_tell_is_none() {
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (INF, 0.0)]), None, "no observations");
        assert_eq!(quantile(0.5, &[(INF, 3.0)]), None, "one bucket");
        assert_eq!(quantile(0.5, &[(0.1, 1.0), (0.5, 3.0)]), None, "no +Inf bucket");
        assert_eq!(quantile(1.5, &[(0.1, 1.0), (INF, 3.0)]), None, "q out of range");
        assert_eq!(quantile(0.5, &[]), None);
    }

    #[test]
    fn counts_that_go_down_are_raised_first() {
        let h = [(0.1, 5.0), (0.5, 4.0), (1.0, 10.0), (INF, 10.0)];
        // As if (0.5, 5.0): the median is at the top of the first bucket.
        assert!(close(quantile(0.5, &h), 0.1));
    }

    #[test]
    fn a_non_positive_first_bound_is_returned_as_it_is() {
        let h = [(-1.0, 5.0), (0.5, 6.0), (INF, 6.0)];
        assert_eq!(quantile(0.2, &h), Some(-1.0));
    }
}
