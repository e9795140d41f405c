//! Kanban boards: the old client's walk through the method-multiplexed routes, order
//! kept dense through every kind of change (also under concurrent moves), the
//! permissions, bad input, the fixed query count of the whole board, the activity log.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, new_client, postgres_url, Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    the_old_clients_walk_through_a_board,
    positions_stay_dense_through_every_kind_of_change,
    tickets_move_only_within_their_board,
    reading_needs_view_dashboard_and_writing_needs_edit,
    bad_input_is_refused_and_changes_nothing,
    unknown_ids_are_404,
    the_whole_board_costs_the_same_queries_whatever_its_size,
    concurrent_moves_keep_a_valid_order,
    every_change_is_in_the_activity_log,
    an_existing_database_keeps_every_tickets_column_and_order,
    whole_numbers_arrive_in_every_form_json_schema_allows,
);

/// A logged-in client of its own (cookie jar and CSRF token), like one browser tab.
struct Browser {
    client: reqwest::Client,
    base: String,
    csrf: String,
    user_id: i64,
}

impl Browser {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if method != Method::GET {
            req = req.header("X-CSRFToken", &self.csrf);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Response {
        self.send(Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str, body: Value) -> Response {
        self.send(Method::DELETE, path, Some(body)).await
    }

    /// POSTs and returns the new id, asserting the contract's `201 {id}`.
    async fn create(&self, path: &str, body: Value) -> i64 {
        let res = self.post(path, body.clone()).await;
        assert_eq!(res.status(), StatusCode::CREATED, "POST {path} {body}");
        let answer = json(res).await;
        assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
        answer["id"].as_i64().unwrap()
    }

    async fn board(&self, id: i64) -> Value {
        let res = self.get(&format!("/boards/{id}")).await;
        assert_eq!(res.status(), StatusCode::OK);
        json(res).await
    }
}

/// Logs `username` in on a fresh client.
async fn log_in(app: &TestApp, username: &str) -> Browser {
    let client = new_client();
    let res = client
        .post(app.url("/login"))
        .json(&json!({ "username_or_email": username, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = json(res).await;
    Browser {
        client,
        base: app.url(""),
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
        user_id: body["user"]["id"].as_i64().unwrap(),
    }
}

/// A verified, logged-in user; signup gives the `User` role, `extra_role` adds one.
async fn user(app: &TestApp, username: &str, extra_role: Option<&str>) -> Browser {
    assert_eq!(app.signup(username).await.status(), StatusCode::CREATED);
    let link = app
        .email_link(&format!("{username}@example.com"), "Verify")
        .await;
    let res = new_client().get(link).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let browser = log_in(app, username).await;
    if let Some(role) = extra_role {
        app.grant(browser.user_id, role).await;
    }
    browser
}

/// An `Admin`: `view_dashboard` and `edit`.
async fn editor(app: &TestApp, username: &str) -> Browser {
    user(app, username, Some("Admin")).await
}

/// Asserts that every column is at position `0..n-1` and every column's tickets at
/// order `0..n-1`, in the order listed, each ticket's `position` being its column.
fn assert_dense(board: &Value) {
    let columns = board["columns"].as_array().unwrap();
    for (i, column) in columns.iter().enumerate() {
        assert_eq!(column["position"], i as i64, "column order of {board}");
        for (j, ticket) in column["tickets"].as_array().unwrap().iter().enumerate() {
            assert_eq!(ticket["order"], j as i64, "ticket order of {column}");
            assert_eq!(
                ticket["position"], column["id"],
                "ticket column of {column}"
            );
        }
    }
}

/// Asserts a ticket's keys and JSON types as the contract lists them: the list's
/// `{id, title, description, position, order}`, plus `column_id` for a change's answer.
fn assert_ticket_shape(ticket: &Value, with_column_id: bool) {
    let object = ticket.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = vec!["description", "id", "order", "position", "title"];
    if with_column_id {
        expected.push("column_id");
        expected.sort_unstable();
        assert_eq!(ticket["column_id"], ticket["position"], "{ticket}");
    }
    assert_eq!(keys, expected, "{ticket}");
    for key in ["id", "position", "order"] {
        assert!(ticket[key].is_i64(), "{key} is an integer in {ticket}");
    }
    assert!(ticket["title"].is_string() && ticket["description"].is_string());
}

/// The board as `[(column id, [ticket ids])]`.
fn layout(board: &Value) -> Vec<(i64, Vec<i64>)> {
    board["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_i64().unwrap(),
                c["tickets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_i64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

async fn the_old_clients_walk_through_a_board(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;

    // The old client joins its base URL and paths with a doubled slash.
    let board = admin
        .create("//boards", json!({ "name": "Sprint 1" }))
        .await;
    let res = admin.get("//boards").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        json(res).await,
        json!([{ "id": board, "name": "Sprint 1" }])
    );

    let columns = format!("//boards/{board}/columns");
    let todo = admin
        .create(&columns, json!({ "name": "To do", "position": 0 }))
        .await;
    let doing = admin
        .create(&columns, json!({ "name": "Doing", "position": "1" }))
        .await;
    let done = admin
        .create(&columns, json!({ "name": "Done", "position": "2" }))
        .await;
    let res = admin.get(&columns).await;
    assert_eq!(
        json(res).await,
        json!([
            { "id": todo, "name": "To do", "position": 0 },
            { "id": doing, "name": "Doing", "position": 1 },
            { "id": done, "name": "Done", "position": 2 },
        ])
    );

    // The old client creates a ticket with `position` = the column's id, as a string.
    let todo_tickets = format!("//columns/{todo}/tickets");
    let write = admin
        .create(
            &todo_tickets,
            json!({ "title": "Write", "description": "the spec", "position": todo.to_string() }),
        )
        .await;
    let test = admin
        .create(
            &todo_tickets,
            json!({ "title": "Test", "description": "it", "position": todo }),
        )
        .await;
    // No description and no position: an empty description, at the end of the path's
    // column.
    let ship = admin
        .create(&todo_tickets, json!({ "title": "Ship" }))
        .await;
    let res = admin.get(&todo_tickets).await;
    let list = json(res).await;
    for ticket in list.as_array().unwrap() {
        assert_ticket_shape(ticket, false);
    }
    assert_eq!(
        list,
        json!([
            { "id": write, "title": "Write", "description": "the spec", "position": todo, "order": 0 },
            { "id": test, "title": "Test", "description": "it", "position": todo, "order": 1 },
            { "id": ship, "title": "Ship", "description": "", "position": todo, "order": 2 },
        ])
    );

    // The old client's move: PUT to the ticket's old column with `position` = the new
    // column's id (a string), sending the ticket's other fields back. It lands at the
    // end of "Doing".
    let res = admin
        .put(
            &todo_tickets,
            json!({ "id": write.to_string(), "title": "Write it", "description": "the spec",
                    "position": doing.to_string() }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let answer = json(res).await;
    assert_ticket_shape(&answer, true);
    assert_eq!(
        answer,
        json!({ "id": write, "title": "Write it", "description": "the spec",
                "position": doing, "column_id": doing, "order": 0 })
    );
    // Read back as the client does: the ticket is listed under "Doing" with that
    // column as its `position`, and is gone from "To do", whose order closed up.
    let res = admin.get(&format!("/columns/{doing}/tickets")).await;
    assert_eq!(
        json(res).await,
        json!([{ "id": write, "title": "Write it", "description": "the spec",
                 "position": doing, "order": 0 }])
    );
    let res = admin.get(&todo_tickets).await;
    let orders: Vec<(Value, Value)> = json(res)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].clone(), t["order"].clone()))
        .collect();
    assert_eq!(
        orders,
        vec![(json!(test), json!(0)), (json!(ship), json!(1))]
    );
    // The old path of a moved ticket no longer names it.
    expect_error(
        admin
            .put(&todo_tickets, json!({ "id": write, "position": doing }))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    // `column_id` wins over `position`; `order` places the ticket within the column.
    let res = admin
        .put(
            &todo_tickets,
            json!({ "id": ship, "column_id": todo, "position": doing, "order": "0" }),
        )
        .await;
    let answer = json(res).await;
    assert_eq!(
        (&answer["column_id"], &answer["order"]),
        (&json!(todo), &json!(0))
    );
    // Saying the column it is in, with no order, is an edit that moves nothing.
    let res = admin
        .put(
            &todo_tickets,
            json!({ "id": test, "position": todo, "title": "Test" }),
        )
        .await;
    assert_eq!(json(res).await["order"], 1);

    // Ids and positions typed into forms arrive as strings on every route.
    let res = admin
        .put(
            "//boards",
            json!({ "id": board.to_string(), "name": "Sprint 2" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await, json!({ "id": board, "name": "Sprint 2" }));
    let res = admin
        .put(
            &columns,
            json!({ "id": done.to_string(), "name": "Shipped", "position": "0" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        json(res).await,
        json!({ "id": done, "name": "Shipped", "position": 0 })
    );

    let whole = admin.get(&format!("//boards/{board}")).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(
        json(whole).await,
        json!({
            "id": board,
            "name": "Sprint 2",
            "columns": [
                { "id": done, "name": "Shipped", "position": 0, "tickets": [] },
                { "id": todo, "name": "To do", "position": 1, "tickets": [
                    { "id": ship, "title": "Ship", "description": "", "position": todo, "order": 0 },
                    { "id": test, "title": "Test", "description": "it", "position": todo, "order": 1 },
                ]},
                { "id": doing, "name": "Doing", "position": 2, "tickets": [
                    { "id": write, "title": "Write it", "description": "the spec",
                      "position": doing, "order": 0 },
                ]},
            ],
        })
    );

    // Deletes answer 204 with no body, and close the gap they leave.
    let res = admin
        .delete(&todo_tickets, json!({ "id": ship.to_string() }))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(res.bytes().await.unwrap().is_empty());
    let res = admin.get(&todo_tickets).await;
    assert_eq!(
        json(res).await,
        json!([{ "id": test, "title": "Test", "description": "it", "position": todo, "order": 0 }])
    );
    let res = admin
        .delete(&columns, json!({ "id": done.to_string() }))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let whole = admin.board(board).await;
    assert_dense(&whole);
    assert_eq!(
        layout(&whole),
        vec![(todo, vec![test]), (doing, vec![write])]
    );

    // Deleting a column takes its tickets; deleting a board takes everything.
    let res = admin.delete(&columns, json!({ "id": todo })).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM tickets WHERE id = {test}"))
            .await,
        0
    );
    let res = admin
        .delete("//boards", json!({ "id": board.to_string() }))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    expect_error(
        admin.get(&format!("/boards/{board}")).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.scalar("SELECT COUNT(*) FROM board_columns").await, 0);
    assert_eq!(app.scalar("SELECT COUNT(*) FROM tickets").await, 0);
    let res = admin.get("/boards").await;
    assert_eq!(json(res).await, json!([]));
}

/// A random walk of inserts, moves and deletes of tickets and columns, each checked
/// against a model of where everything should be.
async fn positions_stay_dense_through_every_kind_of_change(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "Walk" })).await;
    let columns_path = format!("/boards/{board}/columns");
    let mut model: Vec<(i64, Vec<i64>)> = Vec::new();
    for name in ["A", "B", "C"] {
        let id = admin.create(&columns_path, json!({ "name": name })).await;
        model.push((id, Vec::new()));
    }
    let mut rng = StdRng::seed_from_u64(0x6b61_6e62_616e);
    // A position as clients send them: omitted, in range, just past the end, far out.
    let wanted = |rng: &mut StdRng, len: usize| -> Option<i64> {
        match rng.gen_range(0..10) {
            0 => None,
            1 => Some(len as i64 + 1),
            2 => Some(1_000_000),
            _ => Some(rng.gen_range(0..=len as i64)),
        }
    };
    let place = |wanted: Option<i64>, len: usize| wanted.map_or(len, |p| (p as usize).min(len));
    let mut titles = 0;
    for step in 0..90 {
        let roll = rng.gen_range(0..100);
        let c = rng.gen_range(0..model.len());
        let column = model[c].0;
        let tickets_path = format!("/columns/{column}/tickets");
        let len = model[c].1.len();
        if roll < 30 || len == 0 {
            titles += 1;
            let position = wanted(&mut rng, len);
            let mut body = json!({ "title": format!("t{titles}"), "description": "d" });
            if let Some(p) = position {
                body["order"] = p.into();
            }
            let id = admin.create(&tickets_path, body).await;
            model[c].1.insert(place(position, len), id);
        } else if roll < 55 {
            let from = rng.gen_range(0..len);
            let id = model[c].1.remove(from);
            let to = rng.gen_range(0..len as i64 + 2);
            let res = admin
                .put(&tickets_path, json!({ "id": id, "order": to }))
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            let to = (to as usize).min(len - 1);
            model[c].1.insert(to, id);
            assert_eq!(json(res).await["order"], to as i64);
        } else if roll < 75 && model.len() > 1 {
            let from = rng.gen_range(0..len);
            let id = model[c].1.remove(from);
            let t = (c + rng.gen_range(1..model.len())) % model.len();
            let position = wanted(&mut rng, model[t].1.len());
            // Half of the moves the old client's way (`position` = the column).
            let mut body = if step % 2 == 0 {
                json!({ "id": id, "column_id": model[t].0 })
            } else {
                json!({ "id": id, "position": model[t].0.to_string() })
            };
            if let Some(p) = position {
                body["order"] = p.into();
            }
            let res = admin.put(&tickets_path, body).await;
            assert_eq!(res.status(), StatusCode::OK);
            let to = place(position, model[t].1.len());
            model[t].1.insert(to, id);
            let answer = json(res).await;
            assert_eq!(answer["column_id"], model[t].0);
            assert_eq!(answer["position"], model[t].0);
            assert_eq!(answer["order"], to as i64);
        } else if roll < 85 {
            let id = model[c].1.remove(rng.gen_range(0..len));
            let res = admin.delete(&tickets_path, json!({ "id": id })).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
        } else if roll < 92 {
            let (id, tickets) = model.remove(c);
            let to = rng.gen_range(0..model.len() as i64 + 2);
            let res = admin
                .put(&columns_path, json!({ "id": id, "position": to }))
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            let to = (to as usize).min(model.len());
            model.insert(to, (id, tickets));
        } else if roll < 96 || model.len() < 3 {
            let position = wanted(&mut rng, model.len());
            let mut body = json!({ "name": format!("col{step}") });
            if let Some(p) = position {
                body["position"] = p.into();
            }
            let id = admin.create(&columns_path, body).await;
            model.insert(place(position, model.len()), (id, Vec::new()));
        } else {
            let (id, tickets) = model.remove(c);
            let res = admin.delete(&columns_path, json!({ "id": id })).await;
            assert_eq!(res.status(), StatusCode::NO_CONTENT);
            for ticket in tickets {
                let gone = app
                    .scalar(&format!("SELECT COUNT(*) FROM tickets WHERE id = {ticket}"))
                    .await;
                assert_eq!(gone, 0);
            }
        }
        let whole = admin.board(board).await;
        assert_dense(&whole);
        assert_eq!(layout(&whole), model, "after step {step} (roll {roll})");
    }
    // The column lists agree with the whole board.
    let res = admin.get(&columns_path).await;
    let listed: Vec<i64> = json(res)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, model.iter().map(|(id, _)| *id).collect::<Vec<_>>());
}

async fn tickets_move_only_within_their_board(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let mine = admin.create("/boards", json!({ "name": "Mine" })).await;
    let theirs = admin.create("/boards", json!({ "name": "Theirs" })).await;
    let a = admin
        .create(&format!("/boards/{mine}/columns"), json!({ "name": "A" }))
        .await;
    let b = admin
        .create(&format!("/boards/{mine}/columns"), json!({ "name": "B" }))
        .await;
    let x = admin
        .create(&format!("/boards/{theirs}/columns"), json!({ "name": "X" }))
        .await;
    let a_tickets = format!("/columns/{a}/tickets");
    let t = admin.create(&a_tickets, json!({ "title": "T" })).await;
    admin
        .create(&format!("/columns/{x}/tickets"), json!({ "title": "U" }))
        .await;
    let before = (admin.board(mine).await, admin.board(theirs).await);

    let res = admin
        .put(
            &a_tickets,
            json!({ "id": t, "column_id": x, "order": 0, "title": "Moved" }),
        )
        .await;
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("same board"), "{message}");
    // The old client's way of saying the same: `position` = the other board's column.
    let res = admin
        .put(&a_tickets, json!({ "id": t, "position": x.to_string() }))
        .await;
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("same board"), "{message}");
    // Nor can a ticket be created into another board's column.
    let res = admin
        .post(&a_tickets, json!({ "title": "Sneaky", "position": x }))
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = admin
        .post(&a_tickets, json!({ "title": "Lost", "position": "999999" }))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    // A column that does not exist is unknown, not another board's.
    let res = admin
        .put(&a_tickets, json!({ "id": t, "column_id": 999_999 }))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    // The ticket is addressed through the column it is in, as in the old service.
    let res = admin
        .put(
            &format!("/columns/{b}/tickets"),
            json!({ "id": t, "position": b }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    let res = admin
        .delete(&format!("/columns/{x}/tickets"), json!({ "id": t }))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    // Nor can a column be changed through another board's path.
    let res = admin
        .put(
            &format!("/boards/{theirs}/columns"),
            json!({ "id": a, "name": "Stolen" }),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    let res = admin
        .delete(&format!("/boards/{theirs}/columns"), json!({ "id": a }))
        .await;
    expect_error(res, StatusCode::NOT_FOUND).await;
    assert_eq!(
        (admin.board(mine).await, admin.board(theirs).await),
        before,
        "a refused move changes nothing"
    );

    // Naming the column it is already in is a move within it.
    let res = admin
        .put(&a_tickets, json!({ "id": t, "column_id": a, "order": 5 }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["order"], 0);
    let res = admin
        .put(&a_tickets, json!({ "id": t, "column_id": b }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["column_id"], b);
}

async fn reading_needs_view_dashboard_and_writing_needs_edit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "B" })).await;
    let column = admin
        .create(&format!("/boards/{board}/columns"), json!({ "name": "C" }))
        .await;
    let ticket = admin
        .create(
            &format!("/columns/{column}/tickets"),
            json!({ "title": "T" }),
        )
        .await;
    let snapshot = admin.board(board).await;

    let reads = [
        "/boards".to_owned(),
        format!("/boards/{board}"),
        format!("/boards/{board}/columns"),
        format!("/columns/{column}/tickets"),
    ];
    let writes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/boards".into(), json!({ "name": "N" })),
        (
            Method::PUT,
            "/boards".into(),
            json!({ "id": board, "name": "N" }),
        ),
        (Method::DELETE, "/boards".into(), json!({ "id": board })),
        (
            Method::POST,
            format!("/boards/{board}/columns"),
            json!({ "name": "N" }),
        ),
        (
            Method::PUT,
            format!("/boards/{board}/columns"),
            json!({ "id": column, "name": "N" }),
        ),
        (
            Method::DELETE,
            format!("/boards/{board}/columns"),
            json!({ "id": column }),
        ),
        (
            Method::POST,
            format!("/columns/{column}/tickets"),
            json!({ "title": "N" }),
        ),
        (
            Method::PUT,
            format!("/columns/{column}/tickets"),
            json!({ "id": ticket, "order": 0 }),
        ),
        (
            Method::DELETE,
            format!("/columns/{column}/tickets"),
            json!({ "id": ticket }),
        ),
    ];

    // Nobody logged in: 401 everywhere.
    let anonymous = new_client();
    for path in &reads {
        let res = anonymous.get(app.url(path)).send().await.unwrap();
        let message = expect_error(res, StatusCode::UNAUTHORIZED).await;
        assert_eq!(message, "Please log in to access this resource.");
    }
    for (method, path, body) in &writes {
        let res = anonymous
            .request(method.clone(), app.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED).await;
    }

    // A plain user holds view_dashboard: reads, but no writes.
    let reader = user(&app, "rita", None).await;
    for path in &reads {
        assert_eq!(reader.get(path).await.status(), StatusCode::OK, "{path}");
    }
    for (method, path, body) in &writes {
        let res = reader.send(method.clone(), path, Some(body.clone())).await;
        let message = expect_error(res, StatusCode::FORBIDDEN).await;
        assert_eq!(message, "Unauthorized access", "{method} {path}");
    }

    // Without view_dashboard, not even reads.
    sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
        .bind(reader.user_id)
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    for path in &reads {
        expect_error(reader.get(path).await, StatusCode::FORBIDDEN).await;
    }

    // An editor without the CSRF header is refused too.
    for (method, path, body) in &writes {
        let res = admin
            .client
            .request(method.clone(), app.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let message = expect_error(res, StatusCode::FORBIDDEN).await;
        assert_eq!(message, "CSRF token validation failed");
    }
    assert_eq!(
        admin.board(board).await,
        snapshot,
        "refused writes change nothing"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) FROM boards").await, 1);

    // The same writes with `edit` succeed (in an order that keeps the ids valid).
    for i in [0, 1, 3, 4, 6, 7, 8, 5, 2] {
        let (method, path, body) = &writes[i];
        let res = admin.send(method.clone(), path, Some(body.clone())).await;
        assert!(
            res.status().is_success(),
            "{method} {path}: {}",
            res.status()
        );
    }
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "B" })).await;
    let columns = format!("/boards/{board}/columns");
    let columns = columns.as_str();
    let column = admin.create(columns, json!({ "name": "C" })).await;
    let tickets = format!("/columns/{column}/tickets");
    let tickets = tickets.as_str();
    let ticket = admin.create(tickets, json!({ "title": "T" })).await;
    let snapshot = admin.board(board).await;

    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(Method, &str, Value, &str)> = vec![
        (Method::POST, "/boards", json!({}), "name"),
        (Method::POST, "/boards", json!({ "name": 5 }), "name"),
        (Method::POST, "/boards", json!({ "name": null }), "name"),
        (Method::POST, "/boards", json!({ "name": "" }), "name"),
        (Method::POST, "/boards", json!({ "name": "   " }), "name"),
        (
            Method::POST,
            "/boards",
            json!({ "name": long(101) }),
            "name",
        ),
        (
            Method::POST,
            "/boards",
            json!({ "name": "a\u{0}b" }),
            "name",
        ),
        (
            Method::POST,
            "/boards",
            json!({ "name": "line\nbreak" }),
            "name",
        ),
        (Method::PUT, "/boards", json!({ "name": "N" }), "id"),
        (
            Method::PUT,
            "/boards",
            json!({ "id": "one", "name": "N" }),
            "id",
        ),
        (Method::PUT, "/boards", json!({ "id": board }), "name"),
        (
            Method::PUT,
            "/boards",
            json!({ "id": board, "name": long(101) }),
            "name",
        ),
        (Method::DELETE, "/boards", json!({}), "id"),
        (Method::DELETE, "/boards", json!({ "id": 1.5 }), "id"),
        (Method::POST, columns, json!({ "position": 0 }), "name"),
        (
            Method::POST,
            columns,
            json!({ "name": "N", "position": -1 }),
            "position",
        ),
        (
            Method::POST,
            columns,
            json!({ "name": "N", "position": 1.5 }),
            "position",
        ),
        (
            Method::POST,
            columns,
            json!({ "name": "N", "position": "zero" }),
            "position",
        ),
        (
            Method::POST,
            columns,
            json!({ "name": "N", "position": "1.5" }),
            "position",
        ),
        (
            Method::POST,
            columns,
            json!({ "name": "N", "position": "99999999999999999999999" }),
            "position",
        ),
        (Method::POST, columns, json!({ "name": long(101) }), "name"),
        (
            Method::PUT,
            columns,
            json!({ "id": column, "position": -3 }),
            "position",
        ),
        (
            Method::PUT,
            columns,
            json!({ "id": column, "name": "" }),
            "name",
        ),
        (Method::PUT, columns, json!({ "id": [column] }), "id"),
        (
            Method::POST,
            tickets,
            json!({ "description": "d" }),
            "title",
        ),
        (Method::POST, tickets, json!({ "title": "" }), "title"),
        (
            Method::POST,
            tickets,
            json!({ "title": long(201) }),
            "title",
        ),
        (Method::POST, tickets, json!({ "title": ["a"] }), "title"),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "description": 5 }),
            "description",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "description": long(10_001) }),
            "description",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "description": "a\u{0}b" }),
            "description",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "position": -1 }),
            "position",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "position": 9_223_372_036_854_775_808u64 }),
            "position",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "order": -1 }),
            "order",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "order": "-1" }),
            "order",
        ),
        (
            Method::POST,
            tickets,
            json!({ "title": "N", "position": "1; DROP TABLE tickets" }),
            "position",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "title": long(201) }),
            "title",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "position": true }),
            "position",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "position": -1 }),
            "position",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "column_id": "x" }),
            "column_id",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "column_id": -2 }),
            "column_id",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "order": 2.5 }),
            "order",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "order": { "n": 1 } }),
            "order",
        ),
        (
            Method::PUT,
            tickets,
            json!({ "id": ticket, "description": "\u{7}" }),
            "description",
        ),
        (Method::DELETE, tickets, json!({ "id": "1x" }), "id"),
    ];
    for (method, path, body, field) in cases {
        let res = admin.send(method.clone(), path, Some(body.clone())).await;
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(field), "{method} {path} {body}: {message}");
    }
    // Not JSON at all.
    let res = admin
        .client
        .post(app.url("/boards"))
        .header("X-CSRFToken", &admin.csrf)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST).await;
    let res = admin
        .client
        .post(app.url("/boards"))
        .header("X-CSRFToken", &admin.csrf)
        .body("name=x")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert_eq!(admin.board(board).await, snapshot, "nothing changed");
    assert_eq!(app.scalar("SELECT COUNT(*) FROM boards").await, 1);

    // The limits themselves are accepted; characters are counted, not bytes, and
    // hostile text is stored and returned as it was sent.
    let emoji_title = "🦀".repeat(200);
    let hostile = "'); DROP TABLE tickets; -- <script>alert(1)</script> \\ \" 🦀";
    let max_name = "é".repeat(100);
    admin.create("/boards", json!({ "name": max_name })).await;
    let edge = admin
        .create(
            tickets,
            json!({ "title": emoji_title, "description": "\n".repeat(10_000), "order": 0 }),
        )
        .await;
    let sly = admin
        .create(tickets, json!({ "title": hostile, "description": hostile }))
        .await;
    let res = admin.get(tickets).await;
    let listed = json(res).await;
    assert_eq!(listed[0]["id"], edge);
    assert_eq!(listed[0]["title"], emoji_title);
    assert_eq!(listed[0]["description"].as_str().unwrap().len(), 10_000);
    assert_eq!(listed[2]["id"], sly);
    assert_eq!(listed[2]["title"], hostile);
    assert_eq!(listed[2]["description"], hostile);
    // Names are trimmed; extra fields are ignored.
    let trimmed = admin
        .create(columns, json!({ "name": "  Done  ", "colour": "red" }))
        .await;
    let res = admin.get(columns).await;
    assert_eq!(
        json(res).await[1],
        json!({ "id": trimmed, "name": "Done", "position": 1 })
    );
}

