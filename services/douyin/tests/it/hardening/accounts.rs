//! Tokens belong to an account, not to an id: after a database restore hands
//! a lost id to a new user, the old token is refused everywhere.

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
