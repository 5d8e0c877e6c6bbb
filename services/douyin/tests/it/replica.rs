//! Reads split between the primary and a read replica. `.ci/replica.sh`
//! starts a MariaDB primary and a replica that applies the primary's binlog
//! `MASTER_DELAY` seconds late: the app's scenario still sees each of its
//! writes at once, the replica answers the reads that tolerate lag (counted
//! per server with `Com_select`), and a replica that is down costs nothing
//! but a fallback to the primary.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, TestApp};

/// Run with the replica `.ci/replica.sh` starts.
const READ_URL: &str = "DOUYIN_TEST_DATABASE_READ_URL";

#[track_caller]
fn ok(reply: &Value) -> &Value {
    assert_eq!(reply["status_code"], 0, "{reply}");
    reply
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array().unwrap_or_else(|| panic!("a list: {list}")).iter().map(|v| v["id"].as_i64().unwrap()).collect()
}

async fn pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new().max_connections(1).connect(url).await.expect("the MariaDB server")
}

/// The server's count of SELECT statements so far.
async fn com_select(server: &sqlx::AnyPool) -> i64 {
    use sqlx::Row;
    let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Com_select'").fetch_one(server).await.unwrap();
    row.try_get::<String, _>(1).unwrap().parse().unwrap()
}

/// The app's schema on `server` (the test schema the harness created).
fn schema_of(app: &TestApp) -> String {
    app.config.database_url.as_deref().unwrap().rsplit('/').next().unwrap().to_owned()
}

/// An app whose reads that tolerate lag go to `read_server` (its schema of the same name).
async fn spawn(read_server: &str) -> TestApp {
    let read_server = read_server.trim_end_matches('/').to_owned();
    TestApp::spawn_with(move |config| {
        let schema = config.database_url.as_deref().unwrap().rsplit('/').next().unwrap().to_owned();
        config.database_read_url = Some(format!("{read_server}/{schema}"));
    })
    .await
}

/// Waits until `user_id`'s row has reached the replica.
async fn replicated(replica: &sqlx::AnyPool, schema: &str, user_id: i64) {
    let sql = format!("SELECT id FROM `{schema}`.users WHERE id = ?");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(user_id).fetch_optional(replica).await;
        if matches!(row, Ok(Some(_))) {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one client sees right after each write of its own, on the primary.
async fn own_writes_seen_at_once(app: &TestApp, replica: &sqlx::AnyPool) -> (i64, i64, String, i64) {
    let (alice, alice_token) = app.register(&format!("alice{}", common::free_port())).await;
    let (bob, bob_token) = app.register(&format!("bob{}", common::free_port())).await;
    // The replica lags: the new accounts are not on it yet.
    let sql = format!("SELECT id FROM `{}`.users WHERE id = ?", schema_of(app));
    let on_replica = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bob).fetch_optional(replica).await;
    assert!(!matches!(on_replica, Ok(Some(_))), "the replica is expected to lag behind the primary");

    let me = app.get("/douyin/user/", &[("user_id", &bob.to_string()), ("token", &bob_token)]).await;
    assert_eq!(ok(&me)["user"]["id"], bob);
    ok(&app.publish(&alice_token, "lagging", common::sample_mp4()).await);
    let feed = app.get("/douyin/feed/", &[]).await;
    let video = ids(&ok(&feed)["video_list"])[0];
    let vid = video.to_string();

    let like = [("token", bob_token.as_str()), ("video_id", vid.as_str()), ("action_type", "1")];
    ok(&app.post_query("/douyin/favorite/action/", &like).await);
    let mine = app.get("/douyin/favorite/list/", &[("user_id", &bob.to_string()), ("token", &bob_token)]).await;
    let liked = &ok(&mine)["video_list"];
    assert_eq!(ids(liked), vec![video], "the caller's favorite list right after a like: {mine}");
    assert_eq!(liked[0]["is_favorite"], true);
    assert_eq!(liked[0]["favorite_count"], 1);

    let to = alice.to_string();
    let follow = [("token", bob_token.as_str()), ("to_user_id", to.as_str()), ("action_type", "1")];
    ok(&app.post_query("/douyin/relation/action/", &follow).await);
    let following =
        app.get("/douyin/relation/follow/list/", &[("user_id", &bob.to_string()), ("token", &bob_token)]).await;
    assert_eq!(ids(&ok(&following)["user_list"]), vec![alice], "the caller's follow list right after following");
    assert_eq!(following["user_list"][0]["is_follow"], true);
    let followers =
        app.get("/douyin/relation/follower/list/", &[("user_id", &alice.to_string()), ("token", &alice_token)]).await;
    assert_eq!(ids(&ok(&followers)["user_list"]), vec![bob], "a follower list its owner reads");
    let own_works = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string()), ("token", &alice_token)]).await;
    assert_eq!(ids(&ok(&own_works)["video_list"]), vec![video], "the author's publish list right after publishing");

    let comment =
        [("token", bob_token.as_str()), ("video_id", vid.as_str()), ("action_type", "1"), ("comment_text", "hi")];
    let said = app.post_query("/douyin/comment/action/", &comment).await;
    assert_eq!(ok(&said)["comment"]["content"], "hi");
    (alice, video, bob_token, bob)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs DOUYIN_TEST_DATABASE_URL and DOUYIN_TEST_DATABASE_READ_URL (a MariaDB primary and its lagging replica; .ci/replica.sh)"]
