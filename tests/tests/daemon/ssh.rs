//! The guardrail for a peer with a live SSH session.

use std::{thread, time::Duration};

use denylist::{
    model::{List, Target},
    wire::{AddRequest, Class, RemoveRequest, StageResponse},
};

use crate::common::{A, item, sandbox};

#[test]
fn a_peer_with_a_live_ssh_session_is_not_blocked_without_force() {
    let sb = sandbox("ssh");
    let _d = sb.start(&[]);
    let listen = "import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('0.0.0.0',22))\ns.listen()\nc,_=s.accept()\ntime.sleep(60)";
    let connect = format!(
        "import socket,time\nfor _ in range(50):\n  try:\n    s=socket.socket();s.bind(('{A}',0));s.connect(('{}',22));break\n  except OSError:\n    time.sleep(0.1)\ntime.sleep(60)",
        sb.pair.receiver_v4
    );
    let mut server = sb
        .pair
        .receiver
        .cmd("python3")
        .args(["-c", listen])
        .spawn()
        .unwrap();
    let mut client = sb
        .pair
        .sender
        .cmd("python3")
        .args(["-c", &connect])
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut refused = None;
    while std::time::Instant::now() < until {
        let req = AddRequest {
            entries: vec![item(A)],
            ..AddRequest::default()
        };
        match sb.client().post::<_, StageResponse>("/v1/entries", &req) {
            Err(e) if e.class == Class::Guarded => {
                refused = Some(e);
                break;
            }
            Ok(_) => {
                let rm = RemoveRequest {
                    targets: vec![Target::parse(A).unwrap()],
                    list: List::Deny,
                    deploy: false,
                    message: None,
                };
                let _: StageResponse = sb.client().post("/v1/entries/remove", &rm).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = server.kill();
    let _ = client.kill();
    let _ = server.wait();
    let _ = client.wait();
    let e = refused.expect("refused while the session was up");
    assert!(e.message.contains("live SSH session"), "{}", e.message);
    let forced = AddRequest {
        entries: vec![item(A)],
        force: true,
        ..AddRequest::default()
    };
    let _: StageResponse = sb.client().post("/v1/entries", &forced).unwrap();
}
