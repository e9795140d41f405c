//! The administration pages without JavaScript: an administrator managing users
//! through links and forms, and a plain user refused with 403 pages.

use reqwest::{Method, StatusCode};

use super::browser::Browser;
use super::forms::Walker;
use crate::helpers::{Backend, TestApp, PASSWORD};
use crate::on_both_databases;

on_both_databases!(
    an_administrator_manages_users_without_javascript,
    a_plain_user_gets_403_pages,
    bad_addresses_on_the_user_pages_are_pages_not_failures,
    a_super_admin_manages_roles_and_permissions_without_javascript,
    the_activity_log_page_filters_and_pages_without_javascript,
    the_user_list_pages_by_key_in_every_order,
);

async fn id_of(app: &TestApp, username: &str) -> i64 {
    app.scalar(&format!(
        "SELECT id FROM users WHERE username = '{username}'"
    ))
    .await
}

async fn role_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM roles WHERE name = '{name}'"))
        .await
}

async fn permission_id(app: &TestApp, name: &str) -> i64 {
    app.scalar(&format!("SELECT id FROM permissions WHERE name = '{name}'"))
        .await
}

async fn linked(app: &TestApp, role: i64, permission: i64) -> bool {
    app.scalar(&format!(
        "SELECT COUNT(*) FROM role_permissions WHERE role_id = {role} AND permission_id = {permission}"
    ))
    .await
        == 1
}

async fn grant(app: &TestApp, username: &str, role: &str) {
    let id = id_of(app, username).await;
    gatehouse::rbac::grant_role(app.state.db.pool(), id, role)
        .await
        .unwrap();
}

async fn signed_in(app: &TestApp, username: &str) -> Walker {
    let mut w = Walker::new(app);
    w.open("/ui/login").await;
    w.submit(
        "/ui/login",
        &[("username_or_email", username), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(w.path, "/ui/", "{username} is signed in");
    w
}

async fn an_administrator_manages_users_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in ["alice", "bob"] {
        app.verified_user(name).await;
    }
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let alice = id_of(&app, "alice").await;
    let bob = id_of(&app, "bob").await;
    // Alice is signed in in a browser of her own.
    let mut hers = signed_in(&app, "alice").await;
    let mut w = signed_in(&app, "boss").await;

    w.follow("Users").await;
    assert_eq!(w.path, "/ui/users");
    w.sees("3 users");
    w.sees("Sort by");
    w.sees("alice@example.com");
    w.sees("bob@example.com");

    // The search is a GET form: its query stays in the address.
    w.open("/ui/users?q=ALI").await;
    w.sees("1 user matching");
    w.sees("alice@example.com");
    assert!(!w.html.contains("bob@example.com"));
    w.sees("value=\"ALI\"");

    // Sorting is a link that keeps the search; the default is the order of joining.
    app.signup("aaron").await;
    let at = |html: &str, name: &str| html.find(&format!(">{name}</a>")).unwrap();
    w.open("/ui/users?q=A").await;
    assert!(at(&w.html, "alice") < at(&w.html, "aaron"));
    w.follow("Username").await;
    assert_eq!(w.path, "/ui/users?q=A&sort=username");
    assert!(at(&w.html, "aaron") < at(&w.html, "alice"));
    w.sees("name=\"sort\" value=\"username\"");
    w.open("/ui/users?sort=password").await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);
    w.open("/ui/users?q=ALI").await;

    w.follow("alice").await;
    assert_eq!(w.path, format!("/ui/users/{alice}"));
    w.sees("alice@example.com");

    // An Admin lacks manage_admin: handing out Super Admin is refused, with why.
    let super_admin = role_id(&app, "Super Admin").await;
    w.submit(&format!("/ui/users/{alice}/roles/{super_admin}/add"), &[])
        .await;
    assert_eq!(w.path, format!("/ui/users/{alice}"));
    w.sees("Refused: you can only change users and roles whose permissions you hold");
    let held = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM user_roles WHERE user_id = {alice} AND role_id = {super_admin}"
        ))
        .await;
    assert_eq!(held, 0);

    let admin = role_id(&app, "Admin").await;
    w.submit(&format!("/ui/users/{alice}/roles/{admin}/add"), &[])
        .await;
    w.sees("The role is given.");
    w.sees(&format!("/ui/users/{alice}/roles/{admin}/remove"));
    w.submit(&format!("/ui/users/{alice}/roles/{admin}/remove"), &[])
        .await;
    w.sees("The role is taken away.");
    assert!(!w
        .html
        .contains(&format!("/ui/users/{alice}/roles/{admin}/remove")));
    let logged = app
        .scalar("SELECT COUNT(*) FROM activity_logs WHERE message LIKE 'role \"Admin\" %'")
        .await;
    assert_eq!(logged, 2, "each change is in the activity log");

    // Signing someone out everywhere asks first, on a page of its own.
    w.follow("Sign out everywhere").await;
    assert_eq!(w.path, format!("/ui/users/{alice}/confirm/sign-out"));
    w.sees("Sign this user out everywhere?");
    w.submit(&format!("/ui/users/{alice}/sign-out"), &[]).await;
    w.sees("They are signed out everywhere.");
    w.sees("Not signed in anywhere.");
    hers.open("/ui/profile").await;
    assert!(hers.path.starts_with("/ui/login"), "her session is over");

    // Disabling asks first; Cancel goes back without doing anything.
    w.open(&format!("/ui/users/{bob}")).await;
    w.follow("Disable the account").await;
    w.sees("Disable this account?");
    w.follow("Cancel").await;
    assert_eq!(w.path, format!("/ui/users/{bob}"));
    w.follow("Disable the account").await;
    w.submit(&format!("/ui/users/{bob}/disable"), &[]).await;
    w.sees("The account is disabled.");
    let res = app
        .post(
            "/login",
            serde_json::json!({ "username_or_email": "bob", "password": PASSWORD }),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "a disabled user cannot sign in"
    );
    w.submit(&format!("/ui/users/{bob}/enable"), &[]).await;
    w.sees("The account is enabled.");
    app.login("bob", PASSWORD).await;

    w.submit(&format!("/ui/users/{bob}/password-reset"), &[])
        .await;
    w.sees("A password reset link is on its way to them.");
    let link = app
        .email_link("bob@example.com", "Reset your password")
        .await;
    assert!(link.contains("/reset_password/"), "{link}");

    // Their own page offers nothing that would lock them out.
    let me = id_of(&app, "boss").await;
    w.open(&format!("/ui/users/{me}")).await;
    w.sees("This is you");
    assert!(!w.html.contains("Disable the account"));
}

