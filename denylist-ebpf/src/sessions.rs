//! The `sessions` sock_ops program: reports TCP sessions to the watched
//! local ports (the SSH guardrail's `--protect-port`s) as they become
//! established and as they end, so that the daemon knows its live sessions
//! without walking every socket of the host for each check. It runs only
//! when a connection is accepted, and when a watched session changes state.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_TCP_ESTABLISHED, BPF_TCP_SYN_RECV,
    },
    helpers::generated::{bpf_get_netns_cookie, bpf_get_socket_cookie},
    macros::{map, sock_ops},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::SockOpsContext,
};
use denylist_common::{SESSION_MAX_PORTS, SESSION_RING_BYTES, SessionEvent};

/// Set by the loader: only sessions of this network namespace count.
#[unsafe(no_mangle)]
static NETNS_COOKIE: u64 = 0;

#[map(name = "SESSION_PORTS")]
static SESSION_PORTS: HashMap<u16, u8> = HashMap::with_max_entries(SESSION_MAX_PORTS, 0);
#[map(name = "SESSION_EVENTS")]
static SESSION_EVENTS: RingBuf = RingBuf::with_byte_size(SESSION_RING_BYTES, 0);
#[map(name = "SESSION_LOST")]
static SESSION_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;

#[sock_ops]
pub fn sessions(ctx: SockOpsContext) -> u32 {
    let up = match ctx.op() {
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB => true,
        // A state change passes the old state, then the new. A session
        // ends as it leaves ESTABLISHED; or, with TCP Fast Open, whose
        // PASSIVE_ESTABLISHED_CB comes in SYN_RECV, when it leaves SYN_RECV
        // for anything else (an unknown cookie's end changes nothing).
        BPF_SOCK_OPS_STATE_CB
            if ctx.arg(0) == BPF_TCP_ESTABLISHED
                || (ctx.arg(0) == BPF_TCP_SYN_RECV && ctx.arg(1) != BPF_TCP_ESTABLISHED) =>
        {
            false
        }
        _ => return 1,
    };
    let port = ctx.local_port() as u16;
    // SAFETY: the value is only tested for presence, never held.
    if unsafe { SESSION_PORTS.get(port) }.is_none() {
        return 1;
    }
    // SAFETY: a read of a constant the loader wrote before loading; the
    // volatile read keeps the compiler from folding it to its initial 0.
    let netns = unsafe { core::ptr::read_volatile(&NETNS_COOKIE) };
    // SAFETY: the context is this program's own bpf_sock_ops.
    if unsafe { bpf_get_netns_cookie(ctx.as_ptr()) } != netns {
        return 1;
    }
    if up {
        // Without this flag the kernel never calls the program again for
        // this socket, and the session's end would go unseen.
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
    }
    let mut event = SessionEvent {
        // SAFETY: as above.
        cookie: unsafe { bpf_get_socket_cookie(ctx.as_ptr()) },
        port,
        up: up as u8,
        ..SessionEvent::default()
    };
    match ctx.family() {
        AF_INET => {
            event.family = 4;
            event.addr[..4].copy_from_slice(&ctx.remote_ip4().to_ne_bytes());
        }
        AF_INET6 => {
            event.family = 6;
            for i in 0..4 {
                // SAFETY: a field of this program's own context, read one
                // u32 at a time: the verifier refuses wider loads of it
                // (bpf_sock_ops' is_valid_access), which copying the array
                // whole would make.
                let w = unsafe { core::ptr::read_volatile(&raw const (*ctx.ops).remote_ip6[i]) };
                event.addr[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
        }
        _ => return 1,
    }
    if SESSION_EVENTS.output::<SessionEvent>(&event, 0).is_err()
        && let Some(lost) = SESSION_LOST.get_ptr_mut(0)
    {
        // SAFETY: this CPU's own slot, and a program runs to its end on
        // one CPU.
        unsafe { *lost += 1 };
    }
    1
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
