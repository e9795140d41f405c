//! The kanban pages: an editor running a board through plain forms, a reader who only
//! reads, refusals as pages, the live stream across instances, and two real browsers
//! on one board, one moving a ticket by keyboard and by drag, the other seeing it.

use std::time::Duration;

use fantoccini::key::Key;
use fantoccini::Locator;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::json;

use super::browser::Browser;
use super::forms::{signed_in, Walker};
use crate::helpers::{new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    an_editor_runs_a_board_without_javascript,
    a_reader_reads_and_is_refused_changes,
    bad_addresses_and_input_are_pages,
    the_script_gets_short_answers,
    live_events_reach_every_instance,
    a_stream_ends_with_its_session,
);

async fn user_with(app: &TestApp, username: &str, role: Option<&str>) -> i64 {
    app.verified_user(username).await;
    let id = app
        .scalar(&format!(
            "SELECT id FROM users WHERE username = '{username}'"
        ))
        .await;
    if let Some(role) = role {
        app.grant(id, role).await;
    }
    id
}

/// The board's columns as `name: ticket, ticket` lines, in order, from the tables.
async fn layout(app: &TestApp, board: i64) -> Vec<String> {
    let full = gatehouse::kanban::store::full_board(&app.state.db, board)
        .await
        .unwrap();
    full.columns
        .iter()
        .map(|c| {
            let titles: Vec<&str> = c.tickets.iter().map(|t| t.title.as_str()).collect();
            format!("{}: {}", c.name, titles.join(", "))
        })
        .collect()
}

async fn id_of(app: &TestApp, table: &str, column: &str, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM {table} WHERE {column} = '{name}'"))
        .await
}

