//! The fleet's tables in PostgreSQL: the command log every node follows,
//! and the schema version that rolling upgrades check.

use std::io::{Read as _, Write as _};

use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use postgres::{Client, types::Json};

use super::command::Command;
use crate::{
    model::{NodeReport, NodeState, NodeStatus, ProtectedSet},
    store::{Announced, Duty, StoreError},
};

/// The fleet schema this denylistd writes and reads.
pub const FLEET_SCHEMA_VERSION: i64 = 1;

/// The key of the advisory lock that serializes the fleet's writers: held
/// from a writer's read of the log's head until its command commits, so
/// the log has no gaps and a follower reading `seq > applied` misses
/// nothing. (A sequence would hand out numbers in one order and commit
/// them in another.)
pub const WRITER_LOCK: i64 = 0x6465_6e79_6c69_7374; // "denylist"

/// Creates the tables in an empty database; the caller is the database's
/// owner, not a node (docs/fleet.md gives the roles).
const SCHEMA: &str = "
CREATE TABLE denylist_meta(key text PRIMARY KEY, value bigint NOT NULL);
CREATE TABLE log(
  seq bigint PRIMARY KEY CHECK (seq > 0),
  at timestamptz NOT NULL DEFAULT now(),
  node text NOT NULL,
  kind text NOT NULL,
  revision bigint UNIQUE,
  body bytea NOT NULL);
CREATE TABLE nodes(
  node text PRIMARY KEY,
  role name NOT NULL DEFAULT current_user,
  applied_seq bigint NOT NULL,
  applied_revision bigint NOT NULL,
  heartbeat_at timestamptz NOT NULL,
  drift bigint NOT NULL,
  error text,
  capacity bigint NOT NULL,
  protected jsonb);
CREATE TABLE snapshots(
  seq bigint PRIMARY KEY CHECK (seq >= 0),
  at timestamptz NOT NULL DEFAULT now(),
  data bytea NOT NULL);
INSERT INTO denylist_meta VALUES ('schema', 1);
-- Nodes may read everything, append to the log (never rewrite it: it is
-- the audit log too), and write their own row alone: row-level security
-- keys each row to the login role that made it.
GRANT SELECT ON denylist_meta TO denylist_node;
GRANT SELECT, INSERT ON log TO denylist_node;
GRANT SELECT, INSERT ON snapshots TO denylist_node;
GRANT SELECT, INSERT, UPDATE, DELETE ON nodes TO denylist_node;
ALTER TABLE nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY nodes_read ON nodes FOR SELECT USING (true);
CREATE POLICY nodes_insert ON nodes FOR INSERT WITH CHECK (role = current_user);
CREATE POLICY nodes_update ON nodes FOR UPDATE USING (role = current_user)
  WITH CHECK (role = current_user);
-- Any node may forget a retired one, once it has been offline 5 minutes.
CREATE POLICY nodes_forget ON nodes FOR DELETE
  USING (heartbeat_at < now() - interval '300 seconds');
";

/// The group role of every node's login role (docs/fleet.md).
pub const NODE_ROLE: &str = "denylist_node";

/// Creates the fleet's tables when the database has none, and checks the
/// version of those it has.
pub fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    let exists: bool = tx
        .query_one("SELECT to_regclass('denylist_meta') IS NOT NULL", &[])?
        .get(0);
    if !exists {
        let role: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)",
                &[&NODE_ROLE],
            )?
            .get(0);
        if !role {
            return Err(StoreError::FleetNoNodeRole);
        }
        tx.batch_execute(SCHEMA)?;
    }
    let found: Option<i64> = tx
        .query_opt("SELECT value FROM denylist_meta WHERE key = 'schema'", &[])?
        .map(|r| r.get(0));
    check_version(found)?;
    tx.commit()?;
    Ok(())
}

/// Checks that the database holds the fleet's tables, of a version this
/// denylistd knows.
pub fn check(client: &mut Client) -> Result<(), StoreError> {
    let found: Option<i64> = client
        .query_one(
            "SELECT CASE WHEN to_regclass('denylist_meta') IS NULL THEN NULL
             ELSE (SELECT value FROM denylist_meta WHERE key = 'schema') END",
            &[],
        )?
        .get(0);
    check_version(found)
}

