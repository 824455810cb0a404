//! The sandbox every test runs in (a veth pair, a home, the daemon on the
//! receiver) and the requests they share.

use std::net::IpAddr;

use denylist::{
    cli::Client,
    model::{List, Target},
    wire::{AddRequest, DeployRequest, DeployResponse, Key, StageItem, StageResponse, Status},
};
use denylist_tests::{
    daemon::{Daemon, Home},
    netns::{Pair, PairConfig},
    require_root,
};

pub(crate) const A: &str = "198.51.100.7";
pub(crate) const B: &str = "198.51.100.8";
pub(crate) const C: &str = "198.51.100.9";
pub(crate) const FREE: &str = "198.51.100.20";
pub(crate) const COUNT: u32 = 5;

pub(crate) fn long() -> bool {
    std::env::var_os("DENYLIST_LONG").is_some()
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(crate) struct Sandbox {
    pub(crate) pair: Pair,
    pub(crate) home: Home,
}

pub(crate) fn sandbox(tag: &str) -> Sandbox {
    require_root();
    let pair = Pair::new(tag, PairConfig::default()).expect("veth pair");
    for s in [A, B, C, FREE] {
        pair.add_sender_source(ip(s)).unwrap();
    }
    Sandbox {
        pair,
        home: Home::new(tag),
    }
}

impl Sandbox {
    pub(crate) fn start(&self, extra: &[&str]) -> Daemon {
        let iface = self.pair.receiver_xdp_if.clone();
        let mut args = vec!["--iface", iface.as_str(), "--expiry-sweep", "1s"];
        args.extend_from_slice(extra);
        Daemon::start(&self.home, Some(&self.pair.receiver), &args)
    }

    pub(crate) fn replies(&self, src: &str) -> u32 {
        self.pair.ping(ip(src), COUNT, 56).unwrap()
    }

    pub(crate) fn client(&self) -> Client {
        self.home.client()
    }
}

pub(crate) fn item(target: &str) -> StageItem {
    StageItem {
        target: target.into(),
        list: List::Deny,
        reason: Some("test".into()),
        ttl: None,
        monitor: None,
    }
}

pub(crate) fn add(c: &Client, targets: &[&str], deploy: bool) -> StageResponse {
    let req = AddRequest {
        entries: targets.iter().map(|t| item(t)).collect(),
        deploy,
        ..AddRequest::default()
    };
    c.post("/v1/entries", &req).expect("add")
}

pub(crate) fn deploy(c: &Client, only: Option<&[&str]>) -> DeployResponse {
    let req = DeployRequest {
        only: only.map(|o| {
            o.iter()
                .map(|t| Key {
                    target: Target::parse(t).unwrap(),
                    list: List::Deny,
                })
                .collect()
        }),
        ..DeployRequest::default()
    };
    c.post("/v1/deploy", &req).expect("deploy")
}

pub(crate) fn status(c: &Client) -> Status {
    c.get("/v1/status").expect("status")
}
