//! Listings that stream: entries in address order from a snapshot of the
//! store, 64 KiB at a time, so neither side holds 1M rows and the core stays
//! free for other requests meanwhile.

use std::{net::IpAddr, sync::Arc};

use axum::{
    body::{Body, Bytes},
    http::header,
    response::{IntoResponse, Response},
};

use super::routes::error;
use crate::{
    daemon::{CoreError, Snapshots},
    model::{List, now_ms},
};

/// What a listing streams, and how.
pub(super) struct Listing {
    pub(super) draft: bool,
    pub(super) list: Option<List>,
    pub(super) source: Option<String>,
    pub(super) matching: Option<IpAddr>,
    pub(super) limit: Option<usize>,
    pub(super) plain: bool,
}

/// Streams entries from the store in address order, 64 KiB at a time, from
/// a read-only connection of its own: neither side holds 1M rows, and the
/// core stays free for other requests meanwhile.
pub(super) fn stream_entries(snapshots: &Arc<dyn Snapshots>, l: Listing) -> Response {
    const FLUSH: usize = 64 * 1024;
    // Opened while an error can still be the reply: once streaming, a
    // failure can only break the body.
    let mut snapshot = match snapshots.open() {
        Ok(s) => s,
        Err(e) => return error(CoreError::from(e).into()),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut buf: Vec<u8> = Vec::with_capacity(FLUSH + 1024);
        if !l.plain {
            buf.push(b'[');
        }
        let (mut sent, mut open) = (0usize, true);
        let source = l.source.as_deref();
        let result = snapshot.for_each_entry(l.draft, now_ms(), &mut |e| {
            let wanted = l.list.is_none_or(|x| e.list == x)
                && source.is_none_or(|s| {
                    e.sources
                        .iter()
                        .any(|src| src == s || src.strip_prefix("import:") == Some(s))
                })
                && l.matching.is_none_or(|ip| e.target.contains(ip));
            if !wanted {
                return true;
            }
            if l.limit.is_some_and(|n| sent >= n) {
                return false;
            }
            if l.plain {
                buf.extend_from_slice(e.target.to_string().as_bytes());
                buf.push(b'\n');
            } else {
                if sent > 0 {
                    buf.push(b',');
                }
                if serde_json::to_writer(&mut buf, &e).is_err() {
                    return false;
                }
            }
            sent += 1;
            if buf.len() >= FLUSH {
                open = tx
                    .blocking_send(Ok(Bytes::from(std::mem::take(&mut buf))))
                    .is_ok();
            }
            open
        });
        match result {
            Ok(()) => {
                if !l.plain {
                    buf.push(b']');
                }
                let _ = tx.blocking_send(Ok(Bytes::from(buf)));
            }
            // The status is already sent: break the body so the client
            // sees a truncated reply rather than a short list.
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let ct = if l.plain {
        "text/plain; charset=utf-8"
    } else {
        "application/json"
    };
    (
        [(header::CONTENT_TYPE, ct)],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}
