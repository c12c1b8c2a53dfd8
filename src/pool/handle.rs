//! What callers hold: [`Pooled`], a connection checked out for a route, and
//! [`Routed`], a cheap handle bound to a route that picks the node anew for
//! every call (so it keeps working across failovers).

use crate::core::Classify;
use crate::error::{Error, ErrorClass, Result};
use crate::pool::FailoverPool;
use crate::pool::acquire::NodeRef;
use crate::pool::backend::Backend;
use crate::pool::inner::Inner;
use crate::pool::route::Route;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A connection checked out of the node a [`Route`] picked: the backend's
/// own pooled connection (a `deadpool_postgres::Object`, a sqlx
/// `PoolConnection`), reachable through `Deref`/`DerefMut`, plus the node
/// it is on.
///
/// Report the errors of operations on it with [`Pooled::observe`] (or
/// [`Pooled::report`]): a failover-class error makes the pool re-probe at
/// once. When the driver can tell without a round trip that the connection
/// died (tokio-postgres can), returning it has the same effect.
pub struct Pooled<B: Backend> {
    conn: Option<B::Conn>,
    reporter: Reporter<B>,
}

impl<B: Backend> Pooled<B> {
    pub(crate) fn new(conn: B::Conn, node: NodeRef<B>, inner: Arc<Inner<B>>) -> Self {
        Pooled {
            conn: Some(conn),
            reporter: Reporter { node, inner },
        }
    }

    /// The id of the node this connection is on.
    pub fn node_id(&self) -> &Arc<str> {
        self.reporter.node_id()
    }

    /// The topology epoch when the connection was handed out.
    pub fn topology_epoch(&self) -> u64 {
        self.reporter.node.topology_epoch
    }

    /// See [`Reporter::report`].
    pub fn report(&self, error: &impl Classify) -> ErrorClass {
        self.reporter.report(error)
    }

    /// See [`Reporter::observe`].
    pub fn observe<E>(&self, error: E) -> Error
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        self.reporter.observe(error)
    }

    /// The backend's connection and a [`Reporter`] for its node, for code
    /// that must own the connection (a transaction that consumes it).
    pub fn into_parts(mut self) -> (B::Conn, Reporter<B>) {
        let conn = self
            .conn
            .take()
            .expect("a Pooled holds its connection until dropped");
        // Drop of `self` then finds no connection and reports nothing.
        (conn, self.reporter.clone())
    }

    /// The backend's connection, detached from this wrapper.
    pub fn into_inner(self) -> B::Conn {
        self.into_parts().0
    }
}

impl<B: Backend> Deref for Pooled<B> {
    type Target = B::Conn;

    fn deref(&self) -> &B::Conn {
        self.conn
            .as_ref()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl<B: Backend> DerefMut for Pooled<B> {
    fn deref_mut(&mut self) -> &mut B::Conn {
        self.conn
            .as_mut()
            .expect("a Pooled holds its connection until dropped")
    }
}

impl<B: Backend> Drop for Pooled<B> {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn
            && B::is_broken(conn)
        {
            self.reporter.inner.request_probe(self.reporter.node_id());
        }
    }
}

impl<B: Backend> fmt::Debug for Pooled<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pooled")
            .field("node", self.node_id())
            .field("topology_epoch", &self.topology_epoch())
            .finish_non_exhaustive()
    }
}