/// Refuses a schema newer than this denylistd knows: a node of the
/// previous release keeps running while the next one migrates, but not the
/// other way round.
fn check_version(found: Option<i64>) -> Result<(), StoreError> {
    let found = found.ok_or(StoreError::FleetUninitialized)?;
    if found > FLEET_SCHEMA_VERSION {
        return Err(StoreError::FleetSchema { found });
    }
    Ok(())
}

/// Opens a writer's transaction: takes the writer lock and returns the
/// log's head. The caller appends after it and commits or rolls back with
/// plain SQL, since the transaction spans several of the store's calls
/// (a deploy's plan, then its write once the kernel has it).
pub fn begin_write(client: &mut Client) -> Result<u64, StoreError> {
    client.batch_execute("BEGIN")?;
    client.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK])?;
    let found: Option<i64> = client
        .query_opt("SELECT value FROM denylist_meta WHERE key = 'schema'", &[])?
        .map(|r| r.get(0));
    check_version(found)?;
    let head: i64 = client
        .query_one("SELECT coalesce(max(seq), 0) FROM log", &[])?
        .get(0);
    Ok(head as u64)
}

/// The channel a new log entry is announced on, at its commit; the
/// payload is its seq. Followers also poll, since a notification sent
/// while a listener was disconnected is lost.
pub const LOG_CHANNEL: &str = "denylist_log";

/// Appends a command of `kind`, [`encode`]d as `body`, at `seq`, the
/// head the writer read plus one, and announces it.
pub fn append(
    client: &mut Client,
    seq: u64,
    node: &str,
    kind: &str,
    body: &[u8],
    revision: Option<u64>,
) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO log(seq, node, kind, revision, body) VALUES ($1, $2, $3, $4, $5)",
        &[
            &(seq as i64),
            &node,
            &kind,
            &revision.map(|r| r as i64),
            &body,
        ],
    )?;
    client.execute(
        "SELECT pg_notify($1, $2)",
        &[&LOG_CHANNEL, &seq.to_string()],
    )?;
    Ok(())
}

/// Announces, outside any transaction so that it arrives at once, that
/// `node` is about to plan a deploy: the followers plan it too while the
/// writer deploys (docs/fleet.md). A node that does not know the payload
/// reads the log and finds nothing new.
pub fn announce_deploy(
    client: &mut Client,
    node: &str,
    deploy: &Announced,
) -> Result<(), StoreError> {
    client.execute(
        "SELECT pg_notify($1, $2)",
        &[&LOG_CHANNEL, &announcement(node, deploy)?],
    )?;
    Ok(())
}

const DEPLOYING: &str = "deploying ";

fn announcement(node: &str, deploy: &Announced) -> Result<String, StoreError> {
    let sources = serde_json::to_string(&deploy.sources).map_err(StoreError::LogEncoding)?;
    Ok(format!("{DEPLOYING}{} {node} {sources}", deploy.now))
}

/// The node and deploy of an [`announce_deploy`] payload; None for a new
/// entry's seq. Node names hold no spaces (`--node`).
pub fn deploy_announced(payload: &str) -> Option<(&str, Announced)> {
    let mut parts = payload.strip_prefix(DEPLOYING)?.splitn(3, ' ');
    let now = parts.next()?.parse().ok()?;
    let node = parts.next()?;
    let sources = serde_json::from_str(parts.next()?).ok()?;
    Some((node, Announced { now, sources }))
}

pub fn commit(client: &mut Client) -> Result<(), StoreError> {
    Ok(client.batch_execute("COMMIT")?)
}

/// Rolls back a writer's transaction; a broken connection has none left.
pub fn rollback(client: &mut Client) {
    let _ = client.batch_execute("ROLLBACK");
}

/// Up to `limit` log entries after `seq`, in order.
pub fn since(client: &mut Client, seq: u64, limit: i64) -> Result<Vec<(u64, Command)>, StoreError> {
    client
        .query(
            "SELECT seq, body FROM log WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[&(seq as i64), &limit],
        )?
        .into_iter()
        .map(|r| {
            let seq: i64 = r.get(0);
            let body: Vec<u8> = r.try_get(1)?;
            Ok((seq as u64, decode(seq as u64, &body)?))
        })
        .collect()
}

