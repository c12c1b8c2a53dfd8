//! [`ReplyBody`]: the response body of a backend, either whole or cut
//! short by an error after part of it has been sent.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// A response body: whole, or (for
/// [`ResetMidBody`](super::BackendMode::ResetMidBody)) a declared length of
/// which only a first part is sent before the body fails, which makes
/// hyper abort the connection.
#[derive(Debug)]
pub(super) struct ReplyBody {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The whole body, until it has been sent.
    Whole(Option<Bytes>),
    /// A body cut short.
    Cut {
        /// The length announced in `Content-Length`.
        declared: u64,
        /// The part sent before the failure, until it has been sent.
        first: Option<Bytes>,
        /// Whether the body already paused once after its first part.
        paused: bool,
    },
}

impl ReplyBody {
    /// A complete body.
    pub(super) fn whole(bytes: impl Into<Bytes>) -> Self {
        ReplyBody {
            kind: Kind::Whole(Some(bytes.into())),
        }
    }

    /// A body that announces all of `bytes`, sends their first half, then
    /// fails.
    pub(super) fn cut(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let declared = bytes.len() as u64;
        let first = bytes.slice(..bytes.len() / 2);
        ReplyBody {
            kind: Kind::Cut {
                declared,
                first: Some(first),
                paused: false,
            },
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().kind {
            Kind::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Cut { first, paused, .. } => {
                if let Some(first) = first.take() {
                    Poll::Ready(Some(Ok(Frame::data(first))))
                } else if !*paused {
                    // Pause once so that hyper flushes the head and the
                    // first part to the socket before it sees the error
                    // (it drops what is still buffered when a body fails).
                    *paused = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                } else {
                    Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "drill backend: response body cut short",
                    ))))
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(&self.kind, Kind::Whole(None))
            || matches!(&self.kind, Kind::Whole(Some(bytes)) if bytes.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Whole(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Kind::Cut { declared, .. } => SizeHint::with_exact(*declared),
        }
    }
}