async fn a_plain_user_gets_403_pages(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("victim").await;
    let victim = id_of(&app, "victim").await;
    // The app's own client is now signed in as the plain user.
    app.verified_user("plain").await;
    let mut w = signed_in(&app, "plain").await;
    assert!(
        !w.html.contains("href=\"/ui/users\""),
        "no link to what they may not see"
    );

    for page in [
        "/ui/users".to_owned(),
        "/ui/users?q=v".to_owned(),
        format!("/ui/users/{victim}"),
        format!("/ui/users/{victim}/confirm/disable"),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, StatusCode::FORBIDDEN, "{page}");
        w.sees("Not allowed");
    }
    let admin = role_id(&app, "Admin").await;
    for action in [
        format!("/ui/users/{victim}/disable"),
        format!("/ui/users/{victim}/enable"),
        format!("/ui/users/{victim}/sign-out"),
        format!("/ui/users/{victim}/password-reset"),
        format!("/ui/users/{victim}/roles/{admin}/add"),
        format!("/ui/users/{victim}/roles/{admin}/remove"),
    ] {
        let res = app.request(Method::POST, &action, None).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{action}");
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
    }
    let roles = app
        .scalar(&format!(
            "SELECT COUNT(*) FROM user_roles WHERE user_id = {victim} AND role_id = {admin}"
        ))
        .await;
    assert_eq!(roles, 0);

    // Signed out, the pages ask to sign in and come back.
    let mut anonymous = Walker::new(&app);
    anonymous.open("/ui/users?q=x").await;
    assert_eq!(anonymous.path, "/ui/login?next=%2Fui%2Fusers%3Fq%3Dx");
}

