//! The malformed-input corpus of tests/data/bad-input/, through the API
//! (raw bytes with curl, and raw HTTP on the socket), the CLI and import
//! files: each case gets the exit code or HTTP status of its class and a
//! clear error, the daemon keeps answering, and after the whole corpus the
//! logical state (deployed entries, draft, revisions, kernel maps) is what
//! it was before. Counters and audit events may change.
//!
//! The data files say how each case is written down; inputs too big to
//! commit (a 10 MB line, a body over 1 MiB) are made at test time.

use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use denylist_tests::{
    daemon::{Daemon, Home, bin},
    require_root,
};
use serde_json::Value;

/// Maps whose contents change with traffic and time, not with the
/// denylist, beside the rate detector's (`DETECTOR_MAPS`; a ring buffer
/// cannot be dumped at all).
const VOLATILE_MAPS: [&str; 3] = [
    denylist_common::MAP_COUNTERS,
    denylist_common::MAP_HIT_SLOTS,
    denylist_common::MAP_HITS,
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bad-input")
}

/// The non-comment, non-blank lines of a corpus file, with their numbers.
fn cases(name: &str) -> Vec<(usize, Vec<String>)> {
    let path = data().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.split('\t').map(str::to_string).collect()))
        .collect()
}

/// The HTTP status of each error class, and the CLI exit code.
fn class_of_status(status: u16) -> Option<&'static str> {
    Some(match status {
        400 | 405 => "invalid",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 => "too_large",
        422 => "guarded",
        500 => "failure",
        _ => return None,
    })
}

fn status_of_exit(code: i32) -> u16 {
    match code {
        2 => 400,
        3 => 422,
        4 => 403,
        5 => 404,
        6 => 409,
        _ => 500,
    }
}

struct Env {
    daemon: Daemon,
    home: Home,
}

struct Reply {
    status: u16,
    /// The response's header lines, as curl dumps them.
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Env {
    fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// One request with curl, the body sent byte for byte from `body`.
    fn curl(&self, method: &str, path: &str, body: Option<&Path>) -> Reply {
        let headers = self.home.dir.path().join("reply-headers");
        let mut c = Command::new("curl");
        c.args(["-s", "--path-as-is", "--max-time", "120", "-o", "-"])
            .arg("-D")
            .arg(&headers)
            .args(["-w", "\n%{http_code}", "-H", "Expect:", "--unix-socket"])
            .arg(self.home.socket())
            .args(["-X", method]);
        if let Some(file) = body {
            c.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        c.arg(format!("http://denylistd{path}"));
        let out = c.output().expect("run curl");
        let at = out
            .stdout
            .iter()
            .rposition(|&b| b == b'\n')
            .expect("curl wrote the status");
        let status = String::from_utf8_lossy(&out.stdout[at + 1..])
            .trim()
            .parse()
            .unwrap_or(0);
        Reply {
            status,
            headers: std::fs::read_to_string(&headers).unwrap_or_default(),
            body: out.stdout[..at].to_vec(),
        }
    }

    #[track_caller]
    fn get(&self, path: &str) -> String {
        let r = self.curl("GET", path, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        r.text()
    }

    fn cli(&self, args: &[String]) -> (i32, String, String) {
        let out = Command::new(bin("denylist"))
            .arg("--socket")
            .arg(self.home.socket())
            .args(args)
            .current_dir(self.home.dir.path())
            .env_remove("SSH_CONNECTION")
            .env_remove("SSH_CLIENT")
            .env_remove("DENYLIST_SOCKET")
            .stdin(Stdio::null())
            .output()
            .expect("run denylist");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "{args:?}\n{out}{err}");
    }

    /// The daemon still answers, after `what`.
    #[track_caller]
    fn alive(&self, what: &str) {
        let r = self.curl("GET", "/v1/status", None);
        assert_eq!(
            r.status,
            200,
            "denylistd stopped answering after {what}: {}\n--- log\n{}",
            r.text(),
            self.log()
        );
    }

    /// Everything a refused request must leave as it was.
    fn snapshot(&self) -> Vec<(String, String)> {
        let mut s = Vec::new();
        for path in [
            "/v1/entries",
            "/v1/entries?draft=true",
            "/v1/history",
            "/v1/diff",
        ] {
            s.push((path.to_string(), self.get(path)));
        }
        let mut status: Value = serde_json::from_str(&self.get("/v1/status")).unwrap();
        status.as_object_mut().unwrap().remove("counters");
        s.push(("/v1/status without counters".into(), status.to_string()));
        let maps = self.kernel_maps();
        let exact = maps
            .iter()
            .find(|(name, _)| name == denylist_common::MAP_EXACT_V4)
            .expect("the exact IPv4 map is pinned");
        assert!(
            exact.1.contains("key"),
            "the exact IPv4 map holds the known state: {}",
            exact.1
        );
        for (name, dump) in maps {
            s.push((format!("kernel map {name}"), dump));
        }
        s
    }

    /// Every pinned map of the live generation but the counters, dumped.
    fn kernel_maps(&self) -> Vec<(String, String)> {
        let gens: Vec<PathBuf> = std::fs::read_dir(&self.home.bpffs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen-"))
            .collect();
        assert_eq!(gens.len(), 1, "one generation: {gens:?}");
        let mut maps: Vec<PathBuf> = std::fs::read_dir(&gens[0])
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                !VOLATILE_MAPS.contains(&name.as_ref())
                    && !denylist_common::DETECTOR_MAPS.contains(&name.as_ref())
            })
            .collect();
        maps.sort();
        assert!(!maps.is_empty(), "no pinned maps in {}", gens[0].display());
        maps.iter()
            .map(|p| {
                let out = Command::new("bpftool")
                    .args(["map", "dump", "pinned"])
                    .arg(p)
                    .output()
                    .expect("run bpftool");
                assert!(out.status.success(), "bpftool {}", p.display());
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, String::from_utf8_lossy(&out.stdout).into_owned())
            })
            .collect()
    }
}

