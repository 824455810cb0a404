//! Deploy and remove with real traffic, and a partial deploy that ships
//! only what it names.

use denylist::{
    model::{List, Target},
    wire::{DeployRequest, DeployResponse, RemoveRequest, StageResponse},
};

use crate::common::{A, B, C, COUNT, FREE, add, deploy, sandbox, status};

#[test]
fn deploy_blocks_remove_unblocks_and_a_partial_deploy_ships_only_what_it_names() {
    let sb = sandbox("dep");
    let _d = sb.start(&[]);
    let c = sb.client();
    let st = status(&c);
    assert!(st.interfaces[0].attached && !st.degraded, "{st:?}");

    add(&c, &[A], false);
    assert_eq!(
        sb.replies(A),
        COUNT,
        "staged only: nothing changes in production"
    );
    let d = deploy(&c, None);
    assert_eq!((d.revision, d.counts.added), (Some(1), 1));
    assert_eq!(sb.replies(A), 0, "deployed: blocked");
    assert_eq!(sb.replies(FREE), COUNT);

    add(&c, &[B, C], false);
    let d = deploy(&c, Some(&[B]));
    assert_eq!((d.revision, d.counts.added), (Some(2), 1));
    assert_eq!(sb.replies(B), 0, "the named change shipped");
    assert_eq!(sb.replies(C), COUNT, "the other stayed staged");
    assert_eq!(status(&c).pending_changes, 1);

    let req = RemoveRequest {
        targets: vec![Target::parse(A).unwrap()],
        list: List::Deny,
        deploy: true,
        message: None,
        source: None,
    };
    let r: StageResponse = c.post("/v1/entries/remove", &req).unwrap();
    assert_eq!(r.deployed.and_then(|d| d.revision), Some(3));
    assert_eq!(sb.replies(A), COUNT, "removed and deployed: flows again");
    assert_eq!(sb.replies(B), 0);
    assert_eq!(
        status(&c).pending_changes,
        1,
        "the --deploy of a remove leaves C staged"
    );

    let nothing: DeployResponse = c
        .post(
            "/v1/deploy",
            &DeployRequest {
                only: Some(vec![]),
                ..DeployRequest::default()
            },
        )
        .unwrap();
    assert!(nothing.nothing_pending);
}