async fn bad_addresses_on_the_user_pages_are_pages_not_failures(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let me = id_of(&app, "boss").await;
    let mut w = signed_in(&app, "boss").await;
    let long = "a".repeat(101);
    for (page, status) in [
        ("/ui/users/abc".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/users/99999999".to_owned(), StatusCode::NOT_FOUND),
        ("/ui/users/1e3".to_owned(), StatusCode::NOT_FOUND),
        (
            format!("/ui/users/{me}/confirm/explode"),
            StatusCode::NOT_FOUND,
        ),
        ("/ui/users?after=x".to_owned(), StatusCode::BAD_REQUEST),
        (
            "/ui/users?after=1&before=9".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/ui/users?sort=email&after={}", "a".repeat(255)),
            StatusCode::BAD_REQUEST,
        ),
        (format!("/ui/users?q={long}"), StatusCode::BAD_REQUEST),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, status, "{page}");
        w.sees("<!doctype html>");
    }
    // Past the last page is an empty page, not an error.
    w.open("/ui/users?after=99999999").await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("Nobody matches.");
    // Forms posted without their token are refused before anything changes.
    let res = app
        .request(Method::POST, &format!("/ui/users/{me}/sign-out"), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    w.open(&format!("/ui/users/{me}")).await;
    w.sees("This is you");
}

async fn a_super_admin_manages_roles_and_permissions_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("root").await;
    grant(&app, "root", "Super Admin").await;
    app.verified_user("keeper").await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let mut w = signed_in(&app, "root").await;

    w.follow("Roles").await;
    assert_eq!(w.path, "/ui/roles");
    w.sees("built-in");
    w.submit("/ui/roles", &[("name", "Editors")]).await;
    w.sees("The role is created.");
    w.submit("/ui/roles", &[("name", "   ")]).await;
    w.sees("Refused: ");
    let editors = role_id(&app, "Editors").await;
    let manage_users = permission_id(&app, "manage_users").await;
    let grant_path = format!("/ui/roles/{editors}/permissions/{manage_users}/grant");
    w.submit(&grant_path, &[]).await;
    w.sees("Editors now has manage_users.");
    assert!(linked(&app, editors, manage_users).await);
    w.submit(
        &format!("/ui/roles/{editors}/permissions/{manage_users}/withdraw"),
        &[],
    )
    .await;
    w.sees("Editors no longer has manage_users.");
    assert!(!linked(&app, editors, manage_users).await);
    // Super Admin has every permission: its row has nothing to change.
    let super_admin = role_id(&app, "Super Admin").await;
    assert!(!w
        .html
        .contains(&format!("/ui/roles/{super_admin}/permissions/")));

    // Built-in roles and roles in use stay, with the reason.
    let admin = role_id(&app, "Admin").await;
    w.open(&format!("/ui/roles/{admin}/delete")).await;
    w.sees("Delete the role Admin?");
    w.submit(&format!("/ui/roles/{admin}/delete"), &[]).await;
    w.sees("Refused: Built-in roles cannot be deleted");

    // A keeper holds manage_admin but not access_logs: granting it is refused.
    w.submit("/ui/roles", &[("name", "Keepers")]).await;
    let keepers = role_id(&app, "Keepers").await;
    let manage_admin = permission_id(&app, "manage_admin").await;
    w.submit(
        &format!("/ui/roles/{keepers}/permissions/{manage_admin}/grant"),
        &[],
    )
    .await;
    grant(&app, "keeper", "Keepers").await;
    w.open(&format!("/ui/roles/{keepers}/delete")).await;
    w.submit(&format!("/ui/roles/{keepers}/delete"), &[]).await;
    w.sees("Refused: The role is held by 1 user(s)");

    let mut k = signed_in(&app, "keeper").await;
    k.follow("Roles").await;
    let access_logs = permission_id(&app, "access_logs").await;
    k.submit(
        &format!("/ui/roles/{editors}/permissions/{access_logs}/grant"),
        &[],
    )
    .await;
    k.sees("Refused: you can only change users and roles whose permissions you hold");
    assert!(!linked(&app, editors, access_logs).await);

    w.open(&format!("/ui/roles/{editors}/delete")).await;
    w.follow("Cancel").await;
    assert_eq!(w.path, "/ui/roles");
    w.open(&format!("/ui/roles/{editors}/delete")).await;
    w.submit(&format!("/ui/roles/{editors}/delete"), &[]).await;
    w.sees("The role is deleted.");
    assert!(!w.html.contains(">Editors<"));

    // An Admin manages users, not roles.
    let mut b = signed_in(&app, "boss").await;
    assert!(!b.html.contains("href=\"/ui/roles\""));
    for page in [
        "/ui/roles".to_owned(),
        format!("/ui/roles/{keepers}/delete"),
    ] {
        b.open(&page).await;
        assert_eq!(b.status, StatusCode::FORBIDDEN, "{page}");
        b.sees("Not allowed");
    }
    let res = app
        .request(Method::POST, &format!("/ui/roles/{keepers}/delete"), None)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    for page in [
        "/ui/roles/x/delete".to_owned(),
        "/ui/roles/999999/delete".to_owned(),
    ] {
        w.open(&page).await;
        assert_eq!(w.status, StatusCode::NOT_FOUND, "{page}");
    }
}

