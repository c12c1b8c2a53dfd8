//! Small measurement helpers shared by the cache and HTTP drills:
//! nearest-rank percentiles of sorted milliseconds, rounding, whole
//! milliseconds.

use std::time::Duration;

/// The `q` quantile of sorted values (nearest rank), to the microsecond;
/// 0 when empty.
pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    micros(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Milliseconds rounded to the microsecond.
pub(crate) fn micros(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Whole milliseconds of `d`.
pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// `d` in milliseconds, fractional.
pub(crate) fn ms_f64(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v[..1], 0.99), 1.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
        assert_eq!(micros(1.234_567_8), 1.235);
        assert_eq!(ms(Duration::from_micros(2500)), 2);
    }
}
