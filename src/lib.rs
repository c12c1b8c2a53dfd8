#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "redis")]
pub mod cache;
pub mod config;
pub mod core;
pub mod discovery;
pub mod error;
#[cfg(feature = "http")]
pub mod http;
pub mod pool;
#[cfg(any(feature = "sqlx", feature = "deadpool-postgres"))]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

#[cfg(feature = "drill")]
pub mod drill;

#[cfg(feature = "redis")]
pub use cache::FailoverCache;
pub use error::{Error, ErrorClass, ErrorCode, Result};
pub use pool::{FailoverPool, PoolConfig, PromotionPolicy, ReadPreference, Route};
#[cfg(feature = "deadpool-postgres")]
pub use postgres::DeadpoolPostgres;
#[cfg(feature = "sqlx")]
pub use postgres::FailoverPgPool;
#[cfg(feature = "redis")]
pub use redis::FailoverRedis;
