use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::daemon::testing::TempDir;

#[test]
fn redirect_rules() {
    let url = |s: &str| Url::parse(s).expect("a URL");
    let (strict, lax) = (policy(false), policy(true));
    let https = url("https://feeds.example.com/list");
    for policy in [&strict, &lax] {
        let error = redirect_allowed(&https, &url("http://feeds.example.com/list"), policy)
            .expect_err("a downgrade");
        assert!(matches!(error, FetchError::Downgrade { .. }), "{error:?}");
        let error =
            redirect_allowed(&https, &url("file:///etc/shadow"), policy).expect_err("a file");
        assert!(
            matches!(error, FetchError::UnsupportedScheme { .. }),
            "{error:?}"
        );
    }
    redirect_allowed(&https, &url("https://cdn.example.net/list"), &strict)
        .expect("https to https");
    redirect_allowed(&url("http://feeds.example.com/"), &https, &strict).expect("http to https");
    redirect_allowed(&https, &url("https://203.0.114.9/list"), &strict).expect("a public literal");
    for private in [
        "https://10.1.2.3/",
        "https://169.254.169.254/latest/",
        "https://[fd00:ec2::254]/",
    ] {
        let error =
            redirect_allowed(&https, &url(private), &strict).expect_err("a private literal");
        assert!(
            matches!(error, FetchError::PrivateDestination { .. }),
            "{private}: {error:?}"
        );
        redirect_allowed(&https, &url(private), &lax).expect("allowed private");
    }
    // The downgrade message shows the URLs redacted.
    let error = redirect_allowed(&https, &url("http://u:pw@example.com/?token=t0k"), &lax)
        .expect_err("a downgrade");
    let text = error.to_string();
    assert!(!text.contains("pw") && !text.contains("t0k"), "{text}");
}

#[test]
fn private_addresses() {
    let private = [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.255.0.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "224.0.0.1",
        "239.1.2.3",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.5",
        "198.18.0.1",
        "::",
        "::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2001:db8::1",
        "fec0::1",
    ];
    let public = [
        "1.1.1.1",
        "8.8.8.8",
        "100.63.255.255",
        "100.128.0.1",
        "172.15.255.255",
        "172.32.0.1",
        "192.169.0.1",
        "169.255.0.1",
        "203.0.114.1",
        "2606:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ];
    for text in private {
        let addr: IpAddr = text.parse().expect("an address");
        assert!(is_private(addr), "{text} should be private");
    }
    for text in public {
        let addr: IpAddr = text.parse().expect("an address");
        assert!(!is_private(addr), "{text} should be public");
    }
}

#[test]
fn check_url_schemes_and_literals() {
    let strict = policy(false);
    check_url("https://feeds.example.com/list.txt", &strict).expect("https");
    check_url("http://feeds.example.com/list.txt", &strict).expect("http");
    // Names are checked when resolved.
    check_url("http://localhost/", &strict).expect("a name");
    for bad in [
        "ftp://example.com/list",
        "gopher://x/",
        "javascript:alert(1)",
    ] {
        let error = check_url(bad, &strict).expect_err("a scheme");
        assert!(
            matches!(error, FetchError::UnsupportedScheme { .. }),
            "{bad}: {error:?}"
        );
    }
    for bad in ["not a url", "/etc/passwd", "http://"] {
        let error = check_url(bad, &strict).expect_err("a bad URL");
        assert!(
            matches!(error, FetchError::BadUrl { .. }),
            "{bad}: {error:?}"
        );
    }
    for private in [
        "http://127.0.0.1/",
        "http://[::1]:8080/",
        "http://169.254.169.254/",
        "http://2130706433/",
    ] {
        let error = check_url(private, &strict).expect_err("a private literal");
        assert!(
            matches!(error, FetchError::PrivateDestination { .. }),
            "{private}: {error:?}"
        );
        check_url(private, &policy(true)).expect("allowed private");
    }
}

fn feed_dir() -> (TempDir, FetchPolicy) {
    let dir = TempDir::new("fetch");
    std::fs::create_dir(dir.0.join("feeds")).expect("the feed directory");
    let policy = FetchPolicy {
        feed_dir: dir.0.join("feeds"),
        ..policy(false)
    };
    (dir, policy)
}

fn file_url(path: &Path) -> String {
    Url::from_file_path(path).expect("an absolute path").into()
}

#[tokio::test]
async fn file_urls_read_inside_the_feed_dir() {
    let (_dir, policy) = feed_dir();
    let path = policy.feed_dir.join("list.txt");
    std::fs::write(&path, "192.0.2.0/24\n").expect("writing the feed");
    check_url(&file_url(&path), &policy).expect("inside");
    let fetched = fetcher(policy)
        .fetch(&file_url(&path), &Validators::default(), NONE)
        .await
        .expect("reading");
    assert_eq!(
        fetched,
        Fetched::Body {
            bytes: b"192.0.2.0/24\n".to_vec(),
            validators: Validators::default(),
        }
    );
}

#[tokio::test]
async fn file_urls_outside_the_feed_dir_are_refused() {
    let (dir, policy) = feed_dir();
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "root:x:0:0\n").expect("writing");
    let link = policy.feed_dir.join("link.txt");
    std::os::unix::fs::symlink(&secret, &link).expect("a symlink");
    let dotdot = format!("file://{}/feeds/../secret", dir.0.display());
    let fetcher = fetcher(policy.clone());
    for url in [file_url(&secret), file_url(&link), dotdot] {
        let error = check_url(&url, &policy).expect_err("outside");
        assert!(
            matches!(error, FetchError::OutsideFeedDir { .. }),
            "{url}: {error:?}"
        );
        let error = fetcher
            .fetch(&url, &Validators::default(), NONE)
            .await
            .expect_err("outside");
        assert!(
            matches!(error, FetchError::OutsideFeedDir { .. }),
            "{url}: {error:?}"
        );
        assert!(!all_text(&error).contains("root:x"), "{error}");
    }
    let error = check_url("file://otherhost/etc/passwd", &policy).expect_err("a remote file");
    assert!(matches!(error, FetchError::BadFileUrl), "{error:?}");
}

