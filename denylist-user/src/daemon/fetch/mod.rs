//! The fetcher behind reputation-feed subscriptions: http, https and file
//! URLs.
//!
//! denylistd fetches as root on behalf of admins who are not, so a feed
//! must not become a way to reach what its admin could not: services on
//! the host or its private networks (the cloud metadata service above all),
//! or files outside the feed directory. Destinations are checked after DNS
//! resolution and again on every redirect hop, file paths after symlinks
//! are resolved. Nothing fetched appears in an error, and URLs are shown
//! only through [`redact_url`].

mod address;
mod error;
mod headers;
#[cfg(test)]
mod tests;

use std::{
    io::Read,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::{
    Response, StatusCode,
    header::{ETAG, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, LOCATION},
};
use url::{Host, Url};

pub use address::is_private;
pub use error::{FetchError, HeaderProblem};
pub use headers::read_header_file;

/// Where file URLs may point unless the daemon is told otherwise.
pub const DEFAULT_FEED_DIR: &str = "/etc/denylist/feeds";
/// The longest one fetch may take, connecting, redirects and body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest feed, counted after decompression.
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// Redirects followed before a fetch gives up.
pub const MAX_REDIRECTS: usize = 5;

const USER_AGENT: &str = concat!("denylistd/", env!("CARGO_PKG_VERSION"));

/// What a fetch may reach and how much it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Lets feeds reach loopback, private and link-local addresses (the
    /// daemon's --feed-allow-private). HTTPS is still never downgraded.
    pub allow_private: bool,
    /// file:// URLs must resolve to a path under this directory.
    pub feed_dir: PathBuf,
    /// The whole fetch: connecting, every redirect and the body.
    pub timeout: Duration,
    /// The largest body, counted after decompression.
    pub max_bytes: u64,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            allow_private: false,
            feed_dir: PathBuf::from(DEFAULT_FEED_DIR),
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// What the server said identifies the version it sent, for a conditional
/// request next time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    fn any(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The server's version is still the one the validators name.
    NotModified,
    Body {
        bytes: Vec<u8>,
        validators: Validators,
    },
}

/// Fetches feeds under one [`FetchPolicy`], sharing connections between
/// fetches.
pub struct Fetcher {
    policy: FetchPolicy,
    client: reqwest::Client,
}

impl Fetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, FetchError> {
        let client = client_builder(&policy)
            .build()
            .map_err(|source| FetchError::ClientSetup { source })?;
        Ok(Self { policy, client })
    }

    /// Fetches `url`, conditionally if `validators` name a version.
    /// `headers` are extra request headers (credentials from the feed's
    /// header file); they go only to the URL's own origin, never to
    /// another one a redirect leads to.
    pub async fn fetch(
        &self,
        url: &str,
        validators: &Validators,
        headers: &[(String, String)],
    ) -> Result<Fetched, FetchError> {
        let url = parse(url)?;
        if url.scheme() == "file" {
            return read_feed_file(&url, &self.policy);
        }
        let headers = headers::header_map(headers)?;
        // One deadline for the lot: per-request timeouts would let each
        // redirect hop take the full time again.
        tokio::time::timeout(
            self.policy.timeout,
            self.fetch_http(url, validators, headers),
        )
        .await
        .unwrap_or_else(|_elapsed| {
            Err(FetchError::Timeout {
                after: self.policy.timeout,
            })
        })
    }

    /// Follows redirects itself rather than through reqwest's policy: each
    /// hop is checked here, and the feed's credentials are dropped when a
    /// hop leaves the origin they were given for (reqwest would drop only
    /// the standard credential headers, not a custom API-key header).
    async fn fetch_http(
        &self,
        mut url: Url,
        validators: &Validators,
        headers: reqwest::header::HeaderMap,
    ) -> Result<Fetched, FetchError> {
        check_host(&url, &self.policy)?;
        let origin = url.origin();
        let mut hops = 0;
        loop {
            let mut request = self.client.get(url.clone());
            if url.origin() == origin {
                request = request.headers(headers.clone());
            }
            // A stored validator that no longer makes a header value only
            // costs a full download.
            if let Some(etag) = validators.etag.as_deref().and_then(header_value) {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(date) = validators.last_modified.as_deref().and_then(header_value) {
                request = request.header(IF_MODIFIED_SINCE, date);
            }
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or_default();
            let response = request
                .send()
                .await
                .map_err(|e| error::send_error(e, host, port))?;
            let status = response.status();
            if !is_redirect(status) {
                return read_body(response, validators.any(), self.policy.max_bytes).await;
            }
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or(FetchError::BadRedirect {
                    status: status.as_u16(),
                })?;
            if hops == MAX_REDIRECTS {
                return Err(FetchError::TooManyRedirects { max: MAX_REDIRECTS });
            }
            redirect_allowed(&url, &next, &self.policy)?;
            hops += 1;
            url = next;
        }
    }
}

/// The client every fetch goes through, before it is built (the tests add
/// name overrides to stand in for public names).
fn client_builder(policy: &FetchPolicy) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(address::GuardedResolver {
            allow_private: policy.allow_private,
        })
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would connect on our behalf, to
        // addresses the resolver never saw.
        .no_proxy()
        .user_agent(USER_AGENT)
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    )
}