/// The activity log entries of `action`, waited for (the log is written in the
/// background) up to a bound.
async fn logged(app: &TestApp, action: &str, at_least: i64) -> i64 {
    let sql = format!(
        "SELECT COUNT(*) FROM activity_logs WHERE details LIKE '%\"action\":\"{action}\"%'"
    );
    for _ in 0..200 {
        let n = app.scalar(&sql).await;
        if n >= at_least {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.scalar(&sql).await
}

async fn an_editor_runs_a_board_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    user_with(&app, "boss", Some("Admin")).await;
    let mut w = signed_in(&app, "boss").await;

    w.follow("Boards").await;
    assert_eq!(w.path, "/ui/boards");
    w.sees("There are no boards yet");
    w.submit("/ui/boards", &[("name", "  Sprint  ")]).await;
    let board = id_of(&app, "boards", "name", "Sprint").await;
    assert_eq!(w.path, format!("/ui/boards/{board}"));
    w.sees("The board is created");
    let here = format!("/ui/boards/{board}");

    for name in ["To do", "Doing", "Done"] {
        w.submit(&format!("{here}/columns"), &[("name", name)])
            .await;
        w.sees("The column is added");
    }
    let todo = id_of(&app, "board_columns", "name", "To do").await;
    let doing = id_of(&app, "board_columns", "name", "Doing").await;
    let done = id_of(&app, "board_columns", "name", "Done").await;
    for (title, text) in [("Write", "the spec"), ("Test", ""), ("Ship", "")] {
        w.submit(
            &format!("{here}/columns/{todo}/tickets"),
            &[("title", title), ("description", text)],
        )
        .await;
        w.sees("The ticket is added");
    }
    w.sees("the spec");
    assert_eq!(
        layout(&app, board).await,
        ["To do: Write, Test, Ship", "Doing: ", "Done: "]
    );

    // Rename and describe the board and a column.
    w.submit(&format!("{here}/rename"), &[("name", "Sprint 2")])
        .await;
    w.sees("The board is renamed");
    w.sees("Sprint 2");
    w.submit(
        &format!("{here}/describe"),
        &[("description", "Two weeks & <b>one</b> goal")],
    )
    .await;
    w.sees("The board&#39;s description is saved");
    w.sees("Two weeks &#38; &#60;b&#62;one&#60;/b&#62; goal");
    w.open(&format!("{here}/columns/{doing}")).await;
    w.submit(
        &format!("{here}/columns/{doing}/describe"),
        &[("description", "At most three at a time")],
    )
    .await;
    w.sees("The column&#39;s description is saved");
    w.sees("<p class=\"column-text\">At most three at a time</p>");
    assert_eq!(logged(&app, "describe_board", 1).await, 1);
    assert_eq!(logged(&app, "describe_column", 1).await, 1);
    let write = id_of(&app, "tickets", "title", "Write").await;
    w.follow("Write").await;
    assert_eq!(w.path, format!("{here}/tickets/{write}"));
    w.sees("In the column <strong>To do</strong>, place 1.");
    w.submit(
        &format!("{here}/tickets/{write}/edit"),
        &[
            ("title", "Write it"),
            ("description", "the whole spec\nin two lines"),
        ],
    )
    .await;
    w.sees("The ticket is saved");
    w.sees("the whole spec\nin two lines");

    // The ticket page's move form: to Doing, on top.
    w.follow("Write it").await;
    w.submit(
        &format!("{here}/tickets/{write}/move"),
        &[("column", &doing.to_string()), ("position", "1")],
    )
    .await;
    w.sees("The ticket is moved");
    assert_eq!(
        layout(&app, board).await,
        ["To do: Test, Ship", "Doing: Write it", "Done: "]
    );

    // The arrow buttons on the cards.
    let ship = id_of(&app, "tickets", "title", "Ship").await;
    w.press(
        &format!("{here}/step"),
        "step",
        &format!("ticket {ship} up"),
    )
    .await;
    assert_eq!(w.path, here);
    w.press(
        &format!("{here}/step"),
        "step",
        &format!("ticket {ship} right"),
    )
    .await;
    w.press(
        &format!("{here}/step"),
        "step",
        &format!("ticket {ship} right"),
    )
    .await;
    assert_eq!(
        layout(&app, board).await,
        ["To do: Test", "Doing: Write it", "Done: Ship"]
    );
    w.press(
        &format!("{here}/step"),
        "step",
        &format!("ticket {ship} left"),
    )
    .await;
    assert_eq!(
        layout(&app, board).await,
        ["To do: Test", "Doing: Ship, Write it", "Done: "]
    );

    // Columns: arrows, the column page's rename and move, delete.
    w.press(
        &format!("{here}/step"),
        "step",
        &format!("column {done} left"),
    )
    .await;
    w.sees("The column is moved");
    assert_eq!(
        layout(&app, board).await,
        ["To do: Test", "Done: ", "Doing: Ship, Write it"]
    );
    w.open(&format!("{here}/columns/{done}")).await;
    assert_eq!(w.path, format!("{here}/columns/{done}"));
    w.submit(
        &format!("{here}/columns/{done}/rename"),
        &[("name", "Shipped")],
    )
    .await;
    w.sees("The column is renamed");
    w.open(&format!("{here}/columns/{done}")).await;
    w.sees("value=\"Shipped\"");
    w.submit(&format!("{here}/columns/{done}/move"), &[("position", "3")])
        .await;
    assert_eq!(
        layout(&app, board).await,
        ["To do: Test", "Doing: Ship, Write it", "Shipped: "]
    );
    w.open(&format!("{here}/columns/{todo}")).await;
    w.sees("1 tickets are deleted with it");
    w.submit(&format!("{here}/columns/{todo}/delete"), &[])
        .await;
    w.sees("The column is deleted");

    // Tickets: delete from the ticket page.
    w.follow("Ship").await;
    w.submit(&format!("{here}/tickets/{ship}/delete"), &[])
        .await;
    w.sees("The ticket is deleted");
    assert_eq!(layout(&app, board).await, ["Doing: Write it", "Shipped: "]);

    // The same activity log entries as the JSON routes write.
    assert!(logged(&app, "move_ticket", 5).await >= 5);
    assert_eq!(logged(&app, "update_ticket", 1).await, 1);
    assert_eq!(logged(&app, "rename_board", 1).await, 1);

    // The board: a confirmation page first.
    w.open(&here).await;
    w.follow("Delete the board").await;
    assert_eq!(w.path, format!("{here}/delete"));
    w.sees("Its 2 columns and 1 tickets are deleted with it");
    w.submit(&format!("{here}/delete"), &[]).await;
    assert_eq!(w.path, "/ui/boards");
    w.sees("The board is deleted");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM boards").await, 0);
    assert_eq!(logged(&app, "delete_board", 1).await, 1);
}

async fn a_board(app: &TestApp) -> (i64, i64, i64, i64) {
    use gatehouse::kanban::store;
    let db = &app.state.db;
    let board = store::create_board(db, "Team").await.unwrap().id;
    let todo = store::create_column(db, board, "To do", None)
        .await
        .unwrap()
        .id;
    let done = store::create_column(db, board, "Done", None)
        .await
        .unwrap()
        .id;
    let (_, ticket) = store::create_ticket(db, todo, None, "Write", "the spec", None)
        .await
        .unwrap();
    (board, todo, done, ticket.id)
}

async fn a_reader_reads_and_is_refused_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (board, todo, _, ticket) = a_board(&app).await;
    let rita = user_with(&app, "rita", None).await;
    let mut w = signed_in(&app, "rita").await;
    w.follow("Boards").await;
    w.sees("Team");
    assert!(!w.html.contains("Create the board"));
    w.follow("Team").await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Write");
    w.sees("the spec");
    w.sees("changing it needs the edit permission");
    // Only the sign-out form: nothing to change the board with.
    assert_eq!(w.html.matches("<form").count(), 1, "{}", w.html);
    assert!(!w.html.contains("data-csrf"));
    w.follow("Write").await;
    w.sees("In the column <strong>To do</strong>");
    assert!(!w.html.contains("Save the ticket"));

    // Posting anyway: a 403 page, and nothing changed.
    let before = layout(&app, board).await;
    for (action, fields) in [
        (format!("/ui/boards/{board}/rename"), vec![("name", "Mine")]),
        (
            format!("/ui/boards/{board}/columns"),
            vec![("name", "Mine")],
        ),
        (
            format!("/ui/boards/{board}/columns/{todo}/tickets"),
            vec![("title", "Mine")],
        ),
        (
            format!("/ui/boards/{board}/tickets/{ticket}/move"),
            vec![("step", "right")],
        ),
        (
            format!("/ui/boards/{board}/tickets/{ticket}/delete"),
            vec![],
        ),
        (format!("/ui/boards/{board}/delete"), vec![]),
    ] {
        w.open(&format!("/ui/boards/{board}")).await;
        w.post(&action, &fields).await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "{action}");
        w.sees("Not allowed");
    }
    w.open(&format!("/ui/boards/{board}/delete")).await;
    assert_eq!(w.status, StatusCode::FORBIDDEN);
    assert_eq!(layout(&app, board).await, before);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM boards").await, 1);

    // Without view_dashboard (no role at all): 403 pages, and no Boards in the menu.
    sqlx::query(&format!("DELETE FROM user_roles WHERE user_id = {rita}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    for path in [
        "/ui/boards".to_owned(),
        format!("/ui/boards/{board}"),
        format!("/ui/boards/{board}/live"),
        format!("/ui/boards/{board}/events"),
        format!("/ui/boards/{board}/tickets/{ticket}"),
    ] {
        w.open(&path).await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "{path}");
        w.sees("Not allowed");
    }
    w.open("/ui/").await;
    assert!(!w.html.contains("href=\"/ui/boards\""));

    // Signed out: to the sign-in page, coming back here.
    let mut anonymous = Walker::new(&app);
    anonymous.open(&format!("/ui/boards/{board}")).await;
    assert_eq!(
        anonymous.path,
        format!("/ui/login?next=%2Fui%2Fboards%2F{board}")
    );
}

