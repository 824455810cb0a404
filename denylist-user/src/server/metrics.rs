//! `--metrics ADDR`: Prometheus text exposition of the counters, the
//! revision, capacity, deploy and verify health, and the busiest entries.

use std::{
    fmt::{Display, Write as _},
    sync::{Arc, Mutex},
};

use axum::{Router, http::header, response::IntoResponse, routing::get};

use crate::{
    daemon::Core,
    model::{FeedInfo, FeedStatus, NodeState, NodeStatus},
};

/// How many entries get their own per-entry series.
const TOP_ENTRIES: usize = 20;

pub fn router(core: Arc<Mutex<Core>>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let core = core.clone();
            async move {
                let text = tokio::task::spawn_blocking(move || {
                    let mut c = core.lock().unwrap_or_else(|p| p.into_inner());
                    render(&mut c)
                })
                .await
                .unwrap_or_else(|e| format!("# metrics failed: {e}\n"));
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
            }
        }),
    )
}

fn series(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(String, impl Display)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// Rows by outcome from the kernel's counters, given as dropped, passed,
/// monitored, allowed and unparsable. The kernel counts the last three among
/// the passed ones too; `passed` here is what no entry touched, so the rows
/// do not overlap.
fn by_outcome([dropped, passed, monitored, allowed, unparsable]: [u64; 5]) -> Vec<(String, u64)> {
    let plain = passed.saturating_sub(monitored + allowed + unparsable);
    [
        ("dropped", dropped),
        ("passed", plain),
        ("monitored", monitored),
        ("allowed", allowed),
        ("unparsable", unparsable),
    ]
    .into_iter()
    .map(|(outcome, n)| (format!("{{outcome=\"{outcome}\"}}"), n))
    .collect()
}

/// A label value, escaped as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition; a field that cannot be read is left out. Names
/// follow Prometheus's conventions: base units (`_seconds`, `_bytes`),
/// `_total` for counters, and outcome labels that do not overlap, so a
/// `sum()` over them counts each packet once.
pub fn render(core: &mut Core) -> String {
    let mut out = String::new();
    series(
        &mut out,
        "denylist_build_info",
        "The running denylistd's version, as a label; the value is always 1.",
        "gauge",
        &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
    );
    if let Ok(s) = core.status() {
        // Status carries the packet counters but not every byte counter, so
        // both series come from one read of the kernel's.
        let c = core.counters().unwrap_or_default();
        series(
            &mut out,
            "denylist_packets_total",
            "Packets seen by the XDP program since the daemon started, by outcome; the outcomes do not overlap.",
            "counter",
            &by_outcome([
                c.dropped_packets,
                c.passed_packets,
                c.monitored_packets,
                c.allowed_packets,
                c.unparsable_packets,
            ]),
        );
        series(
            &mut out,
            "denylist_bytes_total",
            "Bytes of those packets (whole frames), by outcome.",
            "counter",
            &by_outcome([
                c.dropped_bytes,
                c.passed_bytes,
                c.monitored_bytes,
                c.allowed_bytes,
                c.unparsable_bytes,
            ]),
        );
        series(
            &mut out,
            "denylist_revision",
            "The deployed revision.",
            "gauge",
            &[(String::new(), s.revision)],
        );
        series(
            &mut out,
            "denylist_entries",
            "Entries in the kernel, per list.",
            "gauge",
            &[
                ("{list=\"deny\"}".into(), s.entries.deny),
                ("{list=\"allow\"}".into(), s.entries.allow),
            ],
        );
        series(
            &mut out,
            "denylist_capacity",
            "Entries the maps hold at most, and in use.",
            "gauge",
            &[
                ("{kind=\"total\"}".into(), s.capacity.total),
                ("{kind=\"used\"}".into(), s.capacity.used),
            ],
        );
        let attached = s.interfaces.iter().filter(|i| i.attached).count() as u64;
        series(
            &mut out,
            "denylist_attached_interfaces",
            "Interfaces the program is attached to.",
            "gauge",
            &[(String::new(), attached)],
        );
        let per_iface: Vec<(String, u8)> = s
            .interfaces
            .iter()
            .map(|i| {
                let mode = match i.xdp_mode {
                    Some(m) if i.attached => format!("{m:?}").to_lowercase(),
                    _ => "none".to_string(),
                };
                (
                    format!("{{iface=\"{}\",mode=\"{mode}\"}}", label(&i.name)),
                    u8::from(i.attached),
                )
            })
            .collect();
        series(
            &mut out,
            "denylist_interface_attached",
            "1 while the program is attached to the interface, 0 while it is not (the interface is missing, or another program holds it).",
            "gauge",
            &per_iface,
        );
        series(
            &mut out,
            "denylist_degraded",
            "1 while denylist status says degraded: an interface is not attached, or drift is left.",
            "gauge",
            &[(String::new(), u8::from(s.degraded))],
        );
        series(
            &mut out,
            "denylist_drift_entries",
            "Kernel entries the last verify found wrong and could not repair.",
            "gauge",
            &[(String::new(), s.drift)],
        );
        series(
            &mut out,
            "denylist_pending_changes",
            "Staged, not yet deployed.",
            "gauge",
            &[(String::new(), s.pending_changes)],
        );
    }
    let ops = &core.ops;
    series(
        &mut out,
        "denylist_last_deploy_duration_seconds",
        "How long the last deploy since the daemon started took; 0 before the first.",
        "gauge",
        &[(String::new(), ops.last_deploy_ms as f64 / 1000.0)],
    );
    series(
        &mut out,
        "denylist_last_deploy_timestamp_seconds",
        "When the last deploy since the daemon started finished, in Unix time; 0 before the first.",
        "gauge",
        &[(String::new(), ops.last_deploy_at as f64 / 1000.0)],
    );
    series(
        &mut out,
        "denylist_deploy_failures_total",
        "Deploys that failed since the daemon started.",
        "counter",
        &[(String::new(), ops.deploy_failures)],
    );
    series(
        &mut out,
        "denylist_verify_repairs_total",
        "Entries repaired by verify since the daemon started.",
        "counter",
        &[(String::new(), ops.verify_repairs)],
    );
    series(
        &mut out,
        "denylist_auto_breaker_trips_total",
        "Times the rate detector's circuit breaker tripped back to monitor since the daemon started.",
        "counter",
        &[(String::new(), core.rate_trips())],
    );
    series(
        &mut out,
        "denylist_auto_events_dropped_total",
        "Reports of the rate detector the kernel could not send (over its cap, or the ring buffer full), since the program was loaded.",
        "counter",
        &[(String::new(), core.rate_events_dropped())],
    );
    if let Ok(a) = core.auto_status() {
        series(
            &mut out,
            "denylist_auto_tripped",
            "1 while the rate detector's circuit breaker holds it in monitor.",
            "gauge",
            &[(String::new(), u8::from(a.policy.tripped))],
        );
        series(
            &mut out,
            "denylist_auto_active_listings",
            "Live auto:rate listings, deployed.",
            "gauge",
            &[(String::new(), a.active)],
        );
    }
    if let Ok(feeds) = core.feeds() {
        feed_series(&mut out, &feeds);
    }
    fleet_series(&mut out, core);
    if let Ok(top) = core.stats(Some(TOP_ENTRIES), None) {
        let rows: Vec<(String, u64)> = top
            .iter()
            .filter(|t| t.packets > 0)
            .map(|t| {
                (
                    format!("{{target=\"{}\",list=\"{}\"}}", t.target, t.list.as_str()),
                    t.packets,
                )
            })
            .collect();
        series(
            &mut out,
            "denylist_entry_hits_total",
            "Packets decided by each of the busiest entries.",
            "counter",
            &rows,
        );
    }
    out
}

/// In a fleet: this node's link to the database, and every node's row
/// (the same from any node, so one node's scrape is enough for the
/// fleet-wide ones).
fn fleet_series(out: &mut String, core: &mut Core) {
    let Some((up, error)) = core.fleet_health() else {
        return;
    };
    series(
        out,
        "denylist_fleet_database_up",
        "1 while this node's last heartbeat reached the fleet's database.",
        "gauge",
        &[(String::new(), u8::from(up))],
    );
    series(
        out,
        "denylist_fleet_apply_failed",
        "1 while this node's last apply of the fleet's changes failed (denylist nodes says why).",
        "gauge",
        &[(String::new(), u8::from(error.is_some()))],
    );
    let (ahead, on_entry) = (core.ops.followed_ahead, core.ops.followed_on_entry);
    series(
        out,
        "denylist_fleet_deploys_followed_total",
        "Other nodes' deploys this node's kernel took since the daemon started, by when this node planned them: ahead (announced, while their node deployed) or on_entry (once their log entry came).",
        "counter",
        &[
            ("{planned=\"ahead\"}".to_string(), ahead),
            ("{planned=\"on_entry\"}".to_string(), on_entry),
        ],
    );
    series(
        out,
        "denylist_fleet_entries_written_ahead_total",
        "Entries of other nodes' deploys this node wrote into its kernel ahead of their log entry, not live until it came, since the daemon started.",
        "counter",
        &[(String::new(), core.ops.written_ahead)],
    );
    let Ok(nodes) = core.nodes() else {
        return;
    };
    let states: Vec<(String, usize)> = NodeState::ALL
        .iter()
        .map(|s| {
            let n = nodes.iter().filter(|n| n.state == *s).count();
            (format!("{{state=\"{}\"}}", s.as_str()), n)
        })
        .collect();
    series(
        out,
        "denylist_fleet_nodes",
        "The fleet's nodes, by state.",
        "gauge",
        &states,
    );
    let per_node = |f: &dyn Fn(&NodeStatus) -> f64| -> Vec<(String, f64)> {
        nodes
            .iter()
            .map(|n| (format!("{{node=\"{}\"}}", label(&n.node)), f(n)))
            .collect()
    };
    series(
        out,
        "denylist_fleet_node_applied_revision",
        "The revision each node's kernel took last.",
        "gauge",
        &per_node(&|n| n.applied_revision as f64),
    );
    series(
        out,
        "denylist_fleet_node_lag_seconds",
        "How long ago the first revision each node lacks was deployed; 0 for a node that has them all.",
        "gauge",
        &per_node(&|n| n.lag_ms as f64 / 1000.0),
    );
    series(
        out,
        "denylist_fleet_node_heartbeat_timestamp_seconds",
        "Each node's last heartbeat, by the database's clock, in Unix time.",
        "gauge",
        &per_node(&|n| n.heartbeat_at as f64 / 1000.0),
    );
    series(
        out,
        "denylist_fleet_node_drift_entries",
        "Kernel entries each node's last check found differing from its revision.",
        "gauge",
        &per_node(&|n| n.drift as f64),
    );
}

/// One series of each kind per feed, labelled `feed`.
fn feed_series(out: &mut String, feeds: &[FeedInfo]) {
    let rows = |f: &dyn Fn(&FeedInfo) -> f64| -> Vec<(String, f64)> {
        feeds
            .iter()
            .map(|feed| (format!("{{feed=\"{}\"}}", label(&feed.name)), f(feed)))
            .collect()
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    series(
        out,
        "denylist_feed_entries",
        "Entries the feed's last good list gave it.",
        "gauge",
        &rows(&|f| f.entries as f64),
    );
    series(
        out,
        "denylist_feed_last_success_timestamp_seconds",
        "When the feed last refreshed successfully, in Unix time; 0 before the first.",
        "gauge",
        &rows(&|f| f.last_success.unwrap_or(0) as f64 / 1000.0),
    );
    series(
        out,
        "denylist_feed_failures_total",
        "Failed attempts to refresh the feed.",
        "counter",
        &rows(&|f| f.failures_total as f64),
    );
    series(
        out,
        "denylist_feed_held",
        "1 while the feed's last fetch is held back for an admin to approve.",
        "gauge",
        &rows(&|f| flag(f.state == FeedStatus::Held)),
    );
    series(
        out,
        "denylist_feed_stale",
        "1 while the feed has not refreshed successfully for its --stale-after.",
        "gauge",
        &rows(&|f| flag(f.state == FeedStatus::Stale)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_do_not_overlap() {
        let rows = by_outcome([5, 100, 10, 20, 30]);
        let n = |o: &str| rows.iter().find(|(l, _)| l.contains(o)).unwrap().1;
        assert_eq!(n("passed"), 40);
        assert_eq!(rows.iter().map(|(_, v)| v).sum::<u64>(), 105);
        assert_eq!(by_outcome([0, 1, 2, 0, 0])[1].1, 0, "never below zero");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("eth0"), "eth0");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