/// Writes this node's own row: what it applied, and that it is alive (by
/// the database's clock, so the nodes' clocks may differ).
pub fn heartbeat(
    client: &mut Client,
    node: &str,
    applied: (u64, u64),
    report: &NodeReport,
) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO nodes(node, applied_seq, applied_revision, heartbeat_at, drift, error, capacity,
           protected)
         VALUES ($1, $2, $3, now(), $4, $5, $6, $7)
         ON CONFLICT (node) DO UPDATE SET applied_seq = excluded.applied_seq,
           applied_revision = excluded.applied_revision, heartbeat_at = excluded.heartbeat_at,
           drift = excluded.drift, error = excluded.error, capacity = excluded.capacity,
           protected = coalesce(excluded.protected, nodes.protected)",
        &[
            &node,
            &(applied.0 as i64),
            &(applied.1 as i64),
            &(report.drift as i64),
            &report.error,
            &(report.capacity as i64),
            &report.protected.as_ref().map(Json),
        ],
    )?;
    Ok(())
}

/// Every node's row, with its state against the head revision.
pub fn nodes(client: &mut Client) -> Result<Vec<NodeStatus>, StoreError> {
    let rows = client.query(
        "SELECT n.node, n.applied_revision, n.drift, n.error, n.capacity,
           (extract(epoch FROM n.heartbeat_at) * 1000)::bigint,
           (extract(epoch FROM now() - n.heartbeat_at) * 1000)::bigint,
           coalesce((SELECT (extract(epoch FROM now() - l.at) * 1000)::bigint
                     FROM log l WHERE l.revision = n.applied_revision + 1), 0),
           (SELECT coalesce(max(revision), 0) FROM log)
         FROM nodes n ORDER BY n.node",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let applied = r.get::<_, i64>(1) as u64;
            let error: Option<String> = r.get(3);
            let head = r.get::<_, i64>(8) as u64;
            NodeStatus {
                node: r.get(0),
                applied_revision: applied,
                state: NodeState::of(r.get(6), applied, head, error.is_some()),
                heartbeat_at: r.get(5),
                lag_ms: r.get::<_, i64>(7).max(0) as u64,
                drift: r.get::<_, i64>(2) as u64,
                error,
                capacity: r.get::<_, i64>(4) as u64,
            }
        })
        .collect())
}

/// Forgets node `node` if it has been offline for 5 minutes; returns
/// whether it did, and else the node's heartbeat age in ms, if it exists.
pub fn forget(client: &mut Client, node: &str) -> Result<Result<(), Option<i64>>, StoreError> {
    if client.execute("DELETE FROM nodes WHERE node = $1", &[&node])? == 1 {
        return Ok(Ok(()));
    }
    let age: Option<i64> = client
        .query_opt(
            "SELECT (extract(epoch FROM now() - heartbeat_at) * 1000)::bigint
             FROM nodes WHERE node = $1",
            &[&node],
        )?
        .map(|r| r.get(0));
    Ok(Err(age))
}

/// Claims node name `node` for this connection's session: a second
/// daemon of the same name is refused while the first one's connection
/// lives. A key from the name's 64-bit hash in PostgreSQL, so every
/// release computes the same.
pub fn claim(client: &mut Client, node: &str) -> Result<bool, StoreError> {
    Ok(client
        .query_one(
            "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
            &[&node],
        )?
        .get(0))
}

/// Takes `duty` for this connection's session if no other node holds it.
pub fn take_duty(client: &mut Client, duty: Duty) -> Result<bool, StoreError> {
    // The two-key form, apart from the one-key locks above.
    let key = match duty {
        Duty::Sweep => 1,
        Duty::Feeds => 2,
        Duty::Snapshot => 3,
    };
    Ok(client
        .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&DUTY_LOCKS, &key])?
        .get(0))
}

/// The first key of the duties' advisory locks: "dl" in ASCII.
const DUTY_LOCKS: i32 = 0x646c;

/// What every node but `node` protects, as each last published it.
pub fn protected(client: &mut Client, node: &str) -> Result<Vec<ProtectedSet>, StoreError> {
    client
        .query(
            "SELECT protected FROM nodes WHERE node <> $1 AND protected IS NOT NULL ORDER BY node",
            &[&node],
        )?
        .into_iter()
        .map(|r| Ok(r.try_get::<_, Json<ProtectedSet>>(0)?.0))
        .collect()
}

