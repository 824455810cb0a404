//! What the kernel says about an interface: its index, and which XDP
//! program holds it in which mode.

use crate::model::AttachedMode;

/// The interface's index, 0 when there is no such interface.
pub fn ifindex(iface: &str) -> u32 {
    let Ok(c) = std::ffi::CString::new(iface) else {
        return 0;
    };
    // SAFETY: a valid C string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// The XDP program another tool attached to `iface`, as `ip` reports it.
pub fn xdp_holder(iface: &str) -> Option<String> {
    let xdp = ip_xdp(iface)?;
    let prog = xdp.get("prog")?;
    let id = prog.get("id").and_then(|i| i.as_u64()).unwrap_or(0);
    // `ip` names a program only with CAP_SYS_ADMIN (BPF_PROG_GET_FD_BY_ID),
    // which the systemd unit does not grant; the id is always there.
    Some(match prog.get("name").and_then(|n| n.as_str()) {
        Some(name) => format!("program {name} (id {id})"),
        None => format!("program id {id} (`bpftool prog show id {id}` names it)"),
    })
}

/// The mode `ip` reports for an interface's XDP program.
pub fn xdp_mode_of(iface: &str) -> Option<AttachedMode> {
    match ip_xdp(iface)?.get("mode")?.as_u64()? {
        2 => Some(AttachedMode::Skb),
        _ => Some(AttachedMode::Native),
    }
}

/// The `xdp` object `ip -j -d link show` reports for an interface: aya
/// cannot say which program a foreign tool attached, nor in which mode.
fn ip_xdp(iface: &str) -> Option<serde_json::Value> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v.get_mut(0)?.get_mut("xdp")?.take())
}
