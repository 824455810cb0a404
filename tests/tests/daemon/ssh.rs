//! The guardrail for a peer with a live SSH session: sessions older than
//! the daemon, sessions that start while it runs, and the end of each.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use denylist::{
    model::{List, Target},
    wire::{AddRequest, ApiError, Class, RemoveRequest, StageResponse},
};

use crate::common::{A, B, Sandbox, item, sandbox};

/// An SSH-like session from `from` (an address of the sender) to port 22
/// of the receiver, established when this returns; it ends when the two
/// are killed.
struct Session {
    server: Child,
    client: Child,
}

impl Session {
    fn open(sb: &Sandbox, from: &str) -> Self {
        let listen = "import socket,sys,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',22))\ns.listen()\nprint('listening',flush=True)\nc,_=s.accept()\nprint('up',flush=True)\ntime.sleep(60)";
        let connect = format!(
            "import socket,time\nfor _ in range(50):\n  try:\n    s=socket.socket();s.bind(('{from}',0));s.connect(('{}',22));break\n  except OSError:\n    time.sleep(0.1)\ntime.sleep(60)",
            sb.pair.receiver_v4
        );
        let mut server = sb
            .pair
            .receiver
            .cmd("python3")
            .args(["-c", listen])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let client = sb
            .pair
            .sender
            .cmd("python3")
            .args(["-c", &connect])
            .spawn()
            .unwrap();
        let mut out = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        while line.trim() != "up" {
            line.clear();
            assert!(out.read_line(&mut line).unwrap() > 0, "the server ended");
        }
        Self { server, client }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for c in [&mut self.server, &mut self.client] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Adds `target` without force: the refusal, or `None` once it is
/// accepted (and then staged no more).
fn try_add(sb: &Sandbox, target: &str) -> Option<ApiError> {
    let req = AddRequest {
        entries: vec![item(target)],
        ..AddRequest::default()
    };
    match sb.client().post::<_, StageResponse>("/v1/entries", &req) {
        Err(e) if e.class == Class::Guarded => Some(e),
        Ok(_) => {
            let rm = RemoveRequest {
                targets: vec![Target::parse(target).unwrap()],
                list: List::Deny,
                deploy: false,
                message: None,
                source: None,
            };
            let _: StageResponse = sb.client().post("/v1/entries/remove", &rm).unwrap();
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Whether adds of `target` come to be accepted (`refused` false) or
/// refused within `within`.
fn comes_to(sb: &Sandbox, target: &str, refused: bool, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        if try_add(sb, target).is_some() == refused {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_peer_with_a_live_ssh_session_is_not_blocked_without_force() {
    let sb = sandbox("ssh");
    // A session older than the daemon: found by the dump at its start.
    let old = Session::open(&sb, A);
    let d = sb.start(&[]);
    let e = try_add(&sb, A).expect("refused while the older session is up");
    assert!(e.message.contains("live SSH session"), "{}", e.message);
    assert!(
        d.log_text().contains("serving the API") && !d.log_text().contains("walk every socket"),
        "the session watch runs: {}",
        d.log_text()
    );
    // Its end is not reported; the refusal asks the kernel first.
    drop(old);
    assert!(
        comes_to(&sb, A, false, Duration::from_secs(2)),
        "accepted once the older session ended"
    );

    // A session from another peer, started while the daemon runs: only
    // the reports can tell of it, and of its end (B had no session the
    // dump could have seen).
    let new = Session::open(&sb, B);
    assert!(
        comes_to(&sb, B, true, Duration::from_secs(2)),
        "refused once the new session is up"
    );
    drop(new);
    assert!(
        comes_to(&sb, B, false, Duration::from_secs(2)),
        "accepted once the new session ended"
    );

    let _again = Session::open(&sb, B);
    assert!(comes_to(&sb, B, true, Duration::from_secs(2)));
    let forced = AddRequest {
        entries: vec![item(B)],
        force: true,
        ..AddRequest::default()
    };
    let _: StageResponse = sb.client().post("/v1/entries", &forced).unwrap();
}
