//! The TARGET parser (`denylist::model::Target`), which every route, CLI argument
//! and import line goes through: it must never panic, and what it accepts
//! must be in normal form and read back as itself.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use denylist::model::{Target, TargetError, ip_from_bits};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if let Ok(input) = std::str::from_utf8(data) {
        check(input);
    }
});

fn check(input: &str) {
    let strict = Target::parse(input);
    let forced = Target::parse_forced(input);
    match &strict {
        Ok(target) => {
            assert_eq!(
                forced,
                Ok(*target),
                "{input:?}: --force changed a valid target"
            );
            normal_form(*target);
        }
        Err(
            error @ TargetError::HostBits {
                address,
                network,
                count,
                ..
            },
        ) => {
            let normal = Target::from(*network);
            assert_eq!(
                forced,
                Ok(normal),
                "{input:?}: --force is not the suggested network"
            );
            assert!(
                network.contains(address),
                "{input:?}: {network} does not hold {address}"
            );
            assert_eq!(*count, normal.address_count(), "{input:?}: {error}");
            let message = error.to_string();
            assert!(
                message.contains(&format!("did you mean {address} or {network}?")),
                "{input:?}: {message}"
            );
            // The message offers both as the fix: each must be accepted.
            assert_eq!(
                Target::parse(&address.to_string()),
                Ok(Target::host(*address)),
                "{input:?}: the suggested address {address} is refused"
            );
            assert_eq!(
                Target::parse(&network.to_string()),
                Ok(normal),
                "{input:?}: the suggested network {network} is refused"
            );
        }
        Err(error @ TargetError::Invalid { .. }) => {
            assert_eq!(
                forced.as_ref(),
                Err(error),
                "{input:?}: --force let in an invalid target"
            );
        }
    }
    if let Ok(target) = forced {
        normal_form(target);
    }
    // Whatever std reads as one address is that address.
    if let Ok(ip) = input.trim().parse::<IpAddr>() {
        assert_eq!(strict, Ok(Target::host(ip)), "{input:?}: std reads {ip}");
    }
    // ipnet, whose types hold the targets, reads prefixes the same way,
    // except that it takes leading zeros, in the length and in the octets of
    // an IPv4 address, which we refuse as ambiguous (std refuses the octets).
    if let Ok(net) = input.trim().parse::<IpNet>() {
        match &forced {
            Ok(target) => assert_eq!(*target, Target::from(net), "{input:?}: ipnet reads {net}"),
            Err(error) => {
                let (addr, len) = input.trim().split_once('/').unwrap_or((input.trim(), ""));
                let zero_led_len = len.len() > 1 && len.starts_with('0');
                assert!(
                    addr.parse::<IpAddr>().is_err() || zero_led_len,
                    "{input:?}: ipnet reads {net}, we refuse it: {error}"
                );
            }
        }
    }
    // JSON targets (the API, json imports) follow the CLI's rules.
    let json = serde_json::from_value::<Target>(Value::String(input.to_owned()));
    assert_eq!(
        json.ok(),
        strict.ok(),
        "{input:?}: JSON and the CLI disagree"
    );
}

/// A parsed target is in normal form: shown in one canonical way that reads
/// back as itself, with no host bits, IPv4-mapped prefixes shown as IPv4.
fn normal_form(target: Target) {
    let shown = target.to_string();
    assert_eq!(
        Target::parse(&shown),
        Ok(target),
        "{target:?} is shown as {shown:?}"
    );
    assert!(
        !shown.contains(|c: char| c.is_whitespace() || c.is_ascii_uppercase()),
        "{shown:?} is not in normal form"
    );
    assert_eq!(
        serde_json::to_value(target).ok(),
        Some(Value::String(shown.clone()))
    );
    assert_eq!(Target::from(target.net()), target);
    assert_eq!(target.width(), if target.is_ipv4() { 32 } else { 128 });
    assert!(target.prefix_len() <= target.width());
    assert_eq!(target.is_exact(), target.prefix_len() == target.width());
    assert_eq!(ip_from_bits(target.is_ipv4(), target.bits()), target.addr());
    assert!(target.covers(&target));
    if !target.is_ipv4() && target.prefix_len() >= 96 {
        assert!(
            matches!(target.addr(), IpAddr::V6(a) if a.to_ipv4_mapped().is_none()),
            "{shown} is IPv4-mapped but kept as IPv6"
        );
    }

    let host_bits = u32::from(target.width() - target.prefix_len());
    let mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    assert_eq!(target.bits() & mask, 0, "{shown} has host bits set");
    let first = target.bits();
    let last = first | mask;
    let family_max = if target.is_ipv4() {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    // IPv4-mapped addresses are IPv4 to `contains`, so an IPv6 prefix
    // never holds them: the edges are checked only where they are not.
    let holds = |bits: u128| target.contains(ip_from_bits(target.is_ipv4(), bits));
    let mapped = |bits: u128| !target.is_ipv4() && bits >> 32 == 0xffff;
    for edge in [first, last] {
        if !mapped(edge) {
            assert!(holds(edge), "{shown} does not hold its own edge {edge:#x}");
            assert!(target.covers(&Target::host(ip_from_bits(target.is_ipv4(), edge))));
        }
        // An IPv4 source may arrive IPv4-mapped in an IPv6 header.
        if target.is_ipv4() {
            let v6 = Ipv4Addr::from(edge as u32).to_ipv6_mapped();
            assert!(
                target.contains(IpAddr::V6(v6)),
                "{shown} does not hold {v6}"
            );
        }
    }
    if let Some(before) = first.checked_sub(1)
        && !mapped(before)
    {
        assert!(
            !holds(before),
            "{shown} holds {before:#x}, before its network"
        );
    }
    if last < family_max && !mapped(last + 1) {
        assert!(
            !holds(last + 1),
            "{shown} holds {:#x}, past its end",
            last + 1
        );
    }
    assert_eq!(
        target.address_count(),
        (last - first).saturating_add(1),
        "{shown}"
    );
}
