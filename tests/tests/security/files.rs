//! The socket and the state directory: private, and no link planted in
//! them followed.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::fs::{FileTypeExt as _, MetadataExt as _},
    path::Path,
    process::Command,
};

use denylist_tests::{
    daemon::{TempDir, bin},
    require_root,
};
use serde_json::Value;

use crate::{
    common::{A, B, FORBIDDEN, chmod, cli, mode_of, open_home},
    spawn::Spawn,
};

/// A file outside the state directory that a planted link points to: its
/// bytes, mode and mtime, to see that nothing wrote through the link.
fn snapshot(path: &Path) -> Option<(Vec<u8>, u32, i64)> {
    let meta = fs::metadata(path).ok()?;
    Some((fs::read(path).unwrap(), meta.mode(), meta.mtime_nsec()))
}

#[test]
fn the_socket_and_the_state_are_private_and_no_planted_link_is_followed() {
    require_root();
    let home = open_home("secf");
    let outside = TempDir::new("secout");
    let state = home.state();
    // The socket's directories do not exist yet, and the umask is the
    // unit's: they must still come out as documented.
    let mut sp = Spawn::plain(&home);
    sp.socket = home.dir.path().join("run/denylist/denylist.sock");
    sp.wrapper = ["sh", "-c", "umask 077 && exec \"$0\" \"$@\""]
        .map(String::from)
        .to_vec();
    let d = sp.start(&[]);
    let sock = sp.socket.clone();
    let meta = fs::symlink_metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o666, "the socket is mode 0666");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "owned by root:root");
    for dir in [
        sock.parent().unwrap(),
        sock.parent().unwrap().parent().unwrap(),
    ] {
        assert_eq!(mode_of(dir), 0o755, "{} is created 0755", dir.display());
    }
    let r = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(bin("denylist"))
        .arg("--socket")
        .arg(&sock)
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(FORBIDDEN),
        "any user reaches the socket, and the daemon refuses: {}",
        String::from_utf8_lossy(&r.stderr)
    );

    // Everything that writes to the state directory.
    let feed = outside.path().join("feed.txt");
    fs::write(&feed, "198.51.100.50\n").unwrap();
    let backup = outside.path().join("copy.db");
    for args in [
        vec!["add", A, "--deploy"],
        vec!["import", feed.to_str().unwrap(), "--deploy"],
        vec!["backup", backup.to_str().unwrap()],
        vec!["verify"],
        vec!["list"],
        vec!["export"],
    ] {
        let r = cli(None, None, &sock, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    assert_eq!(mode_of(&backup), 0o600, "the CLI writes a backup 0600");
    assert_eq!(mode_of(&state), 0o700, "the state directory is 0700");
    assert_eq!(mode_of(&state.join("denylist.db")), 0o600);
    let mut names = BTreeSet::new();
    for e in fs::read_dir(&state).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(e.path()).unwrap();
        assert!(meta.is_file(), "{name} is a plain file");
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{name} is {:o}: not readable by group or others",
            meta.mode() & 0o7777
        );
        names.insert(name);
    }
    assert!(
        names
            .iter()
            .all(|n| ["denylist.db", "denylist.db-wal", "denylist.db-shm"].contains(&n.as_str())),
        "only the store, and no backup copy left behind: {names:?}"
    );

    // The CLI's own backup file: a planted link is an existing file.
    let kept = outside.path().join("kept");
    fs::write(&kept, "keep me\n").unwrap();
    chmod(&kept, 0o600);
    let link = outside.path().join("link.db");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    let before = snapshot(&kept);
    let r = cli(None, None, &sock, &["backup", link.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("exists"), "{}", r.stderr);
    assert_eq!(snapshot(&kept), before, "nothing written through the link");

    // While the daemon runs: a link where SQLite would put a rollback
    // journal. Changes go through the open store; a listing, which opens
    // the store afresh, is refused with the link named.
    let journal = state.join("denylist.db-journal");
    let target = outside.path().join("journal-target");
    fs::write(&target, "outside\n").unwrap();
    let before = snapshot(&target);
    std::os::unix::fs::symlink(&target, &journal).unwrap();
    let live_backup = outside.path().join("live.db");
    for (args, code) in [
        (vec!["add", B, "--deploy"], 0),
        (vec!["list"], 1),
        (vec!["export"], 1),
        (vec!["verify"], 0),
        (vec!["backup", live_backup.to_str().unwrap()], 0),
        (vec!["remove", B, "--deploy"], 0),
    ] {
        let r = cli(None, None, &sock, &args);
        assert_eq!(
            r.code, code,
            "{args:?} with a planted journal link: {}",
            r.stderr
        );
        if code != 0 {
            let named = format!("{} is a symbolic link", journal.display());
            assert!(r.stderr.contains(&named), "{args:?}: {}", r.stderr);
        }
    }
    assert_eq!(
        snapshot(&target),
        before,
        "the journal link was not followed"
    );
    fs::remove_file(&journal).unwrap();
    d.stop();

    // At start: a link in place of each file SQLite writes beside the
    // store, pointing at an existing file and at a missing one.
    let sp = Spawn::plain(&home);
    let mut planted = 0;
    for name in ["denylist.db-wal", "denylist.db-shm", "denylist.db-journal"] {
        for existing in [true, false] {
            let target = outside.path().join(format!("{name}-{existing}"));
            if existing {
                fs::write(&target, "outside\n").unwrap();
            }
            let before = snapshot(&target);
            let link = state.join(name);
            std::os::unix::fs::symlink(&target, &link).unwrap();
            let db = fs::read(state.join("denylist.db")).unwrap();
            sp.refused(&[], &format!("{} is a symbolic link", link.display()));
            assert_eq!(snapshot(&target), before, "{name}: not written through");
            assert_eq!(
                fs::read(state.join("denylist.db")).unwrap(),
                db,
                "{name}: the store is untouched"
            );
            assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
            fs::remove_file(&link).unwrap();
            planted += 1;
        }
    }

    // The store itself, the state directory and the socket as links.
    let db = state.join("denylist.db");
    let real = outside.path().join("real.db");
    fs::rename(&db, &real).unwrap();
    std::os::unix::fs::symlink(&real, &db).unwrap();
    let before = snapshot(&real);
    sp.refused(&[], &format!("{} is a symbolic link", db.display()));
    assert_eq!(snapshot(&real), before, "the linked store is untouched");
    fs::remove_file(&db).unwrap();
    fs::rename(&real, &db).unwrap();
    planted += 1;

    let elsewhere = outside.path().join("state-elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let state_link = home.dir.path().join("state-link");
    std::os::unix::fs::symlink(&elsewhere, &state_link).unwrap();
    let mut linked = Spawn::plain(&home);
    linked.state = state_link.clone();
    linked.refused(&[], &format!("{} is a symbolic link", state_link.display()));
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing made there"
    );
    planted += 1;

    let sock_target = outside.path().join("not-a-socket");
    fs::write(&sock_target, "outside\n").unwrap();
    chmod(&sock_target, 0o600);
    let before = snapshot(&sock_target);
    let sock_link = home.dir.path().join("sock-link");
    std::os::unix::fs::symlink(&sock_target, &sock_link).unwrap();
    let mut linked = Spawn::plain(&home);
    linked.socket = sock_link;
    linked.refused(&[], "not a socket is in the way");
    assert_eq!(snapshot(&sock_target), before, "not chmodded, not replaced");
    planted += 1;

    // None of it cost anything: the store starts as it was left.
    let d = sp.start(&[]);
    let entries: Vec<Value> = home.client().get("/v1/entries").unwrap();
    let targets: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, BTreeSet::from([A, "198.51.100.50"]));
    d.stop();
    eprintln!("planted links refused: {planted}");
}