async fn unknown_ids_are_404(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "B" })).await;
    let column = admin
        .create(&format!("/boards/{board}/columns"), json!({ "name": "C" }))
        .await;
    let snapshot = admin.board(board).await;
    let none = 987_654_321_i64;
    for path in [
        format!("/boards/{none}"),
        "/boards/abc".to_owned(),
        "/boards/99999999999999999999999".to_owned(),
        format!("/boards/{none}/columns"),
        "/boards/-1/columns".to_owned(),
        format!("/columns/{none}/tickets"),
        "/columns/x/tickets".to_owned(),
    ] {
        expect_error(admin.get(&path).await, StatusCode::NOT_FOUND).await;
    }
    let writes: Vec<(Method, String, Value)> = vec![
        (
            Method::PUT,
            "/boards".into(),
            json!({ "id": none, "name": "N" }),
        ),
        (Method::DELETE, "/boards".into(), json!({ "id": none })),
        (
            Method::POST,
            format!("/boards/{none}/columns"),
            json!({ "name": "N" }),
        ),
        (
            Method::POST,
            "/boards/abc/columns".into(),
            json!({ "name": "N" }),
        ),
        (
            Method::PUT,
            format!("/boards/{board}/columns"),
            json!({ "id": none, "name": "N" }),
        ),
        (
            Method::DELETE,
            format!("/boards/{board}/columns"),
            json!({ "id": none }),
        ),
        (
            Method::POST,
            format!("/columns/{none}/tickets"),
            json!({ "title": "N" }),
        ),
        (
            Method::PUT,
            format!("/columns/{column}/tickets"),
            json!({ "id": none, "title": "N" }),
        ),
        (
            Method::PUT,
            format!("/columns/{none}/tickets"),
            json!({ "id": none, "title": "N" }),
        ),
        (
            Method::DELETE,
            format!("/columns/{column}/tickets"),
            json!({ "id": none }),
        ),
    ];
    for (method, path, body) in writes {
        let res = admin.send(method.clone(), &path, Some(body)).await;
        let message = expect_error(res, StatusCode::NOT_FOUND).await;
        assert!(message.ends_with("not found"), "{method} {path}: {message}");
    }
    assert_eq!(admin.board(board).await, snapshot);
}

