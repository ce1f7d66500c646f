//! Request bodies: a deadline for the whole body (a client trickling its body a byte a second
//! gets 408 `body_timeout` instead of holding a request slot until the request timeout), and
//! the one function that reads a body, telling a body over the limit (413), too slow (408)
//! and broken off (400) apart.

use super::error::ApiError;
use axum::body::{Body, Bytes};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The error a body past its deadline yields to whoever reads it.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body not received within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails once `deadline` passed before its end. The timer is created
/// only if the body is not already there (most bodies arrive with their headers).
struct TimedBody {
    inner: Body,
    limit: Duration,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Puts a deadline of `limit` from now on the request's body (requests without a body are
/// left as they are).
pub fn with_deadline(request: axum::extract::Request, limit: Duration) -> axum::extract::Request {
    use http_body::Body as _;
    if request.body().is_end_stream() {
        return request;
    }
    request.map(|inner| {
        Body::new(TimedBody {
            inner,
            limit,
            deadline: Instant::now() + limit,
            timer: None,
        })
    })
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| classify(&e, limit))
}

fn classify(error: &axum::Error, limit: usize) -> ApiError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(timed_out) = e.downcast_ref::<BodyTimedOut>() {
            return ApiError::BodyTimeout(timed_out.0.as_millis() as u64);
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return ApiError::PayloadTooLarge(limit);
        }
        cause = e.source();
    }
    ApiError::BodyIncomplete
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_times_out_and_a_large_one_is_too_large() {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let request = axum::extract::Request::new(Body::from_stream(rx));
        let request = with_deadline(request, Duration::from_secs(5));
        let trickle = tokio::spawn(async move {
            let mut tx = tx;
            for _ in 0..100 {
                if futures::SinkExt::send(&mut tx, Ok(Bytes::from_static(b"x")))
                    .await
                    .is_err()
                {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let err = read(request.into_body(), 1024).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyTimeout(5000)), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        trickle.abort();

        let big = axum::extract::Request::new(Body::from(vec![0u8; 2048]));
        let big = with_deadline(big, Duration::from_secs(5));
        let err = read(big.into_body(), 1024).await.unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge(1024)), "{err:?}");

        let broken = futures::stream::iter([
            Ok(Bytes::from_static(b"{")),
            Err(std::io::Error::other("reset")),
        ])
        .boxed();
        let broken = with_deadline(
            axum::extract::Request::new(Body::from_stream(broken)),
            Duration::from_secs(5),
        );
        let err = read(broken.into_body(), 1024).await.unwrap_err();
        assert!(matches!(err, ApiError::BodyIncomplete), "{err:?}");
    }
}
