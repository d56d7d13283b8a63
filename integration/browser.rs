//! A real browser for the dashboard tests: Debian's `chromium`, headless,
//! driven over WebDriver by Debian's `chromium-driver` on a loopback port.
//! Each `Browser` has its own driver and profile directory; dropping it
//! ends both and every chromium process started for that profile.
//!
//! Chromium is kept off the network: its background services are off and
//! its proxy is a closed loopback port, so only loopback (which Chromium
//! never proxies) is reachable from the page.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::util::{free_addr, free_port, pids_mentioning, poll_for, skip, terminate};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";
/// Chromium's first start on a busy two-core machine takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Browser {
    client: Client,
    /// Held for its drop.
    _processes: Processes,
}

/// The driver and the profile its chromium uses; ended and removed on drop.
struct Processes {
    driver: Child,
    profile: TempDir,
}

impl Browser {
    /// `None` (after `skip`, which fails under CI) without chromium.
    pub async fn start(width: u32, height: u32) -> Option<Browser> {
        if !Path::new(CHROMIUM).exists() || !Path::new(DRIVER).exists() {
            skip("no chromium or chromium-driver (apt-get install chromium chromium-driver)");
            return None;
        }
        let profile = tempfile::Builder::new()
            .prefix("teal-chromium-")
            .tempdir()
            .expect("profile dir");
        let port = free_port();
        let driver = Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let processes = Processes { driver, profile };
        let url = format!("http://127.0.0.1:{port}");
        let driver_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        // It listens once it is ready (and keeps connections open, so a
        // request to it is not the probe).
        let ready = poll_for(START_TIMEOUT, || async {
            tokio::net::TcpStream::connect(driver_addr).await.ok().map(drop)
        })
        .await;
        assert!(ready.is_some(), "chromedriver did not listen on {url}");
        // A port nothing listens on: whatever is not loopback goes nowhere.
        let no_proxy = free_addr();
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // The tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", processes.profile.path().display()),
                    format!("--proxy-server=http://{no_proxy}"),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-extensions",
                    "--disable-default-apps",
                    "--disable-domain-reliability",
                    "--no-pings",
                ],
            },
            // The browser's network log: every request the page makes.
            "goog:loggingPrefs": {"performance": "ALL"},
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object")
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("chromium did not start through chromedriver: {e}"));
        Some(Browser {
            client,
            _processes: processes,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Runs `script` (a function body) in the page; its return value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("run {script:?} in the page: {e}"))
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    /// Every request the browser sent (or tried to) for a document whose
    /// URL starts with `document`, from its network log: the page's own,
    /// not the browser's (its start page loads `chrome://` resources).
    pub async fn requests_of(&self, document: &str) -> Vec<String> {
        let entries = self
            .client
            .issue_cmd(PerformanceLog)
            .await
            .expect("read the performance log");
        entries
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| serde_json::from_str::<Value>(entry["message"].as_str()?).ok())
            .filter(|message| message["message"]["method"] == "Network.requestWillBeSent")
            .map(|message| message["message"]["params"].clone())
            .filter(|params| params["documentURL"].as_str().is_some_and(|d| d.starts_with(document)))
            .filter_map(|params| params["request"]["url"].as_str().map(str::to_owned))
            .collect()
    }

    /// Ends the session (chromium exits), then the driver.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

impl Drop for Processes {
    /// The driver, and every chromium process of this profile (they name
    /// it on their command line).
    fn drop(&mut self) {
        let mut pids = pids_mentioning(&self.profile.path().to_string_lossy());
        pids.push(self.driver.id() as i32);
        terminate(&pids, Duration::from_secs(2));
        let _ = self.driver.wait();
    }
}

/// chromedriver's log endpoint, which WebDriver proper does not have.
#[derive(Debug)]
struct PerformanceLog;

impl WebDriverCompatibleCommand for PerformanceLog {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (::http::Method, Option<String>) {
        (::http::Method::POST, Some(r#"{"type": "performance"}"#.to_owned()))
    }
}
