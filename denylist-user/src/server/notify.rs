//! Telling systemd how the daemon is doing (`Type=notify`, sd_notify(3)):
//! `READY=1` once the filter is attached to every configured interface that
//! exists (or has failed to, which `status` reports), a `STATUS=` line with
//! the revision and entries after each change, `WATCHDOG=1` while the core
//! answers (when the unit sets `WatchdogSec=`), and `STOPPING=1`. Without
//! `NOTIFY_SOCKET` these do nothing.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::daemon::Core;

/// `READY=1` with the first status line.
pub(super) fn ready(core: &Core) {
    if listening() {
        send(&[NotifyState::Ready, NotifyState::Status(&status_line(core))]);
    }
}

/// A new status line, after a change.
pub(super) fn status(core: &Core) {
    if listening() {
        send(&[NotifyState::Status(&status_line(core))]);
    }
}

/// Whether systemd listens: without it, every admin request would read the
/// store for a line nobody receives.
fn listening() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// How often to say `WATCHDOG=1`: half the unit's `WatchdogSec=`, as
/// sd_watchdog_enabled(3) advises; `None` when systemd asks for none.
pub(super) fn watchdog_period() -> Option<Duration> {
    if !listening() {
        return None;
    }
    sd_notify::watchdog_enabled().map(|limit| limit / 2)
}

pub(super) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

pub(super) fn stopping() {
    send(&[NotifyState::Stopping]);
}

fn status_line(core: &Core) -> String {
    let s = core.summary();
    let revision = match s.revision {
        Some(r) => format!("revision {r}"),
        None => "revision unknown (the store cannot be read)".to_string(),
    };
    let interfaces = if s.interfaces == 0 {
        "no interface configured".to_string()
    } else {
        format!("{} of {} interfaces attached", s.attached, s.interfaces)
    };
    format!("{revision}, {} entries, {interfaces}", s.entries)
}

fn send(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!("cannot notify systemd through NOTIFY_SOCKET: {e}");
    }
}
