//! Single-flight for `get_or_set_with`: while one caller runs the loader of
//! a key, the others with the same key wait for its result instead of
//! calling the loader too. Sharded maps, one short lock per miss; a leader
//! that is dropped mid-load lets the waiters start over (one of them leads).

use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

const SHARDS: usize = 16;

/// What a leader hands its waiters: the stored entry's payload, or the
/// loader's error.
pub(crate) type Landing = Result<Bytes, Arc<dyn std::error::Error + Send + Sync>>;

type Slot = watch::Receiver<Option<Landing>>;

/// Loads in flight, by key.
#[derive(Debug)]
pub(crate) struct Flights {
    shards: Box<[Mutex<HashMap<String, Slot>>]>,
    hasher: RandomState,
}

/// The caller's part in a load.
#[derive(Debug)]
pub(crate) enum Turn<'a> {
    /// Runs the loader and lands the result.
    Lead(Leader<'a>),
    /// Waits for the leader.
    Wait(Slot),
}

/// The caller that runs the loader; dropping it ends its flight.
#[derive(Debug)]
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<Option<Landing>>,
}

impl Leader<'_> {
    /// Hands the result to every waiter.
    pub(crate) fn land(self, landing: Landing) {
        self.tx.send_replace(Some(landing));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        let mut shard = self.flights.shard(&self.key);
        if shard
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.tx.subscribe()))
        {
            shard.remove(&self.key);
        }
    }
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leads the load of `key`, or joins the one in flight.
    pub(crate) fn join(&self, key: &str) -> Turn<'_> {
        let mut shard = self.shard(key);
        if let Some(rx) = shard.get(key)
            && rx.has_changed().is_ok()
        {
            return Turn::Wait(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        shard.insert(key.to_owned(), rx);
        Turn::Lead(Leader {
            flights: self,
            key: key.to_owned(),
            tx,
        })
    }
}

/// Waits for a leader: its landing, or `None` when it was dropped without
/// one (start over).
pub(crate) async fn wait(mut slot: Slot) -> Option<Landing> {
    match slot.wait_for(Option::is_some).await {
        Ok(landing) => landing.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_leader_per_key_and_waiters_get_its_result() {
        let flights = Flights::new();
        let Turn::Lead(leader) = flights.join("k") else {
            panic!("the first caller leads");
        };
        let Turn::Wait(slot) = flights.join("k") else {
            panic!("the second caller waits");
        };
        assert!(matches!(flights.join("other"), Turn::Lead(_)));
        leader.land(Ok(Bytes::from_static(b"v")));
        assert_eq!(wait(slot).await.unwrap().unwrap(), Bytes::from_static(b"v"));
        assert!(matches!(flights.join("k"), Turn::Lead(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_lets_waiters_start_over() {
        let flights = Flights::new();
        let leader = flights.join("k");
        let Turn::Wait(slot) = flights.join("k") else {
            panic!("waits");
        };
        drop(leader);
        assert!(wait(slot).await.is_none());
    }
}
