//! Listings in the store: partial deploys, expiry of single listings,
//! feeds' changes beside an admin's, and the source keys. The sequences
//! come from a review of the feature, each of the first six a bug it
//! found. SQLite's own tests of listings (`store/sqlite/listing_tests.rs`)
//! share the helpers.

use super::{Open, commit_deploy, deploy, t};
use crate::{
    model::{Entry, List, Millis, Sources, Ttl},
    store::{Audit, Only, Stage, Store},
};

pub const X: &str = "192.0.2.1";

pub fn upsert(source: &str, reason: &str, ttl: Option<Ttl>) -> Stage {
    Stage::Upsert {
        target: t(X),
        list: List::Deny,
        reason: Some(reason.into()),
        ttl,
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: false,
    }
}

/// An import re-listing X: its TTL never shortens the deployed expiry.
pub fn relist(source: &str, secs: u64) -> Stage {
    Stage::Upsert {
        target: t(X),
        list: List::Deny,
        reason: None,
        ttl: Some(Ttl::Secs(secs)),
        monitor: None,
        source: Some(source.into()),
        keep_longer_ttl: true,
    }
}

pub fn stage(s: &mut dyn Store, op: Stage, now: Millis) {
    s.stage(&[op], "alice", now, None, &Audit::Each).unwrap();
}

/// Deploys only `source`'s listings of X, as a feed, a report or
/// `add --deploy` does.
pub fn deploy_only(s: &mut dyn Store, source: &str, now: Millis) {
    let keys = [(t(X), List::Deny)];
    let sources = Sources::Only(source.into());
    let only = Only {
        keys: &keys,
        sources: &sources,
    };
    let plan = s.plan(Some(only), now).unwrap();
    commit_deploy(s, &plan, now);
}

pub fn sweep(s: &mut dyn Store, now: Millis) {
    let expired = s.expired(now).unwrap();
    s.expire(&expired, now).unwrap();
}

/// The deployed entry of X as stored, expired listings included.
pub fn stored(s: &dyn Store) -> Option<Entry> {
    s.deployed()
        .unwrap()
        .into_iter()
        .map(|s| s.entry)
        .find(|e| e.target == t(X))
}

fn expiry_of(e: &Entry, source: &str) -> Option<Millis> {
    e.listing(source)
        .unwrap_or_else(|| panic!("{source} lists {e:?}"))
        .expires_at
}

pub fn sources_of(e: Option<Entry>) -> Vec<String> {
    e.map(|e| e.sources).unwrap_or_default()
}

const REPORTS: &str = "auto:reports";

