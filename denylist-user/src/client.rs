//! A small blocking client for the API socket: HTTP/1.1, one request per
//! connection. The CLI and the tests use it.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ApiError, Class};

pub struct Client {
    socket: PathBuf,
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
}

impl Client {
    pub fn new(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_path_buf(),
        }
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
        s.write_all(head.as_bytes()).map_err(unreachable)?;
        s.write_all(body).map_err(unreachable)?;
        read_reply(BufReader::new(s))
            .map_err(|e| ApiError::failure(format!("reading denylistd's reply: {e}")))
    }
}

fn read_reply(mut r: impl BufRead) -> std::io::Result<Reply> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no HTTP status line"))?;
    let (mut length, mut chunked) = (None, false);
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
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            line.clear();
            r.read_line(&mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_replies() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let r = read_reply(&plain[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{}"[..]));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = read_reply(&chunked[..]).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"abcde"[..]));
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
