//! Names and the word filter on normalised text: no invisible or control
//! characters in names, one account per look-alike name (NFC/NFD, Latin and
//! Cyrillic, case, full-width), sign-in by any form of the name, accounts
//! stored before normalisation keep signing in, and disguised words do not
//! pass the comment filter.

use douyin_kit::db::Db;
use serde_json::Value;

use super::figure;
use crate::common::{TestApp, sample_mp4};

async fn register(app: &TestApp, name: &str) -> Value {
    app.post_form("/douyin/user/register/", &[("username", name), ("password", "secret123")]).await
}

async fn login(app: &TestApp, name: &str) -> Value {
    app.post_form("/douyin/user/login/", &[("username", name), ("password", "secret123")]).await
}

#[tokio::test]
async fn invisible_characters_and_look_alikes_never_make_a_second_account() {
    let app = TestApp::spawn().await;
    let mut refused = 0;
    let mut total = 0;
    for (name, code_point) in [
        ("line\nbreak", "U+000A"),
        ("tab\tname", "U+0009"),
        ("zero\u{200B}width", "U+200B"),
        ("\u{202E}evil", "U+202E"),
        ("\u{FEFF}bom", "U+FEFF"),
        ("soft\u{00AD}hyphen", "U+00AD"),
    ] {
        let reply = register(&app, name).await;
        total += 1;
        let message = reply["status_msg"].as_str().unwrap_or_default();
        assert_ne!(reply["status_code"], 0, "{name:?} registered: {reply}");
        assert!(message.contains("username") && message.contains(code_point), "{name:?}: {reply}");
        refused += 1;
    }

    let first = register(&app, "caf\u{E9}").await;
    assert_eq!(first["status_code"], 0, "{first}");
    let user_id = first["user_id"].as_i64().unwrap();
    register(&app, "paypal").await;
    register(&app, "Alice").await;
    for look_alike in [
        "cafe\u{301}",          // NFD
        "CAF\u{C9}",            // case
        "ｃａｆé",              // full-width
        "p\u{0430}yp\u{0430}l", // Cyrillic а
        "\u{0440}aypal",        // Cyrillic р
        "alice",
        "AIice", // capital I for l
    ] {
        let reply = register(&app, look_alike).await;
        total += 1;
        assert_ne!(reply["status_code"], 0, "{look_alike:?} became a second account: {reply}");
        assert!(reply["status_msg"].as_str().unwrap().contains("taken"), "{reply}");
        refused += 1;
    }
    figure("names-refused", format!("{refused}/{total}"));

    // Stored as NFKC, shown as stored, signed into by any of its forms.
    let token = first["token"].as_str().unwrap();
    assert_eq!(app.get("/douyin/user/", &[("token", token)]).await["user"]["name"], "caf\u{E9}");
    for form in ["caf\u{E9}", "cafe\u{301}"] {
        let reply = login(&app, form).await;
        assert_eq!((reply["status_code"].as_i64(), reply["user_id"].as_i64()), (Some(0), Some(user_id)), "{reply}");
    }
    app.stop().await;
}

#[tokio::test]
async fn accounts_stored_before_normalisation_keep_signing_in() {
    let app = TestApp::spawn().await;
    let (old_nfd, _) = app.register("legacy_nfd").await;
    let (old_tab, _) = app.register("legacy_tab").await;
    // As rows written before names were normalised: raw, without a skeleton.
    let db = Db::connect(&app.config).await.unwrap();
    for (id, raw) in [(old_nfd, "jose\u{301}"), (old_tab, "old\tname")] {
        sqlx::query("UPDATE users SET username = ?, name = ?, name_key = NULL WHERE id = ?")
            .bind(raw)
            .bind(raw)
            .bind(id)
            .execute(db.pool())
            .await
            .unwrap();
    }
    douyin_user::fill_name_keys(&db).await.unwrap();
    db.close().await;

    for (typed, id) in [("jose\u{301}", old_nfd), ("jos\u{E9}", old_nfd), ("old\tname", old_tab)] {
        let reply = login(&app, typed).await;
        assert_eq!(
            (reply["status_code"].as_i64(), reply["user_id"].as_i64()),
            (Some(0), Some(id)),
            "{typed:?}: {reply}"
        );
    }
    let copy = register(&app, "jos\u{E9}").await;
    assert_ne!(copy["status_code"], 0, "a look-alike of a stored account: {copy}");
    app.stop().await;
}

async fn comment(app: &TestApp, token: &str, video_id: &str, text: &str) -> Value {
    let form = [("token", token), ("video_id", video_id), ("action_type", "1"), ("comment_text", text)];
    app.post_form("/douyin/comment/action/", &form).await
}

#[tokio::test]
async fn disguised_words_do_not_pass_the_comment_filter() {
    let app = TestApp::spawn().await;
    let (_, token) = app.register("filter_author").await;
    assert_eq!(app.publish(&token, "filtered", sample_mp4()).await["status_code"], 0);
    let video_id = app.get("/douyin/feed/", &[]).await["video_list"][0]["id"].as_i64().unwrap().to_string();
    let mut refused = 0;
    let disguised =
        ["f\u{200B}uck", "ｆｕｃｋ", "f\u{301}u\u{308}ck", "FuCk", "f\u{2060}uck", "s\u{FEFF}hit", "\u{202E}kcuf fuck"];
    for text in disguised {
        let reply = comment(&app, &token, &video_id, text).await;
        assert_ne!(reply["status_code"], 0, "{text:?} passed the filter: {reply}");
        assert!(reply["status_msg"].as_str().unwrap().contains("not allowed"), "{reply}");
        refused += 1;
    }
    // Words that merely sit side by side still pass.
    assert_eq!(comment(&app, &token, &video_id, "f uck is not a word").await["status_code"], 0);
    let list = app.get("/douyin/comment/list/", &[("video_id", &video_id)]).await;
    assert_eq!(list["comment_list"].as_array().unwrap().len(), 1, "{list}");
    figure("filter-refused", format!("{refused}/{}", disguised.len()));
    app.stop().await;
}