/// Reads a final answer: the body, up to `max_bytes` of it after
/// decompression, or that nothing changed.
async fn read_body(
    mut response: Response,
    conditional: bool,
    max_bytes: u64,
) -> Result<Fetched, FetchError> {
    let status = response.status();
    // A 304 to a request that named no version has nothing to reuse.
    if status == StatusCode::NOT_MODIFIED && conditional {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(FetchError::Status {
            status: status.as_u16(),
        });
    }
    let text = |name| {
        let value = response.headers().get(name)?;
        value.to_str().ok().map(str::to_owned)
    };
    let validators = Validators {
        etag: text(ETAG),
        last_modified: text(LAST_MODIFIED),
    };
    // Known only for a body that is not decompressed: gzip's
    // Content-Length counts compressed bytes, so the loop below is the
    // check that holds.
    if response
        .content_length()
        .is_some_and(|length| length > max_bytes)
    {
        return Err(FetchError::TooLarge { max_bytes });
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (bytes.len() + chunk.len()) as u64 > max_bytes {
                    return Err(FetchError::TooLarge { max_bytes });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Fetched::Body { bytes, validators }),
            Err(e) => return Err(error::body_error(e, bytes.len())),
        }
    }
}

/// Checks a URL when a feed is added, before any fetch: the scheme is
/// http, https or file; a file URL resolves (through symlinks) under the
/// feed directory; a literal IP host is not private unless the policy
/// allows it. A host name is checked when it is resolved, at each fetch.
pub fn check_url(url: &str, policy: &FetchPolicy) -> Result<(), FetchError> {
    let url = parse(url)?;
    if url.scheme() == "file" {
        feed_file_path(&url, policy).map(drop)
    } else {
        check_host(&url, policy)
    }
}

/// Whether a fetch may follow a redirect from `from` to `to`: never to a
/// scheme other than http and https, never from https to http (even with
/// --feed-allow-private, which is about addresses, not about giving up
/// TLS), and not to a private literal IP. A host name is checked by the
/// resolver when the hop connects.
pub fn redirect_allowed(from: &Url, to: &Url, policy: &FetchPolicy) -> Result<(), FetchError> {
    if !matches!(to.scheme(), "http" | "https") {
        return Err(FetchError::UnsupportedScheme {
            scheme: to.scheme().to_owned(),
        });
    }
    if from.scheme() == "https" && to.scheme() == "http" {
        return Err(FetchError::Downgrade {
            from: redact_url(from.as_str()),
            to: redact_url(to.as_str()),
        });
    }
    check_host(to, policy)
}

/// Refuses a literal private IP host. Such a URL never reaches the
/// resolver, so this is its only check.
fn check_host(url: &Url, policy: &FetchPolicy) -> Result<(), FetchError> {
    let addr = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(_)) | None => return Ok(()),
    };
    if policy.allow_private || !is_private(addr) {
        return Ok(());
    }
    Err(FetchError::PrivateDestination {
        host: addr.to_string(),
        addr,
    })
}

/// Parses a feed URL of a scheme the fetcher serves.
fn parse(url: &str) -> Result<Url, FetchError> {
    let url = Url::parse(url).map_err(|source| FetchError::BadUrl { source })?;
    match url.scheme() {
        "http" | "https" | "file" => Ok(url),
        scheme => Err(FetchError::UnsupportedScheme {
            scheme: scheme.to_owned(),
        }),
    }
}

/// The file a file URL names, if it resolves under the feed directory.
fn feed_file_path(url: &Url, policy: &FetchPolicy) -> Result<PathBuf, FetchError> {
    let path = url.to_file_path().map_err(|()| FetchError::BadFileUrl)?;
    let canonical = canonicalize(&path)?;
    let feed_dir = canonicalize(&policy.feed_dir)?;
    if !canonical.starts_with(&feed_dir) {
        return Err(FetchError::OutsideFeedDir {
            path,
            feed_dir: policy.feed_dir.clone(),
        });
    }
    Ok(canonical)
}

fn canonicalize(path: &Path) -> Result<PathBuf, FetchError> {
    path.canonicalize().map_err(|source| FetchError::FileIo {
        path: path.to_owned(),
        source,
    })
}

/// Reads a feed file under the same cap as a download. It has no
/// validators: reading a local file costs no more than comparing them.
/// The reads block, briefly: a local file of at most `max_bytes` is read
/// in milliseconds, not worth a hop to the blocking pool.
fn read_feed_file(url: &Url, policy: &FetchPolicy) -> Result<Fetched, FetchError> {
    let path = feed_file_path(url, policy)?;
    let file = headers::open_regular(&path)?;
    let mut bytes = Vec::new();
    file.take(policy.max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FetchError::FileIo { path, source })?;
    if bytes.len() as u64 > policy.max_bytes {
        return Err(FetchError::TooLarge {
            max_bytes: policy.max_bytes,
        });
    }
    Ok(Fetched::Body {
        bytes,
        validators: Validators::default(),
    })
}

/// Query parameter names that carry secrets, matched anywhere in the name
/// (access_token, X-Api-Key, client_secret, X-Amz-Signature): showing a
/// harmless value as *** costs nothing, showing a key costs the key.
const SECRET_PARAMS: [&str; 7] = [
    "key",
    "token",
    "secret",
    "pass",
    "auth",
    "sig",
    "credential",
];

/// The URL as it may be shown or logged: userinfo (user:password@) and the
/// values of query parameters whose names look like secrets (key, token,
/// apikey, api_key, secret, password, auth, ...) replaced by `***`. A
/// string that does not parse as a URL is shown as `<invalid URL>`, since
/// where its secrets are cannot be told.
pub fn redact_url(url: &str) -> String {
    let Ok(mut url) = Url::parse(url) else {
        return "<invalid URL>".to_owned();
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Both fail only for URLs that cannot carry userinfo, so have none.
        let _ = url.set_password(None);
        let _ = url.set_username("***");
    }
    let is_secret = |name: &str| {
        let name = name.to_ascii_lowercase();
        SECRET_PARAMS.iter().any(|secret| name.contains(secret))
    };
    if url.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    "***".into()
                } else {
                    value
                };
                (name.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}