/// X deployed with a permanent manual listing, an admin's change to it
/// staged, and then a report's listing of X (60 s) deployed on its own at
/// 2 s, leaving the admin's change staged.
fn admin_change_then_report(s: &mut dyn Store) {
    stage(s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    deploy(s, 0);
    stage(s, upsert("manual", "changed my mind", None), 1_000);
    stage(s, upsert(REPORTS, "3 reports", Some(Ttl::Secs(60))), 2_000);
    deploy_only(s, REPORTS, 2_000);
    let e = stored(s).unwrap();
    assert_eq!(expiry_of(&e, REPORTS), Some(62_000));
    assert_eq!(s.pending_count().unwrap(), 1, "the admin's change is kept");
}

/// A partial deploy keeps the other sources' changes staged as the whole
/// draft entry, whose copy of the shipped listing still waits for a
/// deploy to set its expiry: the admin's next deploy sets it again.
pub fn an_admins_deploy_keeps_the_expiry_a_partial_deploy_gave_a_listing(open: Open<'_>) {
    let mut s = open();
    admin_change_then_report(&mut *s);
    deploy(&mut *s, 30_000);
    let e = stored(&*s).unwrap();
    assert_eq!(
        e.listing("manual").unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(
        expiry_of(&e, REPORTS),
        Some(62_000),
        "the report's listing was deployed at 2 s for 60 s; the admin's deploy at 30 s renewed it"
    );
}

/// The same copy survives the listing's expiry (it has no expiry of its
/// own, so the sweep does not see it as a copy) and the admin's deploy
/// puts the expired listing back, for a whole TTL.
pub fn a_listing_shipped_by_a_partial_deploy_stays_gone_once_expired(open: Open<'_>) {
    let mut s = open();
    admin_change_then_report(&mut *s);
    sweep(&mut *s, 62_000);
    assert_eq!(sources_of(stored(&*s)), ["manual"], "the sweep took it out");
    let draft = s.draft_entry(t(X), List::Deny, 62_000).unwrap();
    assert_eq!(
        sources_of(draft),
        ["manual"],
        "the draft still lists the expired report listing"
    );
    deploy(&mut *s, 63_000);
    assert_eq!(
        sources_of(stored(&*s)),
        ["manual"],
        "the admin's deploy revived the expired report listing"
    );
}

/// The REFRESH marker of an import's re-listing, shipped by the import's
/// own deploy, stays in the kept row: the admin's later deploy extends
/// the import's listing once more.
pub fn an_imports_refreshed_expiry_is_not_extended_by_the_next_deploy(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    stage(
        &mut *s,
        upsert("import:a", "list a", Some(Ttl::Secs(100))),
        0,
    );
    deploy(&mut *s, 0);
    assert_eq!(expiry_of(&stored(&*s).unwrap(), "import:a"), Some(100_000));
    stage(&mut *s, upsert("manual", "changed my mind", None), 1_000);
    // `import --source a --deploy` at 10 s: the longer expiry wins.
    stage(&mut *s, relist("import:a", 100), 10_000);
    deploy_only(&mut *s, "import:a", 10_000);
    assert_eq!(expiry_of(&stored(&*s).unwrap(), "import:a"), Some(110_000));
    assert_eq!(s.pending_count().unwrap(), 1, "the admin's change is kept");
    deploy(&mut *s, 50_000);
    let e = stored(&*s).unwrap();
    assert_eq!(
        e.listing("manual").unwrap().reason.as_deref(),
        Some("changed my mind")
    );
    assert_eq!(
        expiry_of(&e, "import:a"),
        Some(110_000),
        "the import re-listed at 10 s; the admin's deploy at 50 s refreshed it again"
    );
}

/// An entry whose only deployed listing expires loses its pending row
/// when that was staged before the expiry, even if what it stages is a
/// new listing by another source, not a copy of the expired one.
pub fn the_expiry_of_an_entrys_last_listing_keeps_another_sources_staged_listing(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy(&mut *s, 0);
    stage(
        &mut *s,
        upsert("import:y", "list y", Some(Ttl::Never)),
        10_000,
    );
    sweep(&mut *s, 60_000);
    assert_eq!(stored(&*s), None, "the manual listing expired");
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(
        sources_of(draft),
        ["import:y"],
        "the staged import listing was dropped with the expired entry"
    );
}

/// The same for an admin's TTL given again before the expiry: with
/// another listing beside it (`expire_listings`), such a listing "stays";
/// when it is the entry's last, the whole pending row goes.
pub fn a_ttl_given_again_survives_expiry_whether_or_not_another_listing_is_left(open: Open<'_>) {
    // With a feed listing beside it: kept, as documented.
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut *s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
    deploy(&mut *s, 0);
    stage(
        &mut *s,
        upsert("manual", "typed", Some(Ttl::Secs(3600))),
        10_000,
    );
    sweep(&mut *s, 60_000);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap().unwrap();
    assert_eq!(draft.listing("manual").unwrap().ttl, Some(3600));
    // Alone: dropped.
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy(&mut *s, 0);
    stage(
        &mut *s,
        upsert("manual", "typed", Some(Ttl::Secs(3600))),
        10_000,
    );
    sweep(&mut *s, 60_000);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(
        draft.and_then(|e| e.listing("manual").and_then(|l| l.ttl)),
        Some(3600),
        "the TTL given again before the expiry was dropped with the entry"
    );
}

/// Staging on top of a pending row copies the row's listings, expired
/// ones included (only the deployed entry is read `live`). When a feed's
/// partial deploy then rewrites the deployed entry before the sweep ran,
/// the sweep never sees the expired listing, and the admin's deploy puts
/// it back for a whole TTL.
pub fn an_expired_listing_copied_into_the_draft_is_not_revived_by_a_deploy(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    deploy(&mut *s, 0);
    stage(&mut *s, upsert("manual", "changed my mind", None), 10_000);
    // 70 s, the sweep not yet run: the feed lists X and deploys.
    stage(
        &mut *s,
        upsert("feed:a", "feed a", Some(Ttl::Never)),
        70_000,
    );
    deploy_only(&mut *s, "feed:a", 70_000);
    assert_eq!(sources_of(stored(&*s)), ["feed:a"]);
    sweep(&mut *s, 71_000);
    deploy(&mut *s, 72_000);
    assert_eq!(
        sources_of(stored(&*s)),
        ["feed:a"],
        "the manual listing expired at 60 s and was deployed again at 72 s"
    );
}

// Regression tests: behaviour worth keeping.

/// A feed taking its listing out, deployed on its own while an admin's
/// change to the same entry is staged: the admin's deploy ships the
/// change and does not bring the feed's listing back; a discard leaves
/// the deployed entry as the feed left it.
pub fn a_feeds_removal_survives_an_admins_pending_change(open: Open<'_>) {
    for discard in [false, true] {
        let mut s = open();
        stage(&mut *s, upsert("manual", "typed", Some(Ttl::Never)), 0);
        stage(&mut *s, upsert("feed:a", "feed a", Some(Ttl::Never)), 0);
        deploy(&mut *s, 0);
        stage(&mut *s, upsert("manual", "changed my mind", None), 1_000);
        let remove = Stage::Remove {
            target: t(X),
            list: List::Deny,
            sources: Sources::Only("feed:a".into()),
        };
        stage(&mut *s, remove, 2_000);
        deploy_only(&mut *s, "feed:a", 2_000);
        let e = stored(&*s).unwrap();
        assert_eq!(e.sources, ["manual"]);
        assert_eq!(e.reason.as_deref(), Some("typed"), "the admin's is staged");
        assert_eq!(s.pending_count().unwrap(), 1);
        if discard {
            s.discard("alice", 3_000).unwrap();
        } else {
            deploy(&mut *s, 3_000);
        }
        let e = stored(&*s).unwrap();
        assert_eq!(e.sources, ["manual"]);
        let want = if discard { "typed" } else { "changed my mind" };
        assert_eq!(e.reason.as_deref(), Some(want));
        assert_eq!(s.pending_count().unwrap(), 0);
    }
}

/// An admin's removal staged, then a feed listing the same entry, deployed
/// on its own: the admin's removal of the manual listing stays staged.
pub fn an_admins_staged_removal_stays_staged_under_a_feeds_deploy(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Never)), 0);
    deploy(&mut *s, 0);
    let remove = Stage::Remove {
        target: t(X),
        list: List::Deny,
        sources: Sources::Admin,
    };
    stage(&mut *s, remove, 1_000);
    stage(&mut *s, upsert("feed:a", "feed a", Some(Ttl::Never)), 2_000);
    deploy_only(&mut *s, "feed:a", 2_000);
    assert_eq!(sources_of(stored(&*s)), ["manual", "feed:a"]);
    let draft = s.draft_entry(t(X), List::Deny, 2_000).unwrap();
    assert_eq!(sources_of(draft), ["feed:a"]);
    deploy(&mut *s, 3_000);
    assert_eq!(sources_of(stored(&*s)), ["feed:a"]);
}

