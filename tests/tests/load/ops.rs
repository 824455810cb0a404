//! What the concurrent admins do: commands drawn at random from small
//! pools, so that they keep running into each other, and each run as it
//! was recorded.

use std::net::IpAddr;

use denylist::model::{List, Millis, Target};
use rand::{Rng, rngs::StdRng};

use crate::common::target;

pub(crate) const CLIENTS: usize = 16;

/// A small pool, so that the admins keep running into each other: hosts
/// inside prefixes, an allow entry on a denied host, both families; none
/// of the sandbox's own addresses, which the guardrails protect.
const DENY_POOL: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.17",
    "203.0.113.18",
    "198.51.100.66",
    "198.51.100.130",
    "203.0.113.0/28",
    "203.0.113.16/28",
    "198.51.100.0/24",
    "198.51.100.64/26",
    "2001:db8:5::1",
    "2001:db8:5::2",
    "2001:db8:6::9",
    "2001:db8:6::/48",
    "2001:db8:5::/64",
];
const ALLOW_POOL: &[&str] = &[
    "203.0.113.5",
    "198.51.100.70",
    "2001:db8:5::2",
    "198.51.100.128/25",
];
/// Where `check` and the kernel probes look: every pool address, and
/// addresses inside and just outside the prefixes.
pub(crate) const PROBES: &[&str] = &[
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.3",
    "203.0.113.4",
    "203.0.113.5",
    "203.0.113.6",
    "203.0.113.9",
    "203.0.113.15",
    "203.0.113.17",
    "203.0.113.18",
    "203.0.113.31",
    "203.0.113.32",
    "198.51.100.1",
    "198.51.100.66",
    "198.51.100.70",
    "198.51.100.127",
    "198.51.100.130",
    "198.51.100.200",
    "198.51.101.1",
    "2001:db8:5::1",
    "2001:db8:5::2",
    "2001:db8:5::77",
    "2001:db8:6::9",
    "2001:db8:6:2::3",
    "2001:db8:7::1",
];

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Add {
        list: List,
        targets: Vec<String>,
        reason: Option<String>,
        /// As typed: `1h` or `never`.
        ttl: Option<String>,
        monitor: bool,
        deploy: bool,
    },
    Remove {
        list: List,
        targets: Vec<String>,
        deploy: bool,
    },
    Mode {
        target: String,
        monitor: bool,
        deploy: bool,
    },
    Deploy,
    List {
        draft: bool,
    },
    Check {
        ip: IpAddr,
    },
}

impl Op {
    pub(crate) fn random(rng: &mut StdRng, client: usize, n: usize) -> Op {
        let pick =
            |rng: &mut StdRng, pool: &[&str]| pool[rng.random_range(0..pool.len())].to_string();
        let deploy = rng.random_bool(0.2);
        match rng.random_range(0..100) {
            0..30 => {
                let mut targets = vec![pick(rng, DENY_POOL)];
                if rng.random_bool(0.25) {
                    let other = pick(rng, DENY_POOL);
                    if !targets.contains(&other) {
                        targets.push(other);
                    }
                }
                let ttl = match rng.random_range(0..10) {
                    0 | 1 => Some("1h".to_string()),
                    2 => Some("never".to_string()),
                    _ => None,
                };
                Op::Add {
                    list: List::Deny,
                    targets,
                    reason: rng.random_bool(0.5).then(|| format!("c{client}-{n}")),
                    ttl,
                    monitor: rng.random_bool(0.15),
                    deploy,
                }
            }
            30..38 => Op::Add {
                list: List::Allow,
                targets: vec![pick(rng, ALLOW_POOL)],
                reason: rng.random_bool(0.5).then(|| format!("c{client}-{n}")),
                ttl: None,
                monitor: false,
                deploy,
            },
            38..55 => {
                let mut targets = vec![pick(rng, DENY_POOL)];
                if rng.random_bool(0.15) {
                    let other = pick(rng, DENY_POOL);
                    if !targets.contains(&other) {
                        targets.push(other);
                    }
                }
                Op::Remove {
                    list: List::Deny,
                    targets,
                    deploy,
                }
            }
            55..60 => Op::Remove {
                list: List::Allow,
                targets: vec![pick(rng, ALLOW_POOL)],
                deploy,
            },
            60..66 => Op::Mode {
                target: pick(rng, DENY_POOL),
                monitor: rng.random_bool(0.5),
                deploy,
            },
            66..76 => Op::Deploy,
            76..88 => Op::Check {
                ip: pick(rng, PROBES).parse().unwrap(),
            },
            _ => Op::List {
                draft: rng.random_bool(0.5),
            },
        }
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let list_cmd = |a: &mut Vec<String>, list: List, cmd: &str| {
            if list == List::Allow {
                a.push("allow".into());
            }
            a.push(cmd.into());
        };
        match self {
            Op::Add {
                list,
                targets,
                reason,
                ttl,
                monitor,
                deploy,
            } => {
                list_cmd(&mut a, *list, "add");
                a.extend(targets.iter().cloned());
                if let Some(r) = reason {
                    a.extend(["--reason".into(), r.clone()]);
                }
                if let Some(t) = ttl {
                    a.extend(["--ttl".into(), t.clone()]);
                }
                if *monitor {
                    a.push("--monitor".into());
                }
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Remove {
                list,
                targets,
                deploy,
            } => {
                list_cmd(&mut a, *list, "remove");
                a.extend(targets.iter().cloned());
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Mode {
                target,
                monitor,
                deploy,
            } => {
                a.push(if *monitor { "monitor" } else { "enforce" }.into());
                a.push(target.clone());
                if *deploy {
                    a.push("--deploy".into());
                }
            }
            Op::Deploy => a.push("deploy".into()),
            Op::List { draft } => {
                a.push("list".into());
                if *draft {
                    a.push("--draft".into());
                }
            }
            Op::Check { ip } => a.extend(["check".into(), ip.to_string()]),
        }
        a.push("--json".into());
        a
    }

    /// The keys a staging op names.
    pub(crate) fn keys(&self) -> Vec<(Target, List)> {
        match self {
            Op::Add { list, targets, .. } | Op::Remove { list, targets, .. } => {
                targets.iter().map(|t| (target(t), *list)).collect()
            }
            Op::Mode { target: t, .. } => vec![(target(t), List::Deny)],
            _ => Vec::new(),
        }
    }

    /// Whether the daemon runs it with the core locked, in one piece with
    /// the changes; a listing reads its own snapshot of the store instead.
    pub(crate) fn locked(&self) -> bool {
        !matches!(self, Op::List { .. })
    }
}

/// One CLI run: what was asked, when (wall clock, bracketing the daemon's
/// work), and what came back.
pub(crate) struct Done {
    pub(crate) op: Op,
    pub(crate) start: Millis,
    pub(crate) end: Millis,
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Done {
    pub(crate) fn what(&self) -> String {
        format!(
            "`denylist {}` ({} ms to {} ms) exited {}: {}{}",
            self.op.args().join(" "),
            self.start,
            self.end,
            self.code,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}
