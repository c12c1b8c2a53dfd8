//! `sqlx::Executor` and `sqlx::Acquire` for `&FailoverPgPool` (the writer)
//! and `&Routed<SqlxPostgres>` (any route). Every call picks its node when
//! it runs, checks a connection out of that node's current pool
//! generation, and reports failover-class errors so the pool re-probes.

use super::{SqlxPostgres, to_sqlx};
use crate::pool::{FailoverPool, Route, Routed};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgQueryResult, PgRow, PgStatement, PgTypeInfo, Postgres};
use sqlx::{Either, Execute, Executor, SqlStr, Transaction};

type Pool = FailoverPool<SqlxPostgres>;

/// A connection on the node `route` picks, in sqlx's types.
pub(super) async fn acquire_on(
    pool: &Pool,
    route: Route,
) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    Ok(pool.checkout(route).await.map_err(to_sqlx)?.into_inner())
}

fn fetch_many<'e, 'q: 'e, E>(
    pool: Pool,
    route: Route,
    query: E,
) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Postgres>,
{
    async_stream::try_stream! {
        let (mut conn, node) = pool.checkout(route).await.map_err(to_sqlx)?.into_parts();
        let mut rows = conn.fetch_many(query);
        while let Some(v) = rows.try_next().await.inspect_err(|e| { node.report(e); })? {
            yield v;
        }
    }
    .boxed()
}

fn fetch_optional<'e, 'q: 'e, E>(
    pool: Pool,
    route: Route,
    query: E,
) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Postgres>,
{
    Box::pin(async move {
        let (mut conn, node) = pool.checkout(route).await.map_err(to_sqlx)?.into_parts();
        conn.fetch_optional(query).await.inspect_err(|e| {
            node.report(e);
        })
    })
}

fn prepare_with<'e>(
    pool: Pool,
    route: Route,
    sql: SqlStr,
    parameters: &'e [PgTypeInfo],
) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>> {
    Box::pin(async move {
        let (mut conn, node) = pool.checkout(route).await.map_err(to_sqlx)?.into_parts();
        conn.prepare_with(sql, parameters).await.inspect_err(|e| {
            node.report(e);
        })
    })
}

fn describe<'e>(
    pool: Pool,
    route: Route,
    sql: SqlStr,
) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>> {
    Box::pin(async move {
        let (mut conn, node) = pool.checkout(route).await.map_err(to_sqlx)?.into_parts();
        conn.describe(sql).await.inspect_err(|e| {
            node.report(e);
        })
    })
}

/// Implements `Executor` and `Acquire` for a reference type, given how to
/// get its pool and route.
macro_rules! routed_executor {
    ($ty:ty, |$this:ident| ($pool:expr, $route:expr)) => {
        impl<'p> Executor<'p> for &'_ $ty {
            type Database = Postgres;

            fn fetch_many<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
            where
                'p: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                let $this = self;
                fetch_many($pool, $route, query)
            }

            fn fetch_optional<'e, 'q: 'e, E>(
                self,
                query: E,
            ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
            where
                'p: 'e,
                E: 'q + Execute<'q, Postgres>,
            {
                let $this = self;
                fetch_optional($pool, $route, query)
            }

            fn prepare_with<'e>(
                self,
                sql: SqlStr,
                parameters: &'e [PgTypeInfo],
            ) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
            where
                'p: 'e,
            {
                let $this = self;
                prepare_with($pool, $route, sql, parameters)
            }

            #[doc(hidden)]
            fn describe<'e>(
                self,
                sql: SqlStr,
            ) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
            where
                'p: 'e,
            {
                let $this = self;
                describe($pool, $route, sql)
            }
        }

        impl<'a> sqlx::Acquire<'a> for &'_ $ty {
            type Database = Postgres;
            type Connection = PoolConnection<Postgres>;

            fn acquire(self) -> BoxFuture<'static, Result<PoolConnection<Postgres>, sqlx::Error>> {
                let $this = self;
                let (pool, route) = ($pool, $route);
                Box::pin(async move { acquire_on(&pool, route).await })
            }

            fn begin(self) -> BoxFuture<'static, Result<Transaction<'a, Postgres>, sqlx::Error>> {
                let $this = self;
                let (pool, route) = ($pool, $route);
                Box::pin(
                    async move { Transaction::begin(acquire_on(&pool, route).await?, None).await },
                )
            }
        }
    };
}

routed_executor!(Pool, |this| (this.clone(), Route::Writer));
routed_executor!(Routed<SqlxPostgres>, |this| (
    this.pool().clone(),
    this.route()
));
