//! Opening a node's multiplexed connection over a socket whose end the
//! crate can see: a [`Watched`] stream raises a flag the moment the server
//! closes the connection or it fails, so a command is never sent on a
//! connection already known dead. (redis-rs reports a command sent on a
//! dead connection and one cut off in flight with the same `broken pipe`;
//! the first certainly did not execute and should wait for the new master,
//! the second may have, and is the caller's.)

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisError};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A stream that raises `dead` at end of stream or on an error.
struct Watched<S> {
    inner: S,
    dead: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    fn note<T>(&self, r: &Poll<io::Result<T>>) {
        if let Poll::Ready(Err(_)) = r {
            self.dead.store(true, Ordering::Release);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let wanted = buf.remaining() > 0;
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(&r);
        if matches!(r, Poll::Ready(Ok(()))) && wanted && buf.filled().len() == before {
            // End of stream: the server closed the connection.
            self.dead.store(true, Ordering::Release);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note(&r);
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(&r);
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A new multiplexed connection to `client`'s node and the flag that says
/// it has ended. Plain TCP nodes get a [`Watched`] socket; TLS and Unix
/// socket nodes go through redis-rs's own connect, whose end is seen only
/// by the failing command (their flag never rises).
pub(crate) async fn connect(
    client: &Client,
    config: &AsyncConnectionConfig,
    connect_timeout: Duration,
) -> Result<(MultiplexedConnection, Arc<AtomicBool>), RedisError> {
    let dead = Arc::new(AtomicBool::new(false));
    let info = client.get_connection_info();
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        let conn = client
            .get_multiplexed_async_connection_with_config(config)
            .await?;
        return Ok((conn, dead));
    };
    let open = async {
        let socket = TcpStream::connect((host.as_str(), *port)).await?;
        socket.set_nodelay(true)?;
        let stream = Watched {
            inner: socket,
            dead: Arc::clone(&dead),
        };
        let (conn, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), stream, config.clone())
                .await?;
        tokio::spawn(driver);
        Ok::<_, RedisError>(conn)
    };
    match tokio::time::timeout(connect_timeout, open).await {
        Ok(conn) => Ok((conn?, dead)),
        Err(_) => Err(RedisError::from(io::Error::new(
            io::ErrorKind::TimedOut,
            "connecting to the node timed out",
        ))),
    }
}
