//! Guardrails against collateral damage.
//!
//! Addresses are shared and reassigned, so a careless deny entry hurts
//! innocent users, and a careless allow entry switches the denylist off. The
//! daemon runs [`check`] for every client, whatever tool sent the entry;
//! `--force` is the only way past a refusal. [`warnings`] never block.

use std::{fmt, net::IpAddr, sync::LazyLock};

use crate::model::{List, ProtectedSet, Target, normal_ip};

// A deny entry wider than an IPv4 /16 or an IPv6 /48 (one site) takes out
// whole providers and everyone behind them.
const DENY_MIN_PREFIX_V4: u8 = 16;
const DENY_MIN_PREFIX_V6: u8 = 48;
// An IPv6 /32 is one provider's allocation; an allow entry wider than that
// (or an IPv4 /16) exempts so much of the Internet that the denylist is off.
const ALLOW_MIN_PREFIX_V4: u8 = 16;
const ALLOW_MIN_PREFIX_V6: u8 = 32;

/// Ranges no deny entry may touch: their sources are this host's own
/// networks, shared by many subscribers, or never a real remote peer, so a
/// deny entry there only breaks things. The documentation ranges are left
/// out on purpose: they are what examples and tests use.
static RESERVED: LazyLock<Vec<(Target, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "\"this network\", never a real source"),
        ("10.0.0.0/8", "private network, RFC 1918"),
        (
            "100.64.0.0/10",
            "carrier-grade NAT, shared by many subscribers",
        ),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private network, RFC 1918"),
        ("192.168.0.0/16", "private network, RFC 1918"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved, and the broadcast address"),
        ("::/128", "the unspecified address"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique local addresses, a private network"),
        ("fe80::/10", "link-local"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .map(|(range, what)| {
        (
            Target::parse(range).expect("reserved ranges are valid"),
            what,
        )
    })
    .collect()
});

/// What [`check`] needs to know about the host and the people on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardContext {
    /// This host's addresses: [`host_addresses`].
    pub host_addrs: Vec<IpAddr>,
    /// Peers with a live SSH session to this host: [`live_peers`].
    pub live_ssh_peers: Vec<IpAddr>,
    /// Where the admin running the CLI is connected from: [`admin_address`].
    pub admin_addr: Option<IpAddr>,
    /// In a fleet, what the other nodes protect (docs/fleet.md).
    pub fleet: Vec<ProtectedSet>,
}

/// Why an entry is refused unless forced: one variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "refusing deny entry {target} ({count}): it is wider than /{limit}, and a deny entry that wide blocks whole networks of innocent users; deny narrower prefixes, or use --force to add it anyway",
        count = addresses(.target)
    )]
    DenyTooWide { target: Target, limit: u8 },
    #[error(
        "refusing deny entry {target} ({count}): it {relation} {range} ({what}); use --force to add it anyway",
        count = addresses(.target),
        relation = if .range.covers(.target) { "lies inside" } else { "covers" }
    )]
    Reserved {
        target: Target,
        range: Target,
        what: &'static str,
    },
    #[error(
        "refusing deny entry {target} ({count}): it covers {addr}, an address of this host; use --force to add it anyway",
        count = addresses(.target)
    )]
    HostAddress { target: Target, addr: IpAddr },
    #[error(
        "refusing deny entry {target} ({count}): this would cut off a live SSH session from {peer}; use --force to add it anyway",
        count = addresses(.target)
    )]
    LiveSsh { target: Target, peer: IpAddr },
    #[error(
        "refusing deny entry {target} ({count}): it covers {addr}, the address you are connected from, and would lock you out; use --force to add it anyway",
        count = addresses(.target)
    )]
    AdminAddress { target: Target, addr: IpAddr },
    #[error(
        "refusing allow entry {target} ({count}): it is wider than /{limit}, and an allow entry that wide switches the denylist off; allow narrower prefixes, or use --force to add it anyway",
        count = addresses(.target)
    )]
    AllowTooWide { target: Target, limit: u8 },
    #[error(
        "refusing deny entry {target} ({count}): it covers {addr}, {what} of fleet node {node}; use --force to add it anyway",
        count = addresses(.target)
    )]
    FleetNode {
        target: Target,
        addr: IpAddr,
        node: String,
        what: &'static str,
    },
}

