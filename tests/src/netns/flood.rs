//! A ping left running across some disruption, and the check that it
//! showed no gap.

use std::net::IpAddr;

use anyhow::{Context, Result};

use super::Pair;
use super::pair::parse_received;

/// A ping left running while a test does something else (restarts the
/// daemon, deploys), so a gap in filtering would show as replies.
pub struct Flood {
    /// Taken by [`Flood::finish`]; a flood dropped unfinished (a failed
    /// test) kills its ping, which would otherwise outlive the test holding
    /// whatever descriptors it inherited.
    child: Option<std::process::Child>,
    src: IpAddr,
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Pair {
    /// Starts pinging from `src` every `interval` seconds (e.g. "0.01")
    /// until [`Flood::finish`].
    pub fn flood(&self, src: IpAddr, interval: &str) -> Result<Flood> {
        let (family, dst) = match src {
            IpAddr::V4(_) => ("-4", IpAddr::V4(self.receiver_v4)),
            IpAddr::V6(_) => ("-6", IpAddr::V6(self.receiver_v6)),
        };
        let child = self
            .sender
            .cmd("ping")
            .args([family, "-n", "-q", "-i", interval, "-W", "1", "-I"])
            .arg(src.to_string())
            .arg(dst.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("spawning ping")?;
        Ok(Flood {
            child: Some(child),
            src,
        })
    }
}

/// Stops two floods that ran across some disruption and asserts there was
/// no gap: not one packet of the `denied` stream came back, and the
/// `allowed` one kept flowing (at least 90% answered).
pub fn assert_no_gap(denied: Flood, allowed: Flood) {
    let (sent, received) = denied.finish().expect("the denied flood");
    let (free_sent, free_received) = allowed.finish().expect("the allowed flood");
    assert!(sent > 100, "the denied stream ran throughout ({sent} sent)");
    assert_eq!(
        received, 0,
        "{received} of {sent} denied packets got through"
    );
    assert!(
        free_received * 10 >= free_sent * 9,
        "the allowed stream kept flowing: {free_received}/{free_sent}"
    );
}

impl Flood {
    /// Stops the ping (SIGINT, so it prints its summary) and returns
    /// (sent, received).
    pub fn finish(mut self) -> Result<(u32, u32)> {
        let child = self.child.take().context("the flood is running")?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let out = child.wait_with_output().context("waiting for ping")?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let sent = stdout
            .lines()
            .find(|l| l.contains("packets transmitted"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no summary from ping {}: {stdout}", self.src))?;
        let received = parse_received(&stdout)
            .with_context(|| format!("no summary from ping {}: {stdout}", self.src))?;
        Ok((sent, received))
    }
}