/// Whether `headers` carry an `Allow` header that names methods, none of
/// them `refused`.
fn allows(headers: &str, refused: &str) -> bool {
    headers.lines().any(|l| {
        l.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("allow")
                && !value.trim().is_empty()
                && value.split(',').all(|m| m.trim() != refused)
        })
    })
}

/// An error reply: JSON with the class of its status and a message, except
/// the HTTP layer's plain-text 413.
fn error_body_problem(r: &Reply) -> Option<String> {
    if r.status == 413 {
        return None;
    }
    let Some(class) = class_of_status(r.status) else {
        return Some(format!("status {} is no error class", r.status));
    };
    let v: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return Some(format!("the error body is not JSON ({e})")),
    };
    if v["error"]["class"] != class {
        return Some(format!("error.class is not {class:?}"));
    }
    match v["error"]["message"].as_str() {
        Some(m) if !m.trim().is_empty() => None,
        _ => Some("error.message is missing or empty".into()),
    }
}

/// The inputs too big to commit.
fn generate(dir: &Path, name: &str) -> PathBuf {
    let bytes: Vec<u8> = match name {
        "deep-json" => {
            let depth = 100_000;
            let mut b = b"{\"entries\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.push(b'}');
            b
        }
        "over-1mib-json" => {
            let reason = "A".repeat((1 << 20) + 4096);
            format!(r#"{{"entries":[{{"target":"198.51.100.30","reason":"{reason}"}}],"targets":["198.51.100.7"]}}"#)
                .into_bytes()
        }
        "10mb-line" => {
            let mut b = b"198.51.100.40\n".to_vec();
            b.extend(std::iter::repeat_n(b'9', 10 << 20));
            b.extend_from_slice(b"\n198.51.100.41\n");
            b
        }
        "10mb-line-nul" => vec![0; 10 << 20],
        other => panic!("no generator for {other}"),
    };
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn body_file(env: &Env, spec: &str, n: usize) -> Option<PathBuf> {
    let dir = env.home.dir.path();
    if spec == "-" {
        None
    } else if let Some(name) = spec.strip_prefix('@') {
        Some(data().join("body").join(name))
    } else if let Some(name) = spec.strip_prefix("gen:") {
        Some(generate(dir, name))
    } else {
        let text: String = serde_json::from_str(spec)
            .unwrap_or_else(|e| panic!("api.tsv: body {spec} is not a JSON string: {e}"));
        let path = dir.join(format!("body-{n}"));
        std::fs::write(&path, text).unwrap();
        Some(path)
    }
}

/// Sends raw bytes on the socket: an answer, if any, is a 4xx.
fn raw(env: &Env, bytes: &[u8]) -> Result<(), String> {
    let mut s = UnixStream::connect(env.home.socket()).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).map_err(|e| e.to_string())?;
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    if answer.is_empty() || answer.starts_with(b"HTTP/1.1 4") {
        Ok(())
    } else {
        Err(format!(
            "answered {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        ))
    }
}

#[test]
fn malformed_input_is_refused_with_its_class_and_changes_nothing() {
    require_root();
    let started = Instant::now();
    let home = Home::new("bad-input");
    let daemon = Daemon::start(&home, None, &["--capacity", "4096"]);
    let env = Env { daemon, home };

    // A known state: two revisions, both lists, exact and prefix entries of
    // both families, a monitored entry, and one pending change.
    env.ok(&["add", "198.51.100.7", "198.51.100.8", "--reason", "known"]);
    env.ok(&["add", "203.0.113.0/24", "2001:db8::7", "--ttl", "30d"]);
    env.ok(&["allow", "add", "198.51.100.64/26", "2001:db8:1::/48"]);
    env.ok(&["deploy", "--message", "first"]);
    env.ok(&["add", "198.51.100.9", "--monitor", "--deploy"]);
    env.ok(&["add", "198.51.100.10", "--reason", "pending"]);
    let before = env.snapshot();
    let status: Value = serde_json::from_str(&env.get("/v1/status")).unwrap();
    assert_eq!(status["revision"], 2, "{status}");
    assert_eq!(status["pending_changes"], 1, "{status}");

    let mut failures: Vec<String> = Vec::new();
    let mut counts = [0usize; 4];

    // The API, byte for byte.
    for (n, fields) in cases("api.tsv") {
        let [method, path, want, body] = &fields[..] else {
            panic!("api.tsv line {n}: want 4 fields, got {fields:?}");
        };
        let want: u16 = want.parse().expect("a status");
        let file = body_file(&env, body, n);
        let r = env.curl(method, path, file.as_deref());
        let what = format!("api.tsv:{n} {method} {path}");
        if r.status != want {
            failures.push(format!(
                "{what}: status {} (want {want}): {}",
                r.status,
                r.text()
            ));
        } else if let Some(p) = error_body_problem(&r) {
            failures.push(format!("{what}: {p}: {}", r.text()));
        } else if r.status == 405 && !allows(&r.headers, method) {
            failures.push(format!(
                "{what}: a 405 without an Allow header of other methods: {}",
                r.headers
            ));
        }
        env.alive(&what);
        counts[0] += 1;
    }

    // Raw HTTP that is not a valid request.
    let mut raws: Vec<PathBuf> = std::fs::read_dir(data().join("raw"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    raws.sort();
    for p in raws {
        let what = format!("raw/{}", p.file_name().unwrap().to_string_lossy());
        if let Err(e) = raw(&env, &std::fs::read(&p).unwrap()) {
            failures.push(format!("{what}: {e}"));
        }
        env.alive(&what);
        counts[1] += 1;
    }

    // The CLI.
    let data_dir = data().display().to_string();
    for (n, fields) in cases("cli.tsv") {
        let [want, args] = &fields[..] else {
            panic!("cli.tsv line {n}: want 2 fields, got {fields:?}");
        };
        let want: i32 = want.parse().expect("an exit code");
        let args: Vec<String> = serde_json::from_str::<Vec<String>>(args)
            .expect("a JSON array of strings")
            .into_iter()
            .map(|a| a.replace("{data}", &data_dir))
            .collect();
        let (code, out, err) = env.cli(&args);
        let what = format!("cli.tsv:{n} denylist {}", args.join(" "));
        if code != want {
            failures.push(format!("{what}: exit {code} (want {want})\n{out}{err}"));
        } else if err.trim().is_empty() || err.contains("panicked") {
            failures.push(format!("{what}: no clear error on stderr\n{out}{err}"));
        }
        env.alive(&what);
        counts[2] += 1;
    }

    // Import files, through the CLI and the API.
    for (n, fields) in cases("import.tsv") {
        let [file, want, args, query] = &fields[..] else {
            panic!("import.tsv line {n}: want 4 fields, got {fields:?}");
        };
        let want: i32 = want.parse().expect("an exit code");
        let path = match file.strip_prefix("gen:") {
            Some(name) => generate(env.home.dir.path(), name),
            None => data().join("import").join(file),
        };
        let mut cli = vec!["import".to_string(), path.display().to_string()];
        cli.extend(serde_json::from_str::<Vec<String>>(args).expect("a JSON array"));
        let (code, out, err) = env.cli(&cli);
        let what = format!("import.tsv:{n} denylist import {file} {args}");
        if code != want {
            failures.push(format!("{what}: exit {code} (want {want})\n{out}{err}"));
        } else if err.trim().is_empty() || err.contains("panicked") {
            failures.push(format!("{what}: no clear error on stderr\n{out}{err}"));
        }
        env.alive(&what);
        counts[3] += 1;
        if query == "-" {
            continue;
        }

        let route = if query.is_empty() {
            "/v1/import".to_string()
        } else {
            format!("/v1/import?{query}")
        };
        let r = env.curl("POST", &route, Some(&path));
        let what = format!("import.tsv:{n} POST {route} < {file}");
        let status = status_of_exit(want);
        if r.status != status {
            failures.push(format!(
                "{what}: status {} (want {status}): {}",
                r.status,
                r.text()
            ));
        } else if let Some(p) = error_body_problem(&r) {
            failures.push(format!("{what}: {p}: {}", r.text()));
        }
        env.alive(&what);
        counts[3] += 1;
    }

    let after = env.snapshot();
    let names = |s: &[(String, String)]| s.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&before),
        names(&after),
        "the same things are compared"
    );
    for ((what, b), (_, a)) in before.iter().zip(&after) {
        if a != b {
            failures.push(format!(
                "the corpus changed {what}:\n--- before\n{b}\n--- after\n{a}"
            ));
        }
    }
    let total: usize = counts.iter().sum();
    println!(
        "bad-input corpus: {total} cases ({} API, {} raw HTTP, {} CLI, {} import via CLI and API) in {:.1?}",
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        started.elapsed()
    );
    assert!(total >= 80, "the corpus has {total} cases, fewer than 80");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}\n--- denylistd log\n{}",
        failures.len(),
        failures.join("\n\n"),
        env.log()
    );
}
