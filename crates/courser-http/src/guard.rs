//! Message-framing checks on HTTP/1 requests, before anything else looks at
//! them (request smuggling defence, RFC 9112 section 6).
//!
//! hyper already refuses conflicting `Content-Length` values, a
//! `Transfer-Encoding` whose last coding is not `chunked`, and
//! `Transfer-Encoding` on HTTP/1.0. For `Content-Length` together with
//! `Transfer-Encoding` (CL.TE / TE.CL smuggling) hyper 1.x drops the length,
//! frames the body by the chunks alone and closes the connection after the
//! response, as RFC 9112 6.3 allows, so nothing after the chunks is read as a
//! request (tests/hostile.rs proves it end to end). This module refuses what
//! hyper lets through:
//! - any `Transfer-Encoding` other than one plain `chunked` (`gzip, chunked`,
//!   `identity, chunked`, `chunked` twice): hyper would decode the chunks and
//!   hand PHP a body still in the other coding, and a proxy in front may read
//!   the list differently. Go answers 501 "Unsupported transfer encoding"
//!   (so RoadRunner does) and so does Courser;
//! - a request that still carries both `Content-Length` and
//!   `Transfer-Encoding` when it gets here (not possible with hyper 1.x, kept
//!   so that a change in hyper cannot reopen the hole): 400.
//!
//! Both answers carry `Connection: close`: the framing of anything after the
//! head is unknown, so nothing more is read from the connection.

use crate::handler::plain;
use crate::Body;
use http::{header, HeaderValue, Request, Response, StatusCode};

/// `Some(response)` when the request's framing headers are refused.
pub(crate) fn framing_error<B>(req: &Request<B>) -> Option<Response<Body>> {
    if req.version() >= http::Version::HTTP_2 {
        // HTTP/2 frames bodies itself; h2 refuses Transfer-Encoding.
        return None;
    }
    let headers = req.headers();
    let mut te = headers.get_all(header::TRANSFER_ENCODING).iter();
    let first = te.next()?;
    if headers.contains_key(header::CONTENT_LENGTH) {
        tracing::debug!("http: a request with both Content-Length and Transfer-Encoding; refused");
        return Some(closing(
            StatusCode::BAD_REQUEST,
            "a request must not have both Content-Length and Transfer-Encoding\n",
        ));
    }
    let plain_chunked = first
        .to_str()
        .map(|v| v.trim().eq_ignore_ascii_case("chunked"))
        .unwrap_or(false);
    if !plain_chunked || te.next().is_some() {
        tracing::debug!(transfer_encoding = ?first, "http: unsupported Transfer-Encoding; refused");
        return Some(closing(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported transfer encoding; only \"chunked\" is accepted\n",
        ));
    }
    None
}

/// A plain-text answer after which the connection is closed (HTTP/1).
pub(crate) fn closing(status: StatusCode, text: &str) -> Response<Body> {
    let mut r = plain(status, text);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(version: http::Version, headers: &[(&str, &str)], want: Option<u16>) {
        let mut b = Request::builder().version(version).uri("/");
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        let req = b.body(()).expect("request");
        let got = framing_error(&req).map(|r| {
            assert_eq!(
                r.headers().get(header::CONNECTION).map(|v| v.as_bytes()),
                Some(&b"close"[..]),
                "{headers:?}"
            );
            r.status().as_u16()
        });
        assert_eq!(got, want, "{version:?} {headers:?}");
    }

    #[test]
    fn framing_headers() {
        use http::Version as V;
        for (version, headers, want) in [
            (V::HTTP_11, &[][..], None),
            (V::HTTP_11, &[("content-length", "5")][..], None),
            (V::HTTP_11, &[("transfer-encoding", "chunked")][..], None),
            (V::HTTP_11, &[("transfer-encoding", "Chunked ")][..], None),
            (
                V::HTTP_11,
                &[("content-length", "4"), ("transfer-encoding", "chunked")][..],
                Some(400),
            ),
            (
                V::HTTP_11,
                &[("transfer-encoding", "chunked"), ("content-length", "0")][..],
                Some(400),
            ),
            (
                V::HTTP_11,
                &[("transfer-encoding", "gzip, chunked")][..],
                Some(501),
            ),
            (
                V::HTTP_11,
                &[("transfer-encoding", "chunked, chunked")][..],
                Some(501),
            ),
            (
                V::HTTP_11,
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ][..],
                Some(501),
            ),
            (
                V::HTTP_11,
                &[("transfer-encoding", "xchunked")][..],
                Some(501),
            ),
            (
                V::HTTP_2,
                &[("content-length", "4"), ("transfer-encoding", "chunked")][..],
                None,
            ),
        ] {
            check(version, headers, want);
        }
    }
}
