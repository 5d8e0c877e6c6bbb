//! Against a real Redis Cluster (`.ci/redis-cluster.sh`: three masters, a
//! replica each): the cache suite, a bucket lost alone, pub/sub across nodes,
//! and likes under a master killed, restarted and a master's data lost, with
//! every count equal to the rows afterwards.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use douyin_kit::{
    cache::{Cache, RedisClusterCache, suite, versioned},
    pubsub::{PubSub, RedisPubSub},
};
use serde_json::Value;

use crate::common::{self, TestApp};

const NEEDS: &str = "DOUYIN_TEST_REDIS_CLUSTER";

fn nodes() -> Vec<String> {
    common::needs(NEEDS).split(',').map(|n| n.trim().to_owned()).collect()
}

fn prefix() -> String {
    format!("douyin-test-cluster-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_CLUSTER (a Redis Cluster, .ci/redis-cluster.sh)"]
async fn cluster_cache_passes_the_cache_suite() {
    let cache = RedisClusterCache::connect(&nodes(), &prefix()).unwrap();
    cache.ping().await.unwrap();
    suite::all(&cache).await;
    let before = cache.epoch().await.unwrap();
    cache.clear().await.unwrap();
    let after = cache.epoch().await.unwrap();
    assert!(after.parse::<u64>().unwrap() > before.parse::<u64>().unwrap(), "a clear moves the epoch on");
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_CLUSTER (a Redis Cluster, .ci/redis-cluster.sh)"]
async fn a_bucket_lost_alone_drops_writes_read_before_and_keeps_the_others() {
    let cache = RedisClusterCache::connect(&nodes(), &prefix()).unwrap();
    let (lost, kept) = ("g:vc:{v1}".to_owned(), "g:vc:{v2}".to_owned());
    assert_ne!(cache.stored(&lost).1, cache.stored(&kept).1, "two buckets");
    let before = cache.epoch().await.unwrap();
    let entries = [(lost.clone(), versioned(5, "new")), (kept.clone(), versioned(5, "new"))];
    assert!(cache.set_versioned(&before, &entries, Duration::from_secs(60)).await.unwrap());

    // One bucket's keys gone, as when its master restarts empty.
    let client = redis::cluster::ClusterClient::new(nodes()).unwrap();
    let mut conn = client.get_async_connection().await.unwrap();
    let (value, marker) = cache.stored(&lost);
    let _: () = redis::pipe().del(&value).del(&marker).query_async(&mut conn).await.unwrap();

    let (seen, values) = cache.get_many_with_epoch(std::slice::from_ref(&lost)).await.unwrap();
    assert_eq!((seen, values), (None, vec![None]), "the lost bucket has no epoch");
    let old = [(lost.clone(), versioned(4, "old"))];
    assert!(!cache.set_versioned(&before, &old, Duration::from_secs(60)).await.unwrap(), "read before the loss");
    let kept_write = [(kept.clone(), versioned(6, "newer"))];
    assert!(cache.set_versioned(&before, &kept_write, Duration::from_secs(60)).await.unwrap(), "other buckets");
    let after = cache.epoch().await.unwrap();
    assert!(after.parse::<u64>().unwrap() > before.parse::<u64>().unwrap(), "a new epoch");
    assert!(cache.set_versioned(&after, &old, Duration::from_secs(60)).await.unwrap());
    assert_eq!(
        cache.get_many(&[lost, kept]).await.unwrap(),
        vec![Some("4:old".to_owned()), Some("6:newer".to_owned())]
    );
    cache.clear().await.unwrap();
}

/// A clear by another process: what this one read before is dropped, its
/// next epoch is past the clear, and no bucket needs marking again (a
/// handful of commands, not one per bucket).
#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_CLUSTER (a Redis Cluster, .ci/redis-cluster.sh)"]
async fn a_clear_elsewhere_drops_writes_read_before_it_and_marks_no_bucket() {
    let prefix = prefix();
    let cache = RedisClusterCache::connect(&nodes(), &prefix).unwrap();
    let admin = RedisClusterCache::connect(&nodes(), &prefix).unwrap();
    let ttl = Duration::from_secs(60);
    let keys: Vec<String> = (0..10).map(|i| format!("g:vc:{{v{i}}}")).collect();
    let before = cache.epoch().await.unwrap();
    let entries: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), versioned(5, "new"))).collect();
    assert!(cache.set_versioned(&before, &entries, ttl).await.unwrap());

    admin.clear().await.unwrap();
    let commands = cache.commands();
    assert_eq!(cache.get_many(&keys).await.unwrap(), vec![None; keys.len()], "values cleared");
    let old: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), versioned(4, "old"))).collect();
    assert!(!cache.set_versioned(&before, &old, ttl).await.unwrap(), "read before the clear");
    assert_eq!(cache.get_many(&keys).await.unwrap(), vec![None; keys.len()]);
    let (after, _) = cache.get_many_with_epoch(&keys).await.unwrap();
    let after = after.expect("the buckets keep their markers");
    assert!(after.parse::<u64>().unwrap() > before.parse::<u64>().unwrap());
    assert!(cache.set_versioned(&after, &old, ttl).await.unwrap(), "read after the clear");
    assert_eq!(cache.get_many(&keys[..1]).await.unwrap(), vec![Some("4:old".to_owned())]);
    let spent = cache.commands() - commands;
    assert!(spent <= 30, "{spent} commands after a clear: buckets were marked again");
    admin.clear().await.unwrap();
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_CLUSTER (a Redis Cluster, .ci/redis-cluster.sh)"]
async fn a_publish_through_the_cluster_reaches_a_subscriber_on_any_node() {
    let nodes = nodes();
    let prefix = prefix();
    let publisher = RedisPubSub::cluster(&nodes, &prefix).unwrap();
    for (i, node) in nodes.iter().enumerate() {
        // A channel each: the cluster bus forwards a publish to the other
        // nodes a moment later, so one may still arrive at the next node.
        let channel = format!("chat:test{i}");
        let subscriber = RedisPubSub::cluster(std::slice::from_ref(node), &prefix).unwrap();
        let mut received = subscriber.subscribe(&channel);
        assert!(subscriber.until_listening(&channel, Duration::from_secs(5)).await, "subscribed at {node}");
        publisher.publish(&channel, format!("to {node}")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), received.recv()).await.expect("pushed in time");
        assert_eq!(got.unwrap(), format!("to {node}"));
    }
}

