//! The web console at 1M entries: the daemon's `GET /v1/entries/page` and
//! the console's Denylist page, for the first page, a page deep in by
//! cursor, the containment search, each filter and each sort. Issue 14
//! asks each to answer in 200 ms or less on the server side: both are
//! timed from a client on the same host, the whole answer read, no
//! browser rendering.
//!
//! The list is the deploy section's 1M exact addresses plus what the
//! filters pick out of it: 1% from another source with a TTL, 0.1% in
//! monitor mode, and 0.1% prefixes for the search to find by an address
//! inside them.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use denylist_tests::{
    daemon::{Daemon, Home, TempDir},
    web::{Login, SystemUser, Web, WebOpts, http},
};
use serde_json::{Value, json};

use crate::{
    deploy::{Denylistd, binaries, capacity, exact_v4, prefix_v4, write_list},
    report::{Goal, Opts, Section, Table, fmt_num},
};

/// Issue 14's bound for every page, search and filter.
const LIMIT_MS: f64 = 200.0;
/// Rows on a console page.
const ROWS: u32 = 50;
/// How deep the cursor walk goes before the timed page.
const DEEP_PAGE: usize = 20;

const ADMIN: Login<'static> = Login {
    name: "bench",
    role: "admin",
    password: Some("bench password"),
};

struct Sizes {
    /// Exact addresses from source `bench`.
    full: u32,
    /// Timed runs of each query; the median is the figure.
    reps: usize,
}

fn sizes(opts: &Opts) -> Sizes {
    if opts.quick {
        Sizes {
            full: 10_000,
            reps: 3,
        }
    } else {
        Sizes {
            full: 1_000_000,
            reps: 11,
        }
    }
}

/// One query as both sides take it: the daemon's query string (after
/// `list=deny&limit=50&`) and the console's (after `/denylist?`).
struct Query {
    name: String,
    daemon: String,
    web: String,
}

impl Query {
    fn new(name: impl Into<String>, daemon: &str, web: &str) -> Self {
        Self {
            name: name.into(),
            daemon: daemon.to_string(),
            web: web.to_string(),
        }
    }
}

fn enc(s: &str) -> String {
    http::form(&[("x", s)])
        .strip_prefix("x=")
        .unwrap_or_default()
        .to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The loaded daemon and the console in front of it; drops in order.
struct Console {
    web: Web,
    d: Denylistd,
    _user: SystemUser,
    cookie: String,
}

impl Console {
    fn page(&self, query: &str) -> Result<Value> {
        let path = format!("/v1/entries/page?list=deny&limit={ROWS}&{query}");
        self.d
            .home
            .client()
            .get(&path)
            .with_context(|| format!("GET {path}"))
    }

    fn web_page(&self, query: &str) -> Result<http::Response> {
        let path = format!("/denylist?{query}");
        let r = http::request(
            self.web.port,
            "GET",
            &path,
            &[("Cookie", &self.cookie)],
            None,
        )
        .with_context(|| format!("GET {path}"))?;
        ensure!(r.status == 200, "GET {path} answered {}", r.status);
        Ok(r)
    }
}

/// Loads the list, deploys it and signs in to the console.
fn setup(n: u32, dir: &TempDir) -> Result<Console> {
    let user = SystemUser::new("dlbweb", true);
    let group = user.group.clone().context("the web group")?;
    let other = n / 100;
    let monitor = n / 1000;
    let prefixes = n / 1000;
    let home = Home::new("bweb");
    let cap = capacity(n + other + monitor + prefixes * 4).to_string();
    let daemon = Daemon::start(&home, None, &["--capacity", &cap, "--web-group", &group]);
    let d = Denylistd { daemon, home };

    eprintln!("bench: web: loading {n} entries and the filters' subsets");
    let main_list = dir.path().join("bench.txt");
    write_list(&main_list, (0..n).map(|i| exact_v4(i).to_string()))?;
    let path = |p: &std::path::Path| p.to_str().map(str::to_string).context("a UTF-8 path");
    d.cli(&["import", &path(&main_list)?, "--source", "bench"])?;
    let other_list = dir.path().join("other.txt");
    write_list(&other_list, (n..n + other).map(|i| exact_v4(i).to_string()))?;
    d.cli(&[
        "import",
        &path(&other_list)?,
        "--source",
        "other",
        "--ttl",
        "7d",
        "--reason",
        "other list",
    ])?;
    let nets = dir.path().join("nets.txt");
    write_list(&nets, (0..prefixes).map(|i| prefix_v4(i).to_string()))?;
    d.cli(&["import", &path(&nets)?, "--source", "nets"])?;
    let entries: Vec<Value> = (n + other..n + other + monitor)
        .map(|i| json!({"target": exact_v4(i).to_string(), "monitor": true, "reason": "watch"}))
        .collect();
    let _: Value = d
        .home
        .client()
        .post("/v1/entries", &json!({ "entries": entries }))
        .context("staging the monitor entries")?;
    d.cli(&["deploy"])?;

    let web = Web::start(&user, &d.home.socket(), &[ADMIN], &WebOpts::default());
    let body = http::form(&[
        ("username", ADMIN.name),
        ("password", ADMIN.password.unwrap_or_default()),
    ]);
    let r = http::request(
        web.port,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&body),
    )?;
    let cookie = r
        .set_cookies()
        .first()
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .with_context(|| format!("signing in to the console: {r}"))?;
    Ok(Console {
        web,
        d,
        _user: user,
        cookie,
    })
}