/// The fleet's latest snapshot: the seq of the last entry it holds, and
/// the SQLite file's bytes.
pub fn latest_snapshot(client: &mut Client) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
    Ok(client
        .query_opt(
            "SELECT seq, data FROM snapshots ORDER BY seq DESC LIMIT 1",
            &[],
        )?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get(1))))
}

/// Stores a snapshot of the state after entry `seq`; one of that seq
/// already there (a node that took the duty over made it too) stands.
pub fn insert_snapshot(client: &mut Client, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
    client.execute(
        "INSERT INTO snapshots(seq, data) VALUES ($1, $2) ON CONFLICT (seq) DO NOTHING",
        &[&(seq as i64), &bytes],
    )?;
    Ok(())
}

/// What the log holds past the latest snapshot, up to entry `seq`: the
/// entries and their bytes; and that snapshot's size.
pub fn since_snapshot(client: &mut Client, seq: u64) -> Result<SinceSnapshot, StoreError> {
    let r = client.query_one(
        "WITH s AS (SELECT seq, octet_length(data) AS size FROM snapshots ORDER BY seq DESC LIMIT 1)
         SELECT count(*), coalesce(sum(octet_length(body)), 0)::bigint,
                coalesce((SELECT size FROM s), 0)::bigint
         FROM log WHERE seq > coalesce((SELECT seq FROM s), 0) AND seq <= $1",
        &[&(seq as i64)],
    )?;
    Ok(SinceSnapshot {
        entries: r.get::<_, i64>(0) as u64,
        bytes: r.get::<_, i64>(1) as u64,
        snapshot_bytes: r.get::<_, i64>(2) as u64,
    })
}

/// The latest snapshot's seq, when it is past entry `seq` and the log up
/// to it is more than a new snapshot would be taken for (the rule of
/// [`SinceSnapshot::due`]), or lacks entries its owner pruned: a node that
/// far behind loads it rather than replay that much, or than fail.
pub fn snapshot_past(client: &mut Client, seq: u64) -> Result<Option<u64>, StoreError> {
    let Some(r) = client.query_opt(
        "WITH s AS (SELECT seq, octet_length(data) AS size FROM snapshots ORDER BY seq DESC LIMIT 1)
         SELECT s.seq, s.size::bigint, count(l.seq), coalesce(sum(octet_length(l.body)), 0)::bigint,
                coalesce(min(l.seq), s.seq + 1)
         FROM s LEFT JOIN log l ON l.seq > $1 AND l.seq <= s.seq
         WHERE s.seq > $1 GROUP BY s.seq, s.size",
        &[&(seq as i64)],
    )?
    else {
        return Ok(None);
    };
    let behind = SinceSnapshot {
        entries: r.get::<_, i64>(2) as u64,
        bytes: r.get::<_, i64>(3) as u64,
        snapshot_bytes: r.get::<_, i64>(1) as u64,
    };
    let pruned = r.get::<_, i64>(4) as u64 != seq + 1;
    Ok((pruned || behind.due()).then(|| r.get::<_, i64>(0) as u64))
}

pub struct SinceSnapshot {
    pub entries: u64,
    pub bytes: u64,
    pub snapshot_bytes: u64,
}

impl SinceSnapshot {
    /// Whether a new node would rather load a new snapshot than replay
    /// this: the log's bytes stand for the replay's work. A quarter of the
    /// last snapshot's size at the least, so that snapshots, which nodes
    /// may not delete, take at most about four times the log they spare.
    pub fn due(&self) -> bool {
        self.entries > 0
            && (self.entries >= SNAPSHOT_ENTRIES
                || self.bytes >= SNAPSHOT_BYTES.max(self.snapshot_bytes / 4))
    }
}

/// Log entries past which a snapshot is due whatever their size: each is
/// a transaction to replay.
pub const SNAPSHOT_ENTRIES: u64 = 10_000;
/// Bytes of log past which a snapshot is due: about 25,000 staged
/// entries, a fraction of a second to replay.
const SNAPSHOT_BYTES: u64 = 256 << 10;