async fn the_activity_log_page_filters_and_pages_without_javascript(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("olga").await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let olga = id_of(&app, "olga").await;
    // Sixty entries of Olga's, enough for a second page, and one with a marker.
    for i in 0..60 {
        sqlx::query(
            "INSERT INTO activity_logs (created_at, level, kind, message, user_id, user_email) \
             VALUES ($1, $2, 'auth', $3, $4, 'olga@example.com')",
        )
        .bind(1_790_000_000_i64 + i)
        .bind(if i == 7 { "WARNING" } else { "INFO" })
        .bind(format!("entry number {i}"))
        .bind(olga)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    }

    // Olga sees only her own, with no export and no user filter.
    let mut o = signed_in(&app, "olga").await;
    o.follow("Activity log").await;
    assert_eq!(o.path, "/ui/logs");
    o.sees("of your own");
    o.sees("entry number 59");
    assert!(!o.html.contains("boss@example.com"));
    assert!(!o.html.contains("Download as CSV"));
    assert!(
        !o.html.contains("entry number 9<"),
        "the first page holds the newest 50"
    );
    o.follow("Older entries").await;
    assert!(o.path.contains("before_id="), "{}", o.path);
    o.sees("entry number 9<");
    o.sees("showing older ones");
    o.follow("Newest").await;
    o.sees("entry number 59");

    // An Admin (access_logs) filters everybody's; the filters stay in the address.
    let mut w = signed_in(&app, "boss").await;
    w.follow("Activity log").await;
    w.sees("Download as CSV");
    w.open(
        "/ui/logs?user=olga%40example.com&level=warning&q=NUMBER&since=2026-01-01T00:00:00Z&until=",
    )
    .await;
    assert_eq!(w.status, StatusCode::OK);
    w.sees("1 entry");
    w.sees("entry number 7");
    w.sees("value=\"olga@example.com\"");
    w.sees("/logs/export.csv?user=olga%40example.com&#38;level=warning&#38;q=NUMBER");

    // The link downloads exactly that view (the app's client is the Admin's).
    let csv = app
        .get("/logs/export.csv?user=olga%40example.com&level=warning&q=NUMBER&since=2026-01-01T00:00:00Z&until=")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("entry number 7"), "{csv}");

    for bad in [
        "/ui/logs?level=LOUD",
        "/ui/logs?since=yesterday",
        "/ui/logs?before_id=abc",
    ] {
        w.open(bad).await;
        assert_eq!(w.status, StatusCode::BAD_REQUEST, "{bad}");
        w.sees("<!doctype html>");
    }
    let long = "x".repeat(201);
    w.open(&format!("/ui/logs?q={long}")).await;
    assert_eq!(w.status, StatusCode::BAD_REQUEST);

    let mut anonymous = Walker::new(&app);
    anonymous.open("/ui/logs?level=INFO").await;
    assert_eq!(anonymous.path, "/ui/login?next=%2Fui%2Flogs%3Flevel%3DINFO");
}

