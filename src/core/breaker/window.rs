//! The sliding windows a breaker computes its failure and slow-call rates
//! over: the last N calls ([`CountWindow`]) or the calls of the last
//! duration ([`TimeWindow`]), both lock-free arrays of atomics.

use super::config::{MAX_COUNT_WINDOW, MAX_TIME_BUCKETS, SlidingWindow};
use crate::core::clock::dur_nanos;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// Calls, failures and slow calls currently in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) total: u64,
    pub(super) failures: u64,
    pub(super) slow: u64,
}

// Count window: one byte per slot, plus the three totals packed in one word
// (21 bits each, biased so that a transiently negative total cannot borrow
// from its neighbour).
const SLOT_PRESENT: u8 = 1;
const SLOT_FAILURE: u8 = 2;
const SLOT_SLOW: u8 = 4;
const AGG_BITS: u32 = 21;
const AGG_MASK: u64 = (1 << AGG_BITS) - 1;
const AGG_BIAS: u64 = 1 << 20;
const AGG_INIT: u64 = AGG_BIAS | (AGG_BIAS << AGG_BITS) | (AGG_BIAS << (2 * AGG_BITS));

pub(super) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    agg: AtomicU64,
}

impl CountWindow {
    fn new(size: u32) -> Self {
        let size = size.clamp(1, MAX_COUNT_WINDOW) as usize;
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            cursor: AtomicU64::new(0),
            agg: AtomicU64::new(AGG_INIT),
        }
    }

    fn record(&self, failure: bool, slow: bool) {
        let mut new = SLOT_PRESENT;
        if failure {
            new |= SLOT_FAILURE;
        }
        if slow {
            new |= SLOT_SLOW;
        }
        let i = (self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64) as usize;
        let old = self.slots[i].swap(new, Ordering::AcqRel);
        self.apply(old, new);
    }

    fn apply(&self, old: u8, new: u8) {
        if old == new {
            return;
        }
        let d = |bit: u8| i64::from(new & bit != 0) - i64::from(old & bit != 0);
        let delta =
            d(SLOT_PRESENT) + (d(SLOT_FAILURE) << AGG_BITS) + (d(SLOT_SLOW) << (2 * AGG_BITS));
        // Two's complement: adding the wrapped delta adds each field's delta,
        // and the bias keeps every field within its 21 bits.
        self.agg.fetch_add(delta as u64, Ordering::AcqRel);
    }

    fn counts(&self) -> Counts {
        let w = self.agg.load(Ordering::Acquire);
        let field = |i: u32| ((w >> (i * AGG_BITS)) & AGG_MASK).saturating_sub(AGG_BIAS);
        Counts {
            total: field(0),
            failures: field(1),
            slow: field(2),
        }
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let old = slot.swap(0, Ordering::AcqRel);
            self.apply(old, 0);
        }
    }
}

// Time window: per bucket, its epoch (`now / bucket + 1`, 0 = empty) and its
// counts packed with the low bits of the epoch they belong to, so a bucket
// being recycled for a new epoch is never mistaken for the old one.
const TB_FIELD_BITS: u32 = 18;
const TB_FIELD_MAX: u64 = (1 << TB_FIELD_BITS) - 1;
const TB_TAG_SHIFT: u32 = 54;
const TB_TAG_MASK: u64 = (1 << 10) - 1;

struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

pub(super) struct TimeWindow {
    bucket_nanos: u64,
    buckets: Box<[Bucket]>,
}

impl TimeWindow {
    fn new(duration: Duration, buckets: u32) -> Self {
        let n = buckets.clamp(1, MAX_TIME_BUCKETS);
        TimeWindow {
            bucket_nanos: (dur_nanos(duration) / u64::from(n)).max(1),
            buckets: (0..n)
                .map(|_| Bucket {
                    epoch: AtomicU64::new(0),
                    counts: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    fn epoch_of(&self, now: u64) -> u64 {
        now / self.bucket_nanos + 1
    }

    fn tag(epoch: u64) -> u64 {
        epoch & TB_TAG_MASK
    }

    fn record(&self, now: u64, failure: bool, slow: bool) {
        let cur = self.epoch_of(now);
        let bucket = &self.buckets[(cur % self.buckets.len() as u64) as usize];
        let prev = bucket.epoch.fetch_max(cur, Ordering::AcqRel);
        if prev > cur {
            // Our clock reading is older than the bucket's: the sample already
            // fell out of the window.
            return;
        }
        let tag = Self::tag(cur);
        let inc =
            1 | (u64::from(failure) << TB_FIELD_BITS) | (u64::from(slow) << (2 * TB_FIELD_BITS));
        // The counts belong to `cur` if their tag says so, unless we are the
        // one moving the bucket to `cur` from an epoch with the same tag.
        let recycled_alias = prev != cur && prev != 0 && Self::tag(prev) == tag;
        let mut c = bucket.counts.load(Ordering::Acquire);
        loop {
            let current = (c >> TB_TAG_SHIFT) == tag && !recycled_alias;
            let next = if current {
                if c & TB_FIELD_MAX == TB_FIELD_MAX {
                    return; // saturated: the rates stay what they are
                }
                c + inc
            } else {
                if bucket.epoch.load(Ordering::Acquire) != cur {
                    return;
                }
                (tag << TB_TAG_SHIFT) | inc
            };
            match bucket
                .counts
                .compare_exchange_weak(c, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => c = actual,
            }
        }
    }

    fn counts(&self, now: u64) -> Counts {
        let cur = self.epoch_of(now);
        let n = self.buckets.len() as u64;
        let mut sum = Counts::default();
        for bucket in self.buckets.iter() {
            let e = bucket.epoch.load(Ordering::Acquire);
            if e == 0 || e > cur || cur - e >= n {
                continue;
            }
            let c = bucket.counts.load(Ordering::Acquire);
            if c >> TB_TAG_SHIFT != Self::tag(e) {
                continue;
            }
            sum.total += c & TB_FIELD_MAX;
            sum.failures += (c >> TB_FIELD_BITS) & TB_FIELD_MAX;
            sum.slow += (c >> (2 * TB_FIELD_BITS)) & TB_FIELD_MAX;
        }
        sum
    }

    fn clear(&self) {
        for bucket in self.buckets.iter() {
            bucket.counts.store(0, Ordering::Release);
            bucket.epoch.store(0, Ordering::Release);
        }
    }
}

/// The sliding window a breaker records into, of either kind.
pub(super) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(super) fn new(config: &SlidingWindow) -> Self {
        match *config {
            SlidingWindow::Count { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::Time { duration, buckets } => {
                Window::Time(TimeWindow::new(duration, buckets))
            }
        }
    }

    pub(super) fn record(&self, now: u64, failure: bool, slow: bool) {
        match self {
            Window::Count(w) => w.record(failure, slow),
            Window::Time(w) => w.record(now, failure, slow),
        }
    }

    pub(super) fn counts(&self, now: u64) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => w.counts(now),
        }
    }

    pub(super) fn clear(&self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

#[cfg(test)]
mod tests;