/// Counts, per request id, the SQL statements that touch the kanban tables, by
/// listening to sqlx's statement events inside the request's span.
mod query_count {
    use std::collections::HashMap;
    use std::fmt::Debug;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Metadata, Subscriber};
    use tracing_subscriber::layer::{Context, SubscriberExt};
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    static COUNTS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();

    struct RequestId(String);

    #[derive(Default)]
    struct Fields(Vec<(String, String)>);

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    struct Counter;

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Counter {
        fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
            meta.target() == "sqlx::query" || (meta.is_span() && meta.name() == "request")
        }

        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            let request_id = fields.0.into_iter().find(|(k, _)| k == "id");
            if let (Some((_, value)), Some(span)) = (request_id, ctx.span(id)) {
                span.extensions_mut().insert(RequestId(value));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let sql: String = fields.0.into_iter().map(|(_, v)| v).collect();
            if !(sql.contains("board") || sql.contains("tickets")) {
                return;
            }
            let Some(scope) = ctx.event_scope(event) else {
                return;
            };
            for span in scope {
                if let Some(RequestId(id)) = span.extensions().get::<RequestId>() {
                    let mut counts = COUNTS.get_or_init(Default::default).lock().unwrap();
                    *counts.entry(id.clone()).or_default() += 1;
                    return;
                }
            }
        }
    }

    /// Installs the counter as the process's subscriber, once.
    pub fn install() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counter))
                .expect("no other global tracing subscriber in the test binary");
        });
    }

    pub fn of(request_id: &str) -> usize {
        COUNTS
            .get_or_init(Default::default)
            .lock()
            .unwrap()
            .get(request_id)
            .copied()
            .unwrap_or(0)
    }
}

