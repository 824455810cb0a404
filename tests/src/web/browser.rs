//! Headless Chromium, driven through chromedriver with fantoccini, behind a
//! blocking API: a test reads as the clicks a user makes. Controls are
//! found by their accessible names (issue 14 fixes them), and every find
//! checks the name the browser itself computes for the control, so a
//! test passes only if a screen reader would announce it the same way.

use std::{
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use fantoccini::{
    Client, ClientBuilder, Locator, elements::Element, wd::WebDriverCompatibleCommand,
};
use serde_json::{Value, json};

use super::http;
use crate::daemon::TempDir;

/// How long a control may take to appear: a page load plus an htmx swap.
const WAIT: Duration = Duration::from_secs(10);

/// Debian's chromium: /usr/bin/chromium is a wrapper script that adds
/// flags from /etc/chromium.d; the browser proper is beside its libraries.
const CHROMIUM: &str = "/usr/lib/chromium/chromium";

/// `GET /session/{id}/element/{id}/computedlabel` (WebDriver, "Get
/// Computed Label"): the element's accessible name as the browser's
/// accessibility tree has it.
#[derive(Debug)]
struct ComputedLabel(String);

impl WebDriverCompatibleCommand for ComputedLabel {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/element/{}/computedlabel",
            session.unwrap_or_default(),
            self.0
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (::http::Method, Option<String>) {
        (::http::Method::GET, None)
    }
}

/// An XPath string literal for `s`, which may hold either quote.
fn literal(s: &str) -> String {
    if !s.contains('\'') {
        format!("'{s}'")
    } else if !s.contains('"') {
        format!("\"{s}\"")
    } else {
        let parts: Vec<String> = s.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

/// Elements that may carry the accessible name `name`: whatever names
/// them in the markup (aria-label, aria-labelledby, a <label>, its text,
/// a button's value, a title). Loose on purpose ("Add" also matches
/// "Address"); the computed name then picks the exact one.
fn candidates(name: &str) -> String {
    let n = literal(name);
    let interactive = "self::button or self::a or self::input or self::select \
                       or self::textarea or self::summary or @role";
    format!(
        "//*[({interactive}) and (contains(@aria-label, {n}) or contains(normalize-space(.), {n}) \
         or contains(@value, {n}) or contains(@title, {n}) or @aria-labelledby \
         or @id = //label[contains(normalize-space(.), {n})]/@for \
         or ancestor::label[contains(normalize-space(.), {n})])]"
    )
}

/// A chromedriver and the Chromium it drives, both in a process group of
/// their own, killed together on drop.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// The console's origin, which relative paths are resolved against.
    pub base: String,
    _profile: TempDir,
}

impl Browser {
    /// A fresh browser (its own profile: no cookie of another test) that
    /// opens `base` + paths.
    pub fn start(base: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let profile = TempDir::new("chromium");
        let port = super::free_port();
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Chromium keeps its config and crash database under HOME: the
            // profile's, so nothing of it outlives the test.
            .env("HOME", profile.path())
            // Chromium's processes join this group, so one kill ends them all.
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver: run `cargo xtask setup` to install chromium-driver");
        let mut b = Self {
            rt,
            client: None,
            driver,
            base: base.trim_end_matches('/').to_string(),
            _profile: profile,
        };
        b.wait_driver(port, &log);
        let caps = json!({
            "browserName": "chrome",
            // Leave any alert open, so a test can see that one was raised.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Root cannot use Chromium's sandbox.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--window-size=1280,900",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-crash-reporter",
                    "--disable-breakpad",
                    format!("--user-data-dir={}", b._profile.path().join("profile").display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object literal")
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client =
            b.rt.block_on(
                ClientBuilder::new(connector)
                    .capabilities(caps)
                    .connect(&format!("http://127.0.0.1:{port}/")),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "a Chromium session: {e}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        b.client = Some(client);
        b
    }

    fn wait_driver(&mut self, port: u16, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if http::request(port, "GET", "/status", &[], None).is_ok_and(|r| r.status == 200) {
                return;
            }
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "chromedriver did not come up on port {port}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("a session")
    }

    /// Opens `path` on the console and waits for the page to load.
    pub fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.rt
            .block_on(self.c().goto(&url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Opens an absolute URL, e.g. a page of another site.
    pub fn goto_url(&self, url: &str) {
        self.rt
            .block_on(self.c().goto(url))
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Waits until `js` returns true.
    #[track_caller]
    pub fn wait_true(&self, js: &str) {
        let deadline = Instant::now() + WAIT;
        while self.script(js) != Value::Bool(true) {
            if Instant::now() > deadline {
                panic!("{js:?} never held on {}:\n{}", self.path(), self.text());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The path of the page shown.
    pub fn path(&self) -> String {
        let url = self.rt.block_on(self.c().current_url()).expect("the URL");
        url.path().to_string()
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `js` in the page and returns what it returns.
    pub fn script(&self, js: &str) -> Value {
        self.rt
            .block_on(self.c().execute(js, vec![]))
            .unwrap_or_else(|e| panic!("script {js:?}: {e}"))
    }

    /// Waits until the page's text contains `s`.
    #[track_caller]
    pub fn wait_text(&self, s: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.text();
            if t.contains(s) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("{s:?} never showed on {}:\n{t}", self.path());
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The accessible name Chromium computes for `e`.
    fn label(&self, e: &Element) -> Option<String> {
        let id = e.element_id().to_string();
        self.rt
            .block_on(self.c().issue_cmd(ComputedLabel(id)))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
    }

    /// The displayed controls whose accessible name is exactly `name`.
    pub fn all(&self, name: &str) -> Vec<Element> {
        let found = self
            .rt
            .block_on(self.c().find_all(Locator::XPath(&candidates(name))))
            .unwrap_or_default();
        found
            .into_iter()
            .filter(|e| self.label(e).is_some_and(|l| l.trim() == name))
            .filter(|e| self.rt.block_on(e.is_displayed()).unwrap_or(false))
            .collect()
    }

    /// Opens `path` until `done` holds, up to 20 times half a second
    /// apart: for pages drawn when asked whose data comes in over time,
    /// such as the rate detector's, an epoch a second.
    pub fn revisit(&self, path: &str, done: impl Fn(&Self) -> bool) {
        for _ in 0..20 {
            self.goto(path);
            if done(self) {
                return;
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// Whether a control named `name` is on the page now.
    pub fn has(&self, name: &str) -> bool {
        !self.all(name).is_empty()
    }

    /// The control named `name`, waiting for it to appear.
    #[track_caller]
    pub fn find(&self, name: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.all(name).into_iter().next() {
                return e;
            }
            if Instant::now() > deadline {
                panic!(
                    "no control named {name:?} on {}:\n{}",
                    self.path(),
                    self.text()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    #[track_caller]
    pub fn click(&self, name: &str) {
        let e = self.find(name);
        self.rt
            .block_on(e.click())
            .unwrap_or_else(|err| panic!("click {name:?}: {err}"));
    }

    /// Replaces the text of the field named `name`.
    #[track_caller]
    pub fn fill(&self, name: &str, text: &str) {
        let e = self.find(name);
        self.rt
            .block_on(async {
                e.clear().await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|err| panic!("type into {name:?}: {err}"));
    }

    /// Whether the checkbox named `name` is ticked.
    #[track_caller]
    pub fn checked(&self, name: &str) -> bool {
        let e = self.find(name);
        self.rt.block_on(e.is_selected()).expect("is_selected")
    }

    /// Signs in through the login form.
    #[track_caller]
    pub fn sign_in(&self, user: &str, password: &str) {
        self.goto("/login");
        self.fill("Username", user);
        self.fill("Password", password);
        self.click("Sign in");
    }

    /// `Cookie:` as the browser would send it to the console, HttpOnly
    /// cookies included (WebDriver sees them; page script does not).
    pub fn cookie_header(&self) -> String {
        let cookies = self
            .rt
            .block_on(self.c().get_all_cookies())
            .expect("the cookies");
        cookies
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The cookies as WebDriver reports them: name, HttpOnly, SameSite.
    pub fn cookies(&self) -> Vec<(String, bool, String)> {
        let cookies = self
            .rt
            .block_on(self.c().get_all_cookies())
            .expect("the cookies");
        cookies
            .iter()
            .map(|c| {
                (
                    c.name().to_string(),
                    c.http_only().unwrap_or(false),
                    c.same_site().map(|s| s.to_string()).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// The text of an open alert, confirm or prompt dialog, if any.
    pub fn dialog(&self) -> Option<String> {
        self.rt.block_on(self.c().get_alert_text()).ok()
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let png = self
            .rt
            .block_on(self.c().screenshot())
            .expect("a screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            // Ends Chromium cleanly; the kill below covers a hung one.
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), c.close()).await });
        }
        // SAFETY: kill on the process group this Browser started (its
        // leader is our own child), so nothing else is signalled.
        unsafe { libc::kill(-(self.driver.id() as i32), libc::SIGKILL) };
        let _ = self.driver.wait();
        // Chromium's crash handler starts a session of its own, out of the
        // group's reach; its database is under our profile's HOME, so its
        // command line names the profile, which no other process does.
        kill_naming(self._profile.path());
    }
}

/// SIGKILLs every process whose command line mentions `path`.
fn kill_naming(path: &Path) {
    let needle = path.as_os_str().as_encoded_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            // SAFETY: kill on a pid whose command line names this test's
            // own temporary profile: a process this Browser started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_quote_either_quote() {
        assert_eq!(literal("Add"), "'Add'");
        assert_eq!(literal("it's"), "\"it's\"");
        assert_eq!(literal("a'b\"c"), "concat('a', \"'\", 'b\"c')");
    }
}