#[tokio::test]
async fn feed_files_are_capped_and_regular() {
    let (_dir, policy) = feed_dir();
    let big = policy.feed_dir.join("big.txt");
    std::fs::write(&big, vec![b'1'; 1024 * 1024 + 1]).expect("writing");
    let fifo = policy.feed_dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("a FIFO");
    let fetcher = fetcher(policy);
    let error = fetcher
        .fetch(&file_url(&big), &Validators::default(), NONE)
        .await
        .expect_err("too large");
    assert!(matches!(error, FetchError::TooLarge { .. }), "{error:?}");
    for path in [fifo.as_path(), fetcher.policy.feed_dir.as_path()] {
        let error = fetcher
            .fetch(&file_url(path), &Validators::default(), NONE)
            .await
            .expect_err("not a file");
        assert!(
            matches!(error, FetchError::NotRegularFile { .. }),
            "{error:?}"
        );
    }
}

#[test]
fn redacted_urls() {
    for (url, redacted) in [
        (
            "https://feeds.example.com/list.txt",
            "https://feeds.example.com/list.txt",
        ),
        (
            "https://user:pass@feeds.example.com/x",
            "https://***@feeds.example.com/x",
        ),
        (
            "https://user@feeds.example.com/x",
            "https://***@feeds.example.com/x",
        ),
        (
            "https://:pass@feeds.example.com/x",
            "https://***@feeds.example.com/x",
        ),
        (
            "https://x.example/list?key=abc&format=txt",
            "https://x.example/list?key=***&format=txt",
        ),
        (
            "https://x.example/?API_KEY=a&apikey=b&Token=c",
            "https://x.example/?API_KEY=***&apikey=***&Token=***",
        ),
        (
            "https://x.example/?secret=a&password=b&auth=c",
            "https://x.example/?secret=***&password=***&auth=***",
        ),
        (
            "https://x.example/?access_token=a&page=2",
            "https://x.example/?access_token=***&page=2",
        ),
        (
            "https://x.example/?page=2&sort=asc",
            "https://x.example/?page=2&sort=asc",
        ),
        (
            "file:///etc/denylist/feeds/a.txt",
            "file:///etc/denylist/feeds/a.txt",
        ),
        ("not a url with secret", "<invalid URL>"),
    ] {
        assert_eq!(redact_url(url), redacted, "{url}");
    }
}

fn header_file(dir: &TempDir, text: &str, mode: u32) -> PathBuf {
    let path = dir.0.join("headers");
    std::fs::write(&path, text).expect("writing");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

#[test]
fn header_files_parse() {
    let dir = TempDir::new("fetch");
    let path = header_file(
        &dir,
        "# the feed's key\r\n\r\nX-Api-Key:  k-123 \r\nAuthorization: Bearer a:b\n  # indented comment\n",
        0o600,
    );
    let headers = read_header_file(&path).expect("reading");
    assert_eq!(
        headers,
        [
            ("X-Api-Key".to_owned(), "k-123".to_owned()),
            ("Authorization".to_owned(), "Bearer a:b".to_owned()),
        ]
    );
}

#[test]
fn header_files_open_to_others_are_refused() {
    let dir = TempDir::new("fetch");
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let path = header_file(&dir, "X-Api-Key: k-123\n", mode);
        let error = read_header_file(&path).expect_err("too open");
        assert!(
            matches!(error, FetchError::HeaderFileMode { mode: m, .. } if m == mode),
            "{error:?}"
        );
        assert!(error.to_string().contains("chmod 600"), "{error}");
        assert!(!error.to_string().contains("k-123"), "{error}");
    }
    let error = read_header_file(&dir.0).expect_err("a directory");
    assert!(
        matches!(error, FetchError::NotRegularFile { .. }),
        "{error:?}"
    );
}

#[test]
fn header_file_errors_name_the_line_not_the_value() {
    let dir = TempDir::new("fetch");
    for (text, line, problem) in [
        (
            "X-Ok: 1\nsk-live-SECRETVALUE\n",
            2,
            HeaderProblem::MissingColon,
        ),
        (
            "# c\n\nBad Name: sk-live-SECRETVALUE\n",
            3,
            HeaderProblem::InvalidName,
        ),
        (
            "X-Key: sk-live-SECRETVALUE\u{7}\n",
            1,
            HeaderProblem::InvalidValue,
        ),
    ] {
        let path = header_file(&dir, text, 0o600);
        let error = read_header_file(&path).expect_err("a bad line");
        assert!(
            matches!(&error, FetchError::HeaderLine { line: l, problem: p, .. } if *l == line && *p == problem),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains(&format!("line {line}")), "{text}");
        assert!(!text.contains("SECRETVALUE"), "{text}");
    }
}

#[tokio::test]
async fn invalid_extra_headers_are_refused_without_their_value() {
    let headers = [("X-Key".to_owned(), "sk-SECRET\n".to_owned())];
    let error = fetcher(policy(true))
        .fetch("http://127.0.0.1:9/", &Validators::default(), &headers)
        .await
        .expect_err("an invalid header");
    assert!(
        matches!(error, FetchError::InvalidHeader { number: 1 }),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains("SECRET"));
}
