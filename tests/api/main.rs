//! Gatehouse's integration tests: the real server on a loopback port, real databases
//! (SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set), a real SMTP server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake_stripe;
mod helpers;
mod smtp;

mod accounts;
mod billing;
mod cache;
mod cli;
mod docs;
mod import;
mod instances;
mod kanban;
mod log_pages;
mod logs;
mod mail;
mod openapi;
mod rbac;
mod recovery;
mod reliability;
mod seed;
mod service;
mod throttle;
mod twofa;
mod ui;