async fn a_lagging_replica_takes_the_reads_that_tolerate_lag() {
    let primary_server = common::needs("DOUYIN_TEST_DATABASE_URL");
    let read_server = common::needs(READ_URL);
    let (primary, replica) = (pool(&primary_server).await, pool(&read_server).await);
    let app = spawn(&read_server).await;
    let (alice, video, bob_token, bob) = own_writes_seen_at_once(&app, &replica).await;

    // Once the replica has caught up with the scenario, anyone's view of it
    // comes from the replica.
    replicated(&replica, &schema_of(&app), bob).await;
    tokio::time::sleep(Duration::from_secs(6)).await; // past a fallback's rest from before the schema arrived
    let (alice_id, vid) = (alice.to_string(), video.to_string());
    let before = (com_select(&primary).await, com_select(&replica).await);
    const ROUNDS: i64 = 30;
    let started = Instant::now();
    for _ in 0..ROUNDS {
        let works = app.get("/douyin/publish/list/", &[("user_id", &alice_id), ("token", &bob_token)]).await;
        assert_eq!(ids(&ok(&works)["video_list"]), vec![video]);
        let comments = app.get("/douyin/comment/list/", &[("video_id", &vid)]).await;
        assert_eq!(ok(&comments)["comment_list"][0]["content"], "hi");
        let followers = app.get("/douyin/relation/follower/list/", &[("user_id", &alice_id)]).await;
        assert_eq!(ids(&ok(&followers)["user_list"]), vec![bob]);
    }
    let rate = (3 * ROUNDS) as f64 / started.elapsed().as_secs_f64();
    let after = (com_select(&primary).await, com_select(&replica).await);
    let (on_primary, on_replica) = (after.0 - before.0, after.1 - before.1);
    println!(
        "lag-tolerant reads: {} lists ({rate:.0}/s, one at a time), {on_replica} SELECTs on the replica, {on_primary} on the primary",
        3 * ROUNDS
    );
    assert!(on_replica >= 3 * ROUNDS, "the replica answered {on_replica} SELECTs for {ROUNDS} rounds of three lists");
    assert!(on_replica > on_primary, "the replica takes the read load ({on_replica} vs {on_primary} on the primary)");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs DOUYIN_TEST_DATABASE_URL (a MariaDB server; .ci/replica.sh)"]
async fn a_replica_that_is_down_leaves_reads_to_the_primary() {
    common::needs("DOUYIN_TEST_DATABASE_URL");
    // Nothing listens there: every read meant for the replica fails over.
    let dead = format!("mysql://root@127.0.0.1:{}", common::free_port());
    let app = spawn(&dead).await;
    let admin = format!("http://{}", app.admin_addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.http.get(format!("{admin}/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "ready without the replica");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (alice, alice_token) = app.register("downreplica").await;
    ok(&app.publish(&alice_token, "primary only", common::sample_mp4()).await);
    let works = app.get("/douyin/publish/list/", &[("user_id", &alice.to_string())]).await;
    assert_eq!(ids(&ok(&works)["video_list"]).len(), 1, "read from the primary: {works}");
    let profile = app.get("/douyin/user/", &[("user_id", &alice.to_string()), ("token", &alice_token)]).await;
    assert_eq!(ok(&profile)["user"]["id"], alice);
    let metrics = app.http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    let fallbacks = metrics
        .lines()
        .find_map(|l| l.strip_prefix("douyin_db_replica_fallbacks_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("the fallback counter is exported: {metrics}"));
    assert!(fallbacks >= 1.0, "the fallbacks are counted");
    assert_eq!(app.http.get(format!("{admin}/readyz")).send().await.unwrap().status(), 200, "still ready");
    app.stop().await;
}