async fn the_whole_board_costs_the_same_queries_whatever_its_size(backend: Backend) {
    query_count::install();
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let small = admin.create("/boards", json!({ "name": "Small" })).await;
    let column = admin
        .create(
            &format!("/boards/{small}/columns"),
            json!({ "name": "Only" }),
        )
        .await;
    admin
        .create(
            &format!("/columns/{column}/tickets"),
            json!({ "title": "T" }),
        )
        .await;
    let big = admin.create("/boards", json!({ "name": "Big" })).await;
    for c in 0..40 {
        let column = admin
            .create(
                &format!("/boards/{big}/columns"),
                json!({ "name": format!("c{c}") }),
            )
            .await;
        for t in 0..3 {
            admin
                .create(
                    &format!("/columns/{column}/tickets"),
                    json!({ "title": format!("t{c}.{t}") }),
                )
                .await;
        }
    }
    let mut counts = Vec::new();
    for (round, board) in [small, big, small, big].into_iter().enumerate() {
        let request_id = format!("kanban-count-{}-{round}-{board}", app.addr.port());
        let res = admin
            .client
            .get(app.url(&format!("/boards/{board}")))
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let whole = json(res).await;
        assert_dense(&whole);
        if board == big {
            let columns = whole["columns"].as_array().unwrap();
            assert_eq!(columns.len(), 40);
            assert!(columns
                .iter()
                .all(|c| c["tickets"].as_array().unwrap().len() == 3));
        }
        counts.push(query_count::of(&request_id));
    }
    assert!(counts[0] >= 1, "the counter sees the queries: {counts:?}");
    assert!(
        counts.iter().all(|&n| n == counts[0]),
        "small and big boards: {counts:?}"
    );
    assert!(counts[0] <= 3, "{counts:?}");
}

