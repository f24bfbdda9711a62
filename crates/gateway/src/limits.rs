//! Limits on what one client may ask of the gateway: header size, announced body size, concurrent streams per
//! key. (The body's actual size and stream duration are enforced where the body is read and where the stream is
//! metered.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::refusals::{endpoint_of_path, Door};
use crate::Gateway;
use spendgate_core::RefusalReason;

/// The body length a request announces in `Content-Length`, if it announces one that can be read.
pub fn announced_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Refuses what a proxy request's head alone shows to be too large: headers that together exceed
/// `limits.max_header_bytes` (HTTP 431), and a `Content-Length` over `limits.max_body_bytes` (HTTP 413). Both
/// answer in the shape of the API called. The body is refused at once, before it arrives: it would be refused
/// anyway once that much of it had been read, and a client announcing hundreds of megabytes would otherwise hold
/// the connection (and wait for its answer) until it had sent them.
///
/// Neither refusal knows who sent the request: its key is not read before the head is known to be acceptable.
pub async fn header_limit(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let limit = gw.limits.max_body_bytes;
    let refused = if announced_length(req.headers()).is_some_and(|n| n > limit as u64) {
        Some(ApiError::too_large(limit))
    } else {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        let max = gw.limits.max_header_bytes;
        (size > max).then(|| {
            ApiError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_request_error",
                "headers_too_large",
                format!(
                    "The request's headers are {size} bytes; this gateway accepts at most {max}. Send fewer or smaller headers."
                ),
            )
            .refusing(
                RefusalReason::HeaderTooLarge,
                format!("headers of {size} bytes over the {max}-byte limit"),
            )
        })
    };
    match refused {
        Some(e) => {
            let path = req.uri().path();
            gw.refuse(&e, &endpoint_of_path(path), &Door::default())
                .await;
            e.shaped(crate::models::shape_of_request(path, req.headers()))
                .into_response()
        }
        None => next.run(req).await,
    }
}

/// Open streams per key.
#[derive(Debug, Default)]
pub struct StreamSlots {
    open: Mutex<HashMap<i64, usize>>,
}

/// One open stream of a key; the slot frees itself when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: i64,
}

impl StreamSlots {
    /// Takes a slot for `key`, or `None` when it already has `max` streams open.
    pub fn take(self: &Arc<Self>, key: i64, max: usize) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            slots: Arc::clone(self),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_per_key_and_freed_on_drop() {
        let s = Arc::new(StreamSlots::default());
        let a = s.take(1, 2).unwrap();
        let _b = s.take(1, 2).unwrap();
        assert!(s.take(1, 2).is_none());
        assert!(s.take(2, 2).is_some(), "another key has its own slots");
        drop(a);
        assert!(s.take(1, 2).is_some());
    }
}
