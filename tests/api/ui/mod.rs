//! The web UI's tests: a real Chromium driven through chromedriver, and plain HTTP
//! walks that prove every form works without JavaScript.

mod admin;
mod billing;
mod browser;
mod dashboard;
mod forms;
mod journey;
mod kanban;

use crate::helpers::TestApp;

/// Spawns a server whose emails point at the web UI's pages, as by default.
pub async fn ui_app(backend: crate::helpers::Backend) -> TestApp {
    TestApp::spawn_with(
        backend,
        &[
            ("VERIFY_URL_TEMPLATE", "{PUBLIC_URL}/ui/verify/{token}"),
            ("RESET_URL_TEMPLATE", "{PUBLIC_URL}/ui/reset/{token}"),
        ],
    )
    .await
}

/// A password for the tests that change one.
pub const NEW_PASSWORD: &str = "Quartz-Harbor-77-Meadow";
