//! Store faults: a state directory that turns read-only, and a disk that
//! fills up during a deploy. The daemon must fail cleanly and the kernel
//! must keep the last deployed revision.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use denylist::{
    cli::Client,
    wire::{Class, DeployRequest, DeployResponse, Status},
};
use denylist_tests::{
    daemon::{Daemon, Home, kernel_exact_v4},
    require_root,
};

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount a tmpfs on {}", at.display());
        Self(at.to_path_buf())
    }

    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount {opts}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn import(c: &Client, from: u32, n: u32) {
    let body: String = (from..from + n)
        .map(|i| format!("{}\n", std::net::Ipv4Addr::from(0xC633_0000 + i)))
        .collect();
    let r = c
        .request(
            "POST",
            "/v1/import?source=fault&force=true",
            Some(body.as_bytes()),
            "text/plain",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

fn status(c: &Client) -> Status {
    c.get("/v1/status").unwrap()
}

#[test]
fn a_read_only_state_dir_stops_the_daemon_and_filtering_goes_on() {
    require_root();
    let home = Home::new("ro");
    let fs = Tmpfs::new(&home.state(), "16m");
    let d = Daemon::start(&home, None, &[]);
    import(&home.client(), 1, 10);
    let _: DeployResponse = home
        .client()
        .post("/v1/deploy", &DeployRequest::default())
        .unwrap();
    assert!(d.stop().success());
    fs.remount("ro");
    let d = Daemon::spawn(&home, None, &[]);
    let log = d.log.clone();
    let exit = d
        .wait_exit(Duration::from_secs(20))
        .expect("it must refuse to start");
    assert_eq!(exit.code(), Some(1));
    let text = std::fs::read_to_string(log).unwrap();
    assert!(text.contains("not writable"), "a clear error: {text}");
    assert_eq!(
        kernel_exact_v4(&home).len(),
        10,
        "the pinned filter is untouched"
    );
    fs.remount("rw");
}

#[test]
fn a_full_disk_fails_the_deploy_and_leaves_the_kernel_as_it_was() {
    require_root();
    let home = Home::new("full");
    let fs = Tmpfs::new(&home.state(), "4m");
    let _d = Daemon::start(&home, None, &["--capacity", "100000"]);
    let c = home.client();
    import(&c, 1, 100);
    let _: DeployResponse = c.post("/v1/deploy", &DeployRequest::default()).unwrap();
    import(&c, 1_000, 3_000);
    // The daemon checkpoints its WAL in the background and reuses the file,
    // whose blocks the import already allocated; truncating it makes the
    // commit need new blocks.
    let db = rusqlite::Connection::open(home.state().join(denylist::store::DB_FILE)).unwrap();
    let truncated = (0..100).any(|_| {
        let busy: i64 = db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        busy == 0 || {
            std::thread::sleep(Duration::from_millis(20));
            false
        }
    });
    assert!(truncated, "the WAL could not be truncated");
    drop(db);
    // Fill what is left but 128 KiB: enough for the deploy to reserve ids
    // and change the kernel, not for its commit, so the kernel must be
    // rolled back.
    let filler = home.state().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len.saturating_sub(128 * 1024))
        .unwrap();
    let e = c
        .post::<_, DeployResponse>("/v1/deploy", &DeployRequest::default())
        .unwrap_err();
    assert_eq!(e.class, Class::Failure, "{}", e.message);
    assert!(
        e.message.contains("rolled back"),
        "the kernel was changed and undone: {}",
        e.message
    );
    assert_eq!(
        kernel_exact_v4(&home).len(),
        100,
        "the kernel kept the deployed revision"
    );
    let st = status(&c);
    assert_eq!(
        (st.revision, st.capacity.used),
        (1, 100),
        "status tells the truth"
    );
    assert_eq!(st.pending_changes, 3_000, "the draft is intact");

    std::fs::remove_file(&filler).unwrap();
    let d: DeployResponse = c.post("/v1/deploy", &DeployRequest::default()).unwrap();
    assert_eq!((d.revision, d.counts.added), (Some(2), 3_000));
    assert_eq!(kernel_exact_v4(&home).len(), 3_100);
    drop(fs);
}