/// The source keys read the `listings` JSON (integer milliseconds), drop
/// expired deployed listings, and in the draft follow the pending rows.
pub fn source_keys_read_the_listings_json(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut *s, upsert("feed:a", "feed", Some(Ttl::Never)), 0);
    deploy(&mut *s, 0);
    let key = vec![(t(X), List::Deny)];
    assert_eq!(s.deployed_keys_from("manual", 59_999).unwrap(), key);
    assert!(s.deployed_keys_from("manual", 60_000).unwrap().is_empty());
    assert!(s.draft_keys_from("manual", 60_000).unwrap().is_empty());
    assert_eq!(s.deployed_keys_from("feed:a", 60_000).unwrap(), key);
    assert!(s.deployed_keys_from("feed", 0).unwrap().is_empty());
    // A pending row with several listings, and one with one.
    stage(&mut *s, upsert("import:b", "b", Some(Ttl::Never)), 1_000);
    assert_eq!(s.draft_keys_from("import:b", 1_000).unwrap(), key);
    assert_eq!(s.draft_keys_from("feed:a", 1_000).unwrap(), key);
    assert!(s.deployed_keys_from("import:b", 1_000).unwrap().is_empty());
    let remove = Stage::Remove {
        target: t(X),
        list: List::Deny,
        sources: Sources::Only("feed:a".into()),
    };
    stage(&mut *s, remove, 2_000);
    assert!(s.draft_keys_from("feed:a", 2_000).unwrap().is_empty());
    assert_eq!(s.deployed_keys_from("feed:a", 2_000).unwrap(), key);
}

/// A partially expired entry: the sweep takes the expired listing out of
/// the deployed row and out of a pending row that only copied it, and the
/// pending row goes when nothing else is left to deploy.
pub fn the_sweep_drops_a_copied_listing_and_a_pending_row_left_with_nothing(open: Open<'_>) {
    let mut s = open();
    stage(&mut *s, upsert("manual", "typed", Some(Ttl::Secs(60))), 0);
    stage(&mut *s, upsert("feed:a", "feed", Some(Ttl::Never)), 0);
    deploy(&mut *s, 0);
    // Changes only the manual listing's reason: a copy of its expiry.
    stage(&mut *s, upsert("manual", "changed", None), 1_000);
    sweep(&mut *s, 60_000);
    assert_eq!(sources_of(stored(&*s)), ["feed:a"]);
    assert_eq!(s.pending_count().unwrap(), 0);
    let draft = s.draft_entry(t(X), List::Deny, 60_000).unwrap();
    assert_eq!(sources_of(draft), ["feed:a"]);
}