/// A command as the log stores it: JSON, gzipped at the fastest level.
pub fn encode(command: &Command) -> Result<Vec<u8>, StoreError> {
    let json = serde_json::to_vec(command).map_err(StoreError::LogEncoding)?;
    let mut gz = GzEncoder::new(Vec::with_capacity(json.len() / 8), Compression::fast());
    gz.write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| StoreError::LogEncoding(serde_json::Error::io(e)))
}

fn decode(seq: u64, body: &[u8]) -> Result<Command, StoreError> {
    let unreadable = |source| StoreError::LogEntryUnreadable { seq, source };
    // Whole, then parsed from the slice: serde_json reads a reader a byte
    // at a time, several times slower.
    let mut json = Vec::with_capacity(body.len() * 8);
    GzDecoder::new(body)
        .read_to_end(&mut json)
        .map_err(|e| unreadable(serde_json::Error::io(e)))?;
    Command::from_json(&json).map_err(unreadable)
}

#[cfg(test)]
mod tests {
    use super::{
        SNAPSHOT_BYTES, SNAPSHOT_ENTRIES, SinceSnapshot, announcement, decode, deploy_announced,
        encode,
    };
    use crate::{
        model::{List, Sources, Target, Ttl},
        store::{Announced, Audit, Command, Stage},
    };

    #[test]
    fn a_staged_upsert_leaves_its_unset_fields_out_and_entries_with_them_still_read() {
        let upsert = |reason: Option<&str>, ttl| Stage::Upsert {
            target: Target::parse("192.0.2.1").unwrap(),
            list: List::Deny,
            reason: reason.map(str::to_string),
            ttl,
            monitor: None,
            source: None,
            keep_longer_ttl: true,
        };
        let command = Command::Stage {
            ops: vec![upsert(None, None), upsert(Some("r"), Some(Ttl::Never))],
            user: "root".into(),
            now: 1_000,
            default_ttl: None,
            audit: Audit::Each,
        };
        let json = serde_json::to_string(&command).unwrap();
        assert!(
            json.contains(
                r#"{"Upsert":{"target":"192.0.2.1","list":"deny","keep_longer_ttl":true}}"#
            ),
            "{json}"
        );
        assert!(json.contains(r#""reason":"r","ttl":"Never""#), "{json}");
        assert_eq!(decode(1, &encode(&command).unwrap()).unwrap(), command);
        // As the release before wrote it: every field, null or not.
        let old = json.replacen(
            r#""list":"deny","keep"#,
            r#""list":"deny","reason":null,"ttl":null,"monitor":null,"source":null,"keep"#,
            1,
        );
        assert_eq!(serde_json::from_str::<Command>(&old).unwrap(), command);
    }

    #[test]
    fn a_deploy_announced_reads_back_and_a_new_entry_s_seq_is_none() {
        for sources in [
            Sources::All,
            Sources::Admin,
            Sources::Only("feed:a b".into()),
        ] {
            let deploy = Announced {
                now: 1_796_574_311_378,
                sources,
            };
            let payload = announcement("edge-1.example", &deploy).unwrap();
            assert_eq!(deploy_announced(&payload), Some(("edge-1.example", deploy)));
        }
        assert_eq!(deploy_announced("42"), None);
        assert_eq!(deploy_announced("deploying soon"), None);
    }

    fn since(entries: u64, bytes: u64, snapshot_bytes: u64) -> SinceSnapshot {
        SinceSnapshot {
            entries,
            bytes,
            snapshot_bytes,
        }
    }

    #[test]
    fn a_snapshot_is_due_once_the_log_outweighs_a_quarter_of_the_last() {
        assert!(!since(0, 0, 0).due(), "nothing new");
        assert!(!since(3, SNAPSHOT_BYTES - 1, 0).due());
        assert!(since(3, SNAPSHOT_BYTES, 0).due());
        // After a snapshot of 40 MB, 10 MB of log make the next.
        assert!(!since(3, 9 << 20, 40 << 20).due());
        assert!(since(3, 10 << 20, 40 << 20).due());
        // Many small entries, each its own transaction to replay.
        assert!(since(SNAPSHOT_ENTRIES, 1, 40 << 20).due());
    }
}
