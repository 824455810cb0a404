//! What the kernel says about an interface: its index, and which XDP
//! program holds it in which mode, asked over rtnetlink (RTM_GETLINK and
//! its IFLA_XDP attributes) rather than by running `ip`.

use std::io;

use netlink_packet_core::{NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{LinkAttribute, LinkMessage, LinkXdp, XdpAttached},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::model::AttachedMode;

/// The interface's index, 0 when there is no such interface.
pub fn ifindex(iface: &str) -> u32 {
    nix::net::if_::if_nametoindex(iface).unwrap_or(0)
}

/// The XDP program another tool attached to `iface`, named for an error.
pub fn xdp_holder(iface: &str) -> Option<String> {
    let (_, id) = xdp_of(iface)?;
    // Several programs at once (XDP_ATTACHED_MULTI) come with no single id.
    let Some(id) = id else {
        return Some(format!(
            "programs (`bpftool net show dev {iface}` lists them)"
        ));
    };
    // Naming a program takes CAP_SYS_ADMIN (BPF_PROG_GET_NEXT_ID), which the
    // systemd unit does not grant; the id is always there.
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .filter(|n| !n.is_empty());
    Some(match name {
        Some(name) => format!("program {name} (id {id})"),
        None => format!("program id {id} (`bpftool prog show id {id}` names it)"),
    })
}

/// The mode of the XDP program on `iface`, if one is attached.
pub fn xdp_mode_of(iface: &str) -> Option<AttachedMode> {
    xdp_of(iface).map(|(mode, _)| mode)
}

/// The attachment mode and program id the kernel reports for `iface`.
fn xdp_of(iface: &str) -> Option<(AttachedMode, Option<u32>)> {
    let index = ifindex(iface);
    if index == 0 {
        return None;
    }
    let attributes = match get_link(index) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(%iface, "rtnetlink RTM_GETLINK failed: {e}");
            return None;
        }
    };
    let xdp = attributes.into_iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => Some(xdp),
        _ => None,
    })?;
    let mut mode = None;
    let mut id = None;
    for x in xdp {
        match x {
            LinkXdp::Attached(XdpAttached::None) => return None,
            LinkXdp::Attached(XdpAttached::SocketBuffer) => mode = Some(AttachedMode::Skb),
            LinkXdp::Attached(_) => mode = Some(AttachedMode::Native),
            LinkXdp::ProgId(p) => id = Some(p),
            _ => {}
        }
    }
    Some((mode?, id))
}

/// The attributes of link `index`: one RTM_GETLINK request and its answer.
fn get_link(index: u32) -> io::Result<Vec<LinkAttribute>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut request = LinkMessage::default();
    request.header.index = index;
    let mut packet = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::from(RouteNetlinkMessage::GetLink(request)),
    );
    packet.header.flags = NLM_F_REQUEST;
    packet.header.sequence_number = 1;
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    // One link's message, statistics included, is a few KiB.
    let mut reply = vec![0; 64 * 1024];
    let n = socket.recv(&mut &mut reply[..], 0)?;
    let message: NetlinkMessage<RouteNetlinkMessage> =
        NetlinkMessage::deserialize(&reply[..n]).map_err(io::Error::other)?;
    match message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Ok(link.attributes),
        NetlinkPayload::Error(e) => Err(e.to_io()),
        other => Err(io::Error::other(format!(
            "unexpected answer to RTM_GETLINK: {other:?}"
        ))),
    }
}