/// Many clients move tickets of the same columns at once; the order must end valid.
async fn concurrent_moves_keep_a_valid_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    editor(&app, "ada").await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(std::sync::Arc::new(log_in(&app, "ada").await));
    }
    let admin = &clients[0];
    let board = admin.create("/boards", json!({ "name": "Busy" })).await;
    let columns_path = format!("/boards/{board}/columns");
    let a = admin.create(&columns_path, json!({ "name": "A" })).await;
    let b = admin.create(&columns_path, json!({ "name": "B" })).await;
    let mut tickets = Vec::new();
    for i in 0..20 {
        let id = admin
            .create(
                &format!("/columns/{a}/tickets"),
                json!({ "title": format!("t{i}") }),
            )
            .await;
        tickets.push(id);
    }

    let mut rng = StdRng::seed_from_u64(0xc0c0_4242);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let client = std::sync::Arc::clone(&clients[i % clients.len()]);
        let ticket = tickets[rng.gen_range(0..tickets.len())];
        let position = rng.gen_range(0..25);
        let roll = rng.gen_range(0..100);
        let (method, path, body) = match roll {
            // Most move within A; some cross to B and back (a 404 when the ticket is not
            // in the column named any more is a fair answer to a stale client).
            0..=54 => (
                Method::PUT,
                format!("/columns/{a}/tickets"),
                json!({ "id": ticket, "order": position }),
            ),
            55..=69 => (
                Method::PUT,
                format!("/columns/{a}/tickets"),
                json!({ "id": ticket, "position": b.to_string(), "order": position % 5 }),
            ),
            70..=79 => (
                Method::PUT,
                format!("/columns/{b}/tickets"),
                json!({ "id": ticket, "column_id": a, "order": position }),
            ),
            80..=87 => (
                Method::POST,
                format!("/columns/{a}/tickets"),
                json!({ "title": format!("new{i}"), "position": a, "order": position }),
            ),
            88..=93 => (
                Method::DELETE,
                format!("/columns/{a}/tickets"),
                json!({ "id": ticket }),
            ),
            _ => (
                Method::PUT,
                columns_path.clone(),
                json!({ "id": if i % 2 == 0 { a } else { b }, "position": i % 3 }),
            ),
        };
        tasks.push(tokio::spawn(async move {
            client.send(method, &path, Some(body)).await.status()
        }));
    }
    let statuses = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(tasks))
        .await
        .expect("60 concurrent changes finish within a minute");
    let (mut moved, mut created, mut deleted) = (0, 0, 0);
    for status in statuses {
        match status.unwrap() {
            StatusCode::OK => moved += 1,
            StatusCode::CREATED => created += 1,
            StatusCode::NO_CONTENT => deleted += 1,
            StatusCode::NOT_FOUND => {}
            other => panic!("unexpected answer {other} to a concurrent change"),
        }
    }
    assert!(moved >= 15, "many moves went through: {moved}");

    let whole = admin.board(board).await;
    assert_dense(&whole);
    let mut seen: Vec<i64> = layout(&whole).into_iter().flat_map(|(_, t)| t).collect();
    assert_eq!(seen.len(), 20 + created - deleted, "{whole}");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20 + created - deleted, "no ticket twice");
    // And straight from the tables: per parent, places are exactly 0..n-1.
    for (table, parent, place) in [
        ("tickets", "column_id", "sort_order"),
        ("board_columns", "board_id", "position"),
    ] {
        let broken = app
            .scalar(&format!(
                "SELECT COUNT(*) FROM (SELECT {parent} FROM {table} GROUP BY {parent} \
                 HAVING COUNT(DISTINCT {place}) <> COUNT(*) OR MIN({place}) <> 0 \
                 OR MAX({place}) <> COUNT(*) - 1) AS broken"
            ))
            .await;
        assert_eq!(broken, 0, "{table} places are dense and unique");
    }
}

