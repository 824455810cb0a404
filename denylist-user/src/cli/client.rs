//! A small blocking client for the API socket: HTTP/1.1, one request per
//! connection. The CLI and the tests use it.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::wire::{ApiError, Class, STALE_HEADER};

pub struct Client {
    socket: PathBuf,
    /// Some reply was a fleet node's read from its copy alone, with the
    /// fleet's database out of reach.
    stale: AtomicBool,
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as `T`, or the API error it carries.
    pub fn json<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        if (200..300).contains(&self.status) {
            return serde_json::from_slice(&self.body).map_err(|e| {
                ApiError::failure(format!(
                    "denylistd sent a reply this client cannot read: {e}"
                ))
            });
        }
        #[derive(serde::Deserialize)]
        struct Wrapped {
            error: ApiError,
        }
        match serde_json::from_slice::<Wrapped>(&self.body) {
            Ok(w) => Err(w.error),
            Err(_) => Err(ApiError::new(
                Class::from_status(self.status),
                format!(
                    "denylistd answered {}: {}",
                    self.status,
                    String::from_utf8_lossy(&self.body).trim()
                ),
            )),
        }
    }

    /// The API error a reply outside 2xx carries.
    pub fn error(self) -> ApiError {
        match self.json::<serde::de::IgnoredAny>() {
            Err(e) => e,
            Ok(_) => ApiError::failure("denylistd answered with an error but no reason"),
        }
    }

    /// The error a streamed reply outside 2xx carries, read whole: an
    /// error body is small.
    pub fn error_from(status: u16, mut body: impl Read) -> ApiError {
        let mut bytes = Vec::new();
        if let Err(e) = body.read_to_end(&mut bytes) {
            return ApiError::failure(format!("reading denylistd's reply: {e}"));
        }
        Reply {
            status,
            body: bytes,
        }
        .error()
    }
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
            stale: AtomicBool::new(false),
        }
    }

    /// Whether some reply so far carried [`STALE_HEADER`]: the CLI then
    /// says that what it printed may lag the fleet.
    pub fn saw_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.request("GET", path, None, "application/json")?.json()
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let b = serde_json::to_vec(body).expect("requests serialize");
        self.request("POST", path, Some(&b), "application/json")?
            .json()
    }

    /// One request; any status comes back as a [`Reply`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<Reply, ApiError> {
        let (status, mut reader) = self.request_reader(method, path, body, content_type)?;
        let mut body = Vec::new();
        reader
            .read_to_end(&mut body)
            .map_err(|e| ApiError::failure(format!("reading denylistd's reply: {e}")))?;
        Ok(Reply { status, body })
    }

    /// One request whose reply body is read as it arrives, so a listing of
    /// 1M entries is never held whole.
    pub fn request_reader(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: &str,
    ) -> Result<(u16, Box<dyn Read + Send>), ApiError> {
        let unreachable = |e: std::io::Error| {
            ApiError::new(
                Class::Unavailable,
                format!(
                    "cannot reach denylistd at {}: {e}: is it running? (systemctl start denylistd)",
                    self.socket.display()
                ),
            )
        };
        let mut s = UnixStream::connect(&self.socket).map_err(unreachable)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: denylistd\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let sent = s
            .write_all(head.as_bytes())
            .and_then(|()| s.write_all(body));
        // The daemon refuses a stranger before reading the body, answers
        // and closes: the rest of the body then meets a broken pipe, and
        // the answer waiting to be read is what counts.
        match (read_head(BufReader::with_capacity(64 * 1024, s)), sent) {
            (Ok((status, stale, body)), _) => {
                if stale {
                    self.stale.store(true, Ordering::Relaxed);
                }
                Ok((status, body))
            }
            (Err(_), Err(e)) => Err(unreachable(e)),
            (Err(e), Ok(())) => Err(ApiError::failure(format!("reading denylistd's reply: {e}"))),
        }
    }
}

/// Reads the status line and headers: the status, whether the reply is
/// stale ([`STALE_HEADER`]), and the body, which follows in the reader.
fn read_head<R: BufRead + Send + 'static>(
    mut r: R,
) -> std::io::Result<(u16, bool, Box<dyn Read + Send>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    let (mut length, mut chunked, mut stale) = (None, false, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<u64>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case(STALE_HEADER) && v == "true" {
                stale = true;
            }
        }
    }
    let body: Box<dyn Read + Send> = match (chunked, length) {
        (true, _) => Box::new(Chunked {
            inner: r,
            left: 0,
            done: false,
        }),
        (false, Some(n)) => Box::new(r.take(n)),
        (false, None) => Box::new(r),
    };
    Ok((status, stale, body))
}

fn bad(m: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string())
}

/// A chunked transfer-encoded body, decoded as it is read.
struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            self.left = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(bad("the reply ended inside a chunk"));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.inner.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_replies() {
        fn read(reply: &'static [u8]) -> (u16, bool, Vec<u8>) {
            let (status, stale, mut body) = read_head(reply).unwrap();
            let mut out = Vec::new();
            body.read_to_end(&mut out).unwrap();
            (status, stale, out)
        }
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}trailing";
        assert_eq!(read(plain), (200, false, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read(chunked), (404, false, b"abcde".to_vec()));
        let stale = b"HTTP/1.1 200 OK\r\ndenylist-stale: true\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(read(stale), (200, true, b"{}".to_vec()));
    }

    #[test]
    fn errors_keep_their_class() {
        let body = br#"{"error":{"class":"guarded","message":"refused: x"}}"#.to_vec();
        let e = Reply { status: 422, body }
            .json::<serde_json::Value>()
            .unwrap_err();
        assert_eq!(
            (e.class, e.message.as_str()),
            (Class::Guarded, "refused: x")
        );
        let e = Reply {
            status: 413,
            body: b"length limit exceeded".to_vec(),
        }
        .json::<serde_json::Value>()
        .unwrap_err();
        assert_eq!(e.class, Class::TooLarge);
    }

    #[test]
    fn an_absent_daemon_is_unavailable_with_a_hint() {
        let e = Client::new("/nonexistent/denylist.sock")
            .get::<serde_json::Value>("/v1/status")
            .unwrap_err();
        assert_eq!(e.class, Class::Unavailable);
        assert!(e.message.contains("is it running?"), "{}", e.message);
    }
}
