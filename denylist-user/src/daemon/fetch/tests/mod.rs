use std::{
    error::Error,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use super::*;

/// What is checked without a server: URLs, redirects, addresses, files.
mod checks;

/// A server on 127.0.0.1 that answers each connection with what `reply`
/// makes of the request head, then closes it. It keeps the heads.
struct Server {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(reply: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("the bound address");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let heads = Arc::clone(&heads);
            async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let head = read_head(&mut stream).await;
                    let answer = reply(&head);
                    heads.lock().expect("the heads").push(head);
                    // The client may hang up first, as on a body over the cap.
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                }
            }
        });
        Self { addr, heads, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("the heads").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An HTTP/1.1 response with a Content-Length, closing the connection.
fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn policy(allow_private: bool) -> FetchPolicy {
    FetchPolicy {
        allow_private,
        feed_dir: PathBuf::from("/nonexistent"),
        timeout: Duration::from_secs(2),
        max_bytes: 1024 * 1024,
    }
}

fn fetcher(policy: FetchPolicy) -> Fetcher {
    Fetcher::new(policy).expect("a fetcher")
}

/// A fetcher for which `feed.test` resolves to `addr` without going
/// through the guarded resolver: a public name, as far as it knows.
fn fetcher_with_public_name(addr: SocketAddr) -> Fetcher {
    let policy = policy(false);
    let client = client_builder(&policy)
        .resolve("feed.test", addr)
        .build()
        .expect("a client");
    Fetcher { policy, client }
}

/// Every message in an error's chain.
fn all_text(error: &(dyn Error + 'static)) -> String {
    std::iter::successors(Some(error), |&e| e.source())
        .map(|e| format!("{e}; "))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("compressing");
    encoder.finish().expect("compressing")
}

const NONE: &[(String, String)] = &[];

#[tokio::test]
async fn ok_returns_body_and_validators() {
    let server = Server::start(|_| {
        response(
            "200 OK",
            &[
                ("ETag", "\"v1\""),
                ("Last-Modified", "Tue, 01 Apr 2025 10:00:00 GMT"),
            ],
            b"192.0.2.1\n",
        )
    })
    .await;
    let fetched = fetcher(policy(true))
        .fetch(&server.url("/feed"), &Validators::default(), NONE)
        .await
        .expect("fetching");
    assert_eq!(
        fetched,
        Fetched::Body {
            bytes: b"192.0.2.1\n".to_vec(),
            validators: Validators {
                etag: Some("\"v1\"".into()),
                last_modified: Some("Tue, 01 Apr 2025 10:00:00 GMT".into()),
            },
        }
    );
    let heads = server.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("GET /feed HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    assert_eq!(header(&heads[0], "user-agent"), Some(USER_AGENT));
    assert_eq!(header(&heads[0], "if-none-match"), None);
    assert_eq!(header(&heads[0], "if-modified-since"), None);
}

#[tokio::test]
async fn conditional_request_answered_304_is_not_modified() {
    let server = Server::start(|_| response("304 Not Modified", &[], b"")).await;
    let validators = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: Some("Tue, 01 Apr 2025 10:00:00 GMT".into()),
    };
    let fetched = fetcher(policy(true))
        .fetch(&server.url("/"), &validators, NONE)
        .await
        .expect("fetching");
    assert_eq!(fetched, Fetched::NotModified);
    let heads = server.heads();
    assert_eq!(header(&heads[0], "if-none-match"), Some("\"v1\""));
    assert_eq!(
        header(&heads[0], "if-modified-since"),
        Some("Tue, 01 Apr 2025 10:00:00 GMT")
    );
}

#[tokio::test]
async fn unconditional_request_answered_304_is_an_error() {
    let server = Server::start(|_| response("304 Not Modified", &[], b"")).await;
    let error = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("a 304 to nothing");
    assert!(
        matches!(error, FetchError::Status { status: 304 }),
        "{error:?}"
    );
}

#[tokio::test]
async fn error_statuses_are_errors() {
    for (status, code) in [("500 Internal Server Error", 500), ("404 Not Found", 404)] {
        let server = Server::start(move |_| response(status, &[], b"no")).await;
        let error = fetcher(policy(true))
            .fetch(&server.url("/"), &Validators::default(), NONE)
            .await
            .expect_err("an error status");
        assert!(
            matches!(error, FetchError::Status { status } if status == code),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&format!("HTTP {code}")),
            "{error}"
        );
    }
}

#[tokio::test]
async fn errors_never_show_the_body() {
    const MARKER: &str = "SECRET-MARKER-7f3a";
    let body = format!("api_key={MARKER}");
    let server =
        Server::start(move |_| response("500 Internal Server Error", &[], body.as_bytes())).await;
    let error = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("an error status");
    let text = format!("{} {error:?}", all_text(&error));
    assert!(text.contains("500"), "{text}");
    assert!(!text.contains(MARKER), "{text}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    // Connections complete in the kernel's backlog; nothing ever answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let url = format!("http://{}/", listener.local_addr().expect("the address"));
    let policy = FetchPolicy {
        timeout: Duration::from_millis(500),
        ..policy(true)
    };
    let started = Instant::now();
    let error = fetcher(policy)
        .fetch(&url, &Validators::default(), NONE)
        .await
        .expect_err("a timeout");
    assert!(matches!(error, FetchError::Timeout { .. }), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_closed_port_refuses() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("the address");
    drop(listener);
    let error = fetcher(policy(true))
        .fetch(&format!("http://{addr}/"), &Validators::default(), NONE)
        .await
        .expect_err("a refused connection");
    assert!(
        matches!(&error, FetchError::ConnectionRefused { host, port, .. } if host == "127.0.0.1" && *port == addr.port()),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_failed_handshake_is_a_tls_error() {
    // A plain-HTTP answer to the ClientHello: no TLS server, as rustls sees it.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
    let addr = listener.local_addr().expect("the address");
    let server = tokio::spawn(async move {
        if let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let error = fetcher(policy(true))
        .fetch(&format!("https://{addr}/"), &Validators::default(), NONE)
        .await
        .expect_err("a failed handshake");
    assert!(
        matches!(&error, FetchError::Tls { host, .. } if host == "127.0.0.1"),
        "{error:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_body_cut_short_is_truncated() {
    let server = Server::start(|_| {
        let mut out =
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n".to_vec();
        out.extend_from_slice(b"0123456789");
        out
    })
    .await;
    let error = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("a truncated body");
    assert!(
        matches!(error, FetchError::Truncated { received: 10, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn gzip_bodies_are_decompressed() {
    let plain = b"198.51.100.0/24\n203.0.113.7\n".repeat(100);
    let compressed = gzip(&plain);
    let server =
        Server::start(move |_| response("200 OK", &[("Content-Encoding", "gzip")], &compressed))
            .await;
    let fetched = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect("fetching");
    assert!(
        matches!(&fetched, Fetched::Body { bytes, .. } if *bytes == plain),
        "{fetched:?}"
    );
    let heads = server.heads();
    assert!(
        header(&heads[0], "accept-encoding").is_some_and(|v| v.contains("gzip")),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn a_gzip_bomb_is_too_large() {
    // 5 MiB of zeros compress to a few KiB, far under the 1 MiB cap.
    let compressed = gzip(&vec![0; 5 * 1024 * 1024]);
    assert!(compressed.len() < 64 * 1024);
    let server =
        Server::start(move |_| response("200 OK", &[("Content-Encoding", "gzip")], &compressed))
            .await;
    let error = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("too large");
    assert!(
        matches!(
            error,
            FetchError::TooLarge {
                max_bytes: 1_048_576
            }
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_plain_body_over_the_cap_is_too_large() {
    // Without a Content-Length the body runs to the close: the count while
    // reading is the only check.
    let server = Server::start(|_| {
        let mut out = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        out.resize(out.len() + 2 * 1024 * 1024, b'1');
        out
    })
    .await;
    let policy = policy(true);
    let error = fetcher(policy.clone())
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("too large");
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error:?}");

    let declared = Server::start(|_| response("200 OK", &[], &vec![b'1'; 2 * 1024 * 1024])).await;
    let error = fetcher(policy)
        .fetch(&declared.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("too large");
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error:?}");
}

#[tokio::test]
async fn redirects_are_followed_and_credentials_stay_home() {
    let target = Server::start(|_| response("200 OK", &[], b"moved")).await;
    let location = target.url("/there");
    let origin =
        Server::start(move |_| response("301 Moved Permanently", &[("Location", &location)], b""))
            .await;
    let headers = [("X-Api-Key".to_owned(), "k-123".to_owned())];
    let fetched = fetcher(policy(true))
        .fetch(&origin.url("/here"), &Validators::default(), &headers)
        .await
        .expect("fetching");
    assert!(
        matches!(&fetched, Fetched::Body { bytes, .. } if bytes == b"moved"),
        "{fetched:?}"
    );
    assert_eq!(header(&origin.heads()[0], "x-api-key"), Some("k-123"));
    // Another port is another origin.
    let there = target.heads();
    assert!(there[0].starts_with("GET /there "), "{}", there[0]);
    assert_eq!(header(&there[0], "x-api-key"), None);
}

#[tokio::test]
async fn endless_redirects_stop() {
    let server = Server::start(|_| response("302 Found", &[("Location", "/again")], b"")).await;
    let error = fetcher(policy(true))
        .fetch(&server.url("/"), &Validators::default(), NONE)
        .await
        .expect_err("too many redirects");
    assert!(
        matches!(error, FetchError::TooManyRedirects { max: 5 }),
        "{error:?}"
    );
    assert_eq!(server.heads().len(), 6);
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused() {
    let inner = Server::start(|_| response("200 OK", &[], b"internal")).await;
    let location = inner.url("/");
    let outer =
        Server::start(move |_| response("302 Found", &[("Location", &location)], b"")).await;
    let error = fetcher_with_public_name(outer.addr)
        .fetch(
            &format!("http://feed.test:{}/", outer.addr.port()),
            &Validators::default(),
            NONE,
        )
        .await
        .expect_err("a private hop");
    assert!(
        matches!(&error, FetchError::PrivateDestination { addr, .. } if *addr == IpAddr::from([127, 0, 0, 1])),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("--feed-allow-private"),
        "{error}"
    );
    assert_eq!(outer.heads().len(), 1);
    assert!(inner.heads().is_empty());
}

#[tokio::test]
async fn a_redirect_to_a_private_name_is_refused_by_the_resolver() {
    let inner = Server::start(|_| response("200 OK", &[], b"internal")).await;
    let location = format!("http://localhost:{}/", inner.addr.port());
    let outer =
        Server::start(move |_| response("302 Found", &[("Location", &location)], b"")).await;
    let error = fetcher_with_public_name(outer.addr)
        .fetch(
            &format!("http://feed.test:{}/", outer.addr.port()),
            &Validators::default(),
            NONE,
        )
        .await
        .expect_err("a private hop");
    assert!(
        matches!(&error, FetchError::PrivateDestination { host, addr } if host == "localhost" && addr.is_loopback()),
        "{error:?}"
    );
    assert!(inner.heads().is_empty());
}

#[tokio::test]
async fn private_destinations_are_refused_without_allow_private() {
    let server = Server::start(|_| response("200 OK", &[], b"internal")).await;
    let port = server.addr.port();
    for url in [
        format!("http://localhost:{port}/"),
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://0x7f000001:{port}/"),
    ] {
        let error = fetcher(policy(false))
            .fetch(&url, &Validators::default(), NONE)
            .await
            .expect_err("a private destination");
        assert!(
            matches!(error, FetchError::PrivateDestination { .. }),
            "{url}: {error:?}"
        );
    }
    assert!(server.heads().is_empty());
}
