//! Where the admin running the CLI is connected from, so the daemon can
//! refuse to block the admin's own session.

use std::{env, net::IpAddr};

use crate::model::normal_ip;

/// Where the admin is connected from, so the daemon can refuse to lock them
/// out.
pub(super) fn admin_addr() -> Option<IpAddr> {
    admin_address(
        env::var("SSH_CONNECTION").ok().as_deref(),
        env::var("SSH_CLIENT").ok().as_deref(),
    )
}

/// Parses SSH_CONNECTION ("client_ip client_port server_ip server_port") or
/// SSH_CLIENT ("client_ip client_port server_port") values.
fn admin_address(ssh_connection: Option<&str>, ssh_client: Option<&str>) -> Option<IpAddr> {
    ssh_connection
        .and_then(|value| client_ip(value, 4))
        .or_else(|| ssh_client.and_then(|value| client_ip(value, 3)))
}

/// The first of `fields` whitespace-separated fields, if the value has that
/// many and the first is an address; a link-local client comes with a zone.
fn client_ip(value: &str, fields: usize) -> Option<IpAddr> {
    if value.split_ascii_whitespace().count() != fields {
        return None;
    }
    let first = value.split_ascii_whitespace().next()?;
    let addr = first.split_once('%').map_or(first, |(addr, _zone)| addr);
    addr.parse().ok().map(normal_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn admin_address_from_the_ssh_variables() {
        let conn = Some("203.0.113.9 51234 198.51.100.10 22");
        let client = Some("192.0.2.7 51234 22");
        assert_eq!(admin_address(conn, client), Some(ip("203.0.113.9")));
        assert_eq!(admin_address(None, client), Some(ip("192.0.2.7")));
        assert_eq!(
            admin_address(Some("garbage"), client),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(
            admin_address(Some("2001:db8::9 40000 2001:db8::1 22"), None),
            Some(ip("2001:db8::9"))
        );
        assert_eq!(
            admin_address(Some("fe80::9%eth0 40000 fe80::1%eth0 22"), None),
            Some(ip("fe80::9"))
        );
        assert_eq!(
            admin_address(None, Some("::ffff:192.0.2.7 1 22")),
            Some(ip("192.0.2.7"))
        );
        assert_eq!(admin_address(None, None), None);
        assert_eq!(admin_address(Some(""), Some("")), None);
        assert_eq!(admin_address(Some("host.example 1 2 3"), None), None);
        assert_eq!(admin_address(None, Some("192.0.2.7 51234")), None);
    }
}
