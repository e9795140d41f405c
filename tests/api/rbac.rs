//! Roles, permissions and user administration: every route at both its paths, each
//! permission boundary, the escalation rules and the route table's policies.

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::helpers::{expect_error, json, new_client, Backend, TestApp, PASSWORD};
use crate::on_both_databases;
use gatehouse::auth::policy::{Policy, Refusal};

on_both_databases!(
    every_route_enforces_its_declared_policy,
    roles_and_permissions_at_both_paths,
    built_ins_and_roles_in_use_are_protected,
    no_escalation_for_a_user_manager,
    the_last_super_admin_stays,
    role_changes_apply_on_the_next_request,
    disable_and_enable_users,
    user_listing_pages_and_searches,
    refusals_each_route_documents,
    a_super_admin_holds_every_permission_in_one_answer,
);

async fn user_id(app: &TestApp, username: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM users WHERE username = '{username}'"
    ))
    .await
}

async fn role_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM roles WHERE name = '{name}'"))
        .await
}

async fn grant(app: &TestApp, username: &str, role: &str) {
    let id = user_id(app, username).await;
    app.grant(id, role).await;
}

async fn every_route_enforces_its_declared_policy(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("roleless").await;
    let id = user_id(&app, "roleless").await;
    sqlx::query(&format!("DELETE FROM user_roles WHERE user_id = {id}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    let anonymous = new_client();
    let table = gatehouse::app::routes();
    let mut seen = std::collections::HashSet::new();
    let mut guarded = 0;
    for spec in table.specs() {
        assert!(
            seen.insert((spec.method.clone(), spec.path.clone())),
            "{} {} is declared twice",
            spec.method,
            spec.path
        );
        let path: String = spec
            .path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        if spec.policy == Policy::Public {
            continue;
        }
        guarded += 1;
        if spec.refusal == Refusal::Page {
            // A page sends a browser to sign in, and comes back after.
            let res = anonymous
                .request(spec.method.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert_eq!(
                res.status(),
                StatusCode::SEE_OTHER,
                "{} {path}",
                spec.method
            );
            let to = res.headers()["location"].to_str().unwrap();
            assert!(to.starts_with("/ui/login?next=%2Fui%2F"), "{to}");
            if let Policy::Permission(p) = spec.policy {
                let res = app
                    .client
                    .request(spec.method.clone(), app.url(&path))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    res.status(),
                    StatusCode::FORBIDDEN,
                    "{path} without {}",
                    p.name()
                );
                assert!(res.text().await.unwrap().contains("<html"));
            }
            continue;
        }
        let res = anonymous
            .request(spec.method.clone(), app.url(&path))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            expect_error(res, StatusCode::UNAUTHORIZED).await,
            "Please log in to access this resource.",
            "{} {path} without a session",
            spec.method
        );
        if let Policy::Permission(p) = spec.policy {
            let res = app
                .request(spec.method.clone(), &path, Some(json!({})))
                .await;
            assert_eq!(
                expect_error(res, StatusCode::FORBIDDEN).await,
                "Unauthorized access",
                "{} {path} without {}",
                spec.method,
                p.name()
            );
        }
    }
    assert!(guarded > 30, "only {guarded} guarded routes found");
}

async fn roles_and_permissions_at_both_paths(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;

    for (prefix, n) in [("/admin", 1), ("", 2)] {
        let role = format!("Editor{n}");
        let res = app
            .post(&format!("{prefix}/create_role"), json!({ "name": role }))
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        let body = json(res).await;
        assert_eq!(body["message"], "New role created");
        assert_eq!(body["role"]["name"], role.as_str());
        let new_role_id = body["role"]["id"].as_i64().unwrap();
        let res = app
            .post(
                &format!("{prefix}/create_role"),
                json!({ "name": role.to_uppercase() }),
            )
            .await;
        expect_error(res, StatusCode::CONFLICT).await;
        let res = app
            .post(&format!("{prefix}/create_role"), json!({ "name": "  " }))
            .await;
        expect_error(res, StatusCode::BAD_REQUEST).await;

        let perm = format!("publish_{n}");
        let res = app
            .post(
                &format!("{prefix}/create_permission"),
                json!({ "name": perm }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(
            json(res).await["message"],
            format!("Permission \"{perm}\" created successfully")
        );
        let res = app
            .post(
                &format!("{prefix}/create_permission"),
                json!({ "name": perm }),
            )
            .await;
        expect_error(res, StatusCode::CONFLICT).await;
        let res = app
            .post(
                &format!("{prefix}/create_permission"),
                json!({ "name": "x'; DROP TABLE permissions;--" }),
            )
            .await;
        expect_error(res, StatusCode::BAD_REQUEST).await;

        // Assignment is idempotent.
        for _ in 0..2 {
            let res = app
                .post(
                    &format!("{prefix}/assign_permission_to_role"),
                    json!({ "permission_name": perm, "role_name": role }),
                )
                .await;
            assert_eq!(json(res).await["message"], "Permission assigned to role");
        }
        let res = app
            .post(
                &format!("{prefix}/assign_permission_to_role"),
                json!({ "permission_name": "nope", "role_name": role }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::NOT_FOUND).await,
            "Permission does not exist"
        );
        let res = app
            .post(
                &format!("{prefix}/assign_permission_to_role"),
                json!({ "permission_name": perm, "role_name": "Nope" }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::NOT_FOUND).await,
            "Role does not exist"
        );

        let roles = json(app.get(&format!("{prefix}/roles")).await).await;
        let listed = roles["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == role.as_str())
            .unwrap()
            .clone();
        assert_eq!(listed["permissions"], json!([perm]));
        let perms = json(app.get(&format!("{prefix}/permissions")).await).await;
        assert!(perms["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == perm.as_str()));

        // Give the role to a user, twice, then take it away.
        let me = user_id(&app, "root").await;
        for _ in 0..2 {
            let res = app
                .post(
                    &format!("{prefix}/assign_role_to_user"),
                    json!({ "user_id": me, "role_id": new_role_id }),
                )
                .await;
            assert_eq!(json(res).await["message"], "Role assigned to user");
        }
        let res = app
            .post(
                &format!("{prefix}/assign_role_to_user"),
                json!({ "user_id": 999_999, "role_id": new_role_id }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::NOT_FOUND).await,
            "User not found"
        );
        let res = app
            .post(
                &format!("{prefix}/assign_role_to_user"),
                json!({ "user_id": me, "role_id": 999_999 }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::NOT_FOUND).await,
            "Role not found"
        );
        let res = app
            .post(
                &format!("{prefix}/assign_role_to_user"),
                json!({ "user_id": "me", "role_id": new_role_id }),
            )
            .await;
        assert!(expect_error(res, StatusCode::BAD_REQUEST)
            .await
            .contains("user_id"));
        let res = app
            .post(
                &format!("{prefix}/remove_role_from_user"),
                json!({ "user_id": me, "role_id": new_role_id }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);

        let res = app
            .post(
                &format!("{prefix}/revoke_permission_from_role"),
                json!({ "permission_name": perm, "role_name": role }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
        let perm_id = app
            .scalar(&format!("SELECT id FROM permissions WHERE name = '{perm}'"))
            .await;
        let res = app
            .request(
                Method::DELETE,
                &format!("{prefix}/delete_permission"),
                Some(json!({ "permission_id": perm_id })),
            )
            .await;
        assert_eq!(
            json(res).await["message"],
            "Permission deleted successfully"
        );
        let res = app
            .request(
                Method::DELETE,
                &format!("{prefix}/delete_role"),
                Some(json!({ "role_id": new_role_id })),
            )
            .await;
        assert_eq!(json(res).await["message"], "Role deleted successfully");
        let res = app
            .request(
                Method::DELETE,
                &format!("{prefix}/delete_role"),
                Some(json!({ "role_id": new_role_id })),
            )
            .await;
        expect_error(res, StatusCode::NOT_FOUND).await;
    }
    // Every change is in the activity log with its actor.
    let admin_changes = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE kind = 'admin' AND user_email = 'root@example.com'")
        .await;
    assert!(admin_changes >= 14, "{admin_changes} admin entries");
}

async fn built_ins_and_roles_in_use_are_protected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    for role in ["Super Admin", "Admin", "User"] {
        let id = role_id(&app, role).await;
        let res = app
            .request(
                Method::DELETE,
                "/admin/delete_role",
                Some(json!({ "role_id": id })),
            )
            .await;
        expect_error(res, StatusCode::CONFLICT).await;
    }
    let id = app
        .scalar("SELECT id FROM permissions WHERE name = 'manage_users'")
        .await;
    let res = app
        .request(
            Method::DELETE,
            "/delete_permission",
            Some(json!({ "permission_id": id })),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT).await;

    // A custom role that someone holds cannot be deleted out from under them.
    let res = app.post("/create_role", json!({ "name": "Auditor" })).await;
    let auditor = json(res).await["role"]["id"].as_i64().unwrap();
    let me = user_id(&app, "root").await;
    app.post(
        "/assign_role_to_user",
        json!({ "user_id": me, "role_id": auditor }),
    )
    .await;
    let res = app
        .request(
            Method::DELETE,
            "/delete_role",
            Some(json!({ "role_id": auditor })),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT).await;
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) FROM roles WHERE id = {auditor}"))
            .await,
        1
    );
    let res = app
        .request(
            Method::DELETE,
            "/delete_role",
            Some(json!({ "role_id": "x" })),
        )
        .await;
    expect_error(res, StatusCode::BAD_REQUEST).await;
}

async fn no_escalation_for_a_user_manager(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    // A role holding manage_users only, given to a manager.
    app.post("/admin/create_role", json!({ "name": "UserManager" }))
        .await;
    app.post(
        "/admin/assign_permission_to_role",
        json!({ "permission_name": "manage_users", "role_name": "UserManager" }),
    )
    .await;
    let manager_app = TestApp::spawn_with(
        backend,
        &[(
            "DATABASE_URL",
            app.state.config.database_url.expose_secret(),
        )],
    )
    .await;
    manager_app.verified_user("manager").await;
    let manager = user_id(&app, "manager").await;
    sqlx::query(&format!("DELETE FROM user_roles WHERE user_id = {manager}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    grant(&app, "manager", "UserManager").await;

    // Allowed: reading, and handing out roles within its own powers.
    assert_eq!(manager_app.get("/roles").await.status(), StatusCode::OK);
    assert_eq!(
        manager_app.get("/admin/users/details").await.status(),
        StatusCode::OK
    );
    let user_role = role_id(&app, "User").await;
    let res = manager_app
        .post(
            "/assign_role_to_user",
            json!({ "user_id": manager, "role_id": user_role }),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    // (User grants view_dashboard, which the manager lacks: refused above.)

    for role in ["Admin", "Super Admin"] {
        let id = role_id(&app, role).await;
        let res = manager_app
            .post(
                "/admin/assign_role_to_user",
                json!({ "user_id": manager, "role_id": id }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::FORBIDDEN).await,
            "Unauthorized access",
            "{role}"
        );
    }
    // manage_admin routes are out of reach entirely.
    let res = manager_app
        .post(
            "/admin/assign_permission_to_role",
            json!({ "permission_name": "manage_admin", "role_name": "UserManager" }),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = manager_app
        .post("/create_role", json!({ "name": "Sneaky" }))
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    // Taking over a stronger account through its profile is refused too.
    let root = user_id(&app, "root").await;
    let res = manager_app
        .post(
            "/update_profile",
            json!({"user_id": root, "first_name": "x", "last_name": "y",
                   "username": "root", "email": "mine@example.com", "password": "Owned-Account-99-Now"}),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = manager_app
        .post(&format!("/admin/users/{root}/disable"), json!({}))
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    assert_eq!(
        json(manager_app.get("/current_user_details").await).await["user"]["roles"],
        json!(["UserManager"])
    );
}

async fn the_last_super_admin_stays(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    let me = user_id(&app, "root").await;
    let super_admin = role_id(&app, "Super Admin").await;
    let res = app
        .post(
            "/admin/remove_role_from_user",
            json!({ "user_id": me, "role_id": super_admin }),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT).await;
    let res = app
        .post(&format!("/admin/users/{me}/disable"), json!({}))
        .await;
    expect_error(res, StatusCode::CONFLICT).await;

    // With a second Super Admin, one may go; then the other is the last.
    assert_eq!(app.signup("deputy").await.status(), StatusCode::CREATED);
    let deputy = user_id(&app, "deputy").await;
    let res = app
        .post(
            "/assign_role_to_user",
            json!({ "user_id": deputy, "role_id": super_admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = app
        .post(
            "/remove_role_from_user",
            json!({ "user_id": me, "role_id": super_admin }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) FROM user_roles WHERE role_id = {super_admin}"
        ))
        .await,
        1
    );
}

async fn role_changes_apply_on_the_next_request(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    // The subject logs in on a second instance sharing the database.
    let subject = TestApp::spawn_with(
        backend,
        &[(
            "DATABASE_URL",
            app.state.config.database_url.expose_secret(),
        )],
    )
    .await;
    subject.verified_user("subject").await;
    expect_error(subject.get("/roles").await, StatusCode::FORBIDDEN).await;
    let id = user_id(&app, "subject").await;
    let admin = role_id(&app, "Admin").await;
    app.post(
        "/assign_role_to_user",
        json!({ "user_id": id, "role_id": admin }),
    )
    .await;
    assert_eq!(subject.get("/roles").await.status(), StatusCode::OK);
    app.post(
        "/remove_role_from_user",
        json!({ "user_id": id, "role_id": admin }),
    )
    .await;
    expect_error(subject.get("/roles").await, StatusCode::FORBIDDEN).await;
}

async fn disable_and_enable_users(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    let target = TestApp::spawn_with(
        backend,
        &[(
            "DATABASE_URL",
            app.state.config.database_url.expose_secret(),
        )],
    )
    .await;
    target.verified_user("tim").await;
    let tim = user_id(&app, "tim").await;
    let res = app
        .post(&format!("/admin/users/{tim}/disable"), json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Disabling ends the user's sessions at once.
    expect_error(
        target.get("/current_user_details").await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    let res = target
        .post(
            "/login",
            json!({"username_or_email": "tim", "password": PASSWORD}),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN).await;
    let res = app.post(&format!("/users/{tim}/enable"), json!({})).await;
    assert_eq!(res.status(), StatusCode::OK);
    target.login("tim", PASSWORD).await;
    let me = user_id(&app, "root").await;
    expect_error(
        app.post(&format!("/admin/users/{me}/disable"), json!({}))
            .await,
        StatusCode::CONFLICT,
    )
    .await;
    expect_error(
        app.post("/admin/users/424242/disable", json!({})).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    expect_error(
        app.post("/admin/users/abc/disable", json!({})).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
}

async fn user_listing_pages_and_searches(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Admin").await;
    // 120 more users, straight into the table.
    sqlx::query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, \
         created_at, updated_at, password_changed_at) \
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 120) \
         SELECT 'member' || n, 'member' || n || '@corp.example', 'Member', 'Number' || n, 'x', 0, 0, 0 \
         FROM seq",
    )
    .execute(app.state.db.writer())
    .await
    .unwrap();
    app.state.sessions.caught_up().await;
    let page: Value = json(app.get("/admin/users/details?page=2&per_page=50").await).await;
    assert_eq!(page["total"], 121);
    assert_eq!(page["total_estimated"], false);
    assert_eq!(page["page"], 2);
    assert_eq!(page["per_page"], 50);
    assert_eq!(page["users"].as_array().unwrap().len(), 50);
    let first = &page["users"][0];
    for key in ["id", "first_name", "last_name", "username", "email"] {
        assert!(!first[key].is_null(), "{key}");
    }
    // By key: from page 1's `next_after`, exactly page 2.
    let one: Value = json(app.get("/admin/users/details?per_page=50").await).await;
    let after = one["next_after"].as_i64().unwrap();
    assert_eq!(after, one["users"][49]["id"].as_i64().unwrap());
    let keyed: Value = json(
        app.get(&format!("/admin/users/details?per_page=50&after={after}"))
            .await,
    )
    .await;
    assert_eq!(keyed["users"], page["users"]);
    assert_eq!(keyed["page"], Value::Null);
    let last: Value = json(
        app.get(&format!(
            "/admin/users/details?per_page=50&after={}",
            keyed["next_after"]
        ))
        .await,
    )
    .await;
    assert_eq!(last["users"].as_array().unwrap().len(), 21);
    assert_eq!(last["next_after"], Value::Null);
    let found: Value = json(app.get("/users/details?q=MEMBER11").await).await;
    // member11 and member110..member119
    assert_eq!(found["total"], 11);
    let found: Value = json(app.get("/users/details?q=root%40").await).await;
    assert_eq!(found["total"], 1);
    let found: Value = json(app.get("/users/details?q=number12").await).await;
    assert_eq!(found["total"], 2);
    let found: Value = json(app.get("/users/details?q=%25").await).await;
    assert_eq!(found["total"], 0);
    let capped: Value = json(app.get("/users/details?per_page=1000").await).await;
    assert_eq!(capped["per_page"], 100);
    expect_error(
        app.get("/users/details?page=0").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        app.get("/users/details?page=x").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    expect_error(
        app.get("/users/details?after=x").await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let all: Value = json(app.get("/all_user_profiles").await).await;
    assert_eq!(all["success"], true);
    let profiles = all["message"].as_array().unwrap();
    assert_eq!(profiles.len(), 121);
    let root = profiles.iter().find(|p| p["username"] == "root").unwrap();
    assert!(root["roles"].as_array().unwrap().contains(&json!("Admin")));
    assert!(root["permissions"]
        .as_array()
        .unwrap()
        .contains(&json!("manage_users")));
}

/// The 403, 404 and 409 answers `/openapi.json` lists for the rbac routes that the
/// other tests do not reach: each one happens, with its documented message.
async fn refusals_each_route_documents(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    let root = user_id(&app, "root").await;

    // Super Admin's permissions are not links: 409 both ways.
    for route in [
        "/assign_permission_to_role",
        "/admin/revoke_permission_from_role",
    ] {
        let res = app
            .post(
                route,
                json!({ "permission_name": "edit", "role_name": "Super Admin" }),
            )
            .await;
        assert_eq!(
            expect_error(res, StatusCode::CONFLICT).await,
            "Super Admin holds every permission; its permissions cannot be changed",
            "{route}"
        );
    }
    for (body, message) in [
        (
            json!({ "permission_name": "nope", "role_name": "Admin" }),
            "Permission does not exist",
        ),
        (
            json!({ "permission_name": "edit", "role_name": "Nope" }),
            "Role does not exist",
        ),
    ] {
        let res = app.post("/revoke_permission_from_role", body).await;
        assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, message);
    }
    let res = app
        .request(
            Method::DELETE,
            "/admin/delete_permission",
            Some(json!({ "permission_id": 999_999 })),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::NOT_FOUND).await,
        "Permission not found"
    );
    let user_role = role_id(&app, "User").await;
    for (body, message) in [
        (
            json!({ "user_id": 999_999, "role_id": user_role }),
            "User not found",
        ),
        (
            json!({ "user_id": root, "role_id": 999_999 }),
            "Role not found",
        ),
    ] {
        let res = app.post("/admin/remove_role_from_user", body).await;
        assert_eq!(expect_error(res, StatusCode::NOT_FOUND).await, message);
    }
    for (path, status, message) in [
        (
            "/admin/users/424242/enable".to_owned(),
            StatusCode::NOT_FOUND,
            "User not found",
        ),
        (
            "/users/abc/enable".to_owned(),
            StatusCode::BAD_REQUEST,
            "The user id must be an integer",
        ),
        (
            format!("/admin/users/{root}/enable"),
            StatusCode::CONFLICT,
            "You cannot change your own account status",
        ),
    ] {
        let res = app.post(&path, json!({})).await;
        assert_eq!(expect_error(res, status).await, message, "{path}");
    }

    // A keeper holds manage_admin and manage_users but not `edit` nor a custom
    // permission: the routes let it in, the escalation rules refuse it.
    app.post("/create_role", json!({ "name": "Keeper" })).await;
    app.post("/create_role", json!({ "name": "Editors" })).await;
    for (permission, role) in [
        ("manage_admin", "Keeper"),
        ("manage_users", "Keeper"),
        ("edit", "Editors"),
    ] {
        let res = app
            .post(
                "/assign_permission_to_role",
                json!({ "permission_name": permission, "role_name": role }),
            )
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .post("/create_permission", json!({ "name": "reports.export" }))
        .await;
    let custom = json(res).await["permission"]["id"].as_i64().unwrap();
    let keeper_app = TestApp::spawn_with(
        backend,
        &[(
            "DATABASE_URL",
            app.state.config.database_url.expose_secret(),
        )],
    )
    .await;
    keeper_app.verified_user("keeper").await;
    let keeper = user_id(&app, "keeper").await;
    sqlx::query(&format!("DELETE FROM user_roles WHERE user_id = {keeper}"))
        .execute(app.state.db.writer())
        .await
        .unwrap();
    app.state.sessions.caught_up().await;
    grant(&app, "keeper", "Keeper").await;
    let editors = role_id(&app, "Editors").await;

    let refused = [
        keeper_app
            .request(
                Method::DELETE,
                "/admin/delete_role",
                Some(json!({ "role_id": editors })),
            )
            .await,
        keeper_app
            .request(
                Method::DELETE,
                "/delete_permission",
                Some(json!({ "permission_id": custom })),
            )
            .await,
        keeper_app
            .post(
                "/admin/revoke_permission_from_role",
                json!({ "permission_name": "edit", "role_name": "Editors" }),
            )
            .await,
        keeper_app
            .post(
                "/remove_role_from_user",
                json!({ "user_id": root, "role_id": editors }),
            )
            .await,
        keeper_app
            .post(&format!("/admin/users/{root}/enable"), json!({}))
            .await,
    ];
    for res in refused {
        assert_eq!(
            expect_error(res, StatusCode::FORBIDDEN).await,
            "Unauthorized access"
        );
    }
    // Within its powers, the same keeper is served.
    let res = keeper_app
        .post(
            "/assign_permission_to_role",
            json!({ "permission_name": "manage_users", "role_name": "Editors" }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// A Super Admin holds every permission that exists, one made a moment ago included,
/// wherever access is read: the login's answer, the session looked up in the database
/// (a new permission empties the cache) and `Access::load`. The roles held beside it
/// are listed once each, and an ordinary user gets nothing of the Super Admin's.
async fn a_super_admin_holds_every_permission_in_one_answer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("plain").await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    grant(&app, "root", "Admin").await;
    let roles = ["Admin", "Super Admin", "User"];
    app.login("root", PASSWORD).await;

    create_permission(&app, "publish_early").await;
    let login = app.login("root", PASSWORD).await;
    let all = permission_names(&app).await;
    assert!(
        all.contains(&"publish_early".to_owned()) && all.len() > 5,
        "{all:?}"
    );
    assert_eq!(login["user"]["roles"], json!(roles));
    assert_eq!(login["user"]["permissions"], json!(all));

    // A new permission empties the cache: this request reads the session's row.
    create_permission(&app, "publish_late").await;
    let details = json(app.get("/current_user_details").await).await;
    let all = permission_names(&app).await;
    assert!(all.contains(&"publish_late".to_owned()));
    assert_eq!(details["user"]["roles"], json!(roles));
    assert_eq!(details["user"]["permissions"], json!(all));

    let root = user_id(&app, "root").await;
    let loaded = gatehouse::rbac::Access::load(app.state.db.pool(), root)
        .await
        .unwrap();
    assert!(loaded.super_admin);
    assert_eq!(loaded.roles, roles);
    assert_eq!(loaded.permissions.iter().cloned().collect::<Vec<_>>(), all);

    let plain = app.login("plain", PASSWORD).await;
    assert_eq!(plain["user"]["roles"], json!(["User"]));
    assert_eq!(plain["user"]["permissions"], json!(["view_dashboard"]));
    let plain_id = user_id(&app, "plain").await;
    let loaded = gatehouse::rbac::Access::load(app.state.db.pool(), plain_id)
        .await
        .unwrap();
    assert!(!loaded.super_admin);
    assert_eq!(loaded.roles, ["User"]);
    assert_eq!(
        loaded.permissions.iter().collect::<Vec<_>>(),
        ["view_dashboard"]
    );
}

/// Creates a permission through the API and waits until this instance's session cache
/// has seen the change.
async fn create_permission(app: &TestApp, name: &str) {
    let res = app
        .post("/create_permission", json!({ "name": name }))
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    app.state.sessions.caught_up().await;
}

/// Every permission's name, in order.
async fn permission_names(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT name FROM permissions ORDER BY name")
        .fetch_all(app.state.db.pool())
        .await
        .unwrap()
}