/// Reports the errors of operations on one node's connection to its pool,
/// and wraps them as this crate's [`Error`] naming the node. Cheap to clone.
pub struct Reporter<B: Backend> {
    node: NodeRef<B>,
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Reporter<B> {
    fn clone(&self) -> Self {
        Reporter {
            node: self.node.clone(),
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend> fmt::Debug for Reporter<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reporter")
            .field("node", self.node_id())
            .finish()
    }
}

impl<B: Backend> Reporter<B> {
    /// The id of the node.
    pub fn node_id(&self) -> &Arc<str> {
        self.node.id()
    }

    /// Classifies an error of an operation on the node and, when it is
    /// failover-class, makes the pool re-probe at once. Returns the class.
    pub fn report(&self, error: &impl Classify) -> ErrorClass {
        let class = error.classify();
        if class.is_failover() {
            self.inner.request_probe(self.node.id());
        }
        class
    }

    /// [`Reporter::report`], then wraps the error as this crate's
    /// [`Error::Backend`] naming the node (the driver's error stays its source).
    pub fn observe<E>(&self, error: E) -> Error
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        let class = self.report(&error);
        Error::backend(&**self.node.id(), class, error)
    }

    /// An error inside a transaction, before `COMMIT` was sent: reported;
    /// the transaction is rolled back (by the caller's rollback, or by the
    /// server when the connection died), so it says
    /// `may_have_executed() == false` and the caller may retry the whole
    /// transaction (after fixing the cause, for an application error).
    pub fn observe_in_transaction<E>(&self, error: E) -> Error
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        let class = match self.report(&error) {
            ErrorClass::Failover { .. } => ErrorClass::not_executed(),
            app => app,
        };
        Error::backend(&**self.node.id(), class, error).unapplied()
    }

    /// Ends a transaction after its body ran: rolls back (drops `tx`) and
    /// reports a body error as [`Reporter::observe_in_transaction`], else
    /// commits and reports a commit error as [`Reporter::observe_commit`].
    /// The one place both Postgres backends' `transaction` end.
    #[cfg(any(feature = "sqlx", feature = "deadpool-postgres"))]
    pub(crate) async fn finish_transaction<Tx, T, E, C>(
        &self,
        tx: Tx,
        body: std::result::Result<T, E>,
        commit: impl FnOnce(Tx) -> C,
    ) -> Result<T>
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
        C: std::future::Future<Output = std::result::Result<(), E>>,
    {
        let value = match body {
            Ok(v) => v,
            Err(e) => {
                drop(tx); // rollback (or nothing, if the connection is gone)
                return Err(self.observe_in_transaction(e));
            }
        };
        commit(tx).await.map_err(|e| self.observe_commit(e))?;
        Ok(value)
    }

    /// An error from `COMMIT`: reported; a failover-class one is
    /// [`Error::OutcomeUnknown`] (the commit may or may not be durable, and
    /// is never replayed); one the server answered with (a serialization
    /// failure, a deferred constraint) rolled the transaction back.
    pub fn observe_commit<E>(&self, error: E) -> Error
    where
        E: Classify + std::error::Error + Send + Sync + 'static,
    {
        match self.report(&error) {
            ErrorClass::Failover { .. } => Error::OutcomeUnknown {
                node: self.node.id().to_string(),
                source: Box::new(error),
            },
            class @ ErrorClass::Application => {
                Error::backend(&**self.node.id(), class, error).unapplied()
            }
        }
    }
}

/// A pool handle bound to a [`Route`]: every call picks the node anew (the
/// current writer, a replica by read preference, …), so a handle kept
/// across a failover keeps working. Cheap to clone.
///
/// With the `sqlx` feature, `&Routed<SqlxPostgres>` is a
/// `sqlx::Executor` (what `FailoverPgPool::reader()` returns).
pub struct Routed<B: Backend> {
    pool: FailoverPool<B>,
    route: Route,
}

impl<B: Backend> Routed<B> {
    pub(crate) fn new(pool: FailoverPool<B>, route: Route) -> Self {
        Routed { pool, route }
    }

    /// The route every call takes.
    pub fn route(&self) -> Route {
        self.route
    }

    /// The pool underneath.
    pub fn pool(&self) -> &FailoverPool<B> {
        &self.pool
    }

    /// Checks out a connection on the node the route picks now.
    pub async fn checkout(&self) -> Result<Pooled<B>> {
        self.pool.checkout(self.route).await
    }
}

impl<B: Backend> Clone for Routed<B> {
    fn clone(&self) -> Self {
        Routed {
            pool: self.pool.clone(),
            route: self.route,
        }
    }
}

impl<B: Backend> fmt::Debug for Routed<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routed")
            .field("pool", &self.pool.name())
            .field("route", &self.route)
            .finish()
    }
}
