//! Counting: hits per entry across a restart, and the metrics endpoint.

use std::{path::Path, process::Command};

use denylist_tests::{
    daemon::{Daemon, Home},
    require_root,
};

use crate::common::{A, COUNT, add, sandbox};

#[test]
fn hits_are_counted_per_entry_and_survive_a_restart() {
    let sb = sandbox("hits");
    let d = sb.start(&[]);
    add(&sb.client(), &[A, "203.0.113.0/24"], true);
    assert_eq!(sb.replies(A), 0);
    let stats: Vec<denylist::wire::StatItem> = sb.client().get("/v1/stats").unwrap();
    assert_eq!(
        (stats[0].target.to_string(), stats[0].packets),
        (A.to_string(), u64::from(COUNT)),
        "busiest first: {stats:?}"
    );
    assert!(
        stats[0]
            .last_hit
            .is_some_and(|t| (denylist::model::now_ms() - t).abs() < 10_000)
    );
    assert_eq!(stats[1].packets, 0);
    assert!(d.stop().success());
    let _d = sb.start(&[]);
    assert_eq!(sb.replies(A), 0);
    let stats: Vec<denylist::wire::StatItem> = sb.client().get("/v1/stats?top=1").unwrap();
    assert_eq!(stats.len(), 1);
    assert_eq!(
        stats[0].packets,
        2 * u64::from(COUNT),
        "folded into the store across the restart"
    );
    let idle: Vec<denylist::wire::StatItem> = sb.client().get("/v1/stats?idle=1h").unwrap();
    assert_eq!(
        idle.iter()
            .map(|s| s.target.to_string())
            .collect::<Vec<_>>(),
        ["203.0.113.0/24"]
    );
}

#[test]
fn metrics_are_served_in_prometheus_text() {
    require_root();
    let home = Home::new("met");
    let port = 20_000 + std::process::id() % 20_000;
    let addr = format!("127.0.0.1:{port}");
    let _d = Daemon::start(&home, None, &["--metrics", &addr]);
    add(&home.client(), &[A], true);
    let out = Command::new("curl")
        .args(["-s", &format!("http://{addr}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "denylist_build_info{version=\"",
        "denylist_packets_total{outcome=\"dropped\"}",
        "denylist_packets_total{outcome=\"passed\"}",
        "denylist_bytes_total{outcome=\"passed\"}",
        "denylist_revision 1",
        "denylist_entries{list=\"deny\"} 1",
        "denylist_capacity{kind=\"total\"}",
        "denylist_last_deploy_duration_seconds",
        "denylist_deploy_failures_total 0",
        "denylist_verify_repairs_total 0",
        "denylist_attached_interfaces 0",
        "denylist_degraded 0",
        "denylist_drift_entries 0",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Base units: the last deploy is dated in seconds of Unix time.
    let at: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("denylist_last_deploy_timestamp_seconds "))
        .expect("the last deploy's time")
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - at).abs() < 120.0, "{at} is not about {now}");
    assert!(!text.contains("milliseconds"), "{text}");

    // Every series the shipped dashboard and alert rules name is exported.
    let exported: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let rules = packaging.join("prometheus/denylist.rules.yml");
    let dashboard = packaging.join("grafana/denylist-dashboard.json");
    let mut named = 0;
    for file in [&rules, &dashboard] {
        let body = std::fs::read_to_string(file).unwrap();
        for name in metric_names(&body) {
            assert!(
                exported.contains(&name.as_str()),
                "{} names {name}, which is not exported: {exported:?}",
                file.display()
            );
            named += 1;
        }
    }
    assert!(named > 20, "the files name the series: {named}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
    assert!(json["panels"].as_array().unwrap().len() >= 10, "{json}");
    // Each rule has what Prometheus and a pager need.
    let check = Command::new("python3")
        .args([
            "-c",
            "import sys, yaml\n\
             rules = yaml.safe_load(open(sys.argv[1]))['groups'][0]['rules']\n\
             assert len(rules) == 7, rules\n\
             for r in rules:\n    \
                 assert r['alert'] and r['expr'] and r['labels']['severity'] and r['annotations']['summary'], r",
        ])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // And Prometheus itself takes them (`cargo xtask setup` installs
    // promtool).
    let promtool = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool runs: `cargo xtask setup` installs it");
    let said = String::from_utf8_lossy(&promtool.stdout);
    assert!(
        promtool.status.success() && said.contains("SUCCESS: 7 rules found"),
        "{said}{}",
        String::from_utf8_lossy(&promtool.stderr)
    );
}

/// Every `denylist_…` series name in `text`.
fn metric_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("denylist_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}