async fn every_change_is_in_the_activity_log(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "Logged" })).await;
    let columns = format!("/boards/{board}/columns");
    let a = admin.create(&columns, json!({ "name": "A" })).await;
    let b = admin.create(&columns, json!({ "name": "B" })).await;
    let tickets = format!("/columns/{a}/tickets");
    let t = admin.create(&tickets, json!({ "title": "T" })).await;
    let res = admin
        .put(&tickets, json!({ "id": t, "column_id": b, "order": 0 }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = admin.put(&columns, json!({ "id": b, "position": 0 })).await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = admin
        .delete(&format!("/columns/{b}/tickets"), json!({ "id": t }))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = admin
        .put("/boards", json!({ "id": board, "name": "L2" }))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = admin.delete(&columns, json!({ "id": a })).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = admin.delete("/boards", json!({ "id": board })).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    // A refused change is not a change.
    let res = admin.delete("/boards", json!({ "id": board })).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    let expected = [
        "create_board",
        "create_column",
        "create_column",
        "create_ticket",
        "move_ticket",
        "update_column",
        "delete_ticket",
        "rename_board",
        "delete_column",
        "delete_board",
    ];
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = sqlx::query_as::<_, (String, Option<i64>, Option<String>, String)>(
            "SELECT message, user_id, user_email, details FROM activity_logs \
             WHERE kind = 'change' ORDER BY id",
        )
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
        if rows.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let actions: Vec<String> = rows
        .iter()
        .map(|(_, _, _, d)| {
            serde_json::from_str::<Value>(d).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(actions, expected);
    for (message, user_id, email, details) in &rows {
        assert_eq!(*user_id, Some(admin.user_id), "{message}");
        assert_eq!(email.as_deref(), Some("ada@example.com"));
        let details: Value = serde_json::from_str(details).unwrap();
        assert_eq!(details["board_id"], board, "{message}");
        assert!(details.get("before").is_some() && details.get("after").is_some());
    }
    let (message, _, _, details) = &rows[4];
    assert_eq!(
        *message,
        format!("ticket {t} moved from column {a} order 0 to column {b} order 0")
    );
    let details: Value = serde_json::from_str(details).unwrap();
    assert_eq!(
        details["before"],
        json!({ "title": "T", "column_id": a, "order": 0 })
    );
    assert_eq!(
        details["after"],
        json!({ "title": "T", "column_id": b, "order": 0 })
    );
}

/// A database made before tickets had `order` (every migration up to 0007, tickets
/// placed by the old `position`) is migrated at start-up, and every ticket keeps its
/// column and its place in it.
async fn an_existing_database_keeps_every_tickets_column_and_order(backend: Backend) {
    use sqlx::migrate::Migrator;
    use sqlx::{Connection, Executor};

    let dir = tempfile::tempdir().unwrap();
    let (url, folder, schema) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display()),
            "sqlite",
            None,
        ),
        Backend::Postgres => {
            let base = postgres_url().unwrap();
            let schema = format!("gh_old_{:016x}", rand::thread_rng().gen::<u64>());
            let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
            conn.execute(format!("CREATE SCHEMA {schema}").as_str())
                .await
                .unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            (
                format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                "postgres",
                Some((base, schema)),
            )
        }
    };
    let mut old = Migrator::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder),
    )
    .await
    .unwrap();
    old.migrations = old
        .migrations
        .iter()
        .filter(|m| m.version < 8)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    // Tickets placed out of id order, so that a migration renumbering by id would show.
    let rows = "INSERT INTO boards (id, name, created_at, updated_at) VALUES (1, 'Old', 0, 0); \
        INSERT INTO board_columns (id, board_id, name, position, created_at, updated_at) \
        VALUES (1, 1, 'To do', 0, 0, 0), (2, 1, 'Done', 1, 0, 0); \
        INSERT INTO tickets (id, column_id, title, description, position, created_at, updated_at) \
        VALUES (1, 1, 'c', '', 2, 0, 0), (2, 1, 'a', '', 0, 0, 0), (3, 1, 'b', '', 1, 0, 0), \
        (4, 2, 'd', '', 0, 0, 0)";
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            old.run(&mut conn).await.unwrap();
            conn.execute(rows).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            old.run(&mut conn).await.unwrap();
            conn.execute(rows).await.unwrap();
            // Identities continue after the rows inserted with explicit ids.
            for table in ["boards", "board_columns", "tickets"] {
                conn.execute(
                    format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)").as_str(),
                )
                .await
                .unwrap();
            }
            conn.close().await.unwrap();
        }
    }

    let app = TestApp::spawn_with(backend, &[("DATABASE_URL", &url)]).await;
    let admin = editor(&app, "ada").await;
    let board = admin.board(1).await;
    assert_dense(&board);
    assert_eq!(layout(&board), vec![(1, vec![2, 3, 1]), (2, vec![4])]);
    // And it goes on working: the old client's move lands at the end of "Done".
    let res = admin
        .put("/columns/1/tickets", json!({ "id": "2", "position": "2" }))
        .await;
    assert_eq!(json(res).await["order"], 1);
    let board = admin.board(1).await;
    assert_dense(&board);
    assert_eq!(layout(&board), vec![(1, vec![3, 1]), (2, vec![4, 2])]);
    drop(app);
    if let Some((base, schema)) = schema {
        let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
        conn.execute(format!("DROP SCHEMA {schema} CASCADE").as_str())
            .await
            .unwrap();
    }
}

