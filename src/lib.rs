//! Gatehouse: accounts, sessions and access control for web applications.

/// Signup, verification, login, logout and the profile.
pub mod accounts;
/// The application state, router, layers and server lifecycle.
pub mod app;
/// Who is calling: sessions, CSRF, password hashing, the route guards.
pub mod auth;
/// Billing through Stripe: products, prices, subscriptions, checkout, webhooks.
pub mod billing;
/// Every setting, read and validated once.
pub mod config;
/// The database pool, migrations and shared SQL helpers.
pub mod db;
/// `GET /docs`: the API reference as HTML pages, from the OpenAPI document.
pub mod docs;
/// The one error type and its JSON form.
pub mod error;
/// Middleware and extractors shared by every route.
pub mod http;
/// `gatehouse import-flask`: taking over the old Flask service's database.
pub mod import;
/// Kanban boards: boards, ordered columns and ordered tickets.
pub mod kanban;
/// The activity log and its writer.
pub mod logs;
/// Outgoing mail: the durable outbox and its sender.
pub mod mail;
/// Prometheus metrics.
pub mod metrics;
/// The OpenAPI description, generated from the route table.
pub mod openapi;
/// Roles and permissions, and user administration.
pub mod rbac;
/// `gatehouse generate-data`: generated accounts and log entries at scale.
pub mod seed;
/// Logging set-up.
pub mod telemetry;
/// The rule for one-line text fields.
pub mod text;
/// Brute-force protection: growing delays per account and per client address.
pub mod throttle;
/// Two-factor authentication: TOTP, recovery codes, emailed login codes.
pub mod twofa;
/// The web UI: server-rendered pages under `/ui/`.
pub mod ui;
