//! Signed-in sessions, in memory only: a restart signs everyone out, and
//! no session outlives its absolute limit or an idle spell, whatever the
//! cookie says. The caller passes the time, so tests step a clock.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::users::{Account, Role};

/// A session as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user: String,
    /// The account as the accounts file had it at sign-in (its role is the
    /// session's). A request goes
    /// on only while the file still says the same, so removing an account,
    /// or changing its role or password, ends its sessions at their next
    /// request rather than up to 12 hours later.
    pub account: Account,
    /// The token every state-changing request of this session carries.
    pub csrf: String,
}

impl Session {
    pub fn role(&self) -> Role {
        self.account.role
    }
}

struct Entry {
    session: Session,
    created: Instant,
    last_seen: Instant,
    /// A message for the next page this session sees ("Deployed revision
    /// 12"), so a redirect after a change can still say what it did.
    flash: Option<String>,
    /// The revision this session just deployed, whose way to the fleet's
    /// nodes the next page follows.
    deployed: Option<u64>,
}

pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
    max: Duration,
    idle: Duration,
}

/// 256 random bits from the thread's CSPRNG, in hex.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(max: Duration, idle: Duration) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            max,
            idle,
        }
    }

    fn live(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.created) < self.max
            && now.saturating_duration_since(e.last_seen) < self.idle
    }

    pub fn create(&self, user: &str, account: &Account, now: Instant) -> Session {
        let session = Session {
            id: random_token(),
            user: user.to_string(),
            account: account.clone(),
            csrf: random_token(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Dead sessions go when a new one comes, so the map stays bounded
        // by the sessions alive at once.
        map.retain(|_, e| self.live(e, now));
        map.insert(
            session.id.clone(),
            Entry {
                session: session.clone(),
                created: now,
                last_seen: now,
                flash: None,
                deployed: None,
            },
        );
        session
    }

    /// The live session with this id, its idle time restarted; an expired
    /// one is dropped.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(id)?;
        if !self.live(entry, now) {
            map.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(entry.session.clone())
    }

    /// Leaves `message` for the session's next page.
    pub fn flash(&self, id: &str, message: String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(id) {
            e.flash = Some(message);
        }
    }

    /// Leaves the revision this session deployed for the next page, which
    /// follows it to the fleet's nodes.
    pub fn deployed(&self, id: &str, revision: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(id) {
            e.deployed = Some(revision);
        }
    }

    /// The revision left for this page, once.
    pub fn take_deployed(&self, id: &str) -> Option<u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get_mut(id).and_then(|e| e.deployed.take())
    }

    /// The message left for this page, once.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get_mut(id).and_then(|e| e.flash.take())
    }

    /// Sign out: the id is worth nothing from now on.
    pub fn remove(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(role: Role) -> Account {
        Account {
            role,
            password: None,
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn ids_and_tokens_are_256_random_bits() {
        let s = Sessions::new(MIN, MIN);
        let now = Instant::now();
        let a = s.create("alice", &account(Role::Admin), now);
        let b = s.create("alice", &account(Role::Admin), now);
        assert_eq!(a.id.len(), 64);
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_ne!(a.id, a.csrf);
    }

    #[test]
    fn an_idle_session_expires_and_use_keeps_it_alive() {
        let s = Sessions::new(720 * MIN, 60 * MIN);
        let t0 = Instant::now();
        let a = s.create("alice", &account(Role::Admin), t0);
        // Used every 59 minutes, it lives on past the idle limit...
        let t1 = t0 + 59 * MIN;
        assert_eq!(s.get(&a.id, t1).as_ref(), Some(&a));
        let t2 = t1 + 59 * MIN;
        assert!(s.get(&a.id, t2).is_some());
        // ...and an hour without use ends it, for good.
        assert!(s.get(&a.id, t2 + 60 * MIN).is_none());
        assert!(s.get(&a.id, t2).is_none());
    }

    #[test]
    fn a_session_ends_at_its_absolute_limit_however_busy() {
        let s = Sessions::new(120 * MIN, 60 * MIN);
        let t0 = Instant::now();
        let a = s.create("alice", &account(Role::Viewer), t0);
        let mut t = t0;
        while t + 30 * MIN < t0 + 120 * MIN {
            t += 30 * MIN;
            assert!(s.get(&a.id, t).is_some());
        }
        assert!(s.get(&a.id, t0 + 120 * MIN).is_none());
    }

    #[test]
    fn sign_out_kills_the_session_on_the_server() {
        let s = Sessions::new(MIN, MIN);
        let now = Instant::now();
        let a = s.create("alice", &account(Role::Admin), now);
        s.flash(&a.id, "deployed".into());
        assert_eq!(s.take_flash(&a.id).as_deref(), Some("deployed"));
        assert_eq!(s.take_flash(&a.id), None);
        s.remove(&a.id);
        assert!(s.get(&a.id, now).is_none());
        assert!(s.get("not-an-id", now).is_none());
    }
}
