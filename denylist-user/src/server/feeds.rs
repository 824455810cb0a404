//! The feed scheduler: fetches what is due, without the core, and hands
//! each outcome to it. One refresh runs at a time, so a manual `feed
//! refresh` and the schedule never apply two lists of one feed at once.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::OnceCell;

use crate::{
    daemon::{
        Core, CoreError, HostProbe,
        fetch::{self, FetchPolicy, Fetched, Fetcher},
    },
    model::now_ms,
};

/// How often the schedule is looked at; feeds refresh at most every minute.
const TICK: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct FeedRunner {
    core: Arc<Mutex<Core>>,
    host: HostProbe,
    policy: FetchPolicy,
    // Made on first use: a host without CA certificates and without feeds
    // has no reason to fail at start.
    fetcher: Arc<OnceCell<Fetcher>>,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

impl FeedRunner {
    pub fn new(core: Arc<Mutex<Core>>) -> Self {
        let (host, policy) = {
            let c = core.lock().unwrap_or_else(|p| p.into_inner());
            (c.host_probe(), c.fetch_policy())
        };
        Self {
            core,
            host,
            policy,
            fetcher: Arc::new(OnceCell::new()),
            one_at_a_time: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Runs `f` with the core locked, on the blocking pool.
    async fn with_core<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core) -> Result<T, CoreError> + Send + 'static,
    ) -> Result<T, CoreError> {
        let core = self.core.clone();
        tokio::task::spawn_blocking(move || f(&mut core.lock().unwrap_or_else(|p| p.into_inner())))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// Fetches one feed and applies what came back. A failure to fetch is
    /// the feed's state, not an error; an error is the core's own.
    pub async fn refresh(&self, name: &str) -> Result<(), CoreError> {
        let _one = self.one_at_a_time.lock().await;
        let n = name.to_string();
        let job = match self.with_core(move |c| c.feed_job(&n)).await {
            Ok(job) => job,
            // A header file moved out of the feed directory since the feed
            // was added: the feed fails (and backs off) until it is put back.
            Err(e @ CoreError::FeedHeaderFile { .. }) => {
                let (n, text) = (name.to_string(), e.to_string());
                return self.with_core(move |c| c.feed_failed(&n, &text)).await;
            }
            Err(e) => return Err(e),
        };
        let fetched = self.fetch(&job).await;
        let n = name.to_string();
        match fetched {
            Ok(outcome) => {
                let host = self.host.clone();
                self.with_core(move |c| {
                    let ctx = match host.for_feed() {
                        Ok(ctx) => ctx,
                        // Fail closed: no list goes in unchecked.
                        Err(e) => return c.feed_failed(&n, &e.to_string()),
                    };
                    match outcome {
                        Fetched::NotModified => c.feed_fetched(&n, None, Default::default(), &ctx),
                        Fetched::Body { bytes, validators } => {
                            c.feed_fetched(&n, Some(&bytes), validators, &ctx)
                        }
                    }
                })
                .await
            }
            Err(e) => {
                let text = e.to_string();
                self.with_core(move |c| c.feed_failed(&n, &text)).await
            }
        }
    }

    async fn fetch(
        &self,
        job: &crate::daemon::feeds::FeedJob,
    ) -> Result<Fetched, fetch::FetchError> {
        let headers = match &job.header_file {
            Some(f) => fetch::read_header_file(f)?,
            None => Vec::new(),
        };
        let fetcher = self
            .fetcher
            .get_or_try_init(|| async { Fetcher::new(self.policy.clone()) })
            .await?;
        fetcher.fetch(&job.url, &job.validators, &headers).await
    }

    /// Refreshes each feed as it falls due, for as long as the daemon runs.
    pub async fn schedule(self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = match self.with_core(|c| c.feeds_due(now_ms())).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!("reading the feed schedule: {e}");
                    continue;
                }
            };
            for job in due {
                if let Err(e) = self.refresh(&job.name).await {
                    tracing::error!(feed = job.name, "feed refresh: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::unix::fs::PermissionsExt as _,
        sync::{Arc, Mutex},
    };

    use super::FeedRunner;
    use crate::{
        daemon::testing::{TempDir, core},
        model::FeedStatus,
        wire::FeedAddRequest,
    };

    /// A feed whose header file left the feed directory fails, and says
    /// why, instead of erring on every tick of the schedule.
    #[tokio::test]
    async fn a_feed_whose_header_file_went_fails_until_it_is_back() {
        let dir = TempDir::new("headers");
        let feeds = dir.0.join("feeds");
        std::fs::create_dir_all(&feeds).unwrap();
        std::fs::write(feeds.join("list.txt"), "192.0.2.1\n").unwrap();
        let header = feeds.join("auth.headers");
        std::fs::write(&header, "Authorization: Bearer t0ken\n").unwrap();
        std::fs::set_permissions(&header, std::fs::Permissions::from_mode(0o600)).unwrap();
        let core = Arc::new(Mutex::new(core(&dir)));
        let req = FeedAddRequest {
            name: "h".into(),
            url: Some(format!("file://{}", feeds.join("list.txt").display())),
            header_file: Some(header.display().to_string()),
            ..FeedAddRequest::default()
        };
        core.lock().unwrap().feed_add("alice", req).unwrap();
        let runner = FeedRunner::new(core.clone());
        runner.refresh("h").await.unwrap();
        assert_eq!(
            core.lock().unwrap().feed("h").unwrap().state,
            FeedStatus::Ok
        );
        std::fs::remove_file(&header).unwrap();
        runner.refresh("h").await.unwrap();
        let info = core.lock().unwrap().feed("h").unwrap();
        assert_eq!(info.state, FeedStatus::Failing);
        let error = info.last_error.unwrap();
        assert!(error.contains("header file"), "{error}");
        assert!(!error.contains("t0ken"), "{error}");
    }
}