/// The user pages in a real browser, photographed in both themes at both widths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_pages_in_a_browser() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for name in ["alice", "bob", "carol"] {
        app.verified_user(name).await;
    }
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    let bob = id_of(&app, "bob").await;
    let Some(b) = Browser::start(&app.url("/")).await else {
        return;
    };
    b.open("/ui/login").await;
    b.fill("Username or email", "boss").await;
    b.fill("Password", PASSWORD).await;
    b.click("Sign in").await;
    b.at("/ui/").await;

    b.click("Users").await;
    b.at("/ui/users").await;
    b.sees("4 users").await;
    b.screenshots("admin-users").await;
    b.fill("Search by username, email or name", "b").await;
    b.click("Search").await;
    b.at("/ui/users?q=b").await;
    b.sees("2 users matching").await;
    b.screenshots("admin-users-search").await;

    b.click("bob").await;
    b.at(&format!("/ui/users/{bob}")).await;
    b.screenshots("admin-user").await;
    b.click("Disable the account").await;
    b.at(&format!("/ui/users/{bob}/confirm/disable")).await;
    b.screenshots("admin-user-confirm").await;
    b.click("Disable the account").await;
    b.at(&format!("/ui/users/{bob}")).await;
    b.sees("The account is disabled.").await;
    b.screenshots("admin-user-disabled").await;
    b.click("Enable the account").await;
    b.sees("The account is enabled.").await;

    // Roles read fresh on every request: as a Super Admin, the roles page.
    grant(&app, "boss", "Super Admin").await;
    b.open("/ui/roles").await;
    b.click("Roles").await;
    b.at("/ui/roles").await;
    b.screenshots("admin-roles").await;
    b.click("Activity log").await;
    b.at("/ui/logs").await;
    b.screenshots("admin-logs").await;
}

/// Pages of the user list follow their sort key in the address, forwards and back,
/// in each order, with and without a search.
async fn the_user_list_pages_by_key_in_every_order(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.verified_user("boss").await;
    grant(&app, "boss", "Admin").await;
    // 60 more, straight into the table; their emails sort in the reverse order of
    // their usernames.
    sqlx::query(
        "INSERT INTO users (username, email, first_name, last_name, password_hash, \
         created_at, updated_at, password_changed_at) \
         WITH RECURSIVE seq(n) AS (SELECT 10 UNION ALL SELECT n + 1 FROM seq WHERE n < 69) \
         SELECT 'Pager' || n, 'm' || (99 - n) || '@corp.example', 'P', 'N', 'x', 0, 0, 0 \
         FROM seq",
    )
    .execute(app.state.db.pool())
    .await
    .unwrap();
    let mut w = signed_in(&app, "boss").await;
    let names = |html: &str| -> Vec<String> {
        html.split("\">Pager")
            .skip(1)
            .map(|rest| format!("Pager{}", &rest[..2]))
            .collect()
    };

    for (sort, expected) in [
        ("username", (10..70).collect::<Vec<i32>>()),
        ("email", (10..70).rev().collect()),
    ] {
        w.open(&format!("/ui/users?q=pag&sort={sort}")).await;
        w.sees("60 users matching");
        let mut seen = names(&w.html);
        assert!(!w.html.contains("rel=\"prev\""), "{sort}");
        while w.html.contains("rel=\"next\"") {
            w.follow("Next page").await;
            assert!(w.path.contains("after="), "{}", w.path);
            assert!(w.path.contains(&format!("sort={sort}")), "{}", w.path);
            seen.extend(names(&w.html));
        }
        let expected: Vec<String> = expected.iter().map(|n| format!("Pager{n}")).collect();
        assert_eq!(seen, expected, "{sort}");
        // The last page is the third; back from it is the second, 25 names on.
        w.follow("Previous page").await;
        assert!(w.path.contains("before="), "{}", w.path);
        assert_eq!(names(&w.html), expected[25..50].to_vec(), "{sort}");
        w.follow("Previous page").await;
        assert_eq!(names(&w.html), expected[..25].to_vec(), "{sort}");
        assert!(!w.html.contains("rel=\"prev\""), "{sort}");
    }

    // The joined order pages by id; everyone is listed once.
    w.open("/ui/users").await;
    w.sees("61 users");
    let mut pages = 1;
    while w.html.contains("rel=\"next\"") {
        w.follow("Next page").await;
        pages += 1;
    }
    assert_eq!(pages, 3);
    w.sees("Pager69");
}
