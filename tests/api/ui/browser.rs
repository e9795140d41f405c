//! Chromium through chromedriver, one of each per test, for the tests that need a
//! real browser; and screenshots of every screen in both themes at two widths.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A headless Chromium session; the driver process ends with it.
pub struct Browser {
    pub client: Client,
    base: String,
    driver: Child,
    port: u16,
    session: String,
}

/// Ends the WebDriver session (chromedriver then closes Chromium), then the driver:
/// killing only the driver would leave the browser running.
impl Drop for Browser {
    fn drop(&mut self) {
        use std::io::{Read, Write};
        if let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(20)));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session, self.port
            );
            if conn.write_all(request.as_bytes()).is_ok() {
                let _ = conn.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A browser for `base` (the server's address), or `None` with one line saying
    /// what to install when Chromium is missing. Under CI the browser must be there.
    pub async fn start(base: &str) -> Option<Browser> {
        let found =
            std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must run the browser tests: install the Debian packages chromium and chromium-driver"
            );
            eprintln!(
                "browser test skipped: install chromium and chromium-driver (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The driver says on stdout when it listens; read until then.
        let stdout = driver.stdout.take().unwrap();
        let ready = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .any(|line| line.contains("started successfully"))
        })
        .await
        .unwrap();
        assert!(ready, "chromedriver did not start");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1440,900",
                         "--hide-scrollbars", "--force-color-profile=srgb"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        let session = client.session_id().await.unwrap().unwrap();
        Some(Browser {
            client,
            base: base.trim_end_matches('/').to_owned(),
            driver,
            port,
            session,
        })
    }

    pub async fn open(&self, path: &str) {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        self.client.goto(&url).await.unwrap();
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Asserts the browser is on a page whose path and query start with `prefix`.
    pub async fn at(&self, prefix: &str) {
        let path = self.path().await;
        if !path.starts_with(prefix) {
            panic!("on {path}, not {prefix}:\n{}", self.text().await);
        }
    }

    /// Types into the field labelled `label`, as a person would find it.
    pub async fn fill(&self, label: &str, text: &str) {
        let labels = self.client.find_all(Locator::Css("label")).await.unwrap();
        for l in labels {
            if l.text().await.unwrap().trim() == label {
                let id = l.attr("for").await.unwrap().unwrap();
                let input = self.client.find(Locator::Id(&id)).await.unwrap();
                input.clear().await.unwrap();
                input.send_keys(text).await.unwrap();
                return;
            }
        }
        panic!("no field labelled {label:?} on {}", self.path().await);
    }

    /// Clicks the button or link whose text is `text` and waits for the page it
    /// leads to.
    pub async fn click(&self, text: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        for css in ["button", "a"] {
            for el in self.client.find_all(Locator::Css(css)).await.unwrap() {
                if el.text().await.unwrap().trim() == text && el.is_displayed().await.unwrap() {
                    el.click().await.unwrap();
                    // The old document's element goes stale once the new page is in.
                    for _ in 0..400 {
                        if old.tag_name().await.is_err() {
                            let ready = self
                                .client
                                .execute("return document.readyState;", vec![])
                                .await
                                .unwrap();
                            if ready == "complete" {
                                return;
                            }
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
                    }
                    panic!("clicking {text:?} led nowhere");
                }
            }
        }
        panic!("nothing to click named {text:?} on {}", self.path().await);
    }

    /// Clicks the displayed button named `text` that stays on the page (one that
    /// opens a dialog, say).
    pub async fn press(&self, text: &str) {
        for el in self.client.find_all(Locator::Css("button")).await.unwrap() {
            if el.text().await.unwrap().trim() == text && el.is_displayed().await.unwrap() {
                el.click().await.unwrap();
                return;
            }
        }
        panic!("no button named {text:?} on {}", self.path().await);
    }

    /// Clicks the element matching `css` (a button whose name is in hidden text).
    pub async fn press_at(&self, css: &str) {
        let el = self.client.find(Locator::Css(css)).await.unwrap();
        el.click().await.unwrap();
    }

    /// Scrolls the element matching `css` to the top of the window.
    pub async fn scroll_to(&self, css: &str) {
        self.client
            .execute(
                "document.querySelector(arguments[0]).scrollIntoView();",
                vec![json!(css)],
            )
            .await
            .unwrap();
    }

    /// Whether an element matching `css` is displayed.
    pub async fn shows(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.is_displayed().await.unwrap(),
            Err(_) => false,
        }
    }

    /// Whether the page, at `width` px, is wider than the window (a sideways scroll
    /// of the whole page); the window goes back to 1440 px.
    pub async fn overflows_at(&self, width: u32) -> bool {
        self.client.set_window_size(width, 900).await.unwrap();
        let wider = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        self.client.set_window_size(1440, 900).await.unwrap();
        wider == serde_json::Value::Bool(true)
    }

    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn text_of(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Asserts the page shows `text` somewhere.
    pub async fn sees(&self, text: &str) {
        let body = self.text().await;
        assert!(
            body.contains(text),
            "{text:?} not on {}:\n{body}",
            self.path().await
        );
    }

    /// Saves the page as it is now in both themes, at desktop and phone widths, under
    /// `target/ui-screenshots/`.
    pub async fn screenshots(&self, name: &str) {
        self.screenshots_at(name, None).await;
    }

    /// [`Browser::screenshots`] with the element matching `css`, when given, scrolled
    /// to the top at each width.
    pub async fn screenshots_at(&self, name: &str, css: Option<&str>) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let original: String = self
            .client
            .execute("return document.documentElement.dataset.theme;", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or("system")
            .to_owned();
        for theme in ["light", "dark"] {
            self.client
                .execute(
                    "document.documentElement.dataset.theme = arguments[0];",
                    vec![json!(theme)],
                )
                .await
                .unwrap();
            for (width, height) in [(1440, 900), (360, 780)] {
                self.client.set_window_size(width, height).await.unwrap();
                if let Some(css) = css {
                    self.scroll_to(css).await;
                }
                let png = self.client.screenshot().await.unwrap();
                std::fs::write(dir.join(format!("{name}-{theme}-{width}.png")), png).unwrap();
            }
        }
        self.client
            .execute(
                "document.documentElement.dataset.theme = arguments[0];",
                vec![json!(original)],
            )
            .await
            .unwrap();
        self.client.set_window_size(1440, 900).await.unwrap();
    }
}

pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}
