//! Unit tests of the retry budget.

use super::*;
use std::sync::atomic::AtomicUsize;
use tokio::time::advance;

/// Paused runtimes created before the clock's process-wide base was set
/// would read as "1" until they advance past it; step well clear of it.
async fn start() {
    advance(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn budget_without_deposits_allows_the_reserve_only() {
    start().await;
    let budget = RetryBudget::new(&BudgetConfig::default());
    assert_eq!(budget.available(), 100.0);
    for i in 0..100 {
        assert!(budget.try_withdraw(), "withdrawal {i}");
    }
    assert!(!budget.try_withdraw());
    assert!(!budget.try_withdraw());
    assert_eq!(budget.available(), 0.0);
}

#[tokio::test(start_paused = true)]
async fn deposits_allow_ratio_more() {
    start().await;
    let budget = RetryBudget::new(&BudgetConfig {
        ttl: Duration::from_secs(10),
        min_per_sec: 1,
        retry_ratio: 0.2,
    });
    for _ in 0..50 {
        budget.deposit();
    }
    // 10 from the reserve, 50 * 0.2 from the deposits.
    assert!((budget.available() - 20.0).abs() < 1e-9);
    let taken = (0..100).take_while(|_| budget.try_withdraw()).count();
    assert_eq!(taken, 20);
    // Deposits spread over the ttl add up too.
    for _ in 0..5 {
        advance(Duration::from_secs(1)).await;
        for _ in 0..10 {
            budget.deposit();
        }
    }
    assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 10);
}

#[tokio::test(start_paused = true)]
async fn ratio_above_one_and_zero() {
    start().await;
    let generous = RetryBudget::new(&BudgetConfig {
        ttl: Duration::from_secs(1),
        min_per_sec: 0,
        retry_ratio: 2.5,
    });
    assert!(!generous.try_withdraw());
    generous.deposit();
    generous.deposit();
    assert_eq!((0..10).take_while(|_| generous.try_withdraw()).count(), 5);

    let stingy = RetryBudget::new(&BudgetConfig {
        ttl: Duration::from_secs(1),
        min_per_sec: 2,
        retry_ratio: 0.0,
    });
    for _ in 0..100 {
        stingy.deposit();
    }
    assert_eq!((0..10).take_while(|_| stingy.try_withdraw()).count(), 2);
}

#[tokio::test(start_paused = true)]
async fn budget_refills_after_ttl() {
    start().await;
    let config = BudgetConfig {
        ttl: Duration::from_secs(10),
        min_per_sec: 1,
        retry_ratio: 0.5,
    };
    let budget = RetryBudget::new(&config);
    for _ in 0..10 {
        budget.deposit();
    }
    assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 15);
    // Withdrawals are still remembered just before the ttl passes...
    advance(Duration::from_millis(8_900)).await;
    assert!(!budget.try_withdraw());
    // ...and forgotten (with the deposits) once it has.
    advance(Duration::from_millis(1_100)).await;
    assert_eq!(budget.available(), 10.0);
    assert_eq!((0..100).take_while(|_| budget.try_withdraw()).count(), 10);
    advance(Duration::from_secs(10)).await;
    assert_eq!(budget.available(), 10.0);
    // Many ttls later (every slot recycled many times) it still adds up.
    for _ in 0..100 {
        advance(Duration::from_millis(700)).await;
        budget.deposit();
    }
    // The reserve plus the deposits of the last 9 to 10 seconds (13 to 15
    // of them, one every 0.7s), never anything older.
    let available = budget.available();
    assert!((16.5..=17.5).contains(&available), "{available}");
}

#[test]
fn concurrent_withdrawals_never_exceed_the_budget() {
    for _ in 0..20 {
        let budget = RetryBudget::new(&BudgetConfig {
            ttl: Duration::from_secs(60),
            min_per_sec: 1,
            retry_ratio: 0.1,
        });
        let granted = AtomicUsize::new(0);
        let deposits = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (budget, granted, deposits) = (&budget, &granted, &deposits);
                s.spawn(move || {
                    for i in 0..2_000 {
                        if t % 2 == 0 && i % 4 == 0 {
                            budget.deposit();
                            deposits.fetch_add(1, Ordering::SeqCst);
                        }
                        if budget.try_withdraw() {
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let deposits = deposits.load(Ordering::SeqCst);
        let limit = 60 + deposits / 10;
        let granted = granted.load(Ordering::SeqCst);
        assert!(granted <= limit, "granted {granted} > limit {limit}");
        // Contention may leave a little unspent, never much.
        assert!(granted + 8 >= limit, "granted {granted}, limit {limit}");
        assert!(budget.available() < 1.0 + 8.0);
    }
}

#[test]
fn slot_packing_round_trips() {
    for (e, v) in [(0, 0), (u32::MAX, i32::MIN), (7, -1000), (123, i32::MAX)] {
        assert_eq!(unpack(pack(e, v)), (e, v));
    }
    assert!(slot_counts(5, 0));
    assert!(!slot_counts(10, 0));
    assert!(slot_counts(3, u32::MAX - 2)); // across the wrap
    assert!(slot_counts(0, 2)); // slightly ahead
    assert!(!slot_counts(0x9000_0000, 0));
}
