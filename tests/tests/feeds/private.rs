//! A daemon started without --feed-allow-private: feeds reach neither
//! the host's own or private addresses (named literally, through DNS, or
//! through a redirect) nor files outside the feed directory.

use denylist_tests::{
    daemon::{Daemon, Home, TempDir},
    netns::Netns,
    require_root,
};

use crate::{
    common::{A, B, Run, body, cli},
    server::{Reply, Server},
};

/// A public address the server answers on, besides loopback. The
/// namespace has no route out, so nothing sent to it leaves the test;
/// being public, a feed may fetch from it.
const PUBLIC: &str = "44.0.0.80";

struct Env {
    daemon: Daemon,
    server: Server,
    feeds: TempDir,
    home: Home,
    _netns: Netns,
}

impl Env {
    fn dl(&self, args: &[&str]) -> Run {
        cli(&self.home.socket(), args)
    }

    #[track_caller]
    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.dl(args);
        assert_eq!(
            r.code,
            code,
            "{r}--- denylistd log\n{}",
            self.daemon.log_text()
        );
        r
    }

    fn feed_names(&self) -> Vec<String> {
        let all = self.expect(0, &["feed", "list", "--json"]).json();
        all.as_array()
            .expect("an array")
            .iter()
            .map(|f| f["name"].as_str().expect("a name").to_string())
            .collect()
    }
}

#[test]
fn private_destinations_and_files_outside_the_feed_dir_are_refused() {
    require_root();
    let netns = Netns::new("priv").expect("a namespace");
    netns
        .run(&["ip", "addr", "add", &format!("{PUBLIC}/32"), "dev", "lo"])
        .expect("a public address on lo");
    let server = Server::start(&netns);
    let home = Home::new("priv");
    let feeds = TempDir::new("priv-feeds");
    let dir = feeds.path().to_str().expect("UTF-8").to_string();
    // No interface: these feeds never get far enough to need the filter.
    let daemon = Daemon::start(
        &home,
        Some(&netns),
        &[
            "--capacity",
            "4096",
            "--feed-dir",
            &dir,
            "--feed-timeout",
            "2s",
        ],
    );
    let env = Env {
        daemon,
        server,
        feeds,
        home,
        _netns: netns,
    };
    let port = env.server.port();
    env.server.set("list", Reply::ok(body(&[A, B])));
    env.server.set(
        "hop",
        Reply::redirect(302, &format!("http://127.0.0.1:{port}/list")),
    );

    // A literal private address is refused when the feed is added.
    for url in [
        format!("http://127.0.0.1:{port}/list"),
        format!("http://[::1]:{port}/list"),
        format!("http://10.1.2.3:{port}/list"),
        format!("http://169.254.169.254:{port}/list"),
    ] {
        let r = env.expect(2, &["feed", "add", "p", &url]);
        assert!(r.err.contains("--feed-allow-private"), "{url}: {r}");
    }
    assert!(env.feed_names().is_empty(), "no feed was added");
    assert!(
        env.server.requests("list").is_empty(),
        "nothing was fetched"
    );

    // The same server at a public address is fetched: the refusals above
    // are about where, not about the server.
    let r = env.expect(
        0,
        &[
            "feed",
            "add",
            "pub",
            &format!("http://{PUBLIC}:{port}/list"),
            "--json",
        ],
    );
    assert_eq!(r.json()["entries"], 2, "{r}");
    assert_eq!(env.server.requests("list").len(), 1);

    // A name is checked once resolved: localhost is loopback.
    let r = env.expect(
        1,
        &[
            "feed",
            "add",
            "name",
            &format!("http://localhost:{port}/list"),
            "--json",
        ],
    );
    let f = r.json();
    assert_eq!(f["state"], "failing", "{f}");
    assert!(
        f["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("internal address"),
        "{f}"
    );
    // A redirect from the public address to loopback is refused at the hop.
    let r = env.expect(
        1,
        &[
            "feed",
            "add",
            "hop",
            &format!("http://{PUBLIC}:{port}/hop"),
            "--json",
        ],
    );
    let f = r.json();
    assert_eq!(f["state"], "failing", "{f}");
    assert!(
        f["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{f}"
    );
    assert_eq!(
        env.server.requests("hop").len(),
        1,
        "the first hop was made"
    );
    assert_eq!(
        env.server.requests("list").len(),
        1,
        "neither the name nor the redirect reached the server's list"
    );

    // Files: only under the feed directory, after .. and symlinks.
    let inside = env.feeds.path().join("ok.txt");
    std::fs::write(&inside, body(&[A])).expect("a feed file");
    let link = env.feeds.path().join("link.txt");
    std::os::unix::fs::symlink("/etc/hostname", &link).expect("a symlink");
    // A real file beside the feed directory, reached with ..
    let outside = env.home.dir.path().join("outside.txt");
    std::fs::write(&outside, body(&[B])).expect("a file outside");
    let sideways = format!(
        "file://{dir}/../{}/outside.txt",
        env.home.dir.path().file_name().unwrap().to_string_lossy()
    );
    for url in [
        "file:///etc/hostname".to_string(),
        sideways,
        format!("file://{}", link.display()),
    ] {
        let r = env.expect(2, &["feed", "add", "file", &url]);
        assert!(r.err.contains("outside the feed directory"), "{url}: {r}");
    }
    let r = env.expect(
        0,
        &[
            "feed",
            "add",
            "file",
            &format!("file://{}", inside.display()),
            "--json",
        ],
    );
    assert_eq!(r.json()["entries"], 1, "{r}");
    let mut names = env.feed_names();
    names.sort();
    assert_eq!(names, ["file", "hop", "name", "pub"]);
}
