//! Just enough raw bpf(2) to load and attach hand-assembled programs. The
//! harness may only depend on std/libc/anyhow, and the Debian uapi headers
//! on the test machine predate tcx, so the constants are spelled out here.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Result, anyhow};
use denylist::dataplane::sys::{BpfAttr, bpf};

const CMD_PROG_LOAD: libc::c_long = 5;
const CMD_LINK_CREATE: libc::c_long = 28;
pub const PROG_TYPE_SCHED_CLS: u32 = 3;
/// Only the tests load an XDP program of their own.
#[cfg(test)]
pub const PROG_TYPE_XDP: u32 = 6;
#[cfg(test)]
pub const ATTACH_XDP: u32 = 37;
pub const TCX_INGRESS: u32 = 46;
pub const TCX_EGRESS: u32 = 47;
pub const TCX_PASS: i32 = 0;
pub const FUNC_SKB_VLAN_PUSH: i32 = 18;
pub const FUNC_SKB_VLAN_POP: i32 = 19;

/// `struct bpf_insn`.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // `dst_reg:4, src_reg:4` bitfields: the first field takes the low
        // nibble on little-endian targets and the high nibble on
        // big-endian ones.
        let regs = if cfg!(target_endian = "little") {
            dst | (src << 4)
        } else {
            (dst << 4) | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
    pub fn mov64_imm(dst: u8, imm: i32) -> Insn {
        Insn::new(0xb7, dst, 0, 0, imm)
    }
    pub fn call(helper: i32) -> Insn {
        Insn::new(0x85, 0, 0, 0, helper)
    }
    pub fn exit() -> Insn {
        Insn::new(0x95, 0, 0, 0, 0)
    }
}

/// `union bpf_attr`, zeroed. The kernel rejects non-zero bytes in fields
/// it does not know, and accepts a size smaller than its own union.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Attr {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Attr {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

// SAFETY: a zeroed buffer the size of the kernel's union, with no padding
// of its own; every pointer stored in it is kept alive by the caller across
// the call.
unsafe impl BpfAttr for Attr {}

fn sys_bpf(cmd: libc::c_long, attr: &mut Attr) -> std::io::Result<OwnedFd> {
    let rc = bpf(cmd, attr)?;
    // SAFETY: on success these commands return a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as libc::c_int) })
}

/// On failure, loads again with the verifier log so the error says why.
/// The first attempt goes without a log because a successful load can
/// fail with ENOSPC when the log buffer is too small.
pub fn prog_load(
    prog_type: u32,
    expected_attach: u32,
    flags: u32,
    insns: &[Insn],
    name: &str,
) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut prog_name = [0u8; 16];
    let n = name.len().min(15);
    prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
    let build = |log: Option<&mut Vec<u8>>| {
        let mut a = Attr::new();
        a.u32(0, prog_type)
            .u32(4, insns.len() as u32)
            .u64(8, insns.as_ptr() as u64)
            .u64(16, license.as_ptr() as u64)
            .u32(44, flags)
            .u32(68, expected_attach);
        a.0[48..64].copy_from_slice(&prog_name);
        if let Some(buf) = log {
            a.u32(24, 1)
                .u32(28, buf.len() as u32)
                .u64(32, buf.as_mut_ptr() as u64);
        }
        a
    };
    match sys_bpf(CMD_PROG_LOAD, &mut build(None)) {
        Ok(fd) => Ok(fd),
        Err(err) => {
            let mut log = vec![0u8; 64 * 1024];
            let _ = sys_bpf(CMD_PROG_LOAD, &mut build(Some(&mut log)));
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(anyhow!(
                "BPF_PROG_LOAD {name}: {err}\n{}",
                String::from_utf8_lossy(&log[..end])
            ))
        }
    }
}

/// The returned link fd is the attachment: closing it detaches.
pub fn link_create(prog: &OwnedFd, ifindex: u32, attach_type: u32, flags: u32) -> Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, attach_type)
        .u32(12, flags);
    sys_bpf(CMD_LINK_CREATE, &mut a)
        .map_err(|e| anyhow!("BPF_LINK_CREATE (attach type {attach_type}): {e}"))
}