/// The queries, each checked once for an answer that makes sense: a
/// figure for a query that finds the wrong rows would mean nothing.
fn queries(c: &Console, n: u32) -> Result<Vec<Query>> {
    let mut cursor = None;
    for _ in 0..DEEP_PAGE {
        let q = cursor
            .as_deref()
            .map(|c: &str| format!("cursor={}", enc(c)))
            .unwrap_or_default();
        let page = c.page(&q)?;
        cursor = page["next"].as_str().map(str::to_string);
    }
    let cursor = cursor.context("a next page after the walk")?;
    let cursor_q = format!("cursor={}", enc(&cursor));

    let exact = exact_v4(n / 2).to_string();
    let net = prefix_v4(7);
    let inside = Ipv4Addr::from(u32::from(net.network()) + 1).to_string();
    let found = c.page(&format!("contains={inside}"))?;
    ensure!(
        found["entries"][0]["target"] == net.to_string(),
        "searching {inside} did not find {net}: {found}"
    );
    let monitor = c.page("mode=monitor")?;
    ensure!(
        monitor["entries"]
            .as_array()
            .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["monitor"] == true)),
        "mode=monitor found other entries: {monitor}"
    );
    Ok(vec![
        Query::new("first page", "", ""),
        Query::new(
            format!("page {} by cursor", DEEP_PAGE + 1),
            &cursor_q,
            &cursor_q,
        ),
        Query::new(
            "search: an address listed exactly",
            &format!("contains={exact}"),
            &format!("search={exact}"),
        ),
        Query::new(
            "search: an address inside a prefix",
            &format!("contains={inside}"),
            &format!("search={inside}"),
        ),
        Query::new(
            "search: an address listed nowhere",
            "contains=9.9.9.9",
            "search=9.9.9.9",
        ),
        Query::new(
            "source (1% of entries)",
            "source=import:other",
            "source=import:other",
        ),
        Query::new("mode monitor (0.1%)", "mode=monitor", "mode=monitor"),
        Query::new("expiring (1%)", "expiring=true", "expiring=yes"),
        Query::new("sort by expiry", "sort=expires_at", "sort=expires_at"),
        Query::new(
            "sort by added at, descending",
            "sort=added_at&desc=true",
            "sort=added_at&desc=on",
        ),
        Query::new(
            "source, by expiry, descending",
            "source=import:other&sort=expires_at&desc=true",
            "source=import:other&sort=expires_at&desc=on",
        ),
    ])
}

/// Median and slowest of `reps` timed runs of `f`, after one untimed run
/// (the first may read pages from disk).
fn time<T>(reps: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, f64)> {
    f()?;
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        f()?;
        v.push(ms(start.elapsed()));
    }
    let max = v.iter().copied().fold(0.0, f64::max);
    Ok((median(v), max))
}

pub fn run(opts: &Opts) -> Result<Section> {
    let sz = sizes(opts);
    binaries(opts)?;
    let dir = TempDir::new("bench-web");
    let c = setup(sz.full, &dir)?;
    let qs = queries(&c, sz.full)?;

    let mut rows = Vec::new();
    let mut data = Vec::new();
    let (mut worst_daemon, mut worst_web) = (0.0f64, 0.0f64);
    for q in &qs {
        eprintln!("bench: web: {}", q.name);
        let shown = c.page(&q.daemon)?["entries"].as_array().map_or(0, Vec::len);
        let (d_med, d_max) = time(sz.reps, || c.page(&q.daemon))?;
        let (w_med, w_max) = time(sz.reps, || c.web_page(&q.web))?;
        worst_daemon = worst_daemon.max(d_med);
        worst_web = worst_web.max(w_med);
        rows.push(vec![
            q.name.clone(),
            shown.to_string(),
            fmt_num(d_med),
            fmt_num(d_max),
            fmt_num(w_med),
            fmt_num(w_max),
        ]);
        data.push(json!({
            "query": q.name, "rows": shown,
            "daemon_median_ms": d_med, "daemon_max_ms": d_max,
            "web_median_ms": w_med, "web_max_ms": w_max,
        }));
    }
    let total = sz.full + sz.full / 100 + sz.full / 1000 * 2;
    Ok(Section {
        key: "web",
        title: "Web console at scale",
        tables: vec![Table {
            title: format!(
                "Denylist page with {total} entries (ms, {} runs each)",
                sz.reps
            ),
            columns: [
                "query",
                "rows",
                "daemon median",
                "daemon max",
                "console median",
                "console max",
            ]
            .map(String::from)
            .to_vec(),
            rows,
            notes: vec![
                format!(
                    "The list: {} exact IPv4 addresses, 1% more from source `import:other` \
                     with a 7-day TTL, 0.1% in monitor mode and 0.1% prefixes.",
                    sz.full
                ),
                "daemon: `GET /v1/entries/page` over its socket, 50 rows, the JSON read whole. \
                 console: `denylist-web`'s Denylist page (the daemon's page rendered as HTML, \
                 with the banner's status), signed in, over TCP on 127.0.0.1. Neither includes \
                 a browser's rendering."
                    .into(),
                format!(
                    "Page {} is reached by following `next` from the first page.",
                    DEEP_PAGE + 1
                ),
            ],
        }],
        goals: vec![
            Goal {
                name: format!(
                    "slowest page query at {total} entries, daemon GET /v1/entries/page (median)"
                ),
                measured: worst_daemon,
                limit: LIMIT_MS,
                unit: "ms".into(),
            },
            Goal {
                name: format!("slowest Denylist page at {total} entries, console (median)"),
                measured: worst_web,
                limit: LIMIT_MS,
                unit: "ms".into(),
            },
        ],
        charts: vec![],
        data: json!(data),
    })
}
