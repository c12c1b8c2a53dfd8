//! Unit tests of the live state of one endpoint.

use super::*;

#[tokio::test(start_paused = true)]
async fn peak_ewma_jumps_up_and_decays() {
    let e = PeakEwma::new(Duration::from_millis(30), Duration::from_secs(10));
    let t0 = now_nanos();
    e.observe(Duration::from_millis(100), t0);
    assert!((e.estimate_ns(t0) - 100e6).abs() < 1.0);
    tokio::time::advance(Duration::from_secs(10)).await;
    let t1 = now_nanos();
    let decayed = e.estimate_ns(t1);
    assert!(decayed < 40e6 && decayed > 30e6, "{decayed}");
}
