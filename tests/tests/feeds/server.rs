//! A feed server the test scripts: plain HTTP/1.1 on std sockets, bound
//! inside the daemon's network namespace, answering each path as told and
//! remembering what each request asked for.
//!
//! It is written by hand rather than with a server library because the
//! faults under test are ones a well-behaved server refuses to make: a
//! body shorter than its Content-Length, a request never answered, a
//! body streamed far past any sane size.

use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use denylist_tests::netns::Netns;

/// How one path is answered.
#[derive(Clone, Debug)]
pub(crate) enum Reply {
    /// A whole answer with a Content-Length. With `etag` set, the answer
    /// carries it, and a request whose If-None-Match names it gets a 304.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Arc<Vec<u8>>,
        etag: Option<String>,
    },
    /// Promises `declared` bytes, sends `body` (fewer), and closes.
    Truncated { declared: usize, body: Vec<u8> },
    /// Reads the request and never answers, until the server goes.
    Hang,
    /// A 200 of `total` bytes of `line` repeated, made as it is sent: a
    /// body too big to hold is never held here either. Chunked, or with
    /// its Content-Length when `declared`.
    Stream {
        total: u64,
        line: Vec<u8>,
        declared: bool,
    },
}

impl Reply {
    pub(crate) fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self::status(200, body)
    }

    pub(crate) fn status(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::Full {
            status,
            headers: Vec::new(),
            body: Arc::new(body.into()),
            etag: None,
        }
    }

    pub(crate) fn redirect(status: u16, location: &str) -> Self {
        Self::Full {
            status,
            headers: vec![("Location".into(), location.into())],
            body: Arc::new(Vec::new()),
            etag: None,
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        if let Self::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

/// One request as the server read it; header names in lower case.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    routes: Mutex<HashMap<String, Reply>>,
    requests: Mutex<Vec<Request>>,
    stop: AtomicBool,
    /// Bytes of bodies written, all paths together.
    body_bytes: AtomicU64,
    /// Answers written to their last byte.
    completed: AtomicU64,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// The server; dropping it stops every connection and closes the port,
/// which from then on refuses connections.
pub(crate) struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on all of `netns`'s addresses, on a port the kernel picks.
    /// The socket is made on a thread inside the namespace and stays
    /// there; the threads serving it can live anywhere.
    pub(crate) fn start(netns: &Netns) -> Self {
        let listener = netns
            .enter(|| TcpListener::bind("0.0.0.0:0").expect("bind the feed server"))
            .expect("enter the daemon's namespace");
        listener.set_nonblocking(true).expect("nonblocking accept");
        let addr = listener.local_addr().expect("the server's port");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("feed-server".into())
            .spawn(move || accept_loop(&listener, &s))
            .expect("spawn the feed server");
        Self {
            shared,
            addr,
            acceptor: Some(acceptor),
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/PATH`, as the daemon in the namespace sees it.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port())
    }

    /// Answers `/PATH` with `reply` from now on.
    pub(crate) fn set(&self, path: &str, reply: Reply) {
        lock(&self.shared.routes).insert(format!("/{path}"), reply);
    }

    /// Every request for `/PATH` so far, oldest first.
    pub(crate) fn requests(&self, path: &str) -> Vec<Request> {
        let want = format!("/{path}");
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.path == want)
            .cloned()
            .collect()
    }

    pub(crate) fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    pub(crate) fn completed(&self) -> u64 {
        self.shared.completed.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let workers = std::mem::take(&mut *lock(&self.shared.workers));
        for w in workers {
            let _ = w.join();
        }
    }
}

/// A poisoned lock only means another connection's thread panicked; what
/// it guards is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The path a TLS handshake is recorded under: `requests("<tls>")`.
const TLS_HELLO: &str = "/<tls>";

/// How long a blocked thread waits before it looks at the stop flag again.
const POLL: Duration = Duration::from_millis(20);

fn stopping(shared: &Shared) -> bool {
    shared.stop.load(Ordering::SeqCst)
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !stopping(shared) {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                let w = thread::spawn(move || {
                    // A client that hangs up early is one of the cases under
                    // test, not a server failure.
                    let _ = serve(stream, &s);
                });
                lock(&shared.workers).push(w);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Reads the request head: a feed fetch is a GET without a body.
fn read_head(stream: &mut TcpStream, shared: &Shared) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        // A TLS ClientHello on this plain port: answered below as a plain
        // server answers one, which the client's TLS layer cannot read.
        if buf.first() == Some(&0x16) {
            return Ok(Some(Request {
                path: TLS_HELLO.into(),
                headers: Vec::new(),
            }));
        }
        if stopping(shared) {
            return Ok(None);
        }
        match stream.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(n) => buf.extend_from_slice(&byte[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Some(Request { path, headers }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

/// Writes all of `bytes`, looking at the stop flag while the peer is not
/// reading, so that a stuck client never keeps the server from stopping.
fn write_all(stream: &mut TcpStream, shared: &Shared, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        if stopping(shared) {
            return Err(ErrorKind::Interrupted.into());
        }
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_body(stream: &mut TcpStream, shared: &Shared, bytes: &[u8]) -> std::io::Result<()> {
    write_all(stream, shared, bytes)?;
    shared
        .body_bytes
        .fetch_add(bytes.len() as u64, Ordering::SeqCst);
    Ok(())
}

/// One connection, one answer: every answer says `Connection: close`, so
/// the client never reuses a connection a fault has left in a bad state.
fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(POLL))?;
    let Some(req) = read_head(&mut stream, shared)? else {
        return Ok(());
    };
    if req.path == TLS_HELLO {
        lock(&shared.requests).push(req);
        write_all(
            &mut stream,
            shared,
            b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let reply = lock(&shared.routes).get(&req.path).cloned();
    let if_none_match = req.header("if-none-match").map(str::to_string);
    lock(&shared.requests).push(req);
    let reply = reply.unwrap_or_else(|| Reply::status(404, "no such path\n"));
    match reply {
        Reply::Full {
            status,
            headers,
            body,
            etag,
        } => {
            let not_modified = etag.is_some() && if_none_match == etag;
            let (status, body): (u16, &[u8]) = if not_modified {
                (304, &[])
            } else {
                (status, &body)
            };
            let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
            for (n, v) in headers.iter() {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            if let Some(e) = &etag {
                head.push_str(&format!("ETag: {e}\r\n"));
            }
            if status != 304 {
                head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            }
            head.push_str("Connection: close\r\n\r\n");
            write_all(&mut stream, shared, head.as_bytes())?;
            write_body(&mut stream, shared, body)?;
        }
        Reply::Truncated { declared, body } => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
            );
            write_all(&mut stream, shared, head.as_bytes())?;
            write_body(&mut stream, shared, &body)?;
        }
        Reply::Hang => {
            while !stopping(shared) {
                thread::sleep(POLL);
            }
            return Ok(());
        }
        Reply::Stream {
            total,
            line,
            declared,
        } => {
            let framing = if declared {
                format!("Content-Length: {total}")
            } else {
                "Transfer-Encoding: chunked".to_string()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n{framing}\r\nConnection: close\r\n\r\n"
            );
            write_all(&mut stream, shared, head.as_bytes())?;
            let chunk: Vec<u8> = line.iter().copied().cycle().take(64 * 1024).collect();
            let mut left = total;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if declared {
                    write_body(&mut stream, shared, &chunk[..n])?;
                } else {
                    let mut framed = format!("{n:x}\r\n").into_bytes();
                    framed.extend_from_slice(&chunk[..n]);
                    framed.extend_from_slice(b"\r\n");
                    write_body(&mut stream, shared, &framed)?;
                }
                left -= n as u64;
            }
            if !declared {
                write_all(&mut stream, shared, b"0\r\n\r\n")?;
            }
        }
    }
    stream.flush()?;
    shared.completed.fetch_add(1, Ordering::SeqCst);
    // Closing at once could reset a connection whose request bytes are
    // still unread; shutting down the write side first ends the body
    // cleanly.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 256];
    for _ in 0..10 {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}
