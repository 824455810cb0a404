//! `--metrics ADDR`: Prometheus text exposition of the counters, the
//! revision, capacity, deploy and verify health, and the busiest entries.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use axum::{Router, http::header, response::IntoResponse, routing::get};

use crate::daemon::Core;

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

fn series(out: &mut String, name: &str, help: &str, kind: &str, rows: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, v) in rows {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// The whole exposition; a field that cannot be read is left out.
pub fn render(core: &mut Core) -> String {
    let mut out = String::new();
    if let Ok(s) = core.status() {
        let c = &s.counters;
        let dp = core.counters().unwrap_or_default();
        let v = |verdict: &str, n: u64| (format!("{{verdict=\"{verdict}\"}}"), n);
        series(
            &mut out,
            "denylist_packets_total",
            "Packets seen by the XDP program, by verdict (passed includes monitored, allowed and unparsable).",
            "counter",
            &[
                v("dropped", c.dropped_packets),
                v("passed", c.passed_packets),
                v("monitored", c.monitored_packets),
                v("allowed", c.allowed_packets),
                v("unparsable", c.unparsable_packets),
            ],
        );
        series(
            &mut out,
            "denylist_bytes_total",
            "Bytes seen by the XDP program (whole frames), by verdict.",
            "counter",
            &[
                v("dropped", dp.dropped_bytes),
                v("passed", dp.passed_bytes),
                v("monitored", dp.monitored_bytes),
                v("allowed", dp.allowed_bytes),
                v("unparsable", dp.unparsable_bytes),
            ],
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
            "Deployed entries per list.",
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
        "denylist_last_deploy_duration_milliseconds",
        "How long the last deploy took, in milliseconds.",
        "gauge",
        &[(String::new(), ops.last_deploy_ms)],
    );
    series(
        &mut out,
        "denylist_deploy_failures_total",
        "Deploys that failed.",
        "counter",
        &[(String::new(), ops.deploy_failures)],
    );
    series(
        &mut out,
        "denylist_verify_repairs_total",
        "Drift repairs by verify.",
        "counter",
        &[(String::new(), ops.verify_repairs)],
    );
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