// ------------------------------------------------------------ failover

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port_of(node: &str) -> u16 {
    node.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap()
}

/// `(port, is master)` of every node the cluster knows and reaches.
fn cluster_nodes(seed: u16) -> Vec<(u16, bool)> {
    redis_cli(seed, &["cluster", "nodes"])
        .lines()
        .filter(|l| !l.contains("fail"))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?.parse().ok()?;
            Some((port, fields.get(2)?.contains("master")))
        })
        .collect()
}

/// The port of a replica of the master at `master`.
fn replica_of(seed: u16, master: u16) -> u16 {
    let listing = redis_cli(seed, &["cluster", "nodes"]);
    let fields = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let port = |f: &[String]| f[1].split('@').next().unwrap().rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let lines: Vec<Vec<String>> = listing.lines().map(fields).filter(|f| f.len() > 3).collect();
    let id = &lines.iter().find(|f| port(f) == master).expect("the master is listed")[0];
    lines.iter().find(|f| &f[3] == id).map(|f| port(f)).expect("the master has a replica")
}

/// Waits until every listed node says the cluster is ok.
async fn until_ok(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ports.iter().all(|p| redis_cli(*p, &["cluster", "info"]).contains("cluster_state:ok")) {
        assert!(Instant::now() < deadline, "the cluster never became ok again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn commands_served(port: u16) -> u64 {
    redis_cli(port, &["info", "commandstats"])
        .lines()
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

async fn like(app: &TestApp, token: &str, video_id: i64, action: &str) -> bool {
    let reply = app
        .post_query(
            "/douyin/favorite/action/",
            &[("token", token), ("video_id", &video_id.to_string()), ("action_type", action)],
        )
        .await;
    reply["status_code"] == 0
}

/// Every video's `favorite_count` as the feed shows it, and the like rows
/// (each fan's favorite list).
async fn counts_and_rows(app: &TestApp, fans: &[(i64, String)]) -> (HashMap<i64, i64>, HashMap<i64, i64>) {
    let feed = app.get("/douyin/feed/", &[]).await;
    let counts = feed["video_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["id"].as_i64().unwrap(), v["favorite_count"].as_i64().unwrap()))
        .collect::<HashMap<_, _>>();
    let mut rows: HashMap<i64, i64> = counts.keys().map(|id| (*id, 0)).collect();
    for (id, token) in fans {
        let list = app.get("/douyin/favorite/list/", &[("user_id", &id.to_string()), ("token", token)]).await;
        for video in list["video_list"].as_array().into_iter().flatten() {
            *rows.entry(video["id"].as_i64().unwrap()).or_default() += 1;
        }
    }
    (counts, rows)
}

/// Fans like and unlike three videos throughout; meanwhile a master is
/// killed (its replica takes over), restarted (it comes back as a replica),
/// and another master loses all its data. Afterwards every count equals the
/// rows. Prints the commands each node served.
#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_CLUSTER and DOUYIN_TEST_REDIS_CLUSTER_DIR (.ci/redis-cluster.sh)"]
async fn likes_through_a_master_killed_restarted_and_emptied_keep_counts_exact() {
    let seeds: Vec<u16> = nodes().iter().map(|n| port_of(n)).collect();
    let dir = common::needs("DOUYIN_TEST_REDIS_CLUSTER_DIR");
    let all: Vec<u16> = cluster_nodes(seeds[0]).into_iter().map(|(p, _)| p).collect();
    let served_before: Vec<u64> = all.iter().map(|p| commands_served(*p)).collect();
    let app = TestApp::spawn_with(|c| c.ffmpeg_path = "douyin-test-no-ffmpeg".into()).await;
    let author = app.register("cluster-author").await;
    for title in ["one", "two", "three"] {
        assert_eq!(app.publish(&author.1, title, common::sample_mp4()).await["status_code"], 0);
    }
    let videos: Vec<i64> = {
        let list = app.get("/douyin/publish/list/", &[("user_id", &author.0.to_string())]).await;
        list["video_list"].as_array().unwrap().iter().map(|v: &Value| v["id"].as_i64().unwrap()).collect()
    };
    let mut fans = Vec::new();
    for i in 0..12 {
        fans.push(app.register(&format!("cluster-fan{i}")).await);
    }

    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = fans
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, (_, token))| {
            let (app, stop, videos, done, failed) =
                (app.clone(), stop.clone(), videos.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                let mut round = 0;
                while !stop.load(Ordering::Relaxed) {
                    for video in &videos {
                        let action = if (i + round).is_multiple_of(2) { "1" } else { "2" };
                        let counter = if like(&app, &token, *video, action).await { &done } else { &failed };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    round += 1;
                }
            })
        })
        .collect();

    let pause = || tokio::time::sleep(Duration::from_millis(1500));
    // The steady load before any fault: commands per node per like.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (likes_at, served_at) =
        (done.load(Ordering::Relaxed), all.iter().map(|p| commands_served(*p)).collect::<Vec<_>>());
    pause().await;
    let likes = done.load(Ordering::Relaxed) - likes_at;
    for (port, at) in all.iter().zip(&served_at) {
        let role = if cluster_nodes(seeds[0]).contains(&(*port, true)) { "master" } else { "replica" };
        let served = commands_served(*port) - at;
        println!(
            "rcluster: steady: {likes} likes, node {port} ({role}): {served} commands, {:.2} a like",
            served as f64 / likes as f64
        );
    }
    let masters: Vec<u16> = cluster_nodes(seeds[0]).into_iter().filter(|(_, m)| *m).map(|(p, _)| p).collect();
    let victim = masters[0];
    let heir = replica_of(seeds[0], victim);
    let pid = std::fs::read_to_string(format!("{dir}/{victim}/redis.pid")).unwrap();
    let started = Instant::now();
    std::process::Command::new("kill").arg("-9").arg(pid.trim()).status().unwrap();
    println!("rcluster: killed master {victim}");
    let alive: Vec<u16> = all.iter().copied().filter(|p| *p != victim).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !redis_cli(heir, &["role"]).starts_with("master") {
        assert!(Instant::now() < deadline, "the killed master was never failed over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_ok(&alive).await;
    println!("rcluster: its replica {heir} took over within {:?}", started.elapsed());
    pause().await;
    assert!(std::process::Command::new("redis-server").arg(format!("{dir}/{victim}.conf")).status().unwrap().success());
    until_ok(&all).await;
    println!("rcluster: {victim} is back (as a replica)");
    pause().await;
    let emptied = cluster_nodes(seeds[0]).into_iter().find(|(p, m)| *m && *p != victim).unwrap().0;
    redis_cli(emptied, &["flushall"]);
    println!("rcluster: master {emptied} lost all its data");
    pause().await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    println!(
        "rcluster: {} likes and unlikes answered, {} refused during the faults",
        done.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );

    let settled = Instant::now();
    loop {
        let (counts, rows) = counts_and_rows(&app, &fans).await;
        if counts == rows {
            println!("rcluster: counts equal the rows {:?} after the last like: {counts:?}", settled.elapsed());
            break;
        }
        assert!(settled.elapsed() < Duration::from_secs(10), "counts {counts:?} != rows {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (port, before) in all.iter().zip(served_before) {
        println!("rcluster: node {port}: {} commands during the test", commands_served(*port).saturating_sub(before));
    }
    Arc::into_inner(app).expect("workers done").stop().await;
}
