//! What a fetch refuses or fails at. Messages name status codes, sizes,
//! hosts, addresses and paths, never fetched bytes or header values: a
//! feed's body or credentials must not reach a log through an error.

use std::{error::Error, io, iter, net::IpAddr, path::PathBuf, time::Duration};

use super::address::{PrivateAnswer, ResolveFailed};

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "the feed URL is not a valid absolute URL ({source}); give an http://, https:// or file:// URL"
    )]
    BadUrl {
        #[source]
        source: url::ParseError,
    },
    #[error("the URL scheme {scheme}: is not supported; use http, https or file")]
    UnsupportedScheme { scheme: String },
    #[error(
        "a file URL names a path on this host, as file:///etc/denylist/feeds/NAME; leave out the host"
    )]
    BadFileUrl,
    #[error(
        "{} is outside the feed directory {} (symlinks and .. resolved); put the feed file in {}",
        path.display(),
        feed_dir.display(),
        feed_dir.display()
    )]
    OutsideFeedDir { path: PathBuf, feed_dir: PathBuf },
    #[error("cannot read {}: {source}; check that it exists and that root can read it", path.display())]
    FileIo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a regular file; name a regular file", path.display())]
    NotRegularFile { path: PathBuf },
    #[error(
        "the destination {host} ({addr}) is a loopback, private, link-local or otherwise internal address; start denylistd with --feed-allow-private to allow it"
    )]
    PrivateDestination { host: String, addr: IpAddr },
    #[error(
        "the server redirected from HTTPS to plain HTTP ({from} to {to}), which is never followed; point the feed at an https URL that does not redirect to http"
    )]
    Downgrade { from: String, to: String },
    #[error("the server redirected more than {max} times; point the feed at its final URL")]
    TooManyRedirects { max: usize },
    #[error("the server answered HTTP {status} without a usable Location; check the feed's URL")]
    BadRedirect { status: u16 },
    #[error(
        "the server answered HTTP {status}; check the feed's URL and credentials, or wait for the next refresh if the server is down"
    )]
    Status { status: u16 },
    #[error(
        "no complete answer within {}; the server is slow or unreachable, the next refresh tries again",
        humantime::format_duration(*after)
    )]
    Timeout { after: Duration },
    #[error(
        "cannot resolve {host} ({}); check the name in the feed's URL and this host's DNS",
        root_cause(source)
    )]
    Dns {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{host} refused the connection on port {port}; check the feed's URL and that the server is up"
    )]
    ConnectionRefused {
        host: String,
        port: u16,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "cannot connect to {host} port {port} ({}); check the feed's URL and this host's network",
        root_cause(source)
    )]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the TLS handshake with {host} failed ({}); check that its certificate is valid for that name and issued by a CA in /etc/ssl/certs",
        root_cause(source)
    )]
    Tls {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the request to {host} failed ({}); the next refresh tries again",
        root_cause(source)
    )]
    Request {
        host: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the connection closed after {received} bytes of the body, before its end; the next refresh tries again"
    )]
    Truncated {
        received: usize,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "reading the body failed after {received} bytes ({}); the next refresh tries again",
        root_cause(source)
    )]
    Body {
        received: usize,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the feed is larger than the limit of {max_bytes} bytes (counted after decompression); use a smaller feed"
    )]
    TooLarge { max_bytes: u64 },
    #[error(
        "extra request header number {number} is not a valid HTTP header; check the feed's header file"
    )]
    InvalidHeader { number: usize },
    #[error(
        "the header file {} is open to group or others (mode {mode:03o}); it holds credentials: chmod 600 it",
        path.display()
    )]
    HeaderFileMode { path: PathBuf, mode: u32 },
    #[error("the header file {} is larger than {max_bytes} bytes; it should hold a few headers", path.display())]
    HeaderFileTooLarge { path: PathBuf, max_bytes: u64 },
    #[error("the header file {} line {line}: {problem}; write each header as `Name: value`", path.display())]
    HeaderLine {
        path: PathBuf,
        line: usize,
        problem: HeaderProblem,
    },
    #[error(
        "the HTTP client could not be set up ({}); if no CA certificates were found, install the ca-certificates package",
        root_cause(source)
    )]
    ClientSetup {
        #[source]
        source: reqwest::Error,
    },
}

/// What is wrong with one line of a header file; never the line itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderProblem {
    #[error("no colon after the header name")]
    MissingColon,
    #[error("the name is not a valid header name")]
    InvalidName,
    #[error("the value holds characters a header cannot carry")]
    InvalidValue,
}

/// An error and its causes, looking through `io::Error`s to the error
/// they wrap (their `source()` skips it).
fn causes<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    iter::successors(Some(error), |&e| match e.downcast_ref::<io::Error>() {
        Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
        None => e.source(),
    })
}

/// The innermost cause's words ("Connection refused", "invalid peer
/// certificate: UnknownIssuer"), which say more than reqwest's layers
/// above it. None of these layers quotes the body.
fn root_cause(error: &reqwest::Error) -> String {
    causes(error)
        .last()
        .map_or_else(String::new, ToString::to_string)
}

fn find<'a, T: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a T> {
    causes(error).find_map(|e| e.downcast_ref::<T>())
}

/// Sorts a failed request by its cause. `host` and `port` are the
/// request's; the URL is dropped from the error, as it may carry secrets.
pub(super) fn send_error(error: reqwest::Error, host: &str, port: u16) -> FetchError {
    let source = error.without_url();
    let host = host.to_owned();
    if let Some(refusal) = find::<PrivateAnswer>(&source) {
        return FetchError::PrivateDestination {
            host: refusal.host.clone(),
            addr: refusal.addr,
        };
    }
    if find::<rustls::Error>(&source).is_some() {
        return FetchError::Tls { host, source };
    }
    if find::<ResolveFailed>(&source).is_some() {
        return FetchError::Dns { host, source };
    }
    if find::<io::Error>(&source).is_some_and(|e| e.kind() == io::ErrorKind::ConnectionRefused) {
        return FetchError::ConnectionRefused { host, port, source };
    }
    if source.is_connect() {
        return FetchError::Connect { host, port, source };
    }
    FetchError::Request { host, source }
}

/// Sorts a failed body read: an early end of the stream is a truncated
/// body, anything else (a bad gzip stream, a reset) a failed read.
pub(super) fn body_error(error: reqwest::Error, received: usize) -> FetchError {
    let source = error.without_url();
    if find::<io::Error>(&source).is_some_and(|e| e.kind() == io::ErrorKind::UnexpectedEof) {
        FetchError::Truncated { received, source }
    } else {
        FetchError::Body { received, source }
    }
}
