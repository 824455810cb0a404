//! Feed subscriptions: settings, state and the held list, one row each.

use rusqlite::{Connection, OptionalExtension as _, params};

use super::rows::audit;
use crate::{
    model::{FeedSettings, FeedState, Millis, Target},
    store::{FeedRecord, HeldList, StoreError},
};

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("feed rows serialize")
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &'static str,
    text: String,
) -> Result<T, StoreError> {
    serde_json::from_str(&text).map_err(|_| StoreError::Unreadable { what, value: text })
}

pub(super) fn feeds(conn: &Connection) -> Result<Vec<FeedRecord>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT name, settings, state FROM feeds ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, settings, state) = row?;
        out.push(FeedRecord {
            name,
            settings: parse("feed settings", settings)?,
            state: parse("feed state", state)?,
        });
    }
    Ok(out)
}

pub(super) fn add_feed(
    conn: &mut Connection,
    name: &str,
    settings: &FeedSettings,
    redacted_url: &str,
    state: &FeedState,
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    let added = tx.execute(
        "INSERT OR IGNORE INTO feeds(name, settings, state) VALUES (?1, ?2, ?3)",
        params![name, json(settings), json(state)],
    )?;
    if added == 0 {
        return Err(StoreError::FeedExists {
            name: name.to_string(),
        });
    }
    // The URL may carry credentials: the log keeps it redacted.
    let mut shown = settings.clone();
    shown.url = redacted_url.to_string();
    let detail = serde_json::json!({ "feed": name, "settings": shown });
    let seq = audit(&tx, now, &state.added_by, "feed add", None, Some(detail))?;
    tx.commit()?;
    Ok(seq)
}

pub(super) fn set_feed_state(
    conn: &mut Connection,
    name: &str,
    state: &FeedState,
    held: HeldList<'_>,
) -> Result<(), StoreError> {
    // Kept, the held list (up to --max-entries targets) is neither read
    // nor written again.
    let n = match held {
        HeldList::Keep => conn.execute(
            "UPDATE feeds SET state = ?2 WHERE name = ?1",
            params![name, json(state)],
        )?,
        HeldList::Clear => conn.execute(
            "UPDATE feeds SET state = ?2, held = NULL WHERE name = ?1",
            params![name, json(state)],
        )?,
        HeldList::Set(h) => conn.execute(
            "UPDATE feeds SET state = ?2, held = ?3 WHERE name = ?1",
            params![
                name,
                json(state),
                json(&h.iter().map(ToString::to_string).collect::<Vec<_>>())
            ],
        )?,
    };
    if n == 0 {
        return Err(StoreError::NoFeed {
            name: name.to_string(),
        });
    }
    Ok(())
}

pub(super) fn held_list(conn: &Connection, name: &str) -> Result<Option<Vec<Target>>, StoreError> {
    let held: Option<Option<String>> = conn
        .query_row("SELECT held FROM feeds WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(held) = held else {
        return Err(StoreError::NoFeed {
            name: name.to_string(),
        });
    };
    match held {
        None => Ok(None),
        Some(text) => {
            let list: Vec<String> = parse("held feed list", text)?;
            list.iter()
                .map(|t| StoreError::target(t))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        }
    }
}

pub(super) fn remove_feed(
    conn: &mut Connection,
    name: &str,
    user: &str,
    now: Millis,
) -> Result<u64, StoreError> {
    let tx = conn.savepoint()?;
    if tx.execute("DELETE FROM feeds WHERE name = ?1", [name])? == 0 {
        return Err(StoreError::NoFeed {
            name: name.to_string(),
        });
    }
    let detail = serde_json::json!({ "feed": name });
    let seq = audit(&tx, now, user, "feed remove", None, Some(detail))?;
    tx.commit()?;
    Ok(seq)
}
