//! Mail over a real SMTP conversation: delivered with a working link, and not lost
//! while the SMTP server is down.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{link_in, Backend, TestApp};
use crate::on_both_databases;
use crate::smtp::SmtpServer;

on_both_databases!(
    signup_mail_arrives_over_smtp_with_a_working_link,
    mail_waits_for_a_server_that_is_down,
    mail_survives_the_smtp_server_stopping_and_restarting,
);

async fn smtp_app(backend: Backend, port: u16) -> TestApp {
    let port = port.to_string();
    TestApp::spawn_with(
        backend,
        &[
            ("MAIL_BACKEND", "smtp"),
            ("MAIL_SERVER", "127.0.0.1"),
            ("MAIL_PORT", port.as_str()),
            ("EMAIL_SENDER", "Gatehouse Tests <gatehouse@test.local>"),
        ],
    )
    .await
}

async fn signup_mail_arrives_over_smtp_with_a_working_link(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let app = smtp_app(backend, smtp.port).await;
    assert_eq!(app.signup("uma").await.status(), StatusCode::CREATED);
    let received = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|m| m.to == "uma@example.com"));
    let verify = received
        .iter()
        .find(|m| m.subject.contains("Verify"))
        .unwrap();
    assert!(verify.html.contains("href=\""));
    let link = link_in(verify);
    let res = app.client.get(&link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM mail_outbox").await,
        0,
        "delivered mail leaves the outbox"
    );
}

async fn mail_waits_for_a_server_that_is_down(backend: Backend) {
    // A port with nothing listening on it, for now.
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut app = smtp_app(backend, port).await;
    for name in ["vera", "walt", "xena"] {
        assert_eq!(app.signup(name).await.status(), StatusCode::CREATED);
    }
    // The sender has tried and failed; everything is still queued.
    app.state.mailer.drain().await;
    assert!(
        app.scalar("SELECT MAX(attempts) FROM mail_outbox").await >= 1,
        "delivery was attempted"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM mail_outbox").await, 6);

    let smtp = SmtpServer::start_on(port).await;
    let received = smtp.wait_for(6, Duration::from_secs(20)).await;
    assert_eq!(received.len(), 6, "every queued message arrives");
    for name in ["vera", "walt", "xena"] {
        let to = format!("{name}@example.com");
        assert_eq!(received.iter().filter(|m| m.to == to).count(), 2);
    }
    app.state.mailer.drain().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM mail_outbox").await, 0);
    app.shutdown().await;
}

/// The SMTP server goes away between two messages and comes back: the message queued
/// meanwhile waits in the outbox and arrives once, and every message carries the
/// `Message-ID` of its outbox row, the same on every attempt.
async fn mail_survives_the_smtp_server_stopping_and_restarting(backend: Backend) {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let app = smtp_app(backend, port).await;
    assert_eq!(app.signup("yuri").await.status(), StatusCode::CREATED);
    let first = smtp.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 2);
    drop(smtp);

    assert_eq!(app.signup("zora").await.status(), StatusCode::CREATED);
    app.state.mailer.drain().await;
    let (id, created_at, attempts): (i64, i64, i64) =
        sqlx::query_as("SELECT id, created_at, attempts FROM mail_outbox ORDER BY id LIMIT 1")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap();
    assert!(
        attempts >= 1,
        "delivery was tried while the server was away"
    );

    let smtp = SmtpServer::start_on(port).await;
    let second = smtp.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        second.len(),
        2,
        "the queued messages arrive after the restart"
    );
    assert!(second.iter().all(|m| m.to == "zora@example.com"));
    let expected = format!("outbox-{id}-{created_at}@test.local");
    assert!(
        second.iter().any(|m| m.message_id == expected),
        "{expected} in {:?}",
        second.iter().map(|m| &m.message_id).collect::<Vec<_>>()
    );
    let mut ids: Vec<&str> = first
        .iter()
        .chain(&second)
        .map(|m| m.message_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4, "one Message-ID per message");
    app.state.mailer.drain().await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM mail_outbox").await, 0);
}
