//! Unit tests of the breaker states and the packed state word.

use super::*;
use crate::core::breaker::test_support::TO_OPEN;

#[test]
fn state_word_round_trips() {
    let w = Word {
        state: BreakerState::HalfOpen,
        inflight: 9_999,
        successes: 1_234,
        generation: (1 << 30) - 1,
    };
    assert_eq!(Word::unpack(w.pack()), w);
    assert_eq!(w.next(BreakerState::Open, 0).generation, 0);
}

#[test]
fn state_names() {
    assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
    assert_eq!(TO_OPEN.to_string(), "closed -> open");
}
