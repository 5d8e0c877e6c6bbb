//! Tokens belong to an account, not to an id: after a database restore hands
//! a lost id to a new user, the old token is refused everywhere; once an
//! account is deleted its token writes nothing, even where the gateway still
//! remembers the account.

use douyin_kit::db::{Db, Dialect};
use serde_json::Value;

use super::figure;
use crate::common::TestApp;

/// The database as a backup from before `user_id` registered would restore
/// it: the account gone, its id the next one handed out.
async fn restore_before(app: &TestApp, user_id: i64) {
    let db = Db::connect(&app.config).await.unwrap();
    for sql in ["DELETE FROM user_stats WHERE user_id = ?", "DELETE FROM users WHERE id = ?"] {
        sqlx::query(sql).bind(user_id).execute(db.pool()).await.unwrap();
    }
    match db.dialect() {
        Dialect::Sqlite => {
            sqlx::query("UPDATE sqlite_sequence SET seq = ? WHERE name = 'users'")
                .bind(user_id - 1)
                .execute(db.pool())
                .await
                .unwrap();
        }
        // InnoDB moves the counter up to the largest id + 1.
        Dialect::MySql => {
            sqlx::query("ALTER TABLE users AUTO_INCREMENT = 1").execute(db.pool()).await.unwrap();
        }
    }
    db.close().await;
}

fn ok(reply: &Value) {
    assert_eq!(reply["status_code"], 0, "{reply}");
}

#[tokio::test]
async fn a_token_never_acts_for_another_account_after_a_restore() {
    let app = TestApp::spawn().await;
    let (erin, erin_token) = app.register("erin").await;
    let (alice, alice_token) = app.register("alice").await;
    ok(&app.get("/douyin/user/", &[("token", alice_token.as_str()), ("user_id", &alice.to_string())]).await);

    restore_before(&app, alice).await;
    let (bob, bob_token) = app.register("bob").await;
    assert_eq!(bob, alice, "the restored database hands the lost id to the next user");
    let (bob_id, erin_id) = (bob.to_string(), erin.to_string());
    let (bob_id, erin_id, alice_token) = (bob_id.as_str(), erin_id.as_str(), alice_token.as_str());
    for (token, to) in [(bob_token.as_str(), erin_id), (erin_token.as_str(), bob_id)] {
        ok(&app
            .post_query("/douyin/relation/action/", &[("token", token), ("to_user_id", to), ("action_type", "1")])
            .await);
    }
    let private =
        [("token", erin_token.as_str()), ("to_user_id", bob_id), ("action_type", "1"), ("content", "for bob")];
    ok(&app.post_query("/douyin/message/action/", &private).await);

    // Alice's token, signed and unexpired, names bob's id.
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/douyin/user/", vec![("user_id", bob_id)]),
        ("/douyin/message/chat/", vec![("to_user_id", erin_id)]),
        ("/douyin/relation/friend/list/", vec![("user_id", bob_id)]),
        ("/douyin/message/action/", vec![("to_user_id", erin_id), ("action_type", "1"), ("content", "as bob")]),
        ("/douyin/relation/action/", vec![("to_user_id", erin_id), ("action_type", "2")]),
        ("/douyin/favorite/list/", vec![("user_id", bob_id)]),
    ];
    let mut refused = 0;
    for (route, params) in &attempts {
        let mut query = params.clone();
        query.push(("token", alice_token));
        let reply = app.post_query(route, &query).await;
        assert_eq!(reply["status_code"], 401, "the old token on {route}: {reply}");
        refused += 1;
    }
    figure("account-refused", format!("{refused}/{}", attempts.len()));

    // Nothing changed for bob, whose own token still works.
    let chat = app.get("/douyin/message/chat/", &[("token", &bob_token), ("to_user_id", erin_id)]).await;
    ok(&chat);
    let texts: Vec<&str> =
        chat["message_list"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(texts, ["for bob"]);
    let me = app.get("/douyin/user/", &[("token", &bob_token), ("user_id", bob_id)]).await;
    ok(&me);
    assert_eq!((me["user"]["name"].as_str(), me["user"]["follow_count"].as_i64()), (Some("bob"), Some(1)));
    app.stop().await;
}

/// Rows `user_id` wrote, table by table.
async fn rows_by(db: &Db, user_id: i64) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for (table, column) in [
        ("comments", "user_id"),
        ("messages", "from_user_id"),
        ("favorites", "user_id"),
        ("follows", "follower_id"),
        ("videos", "author_id"),
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_one(db.pool()).await.unwrap();
        counts.push((table, sqlx::Row::try_get::<i64, _>(&row, 0).unwrap()));
    }
    counts
}

#[tokio::test]
async fn a_deleted_account_writes_nothing_even_with_a_token_the_gateway_has_seen() {
    let app = TestApp::spawn().await;
    let (alice, alice_token) = app.register("alice").await;
    let (bob, bob_token) = app.register("bob").await;
    let (carol, _) = app.register("carol").await;
    let (alice_id, bob_id, carol_id) = (alice.to_string(), bob.to_string(), carol.to_string());
    ok(&app.publish(&bob_token, "bob's clip", crate::common::sample_mp4()).await);
    let feed = app.get("/douyin/feed/", &[]).await;
    let video_id = feed["video_list"][0]["id"].as_i64().unwrap().to_string();
    for (token, to) in [(alice_token.as_str(), bob_id.as_str()), (bob_token.as_str(), alice_id.as_str())] {
        ok(&app
            .post_query("/douyin/relation/action/", &[("token", token), ("to_user_id", to), ("action_type", "1")])
            .await);
    }
    // The gateway has just confirmed alice's account.
    ok(&app.get("/douyin/user/", &[("token", alice_token.as_str()), ("user_id", alice_id.as_str())]).await);

    let db = Db::connect(&app.config).await.unwrap();
    sqlx::query("DELETE FROM users WHERE id = ?").bind(alice).execute(db.pool()).await.unwrap();
    let before = rows_by(&db, alice).await;

    let token = alice_token.as_str();
    let (video_id, bob_id, carol_id) = (video_id.as_str(), bob_id.as_str(), carol_id.as_str());
    let writes: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/douyin/comment/action/", vec![("video_id", video_id), ("action_type", "1"), ("comment_text", "ghost")]),
        ("/douyin/message/action/", vec![("to_user_id", bob_id), ("action_type", "1"), ("content", "ghost")]),
        ("/douyin/favorite/action/", vec![("video_id", video_id), ("action_type", "1")]),
        ("/douyin/relation/action/", vec![("to_user_id", carol_id), ("action_type", "1")]),
    ];
    let mut refused = 0;
    for (route, params) in &writes {
        let mut query = params.clone();
        query.push(("token", token));
        let reply = app.post_query(route, &query).await;
        assert_ne!(reply["status_code"], 0, "a deleted account wrote through {route}: {reply}");
        refused += 1;
    }
    let published = app.publish(token, "ghost clip", crate::common::sample_mp4()).await;
    assert_ne!(published["status_code"], 0, "a deleted account published: {published}");
    refused += 1;
    figure("account-refused", format!("{refused}/{}", writes.len() + 1));
    assert_eq!(rows_by(&db, alice).await, before, "rows were written for an account that does not exist");
    db.close().await;
    app.stop().await;
}
