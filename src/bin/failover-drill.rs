//! failover-drill (in progress).
fn main() {}