/// The rules `target` breaks on `list`; empty means it may be added.
pub fn check(target: &Target, list: List, ctx: &GuardContext) -> Vec<Refusal> {
    let target = *target;
    let mut refusals = Vec::new();
    match list {
        List::Allow => {
            let limit = if target.is_ipv4() {
                ALLOW_MIN_PREFIX_V4
            } else {
                ALLOW_MIN_PREFIX_V6
            };
            if target.prefix_len() < limit {
                refusals.push(Refusal::AllowTooWide { target, limit });
            }
        }
        List::Deny => {
            let limit = if target.is_ipv4() {
                DENY_MIN_PREFIX_V4
            } else {
                DENY_MIN_PREFIX_V6
            };
            if target.prefix_len() < limit {
                refusals.push(Refusal::DenyTooWide { target, limit });
            }
            refusals.extend(
                RESERVED
                    .iter()
                    .filter(|(range, _)| range.covers(&target) || target.covers(range))
                    .map(|&(range, what)| Refusal::Reserved {
                        target,
                        range,
                        what,
                    }),
            );
            refusals.extend(
                covered(&target, &ctx.host_addrs)
                    .into_iter()
                    .map(|addr| Refusal::HostAddress { target, addr }),
            );
            let admin = ctx.admin_addr.map(normal_ip);
            // The admin's own session gets the sharper "lock you out" refusal
            // below; saying it twice would only bury the other sessions.
            refusals.extend(
                covered(&target, &ctx.live_ssh_peers)
                    .into_iter()
                    .filter(|&peer| Some(peer) != admin)
                    .map(|peer| Refusal::LiveSsh { target, peer }),
            );
            if let Some(addr) = admin.filter(|&a| target.contains(a)) {
                refusals.push(Refusal::AdminAddress { target, addr });
            }
            for set in &ctx.fleet {
                for (addrs, what) in [
                    (&set.addrs, "an address"),
                    (&set.ssh_peers, "a live SSH peer"),
                    (&set.infrastructure, "a gateway or nameserver"),
                ] {
                    refusals.extend(covered(&target, addrs).into_iter().map(|addr| {
                        Refusal::FleetNode {
                            target,
                            addr,
                            node: set.node.clone(),
                            what,
                        }
                    }));
                }
            }
        }
    }
    refusals
}

/// The addresses of `addrs` that `target` covers, normalized, sorted and
/// each once. Filtered first: a bulk import checks a million targets that
/// cover none, and an empty Vec allocates nothing.
fn covered(target: &Target, addrs: &[IpAddr]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = addrs
        .iter()
        .map(|&a| normal_ip(a))
        .filter(|&a| target.contains(a))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Something worth saying about an entry that is allowed all the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A deny entry inside an allow entry: allow always wins.
    CoveredByAllow { target: Target, allow: Target },
    /// An entry that covers `count` more specific entries of its own list.
    CoversExisting {
        target: Target,
        count: usize,
        example: Target,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::CoveredByAllow { target, allow } => write!(
                f,
                "deny entry {target} lies inside allow entry {allow}, so it will never drop anything; remove {allow} from the allowlist if {target} should be dropped"
            ),
            Warning::CoversExisting {
                target,
                count,
                example,
            } => {
                let entries = if *count == 1 { "entry" } else { "entries" };
                write!(
                    f,
                    "{target} covers {count} existing {entries} of the same list, e.g. {example}; they stay, and being more specific they keep their own settings for their addresses: remove them if {target} should replace them"
                )
            }
        }
    }
}

/// Warnings about adding `target` to `list`, given the entries already there.
pub fn warnings(target: &Target, list: List, existing: &[(Target, List)]) -> Vec<Warning> {
    let target = *target;
    let mut found = Vec::new();
    if list == List::Deny {
        found.extend(
            existing
                .iter()
                .filter(|(allow, l)| *l == List::Allow && allow.covers(&target))
                .map(|&(allow, _)| Warning::CoveredByAllow { target, allow }),
        );
    }
    // An equal entry is the same entry being updated, not one being covered.
    let covered = existing
        .iter()
        .filter(|(t, l)| *l == list && *t != target && target.covers(t))
        .map(|&(t, _)| t);
    let count = covered.clone().count();
    if let Some(example) = covered.min() {
        found.push(Warning::CoversExisting {
            target,
            count,
            example,
        });
    }
    found
}

