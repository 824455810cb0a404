//! The tcx programs that put the VLAN tag into the sender's frames and take
//! it off again on the receiver (see [`PairConfig::vlan`]).
//!
//! [`PairConfig::vlan`]: super::PairConfig::vlan

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};

use super::{Netns, bpf, ifindex};

/// Loads `insns` as a tc program and attaches it with a tcx link inside
/// `ns`. tcx (kernel >= 6.6) needs no qdisc, no tc binary and no bpffs pin,
/// and it detaches by itself when the fd closes or the device dies.
pub(super) fn attach_tcx(
    ns: &Netns,
    ifname: &str,
    attach_type: u32,
    insns: Vec<bpf::Insn>,
    name: &'static str,
) -> Result<OwnedFd> {
    let ifname = ifname.to_string();
    ns.enter(move || -> Result<OwnedFd> {
        let idx = ifindex(&ifname)?;
        let prog = bpf::prog_load(bpf::PROG_TYPE_SCHED_CLS, attach_type, 0, &insns, name)?;
        bpf::link_create(&prog, idx, attach_type, 0)
            .with_context(|| format!("attaching {name} to {ifname}"))
    })?
}

/// `bpf_skb_vlan_push(skb, htons(0x8100), vid); return TCX_PASS;`
pub(super) fn vlan_push_insns(vid: u16) -> Vec<bpf::Insn> {
    use bpf::*;
    vec![
        Insn::mov64_imm(2, i32::from(0x8100u16.to_be())),
        Insn::mov64_imm(3, i32::from(vid)),
        Insn::call(FUNC_SKB_VLAN_PUSH),
        Insn::mov64_imm(0, TCX_PASS),
        Insn::exit(),
    ]
}

/// `bpf_skb_vlan_pop(skb); return TCX_PASS;`. This runs after XDP and
/// after the core moved the tag into metadata, so popping just clears it.
pub(super) fn vlan_pop_insns() -> Vec<bpf::Insn> {
    use bpf::*;
    vec![
        Insn::call(FUNC_SKB_VLAN_POP),
        Insn::mov64_imm(0, TCX_PASS),
        Insn::exit(),
    ]
}