/// A form post the rules refuse: where, what, and the status of the page.
type Refused<'a> = (String, Vec<(&'a str, &'a str)>, StatusCode);

async fn bad_addresses_and_input_are_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (board, todo, _, ticket) = a_board(&app).await;
    user_with(&app, "boss", Some("Admin")).await;
    let mut w = signed_in(&app, "boss").await;
    let other = gatehouse::kanban::store::create_board(&app.state.db, "Other")
        .await
        .unwrap()
        .id;
    let elsewhere = gatehouse::kanban::store::create_column(&app.state.db, other, "X", None)
        .await
        .unwrap()
        .id;
    for path in [
        "/ui/boards/abc".to_owned(),
        "/ui/boards/0".to_owned(),
        "/ui/boards/-1".to_owned(),
        "/ui/boards/99999999999999999999999".to_owned(),
        "/ui/boards/999".to_owned(),
        "/ui/boards/999/live".to_owned(),
        "/ui/boards/999/events".to_owned(),
        format!("/ui/boards/{board}/tickets/x"),
        format!("/ui/boards/{board}/tickets/999"),
        format!("/ui/boards/{other}/tickets/{ticket}"),
        format!("/ui/boards/{board}/columns/{elsewhere}"),
        format!("/ui/boards/{board}/columns/1.5"),
    ] {
        w.open(&path).await;
        assert_eq!(w.status, StatusCode::NOT_FOUND, "{path}");
        w.sees("<!doctype html>");
    }

    let long = "x".repeat(101);
    let long_title = "t".repeat(201);
    let elsewhere_id = elsewhere.to_string();
    let ticket_only = format!("ticket {ticket}");
    let ticket_up = format!("ticket {ticket} up");
    let column_up = format!("column {todo} up");
    let here = format!("/ui/boards/{board}");
    let refused: Vec<Refused> = vec![
        (
            "/ui/boards".into(),
            vec![("name", &long)],
            StatusCode::BAD_REQUEST,
        ),
        (
            "/ui/boards".into(),
            vec![("name", "   ")],
            StatusCode::BAD_REQUEST,
        ),
        ("/ui/boards".into(), vec![], StatusCode::BAD_REQUEST),
        (
            format!("{here}/rename"),
            vec![("name", &long)],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/columns"),
            vec![("name", "a\u{7}b")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/columns/{todo}/tickets"),
            vec![("title", &long_title)],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/columns/{todo}/move"),
            vec![("position", "abc")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/columns/{todo}/move"),
            vec![("position", "0")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/tickets/{ticket}/move"),
            vec![("step", "sideways")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/tickets/{ticket}/move"),
            vec![("step", "left")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/tickets/{ticket}/move"),
            vec![("column", &elsewhere_id)],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{here}/tickets/{ticket}/move"),
            vec![("column", "x")],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{here}/describe"),
            vec![("description", "bell\u{7}")],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/columns/{elsewhere}/describe"),
            vec![("description", "x")],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{here}/step"),
            vec![("step", "ticket x up")],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("{here}/step"),
            vec![("step", &ticket_only)],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{here}/step"),
            vec![("step", &column_up)],
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/ui/boards/{other}/step"),
            vec![("step", &ticket_up)],
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/ui/boards/{other}/columns/{todo}/delete"),
            vec![],
            StatusCode::NOT_FOUND,
        ),
    ];
    for (action, fields, status) in refused {
        w.open(&here).await;
        w.post(&action, &fields).await;
        assert_eq!(w.status, status, "{action} {fields:?}");
        w.sees("<!doctype html>");
    }
    assert_eq!(
        layout(&app, board).await,
        ["To do: Write", "Done: "],
        "nothing refused changed anything"
    );

    // A form without its token, or with another's, is refused as a page.
    let client = new_client();
    let res = client
        .post(app.url(&format!("{here}/rename")))
        .form(&[("name", "Forged")])
        .send()
        .await
        .unwrap();
    assert!(matches!(
        res.status(),
        StatusCode::FORBIDDEN | StatusCode::SEE_OTHER
    ));
    w.open(&here).await;
    w.submit(
        &format!("{here}/rename"),
        &[("csrf_token", "forged"), ("name", "Forged")],
    )
    .await;
    assert_eq!(w.status, StatusCode::FORBIDDEN);
    w.sees("This form has expired");
    assert_eq!(
        app.scalar("SELECT COUNT(*) FROM boards WHERE name = 'Forged'")
            .await,
        0
    );
}

async fn the_script_gets_short_answers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (board, todo, done, ticket) = a_board(&app).await;
    user_with(&app, "boss", Some("Admin")).await;
    let mut w = signed_in(&app, "boss").await;
    let here = format!("/ui/boards/{board}");
    w.open(&here).await;
    let done_id = done.to_string();
    w.post_accepting(
        &format!("{here}/tickets/{ticket}/move"),
        &[("column", &done_id), ("position", "1")],
        "application/json",
    )
    .await;
    assert_eq!(w.status, StatusCode::NO_CONTENT);
    assert_eq!(layout(&app, board).await, ["To do: ", "Done: Write"]);

    w.open(&here).await;
    w.post_accepting(
        &format!("{here}/tickets/999/move"),
        &[("column", &done_id)],
        "application/json",
    )
    .await;
    assert_eq!(w.status, StatusCode::NOT_FOUND);
    let body: serde_json::Value = serde_json::from_str(&w.html).unwrap();
    assert_eq!(body["message"], "No such ticket");

    w.open(&here).await;
    w.post_accepting(
        &format!("{here}/columns/{todo}/move"),
        &[("position", "-3")],
        "application/json",
    )
    .await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    let body: serde_json::Value = serde_json::from_str(&w.html).unwrap();
    assert_eq!(
        body["message"],
        "position must be a whole number of at least 1"
    );

    // The fragment the script swaps in: the board alone, with its version.
    w.open(&format!("{here}/live")).await;
    assert_eq!(w.status, StatusCode::OK);
    assert!(w.html.starts_with("<div id=\"board\""), "{}", w.html);
    let version = app
        .scalar(&format!("SELECT version FROM boards WHERE id = {board}"))
        .await;
    w.sees(&format!("data-version=\"{version}\""));
    assert!(!w.html.contains("<html"));

    // A board of 3 columns and 24 tickets with their page's files, on first load,
    // stays under the 60 KB budget; the CSP lets the script reach us only.
    let res = new_client().get(app.url("/ui/login")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    for i in 0..24 {
        let column = [todo, done, todo][i % 3];
        gatehouse::kanban::store::create_ticket(
            &app.state.db,
            column,
            None,
            &format!("Ticket number {i} with a title of some length"),
            "A description of about a hundred characters, as tickets have them, more or less, on a board.",
            None,
        )
        .await
        .unwrap();
    }
    w.open(&here).await;
    let mut total = w.html.len();
    let assets: Vec<String> = w
        .html
        .split("\"/ui/static/")
        .skip(1)
        .map(|rest| format!("/ui/static/{}", rest.split('"').next().unwrap()))
        .collect();
    assert_eq!(assets.len(), 2);
    for path in assets {
        w.open(&path).await;
        total += w.html.len();
    }
    assert!(total < 60 * 1024, "the board weighs {total} bytes");
}

/// Reads a stream's events (`event` name and `data`) until `want` of them arrived.
async fn read_events(
    res: &mut reqwest::Response,
    buffer: &mut String,
    want: usize,
) -> Vec<(String, String)> {
    let mut events = Vec::new();
    loop {
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim().to_owned();
                }
            }
            if !name.is_empty() {
                events.push((name, data));
            }
        }
        if events.len() >= want {
            return events;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream is open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

/// Opens the live stream of `board` on `app` with the session cookie `cookie`.
async fn events(app: &TestApp, board: i64, cookie: &str) -> reqwest::Response {
    let res = new_client()
        .get(app.url(&format!("/ui/boards/{board}/events")))
        .header("cookie", format!("session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    res
}

/// A signed-out session's stream is not told of the next change: it ends, and the
/// browser's reconnection is refused.
async fn a_stream_ends_with_its_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (board, _, done, _) = a_board(&app).await;
    user_with(&app, "boss", Some("Admin")).await;
    app.login("boss", PASSWORD).await;
    let cookie = app.session_cookie().unwrap();
    let mut stream = events(&app, board, &cookie).await;
    let mut buffer = String::new();
    read_events(&mut stream, &mut buffer, 1).await;

    let res = app
        .request(reqwest::Method::POST, "/logout", Some(json!({})))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    app.login("boss", PASSWORD).await;
    let res = app
        .request(
            reqwest::Method::PUT,
            &format!("/boards/{board}/columns"),
            Some(json!({ "id": done, "name": "Shipped" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let end = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "{end:?} after {buffer:?}");

    let again = new_client()
        .get(app.url(&format!("/ui/boards/{board}/events")))
        .header("cookie", format!("session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::SEE_OTHER);
}

async fn live_events_reach_every_instance(backend: Backend) {
    let writer = TestApp::spawn(backend).await;
    // On PostgreSQL a second instance on the same database streams what the first one
    // changes; on SQLite (one instance per database file) the same instance does.
    let mut second = match backend {
        Backend::Postgres => Some(
            TestApp::spawn_with(
                backend,
                &[(
                    "DATABASE_URL",
                    writer.state.config.database_url.expose_secret(),
                )],
            )
            .await,
        ),
        Backend::Sqlite => None,
    };
    let reader = second.as_ref().unwrap_or(&writer);
    let (board, _, done, ticket) = a_board(&writer).await;
    user_with(&writer, "boss", Some("Admin")).await;
    writer.login("boss", PASSWORD).await;
    let cookie = writer.session_cookie().unwrap();
    let version = writer
        .scalar(&format!("SELECT version FROM boards WHERE id = {board}"))
        .await;

    let mut stream = events(reader, board, &cookie).await;
    let mut buffer = String::new();
    // First the current version, so a client that missed something catches up.
    let first = read_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(first, [("version".to_owned(), version.to_string())]);

    // A change through the JSON routes on the writing instance.
    let res = writer
        .request(
            reqwest::Method::PUT,
            &format!("/boards/{board}/columns"),
            Some(json!({ "id": done, "name": "Shipped" })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let next = read_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(next, [("version".to_owned(), (version + 1).to_string())]);

    // A reconnecting client is told the current version at once.
    drop(stream);
    let res = writer
        .request(
            reqwest::Method::PUT,
            &format!(
                "/columns/{}/tickets",
                writer
                    .scalar(&format!(
                        "SELECT column_id FROM tickets WHERE id = {ticket}"
                    ))
                    .await
            ),
            Some(json!({ "id": ticket, "column_id": done })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = events(reader, board, &cookie).await;
    let mut buffer = String::new();
    let again = read_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(again, [("version".to_owned(), (version + 2).to_string())]);

    // The board deleted: the stream says so and ends.
    let res = writer
        .request(
            reqwest::Method::DELETE,
            "/boards",
            Some(json!({ "id": board })),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let gone = read_events(&mut stream, &mut buffer, 1).await;
    assert_eq!(gone[0].0, "deleted");

    // An open stream does not hold a graceful shutdown up (the grace is 30 s; the
    // harness allows 20).
    let other = gatehouse::kanban::store::create_board(&writer.state.db, "Other")
        .await
        .unwrap()
        .id;
    let mut open_stream = events(reader, other, &cookie).await;
    let mut buffer = String::new();
    read_events(&mut open_stream, &mut buffer, 1).await;
    let started = std::time::Instant::now();
    match second.as_mut() {
        Some(app) => app.shutdown().await,
        None => {
            let mut writer = writer;
            writer.shutdown().await;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let end = tokio::time::timeout(Duration::from_secs(5), open_stream.chunk())
        .await
        .expect("the stream ends");
    assert!(!matches!(end, Ok(Some(_))));
}

/// Runs `script` in the browser until it returns `true`, up to a bound.
async fn until(b: &Browser, script: &str, what: &str) {
    for _ in 0..200 {
        if b.client.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{what}: not within 5 s on {}:\n{}",
        b.path().await,
        b.text().await
    );
}

/// Waits, up to a bound, for `sql` to count `want`.
async fn until_db(app: &TestApp, sql: &str, want: i64) {
    for _ in 0..200 {
        if app.scalar(sql).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.scalar(sql).await, want, "{sql}");
}

async fn browser_as(app: &TestApp, username: &str) -> Option<Browser> {
    let b = Browser::start(&app.url("/")).await?;
    b.open("/ui/login").await;
    b.fill("Username or email", username).await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;
    Some(b)
}

/// Presses keys on the focused element, as a person at the keyboard.
async fn keys(b: &Browser, css: &str, keys: &[char]) {
    let el = b.client.find(Locator::Css(css)).await.unwrap();
    b.client
        .execute(
            "document.querySelector(arguments[0]).focus();",
            vec![json!(css)],
        )
        .await
        .unwrap();
    for key in keys {
        el.send_keys(&key.to_string()).await.unwrap();
    }
}

const DRAG: &str = r#"
const card = document.querySelector(arguments[0]), over = document.querySelector(arguments[1]);
const dt = new DataTransfer();
card.dispatchEvent(new DragEvent("dragstart", {bubbles: true, dataTransfer: dt}));
const r = over.getBoundingClientRect();
over.dispatchEvent(new DragEvent("dragover", {bubbles: true, cancelable: true, dataTransfer: dt, clientX: r.left + 4, clientY: r.top + 1}));
over.dispatchEvent(new DragEvent("drop", {bubbles: true, cancelable: true, dataTransfer: dt}));
card.dispatchEvent(new DragEvent("dragend", {bubbles: true, dataTransfer: dt}));
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_on_one_board() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    user_with(&app, "boss", Some("Admin")).await;
    user_with(&app, "rita", None).await;
    let Some(b) = browser_as(&app, "boss").await else {
        return;
    };

    // An editor makes a board with the forms.
    b.click("Boards").await;
    b.at("/ui/boards").await;
    b.sees("There are no boards yet").await;
    b.screenshots("boards-empty").await;
    b.fill("New board", "Launch").await;
    b.click("Create the board").await;
    let board = id_of(&app, "boards", "name", "Launch").await;
    let here = format!("/ui/boards/{board}");
    b.at(&here).await;
    b.sees("The board is created").await;
    for name in ["To do", "Doing", "Done"] {
        b.fill("New column", name).await;
        b.click("Add the column").await;
    }
    let todo = id_of(&app, "board_columns", "name", "To do").await;
    let done = id_of(&app, "board_columns", "name", "Done").await;
    for (title, text) in [
        ("Write the launch post", "Two paragraphs and a picture."),
        ("Check the links", ""),
        ("Tell the team", "In the Monday meeting."),
    ] {
        b.client
            .find(Locator::Css(&format!("#column-{todo} summary")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        for (field, value) in [("title", title), ("description", text)] {
            b.client
                .find(Locator::Id(&format!("f-{field}-{todo}")))
                .await
                .unwrap()
                .send_keys(value)
                .await
                .unwrap();
        }
        b.click("Add the ticket").await;
        b.sees(title).await;
    }
    let post = id_of(&app, "tickets", "title", "Write the launch post").await;
    let links = id_of(&app, "tickets", "title", "Check the links").await;
    b.client
        .find(Locator::Css(".board-rename summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.fill("Description", "Everything for the launch on Friday.")
        .await;
    b.click("Save the description").await;
    b.sees("Everything for the launch on Friday.").await;
    b.screenshots("board").await;

    // A reader has the same board open in a browser of her own.
    let Some(r) = browser_as(&app, "rita").await else {
        return;
    };
    r.open(&here).await;
    r.sees("changing it needs the edit permission").await;
    r.screenshots("board-read-only").await;
    r.client
        .execute("window.kept = true;", vec![])
        .await
        .unwrap();

    // From the keyboard: Space picks up, arrows move, Space drops.
    let right: char = Key::Right.into();
    let down: char = Key::Down.into();
    keys(&b, &format!("#ticket-{post}"), &[' ', right, right, ' ']).await;
    until_db(
        &app,
        &format!("SELECT COUNT(*) FROM tickets WHERE id = {post} AND column_id = {done}"),
        1,
    )
    .await;
    // The other browser shows it without a reload.
    until(
        &r,
        &format!("return !!document.querySelector('#column-{done} #ticket-{post}') && window.kept === true;"),
        "the keyboard move shows in the other browser",
    )
    .await;
    keys(&b, &format!("#ticket-{links}"), &[' ', down, ' ']).await;
    until_db(
        &app,
        &format!("SELECT sort_order FROM tickets WHERE id = {links}"),
        1,
    )
    .await;

    // By drag and drop: the ticket back to the top of To do.
    b.client
        .execute(
            DRAG,
            vec![
                json!(format!("#ticket-{post}")),
                json!(format!("#column-{todo} .tickets")),
            ],
        )
        .await
        .unwrap();
    until_db(
        &app,
        &format!(
            "SELECT COUNT(*) FROM tickets WHERE id = {post} AND column_id = {todo} AND sort_order = 0"
        ),
        1,
    )
    .await;
    until(
        &r,
        &format!("return document.querySelector('#column-{todo} .ticket').id === 'ticket-{post}' && window.kept === true;"),
        "the drag shows in the other browser",
    )
    .await;
    // A column by its heading.
    b.client
        .execute(
            DRAG,
            vec![
                json!(format!("#column-{done} .column-head")),
                json!(format!("#column-{todo}")),
            ],
        )
        .await
        .unwrap();
    until_db(
        &app,
        &format!("SELECT position FROM board_columns WHERE id = {done}"),
        0,
    )
    .await;
    until(
        &r,
        &format!("return document.querySelector('.column').id === 'column-{done}';"),
        "the column move shows in the other browser",
    )
    .await;

    // A column from the keyboard, by its heading: Done back to the right end.
    keys(
        &b,
        &format!("#column-{done} .column-head"),
        &[' ', right, right, ' '],
    )
    .await;
    until_db(
        &app,
        &format!("SELECT position FROM board_columns WHERE id = {done}"),
        2,
    )
    .await;
    until(
        &r,
        &format!("return document.querySelectorAll('.column')[2].id === 'column-{done}';"),
        "the keyboard column move shows in the other browser",
    )
    .await;

    // Refused: the ticket went away while it was being moved; the move is undone
    // with a message.
    keys(&b, &format!("#ticket-{links}"), &[' ', right]).await;
    gatehouse::kanban::store::delete_ticket(&app.state.db, todo, links)
        .await
        .unwrap();
    keys(&b, &format!("#ticket-{links}"), &[' ']).await;
    until(
        &b,
        "const e = document.getElementById('board-error'); return !!e && e.textContent.includes('The move was undone');",
        "the refused move is rolled back with a message",
    )
    .await;
    b.screenshots("board-refused").await;

    // The other pages.
    b.open("/ui/boards").await;
    b.sees("Launch").await;
    b.screenshots("boards").await;
    b.open(&format!("{here}/tickets/{post}")).await;
    b.sees("Two paragraphs and a picture.").await;
    b.screenshots("board-ticket").await;
    b.open(&format!("{here}/columns/{todo}")).await;
    b.screenshots("board-column").await;
    b.open(&format!("{here}/delete")).await;
    b.screenshots("board-delete").await;
    b.click("Delete the board").await;
    b.at("/ui/boards").await;
    b.sees("The board is deleted").await;
    // The reader is told.
    until(
        &r,
        "const e = document.getElementById('board-error'); return !!e && e.textContent.includes('deleted');",
        "the reader hears the board is gone",
    )
    .await;
}