/// The document says ids and places are JSON integers or digit strings; JSON Schema's
/// `integer` also allows `2.0` and `1e3`, so the routes take those too.
async fn whole_numbers_arrive_in_every_form_json_schema_allows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let admin = editor(&app, "ada").await;
    let board = admin.create("/boards", json!({ "name": "B" })).await;
    let columns = format!("/boards/{board}/columns");
    let a = admin.create(&columns, json!({ "name": "A" })).await;
    let b = admin
        .create(&columns, json!({ "name": "B", "position": 0.0 }))
        .await;
    let raw = |method: Method, path: String, body: String| {
        admin
            .client
            .request(method, app.url(&path))
            .header("X-CSRFToken", &admin.csrf)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let tickets = format!("/columns/{a}/tickets");
    let res = raw(
        Method::POST,
        tickets.clone(),
        format!(r#"{{"title": "T", "position": {a}.0, "order": 1e3}}"#),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let t = json(res).await["id"].as_i64().unwrap();
    let res = raw(
        Method::PUT,
        tickets.clone(),
        format!(r#"{{"id": {t}.0, "column_id": " {b} ", "order": 0E0}}"#),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let answer = json(res).await;
    assert_eq!(
        (answer["column_id"].as_i64(), answer["order"].as_i64()),
        (Some(b), Some(0))
    );
    assert_eq!(
        layout(&admin.board(board).await),
        vec![(b, vec![t]), (a, vec![])]
    );
    // A fraction, or a whole number beyond 64 bits, is still refused.
    for body in [
        format!(r#"{{"id": {t}.5}}"#),
        r#"{"id": 1e19}"#.to_owned(),
        r#"{"id": "9223372036854775808"}"#.to_owned(),
    ] {
        let res = raw(
            Method::DELETE,
            format!("/columns/{b}/tickets"),
            body.clone(),
        )
        .await
        .unwrap();
        let message = expect_error(res, StatusCode::BAD_REQUEST).await;
        assert!(message.contains("id"), "{body}: {message}");
    }
    let res = raw(
        Method::DELETE,
        columns.clone(),
        r#"{"id": "1.5"}"#.to_owned(),
    )
    .await
    .unwrap();
    let message = expect_error(res, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("id"), "{message}");
    // The largest id the schema allows is an id like any other: it names nothing.
    let res = raw(
        Method::DELETE,
        format!("/columns/{b}/tickets"),
        r#"{"id": "009223372036854775807"}"#.to_owned(),
    )
    .await
    .unwrap();
    expect_error(res, StatusCode::NOT_FOUND).await;
}

/// `/openapi.json`'s kanban operations: each lists the statuses it can answer (its
/// own and those the route table adds), typed bodies with examples, int64 path ids,
/// and the lenient whole numbers as what they are.
#[test]
fn the_document_describes_the_kanban_routes() {
    let routes = gatehouse::app::routes();
    // Components share one namespace: two different schemas under one name would
    // leave one of them described by the other.
    let mut seen = std::collections::HashMap::new();
    for (name, schema) in routes.schemas() {
        let schema = serde_json::to_value(schema).unwrap();
        if let Some(before) = seen.insert(name.clone(), schema.clone()) {
            assert_eq!(before, schema, "two schemas named {name}");
        }
    }
    let doc = gatehouse::openapi::document(&routes);
    let doc = serde_json::to_value(doc).unwrap();
    let read = ["200", "400", "401", "403", "503"];
    let write = ["400", "401", "403", "413", "415", "503"];
    let expected: Vec<(&str, &str, &[&str])> = vec![
        ("get", "/boards", &[]),
        ("post", "/boards", &["201"]),
        ("put", "/boards", &["200", "404"]),
        ("delete", "/boards", &["204", "404"]),
        ("get", "/boards/{board_id}", &["404"]),
        ("get", "/boards/{board_id}/columns", &["404"]),
        ("post", "/boards/{board_id}/columns", &["201", "404"]),
        ("put", "/boards/{board_id}/columns", &["200", "404"]),
        ("delete", "/boards/{board_id}/columns", &["204", "404"]),
        ("get", "/columns/{column_id}/tickets", &["404"]),
        ("post", "/columns/{column_id}/tickets", &["201", "404"]),
        ("put", "/columns/{column_id}/tickets", &["200", "404"]),
        ("delete", "/columns/{column_id}/tickets", &["204", "404"]),
    ];
    let schemas = &doc["components"]["schemas"];
    for (method, path, own) in expected {
        let op = &doc["paths"][path][method];
        assert_eq!(op["tags"], json!(["kanban"]), "{method} {path}");
        let mut want: Vec<&str> = if method == "get" {
            read.to_vec()
        } else {
            write.iter().chain(own).copied().collect()
        };
        want.extend(own);
        want.sort_unstable();
        want.dedup();
        let mut have: Vec<&str> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        have.sort_unstable();
        assert_eq!(have, want, "{method} {path}");
        for (status, response) in op["responses"].as_object().unwrap() {
            let schema = &response["content"]["application/json"]["schema"];
            if status == "204" {
                assert!(response.get("content").is_none(), "{method} {path}");
                continue;
            }
            let named = schema["$ref"]
                .as_str()
                .or(schema["items"]["$ref"].as_str())
                .unwrap_or_else(|| panic!("{method} {path} {status}: {schema}"));
            let name = named.rsplit('/').next().unwrap();
            assert!(
                schemas[name]["example"].is_object(),
                "{method} {path} {status}: {name} has no example"
            );
        }
        if method != "get" {
            let body = &op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            let name = body.as_str().unwrap().rsplit('/').next().unwrap();
            assert!(schemas[name]["example"].is_object(), "{name}");
        }
        for param in op["parameters"].as_array().into_iter().flatten() {
            assert_eq!(param["in"], "path");
            assert_eq!(param["schema"]["format"], "int64", "{method} {path}");
        }
    }
    let number = &schemas["WholeNumber"]["oneOf"];
    assert_eq!(number[0]["type"], "integer");
    assert_eq!(number[0]["format"], "int64");
    assert_eq!(number[1]["type"], "string");
    assert_eq!(
        number[1]["pattern"].as_str(),
        Some(gatehouse::kanban::validate::int_pattern().as_str())
    );
    let change = &schemas["TicketChange"]["properties"];
    for field in ["id", "position", "column_id", "order"] {
        assert!(
            change[field]
                .to_string()
                .contains("#/components/schemas/WholeNumber"),
            "{field}: {}",
            change[field]
        );
    }
}