/// "1 address", "256 addresses", or "2^80 addresses" where the exact number
/// would be too long to read.
fn addresses(target: &Target) -> String {
    let host_bits = target.width() - target.prefix_len();
    match host_bits {
        0 => "1 address".to_string(),
        1..=32 => format!("{} addresses", target.address_count()),
        _ => format!("2^{host_bits} addresses"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn deny(s: &str) -> Vec<Refusal> {
        check(&t(s), List::Deny, &GuardContext::default())
    }

    fn allow(s: &str) -> Vec<Refusal> {
        check(&t(s), List::Allow, &GuardContext::default())
    }

    #[test]
    fn ordinary_entries_pass() {
        for s in [
            "198.51.100.7",
            "203.0.113.0/24",
            "8.8.0.0/16",
            "2001:db8::/48",
            "2a00::1",
        ] {
            assert_eq!(deny(s), vec![], "{s}");
            assert_eq!(allow(s), vec![], "{s}");
        }
    }

    #[test]
    fn deny_width_limits() {
        assert_eq!(deny("44.0.0.0/16"), vec![]);
        assert_eq!(
            deny("44.0.0.0/15"),
            vec![Refusal::DenyTooWide {
                target: t("44.0.0.0/15"),
                limit: 16
            }]
        );
        assert_eq!(deny("2a00:1::/48"), vec![]);
        assert_eq!(
            deny("2a00::/47"),
            vec![Refusal::DenyTooWide {
                target: t("2a00::/47"),
                limit: 48
            }]
        );
    }

    #[test]
    fn documentation_ranges_are_not_guarded_but_width_still_applies() {
        for s in [
            "192.0.2.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "2001:db8::/48",
        ] {
            assert_eq!(deny(s), vec![], "{s}");
        }
        assert_eq!(
            deny("2001:db8::/32"),
            vec![Refusal::DenyTooWide {
                target: t("2001:db8::/32"),
                limit: 48
            }]
        );
    }

    #[test]
    fn every_reserved_range_refuses_inside_and_covering() {
        let inside = [
            ("0.0.0.1", "0.0.0.0/8"),
            ("10.1.2.3", "10.0.0.0/8"),
            ("100.64.1.0/24", "100.64.0.0/10"),
            ("127.0.0.1", "127.0.0.0/8"),
            ("169.254.169.254", "169.254.0.0/16"),
            ("172.20.0.0/16", "172.16.0.0/12"),
            ("192.168.1.1", "192.168.0.0/16"),
            ("239.1.1.1", "224.0.0.0/4"),
            ("255.255.255.255", "240.0.0.0/4"),
            ("::", "::/128"),
            ("::1", "::1/128"),
            ("fd12:3456::/48", "fc00::/7"),
            ("fe80::1", "fe80::/10"),
            ("ff02::1", "ff00::/8"),
        ];
        for (target, range) in inside {
            let refusals = deny(target);
            assert_eq!(refusals.len(), 1, "{target}: {refusals:?}");
            let Refusal::Reserved { range: r, .. } = &refusals[0] else {
                panic!("{target}: {refusals:?}");
            };
            assert_eq!(*r, t(range), "{target}");
            assert!(refusals[0].to_string().contains("lies inside"), "{target}");
        }
        let covering = deny("172.0.0.0/8");
        assert!(covering.iter().any(|r| matches!(
            r,
            Refusal::Reserved { range, .. } if *range == t("172.16.0.0/12")
        )));
        let msg = covering.last().unwrap().to_string();
        assert!(
            msg.contains("covers 172.16.0.0/12 (private network"),
            "{msg}"
        );
        assert_eq!(
            deny("::/127"),
            vec![
                Refusal::Reserved {
                    target: t("::/127"),
                    range: t("::/128"),
                    what: "the unspecified address"
                },
                Refusal::Reserved {
                    target: t("::/127"),
                    range: t("::1/128"),
                    what: "loopback"
                }
            ]
        );
    }

    #[test]
    fn cgnat_message_names_the_range_and_why() {
        let msg = deny("100.100.0.0/24")[0].to_string();
        assert_eq!(
            msg,
            "refusing deny entry 100.100.0.0/24 (256 addresses): it lies inside 100.64.0.0/10 \
             (carrier-grade NAT, shared by many subscribers); use --force to add it anyway"
        );
    }

    #[test]
    fn a_wide_entry_is_refused_for_every_rule_it_breaks() {
        let refusals = deny("0.0.0.0/0");
        assert_eq!(
            refusals[0],
            Refusal::DenyTooWide {
                target: t("0.0.0.0/0"),
                limit: 16
            }
        );
        let ranges = refusals
            .iter()
            .filter(|r| matches!(r, Refusal::Reserved { .. }))
            .count();
        assert_eq!(ranges, 9);
        assert_eq!(deny("::/0").len(), 1 + 5);
    }

    #[test]
    fn host_ssh_and_admin_addresses_are_protected() {
        let ctx = GuardContext {
            host_addrs: vec![ip("198.51.100.10"), ip("2001:db8::10"), ip("127.0.0.1")],
            live_ssh_peers: vec![ip("203.0.113.5"), ip("203.0.113.5"), ip("203.0.113.9")],
            admin_addr: Some(ip("203.0.113.9")),
            ..GuardContext::default()
        };
        assert_eq!(
            check(&t("198.51.100.0/24"), List::Deny, &ctx),
            vec![Refusal::HostAddress {
                target: t("198.51.100.0/24"),
                addr: ip("198.51.100.10")
            }]
        );
        assert_eq!(
            check(&t("2001:db8::/48"), List::Deny, &ctx),
            vec![Refusal::HostAddress {
                target: t("2001:db8::/48"),
                addr: ip("2001:db8::10")
            }]
        );
        let target = t("203.0.113.0/24");
        assert_eq!(
            check(&target, List::Deny, &ctx),
            vec![
                Refusal::LiveSsh {
                    target,
                    peer: ip("203.0.113.5")
                },
                Refusal::AdminAddress {
                    target,
                    addr: ip("203.0.113.9")
                },
            ]
        );
        assert_eq!(check(&t("203.0.113.6"), List::Deny, &ctx), vec![]);
        for s in ["198.51.100.0/24", "203.0.113.0/24", "0.0.0.0/0", "::/0"] {
            assert!(!check(&t(s), List::Deny, &ctx).is_empty(), "{s}");
        }
    }

    #[test]
    fn every_fleet_node_s_addresses_peers_and_gateways_are_protected() {
        let ctx = GuardContext {
            fleet: vec![ProtectedSet {
                node: "edge3".into(),
                addrs: vec![ip("198.51.100.30")],
                ssh_peers: vec![ip("203.0.113.31")],
                infrastructure: vec![ip("203.0.113.1")],
            }],
            ..GuardContext::default()
        };
        let refused = check(&t("203.0.113.0/24"), List::Deny, &ctx);
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(
            refused
                .iter()
                .all(|r| r.to_string().contains("of fleet node edge3"))
        );
        let r = check(&t("198.51.100.30"), List::Deny, &ctx);
        assert_eq!(
            r,
            vec![Refusal::FleetNode {
                target: t("198.51.100.30"),
                addr: ip("198.51.100.30"),
                node: "edge3".into(),
                what: "an address",
            }]
        );
        assert!(check(&t("198.51.100.30"), List::Allow, &ctx).is_empty());
    }

    #[test]
    fn ipv4_mapped_context_addresses_count_as_ipv4() {
        let ctx = GuardContext {
            host_addrs: vec![ip("::ffff:198.51.100.10")],
            live_ssh_peers: vec![ip("::ffff:203.0.113.5")],
            admin_addr: Some(ip("::ffff:192.0.2.1")),
            ..GuardContext::default()
        };
        assert_eq!(check(&t("198.51.100.10"), List::Deny, &ctx).len(), 1);
        assert_eq!(check(&t("203.0.113.5"), List::Deny, &ctx).len(), 1);
        assert_eq!(check(&t("192.0.2.0/24"), List::Deny, &ctx).len(), 1);
    }

    #[test]
    fn refusal_messages_say_why_how_many_and_how_to_force() {
        let target = t("203.0.113.0/24");
        let cases = [
            (
                Refusal::LiveSsh {
                    target,
                    peer: ip("203.0.113.5"),
                },
                "this would cut off a live SSH session from 203.0.113.5",
            ),
            (
                Refusal::HostAddress {
                    target,
                    addr: ip("203.0.113.1"),
                },
                "an address of this host",
            ),
            (
                Refusal::AdminAddress {
                    target,
                    addr: ip("203.0.113.2"),
                },
                "the address you are connected from",
            ),
            (Refusal::DenyTooWide { target, limit: 16 }, "wider than /16"),
            (
                Refusal::AllowTooWide { target, limit: 16 },
                "switches the denylist off",
            ),
        ];
        for (refusal, why) in cases {
            let msg = refusal.to_string();
            assert!(msg.contains(why), "{msg}");
            assert!(msg.contains("203.0.113.0/24 (256 addresses)"), "{msg}");
            assert!(msg.ends_with("use --force to add it anyway"), "{msg}");
        }
    }

    #[test]
    fn address_counts_read_well() {
        assert_eq!(addresses(&t("192.0.2.1")), "1 address");
        assert_eq!(addresses(&t("192.0.2.0/31")), "2 addresses");
        assert_eq!(addresses(&t("0.0.0.0/0")), "4294967296 addresses");
        assert_eq!(addresses(&t("2001:db8::/96")), "4294967296 addresses");
        assert_eq!(addresses(&t("2001:db8::/48")), "2^80 addresses");
        assert_eq!(addresses(&t("::/0")), "2^128 addresses");
    }

    #[test]
    fn allow_width_limits() {
        assert_eq!(allow("44.0.0.0/16"), vec![]);
        assert_eq!(
            allow("44.0.0.0/15"),
            vec![Refusal::AllowTooWide {
                target: t("44.0.0.0/15"),
                limit: 16
            }]
        );
        assert_eq!(allow("2001:db8::/32"), vec![]);
        assert_eq!(
            allow("2001:db8::/31"),
            vec![Refusal::AllowTooWide {
                target: t("2001:db8::/31"),
                limit: 32
            }]
        );
        assert!(allow("::/0")[0].to_string().contains("2^128 addresses"));
    }

    #[test]
    fn allow_entries_skip_the_deny_only_rules() {
        let ctx = GuardContext {
            host_addrs: vec![ip("10.0.0.1")],
            live_ssh_peers: vec![ip("10.0.0.2")],
            admin_addr: Some(ip("10.0.0.3")),
            ..GuardContext::default()
        };
        for s in [
            "10.0.0.0/16",
            "100.64.0.0/16",
            "127.0.0.1",
            "fe80::/64",
            "fd00::/32",
        ] {
            assert_eq!(check(&t(s), List::Allow, &ctx), vec![], "{s}");
        }
    }

    #[test]
    fn deny_inside_allow_warns() {
        let existing = [
            (t("203.0.113.0/24"), List::Allow),
            (t("198.51.100.0/24"), List::Deny),
        ];
        let target = t("203.0.113.7");
        let found = warnings(&target, List::Deny, &existing);
        assert_eq!(
            found,
            vec![Warning::CoveredByAllow {
                target,
                allow: t("203.0.113.0/24")
            }]
        );
        assert!(found[0].to_string().contains("will never drop anything"));
        assert!(
            found[0]
                .to_string()
                .contains("remove 203.0.113.0/24 from the allowlist")
        );
        assert_eq!(warnings(&target, List::Allow, &existing), vec![]);
        assert_eq!(warnings(&t("198.51.100.9"), List::Deny, &existing), vec![]);
    }

    #[test]
    fn an_entry_covering_entries_of_its_own_list_warns_with_a_count_and_example() {
        let existing = [
            (t("198.51.100.9"), List::Deny),
            (t("198.51.100.0/28"), List::Deny),
            (t("198.51.100.0/24"), List::Deny),
            (t("198.51.100.200"), List::Allow),
            (t("203.0.113.1"), List::Deny),
        ];
        let target = t("198.51.100.0/24");
        let found = warnings(&target, List::Deny, &existing);
        assert_eq!(
            found,
            vec![Warning::CoversExisting {
                target,
                count: 2,
                example: t("198.51.100.0/28")
            }]
        );
        let msg = found[0].to_string();
        assert!(msg.contains("covers 2 existing entries"), "{msg}");
        assert!(msg.contains("e.g. 198.51.100.0/28"), "{msg}");
        let one = warnings(&t("198.51.100.200/31"), List::Allow, &existing);
        assert_eq!(one.len(), 1);
        assert!(
            one[0].to_string().contains("covers 1 existing entry of"),
            "{one:?}"
        );
        assert_eq!(warnings(&t("192.0.2.0/24"), List::Deny, &existing), vec![]);
    }
}
