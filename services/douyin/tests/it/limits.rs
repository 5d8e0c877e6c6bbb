//! Rate limits as clients meet them: the complete app scenario run as fast as
//! it goes from one address is never refused at the production defaults; a
//! flood is, while others are served; per-user limits wherever the token
//! arrives; sign-in failures per account and per address; registrations;
//! publishes; IPv6 by /64 behind a trusted proxy; buckets shared by replicas
//! through Redis. Prints `hardening-figure:` lines for `.ci/hardening.sh`.

use crate::common;

use crate::common::{TestApp, client_from, sample_mp4};
use douyin_kit::Config;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn figure(name: &str, value: impl std::fmt::Display) {
    println!("hardening-figure: {name} {value}");
}

/// The production defaults of every limit (the harness turns them off).
fn production_limits(c: &mut Config) {
    let d = Config::default();
    c.rate_limit_ip_per_sec = d.rate_limit_ip_per_sec;
    c.rate_limit_ip_burst = d.rate_limit_ip_burst;
    c.rate_limit_user_per_sec = d.rate_limit_user_per_sec;
    c.rate_limit_user_burst = d.rate_limit_user_burst;
    c.rate_limit_register_per_min = d.rate_limit_register_per_min;
    c.rate_limit_register_burst = d.rate_limit_register_burst;
    c.rate_limit_login_failures_per_account = d.rate_limit_login_failures_per_account;
    c.rate_limit_login_failures_per_ip = d.rate_limit_login_failures_per_ip;
    c.rate_limit_publish_per_min = d.rate_limit_publish_per_min;
    c.rate_limit_connections_per_sec = d.rate_limit_connections_per_sec;
    c.rate_limit_connections_burst = d.rate_limit_connections_burst;
}

/// Counts what came back: (requests, 429s).
#[derive(Default)]
struct Tally {
    requests: usize,
    refused: Vec<String>,
}

impl Tally {
    async fn send(&mut self, what: &str, request: reqwest::RequestBuilder) -> Value {
        let response = request.send().await.unwrap();
        self.requests += 1;
        let status = response.status();
        let text = response.text().await.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.refused.push(format!("{what}: {text}"));
        }
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

/// The whole app, as a client's suite runs it: sign-ups and sign-ins (a wrong
/// password among them), the web client's page, publishing, the feed, likes,
/// comments, follows, every list, chat and rankings.
async fn app_scenario(app: &TestApp, client: &reqwest::Client, tally: &mut Tally, run: usize) {
    let url = |path: &str| app.url(path);
    for asset in ["/", "/index.html", "/static/avatar.png", "/static/background.jpg", "/static/cover.jpg"] {
        for _ in 0..20 {
            tally.send(asset, client.get(url(asset))).await;
        }
    }
    for _ in 0..50 {
        tally.send("healthz", client.get(url("/healthz"))).await;
    }
    let mut users = Vec::new();
    for i in 0..6 {
        let name = format!("scn{run}_{i}");
        let form = [("username", name.as_str()), ("password", "secret123")];
        let r = tally.send("register", client.post(url("/douyin/user/register/")).form(&form)).await;
        assert_eq!(r["status_code"], 0, "register: {r}");
        let wrong = [("username", name.as_str()), ("password", "wrong-password")];
        let refused = tally.send("bad login", client.post(url("/douyin/user/login/")).form(&wrong)).await;
        assert_ne!(refused["status_code"], 0);
        let r = tally.send("login", client.post(url("/douyin/user/login/")).query(&form)).await;
        assert_eq!(r["status_code"], 0, "login: {r}");
        users.push((r["user_id"].as_i64().unwrap(), r["token"].as_str().unwrap().to_owned()));
    }
    let (author, author_token) = users[0].clone();
    for n in 0..3 {
        let form = reqwest::multipart::Form::new()
            .text("token", author_token.clone())
            .text("title", format!("clip {n}"))
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("clip.mp4"));
        let r = tally.send("publish", client.post(url("/douyin/publish/action/")).multipart(form)).await;
        assert_eq!(r["status_code"], 0, "publish: {r}");
    }
    let feed = tally.send("feed", client.get(url("/douyin/feed/"))).await;
    let video_id = feed["video_list"][0]["id"].as_i64().unwrap().to_string();
    for (user_id, token) in &users {
        let (me, token) = (user_id.to_string(), token.as_str());
        let t = |pairs: &[(&'static str, String)]| {
            let mut all = vec![("token", token.to_owned())];
            all.extend(pairs.iter().cloned());
            all
        };
        for _ in 0..3 {
            tally.send("feed", client.get(url("/douyin/feed/")).query(&t(&[]))).await;
        }
        tally.send("user", client.get(url("/douyin/user/")).query(&t(&[("user_id", me.clone())]))).await;
        let like = t(&[("video_id", video_id.clone()), ("action_type", "1".into())]);
        tally.send("like", client.post(url("/douyin/favorite/action/")).form(&like)).await;
        let body = json!({"token": token, "video_id": video_id, "action_type": 1, "comment_text": "nice"});
        let c = tally.send("comment", client.post(url("/douyin/comment/action/")).json(&body)).await;
        let comment_id = c["comment"]["id"].to_string();
        tally
            .send("comments", client.get(url("/douyin/comment/list/")).query(&t(&[("video_id", video_id.clone())])))
            .await;
        let delete = t(&[("video_id", video_id.clone()), ("action_type", "2".into()), ("comment_id", comment_id)]);
        tally.send("uncomment", client.post(url("/douyin/comment/action/")).query(&delete)).await;
        if *user_id != author {
            let follow = t(&[("to_user_id", author.to_string()), ("action_type", "1".into())]);
            tally.send("follow", client.post(url("/douyin/relation/action/")).query(&follow)).await;
            let back = [("token", author_token.clone()), ("to_user_id", me.clone()), ("action_type", "1".into())];
            tally.send("follow back", client.post(url("/douyin/relation/action/")).query(&back)).await;
            let send = t(&[("to_user_id", author.to_string()), ("action_type", "1".into()), ("content", "hi".into())]);
            tally.send("message", client.post(url("/douyin/message/action/")).query(&send)).await;
            let history = t(&[("to_user_id", author.to_string())]);
            tally.send("chat", client.get(url("/douyin/message/chat/")).query(&history)).await;
        }
        for list in ["/douyin/publish/list/", "/douyin/favorite/list/", "/douyin/relation/follow/list/"] {
            tally.send(list, client.get(url(list)).query(&t(&[("user_id", author.to_string())]))).await;
        }
        for list in ["/douyin/relation/follower/list/", "/douyin/relation/friend/list/"] {
            tally.send(list, client.get(url(list)).query(&t(&[("user_id", me.clone())]))).await;
        }
        let unlike = t(&[("video_id", video_id.clone()), ("action_type", "2".into())]);
        tally.send("unlike", client.post(url("/douyin/favorite/action/")).query(&unlike)).await;
    }
    for path in ["/douyin/rank/videos/", "/douyin/rank/users/"] {
        tally.send(path, client.get(url(path))).await;
    }
}

#[tokio::test]
async fn the_app_scenario_at_full_speed_from_one_address_is_never_refused() {
    let app = TestApp::spawn_with(production_limits).await;
    let client = client_from("127.0.0.20");
    let mut tally = Tally::default();
    for run in 0..2 {
        app_scenario(&app, &client, &mut tally, run).await;
    }
    figure("scenario-refused", format!("{}/{}", tally.refused.len(), tally.requests));
    assert!(tally.refused.is_empty(), "refused at the defaults: {:#?}", tally.refused);
    app.stop().await;
}

#[tokio::test]
async fn a_flood_from_one_address_is_limited_and_others_are_served() {
    let app = TestApp::spawn_with(production_limits).await;
    let flooder = client_from("127.0.0.2");
    let bystander = client_from("127.0.0.3");
    let url = app.url("/douyin/feed/");
    let total = 4000;
    let burst = futures::stream::iter(0..total)
        .map(|_| {
            let (flooder, url) = (flooder.clone(), url.clone());
            async move {
                let response = flooder.get(&url).send().await.unwrap();
                let retry = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (status, retry, body)
            }
        })
        .buffer_unordered(48);
    let served_during = tokio::spawn({
        let (bystander, url) = (bystander.clone(), url.clone());
        async move {
            let mut ok = 0;
            for _ in 0..20 {
                if bystander.get(&url).send().await.unwrap().status() == StatusCode::OK {
                    ok += 1;
                }
            }
            ok
        }
    });
    let results: Vec<_> = burst.collect().await;
    let limited: Vec<_> = results.iter().filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS).collect();
    let served = results.iter().filter(|(s, _, _)| *s == StatusCode::OK).count();
    assert_eq!(limited.len() + served, total, "only 200 or 429");
    assert!(!limited.is_empty(), "a flood of {total} must be limited");
    assert!(served >= Config::default().rate_limit_ip_burst as usize, "the burst is served: {served}");
    for (_, retry, body) in &limited {
        assert!(matches!(retry, Some(1)), "Retry-After until the next token: {retry:?}");
        assert_eq!(body["status_code"], 429);
        assert!(body["status_msg"].as_str().unwrap().contains("too many"));
    }
    assert_eq!(served_during.await.unwrap(), 20, "another client is served during the flood");
    // Files, the web client and health are never counted, even now.
    for path in ["/static/avatar.png", "/", "/healthz"] {
        assert_eq!(flooder.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
    }
    figure("flood-limited", format!("{}/{total}", limited.len()));
    app.stop().await;
}

#[tokio::test]
async fn the_user_limit_applies_wherever_the_token_arrives() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_user_per_sec = 1;
        c.rate_limit_user_burst = 5;
    })
    .await;
    let (_, token) = app.register("limited_user").await;
    let url = app.url("/douyin/user/");
    type Way<'a> = (&'static str, Box<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + 'a>);
    let ways: [Way; 4] = [
        ("query", Box::new(|c: &reqwest::Client| c.get(&url).query(&[("token", &token)]))),
        ("form", Box::new(|c: &reqwest::Client| c.post(&url).form(&[("token", &token)]))),
        ("JSON", Box::new(|c: &reqwest::Client| c.post(&url).json(&json!({ "token": token })))),
        ("header", Box::new(|c: &reqwest::Client| c.get(&url).bearer_auth(&token))),
    ];
    // The query's calls use up the burst (a token comes back each second).
    let first = client_from("127.0.1.1");
    let mut refused = 0;
    for _ in 0..10 {
        if ways[0].1(&first).send().await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    // Every other way, each from its own address (only the user's bucket is
    // shared), finds the bucket empty within a few calls.
    for (i, (way, request)) in ways.iter().enumerate().skip(1) {
        let client = client_from(&format!("127.0.1.{}", i + 1));
        let mut limited = None;
        for _ in 0..5 {
            let response = request(&client).send().await.unwrap();
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(response);
                break;
            }
        }
        let response = limited.unwrap_or_else(|| panic!("a token in the {way} is counted against the user"));
        let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(retry.as_deref(), Some("1"), "{way}");
        let body: Value = response.json().await.unwrap();
        assert!(body["status_msg"].as_str().unwrap().contains("this user"), "{body}");
        assert!(body["user"].is_object(), "the route's keys are kept: {body}");
    }
    assert!(refused >= 5, "past the burst of 5: {refused} of 10 refused");
    app.stop().await;
}

#[tokio::test]
async fn sign_in_counts_failures_per_account_and_address_never_successes() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_login_failures_per_account = 4;
        c.rate_limit_login_failures_per_ip = 6;
    })
    .await;
    app.register("victim").await;
    app.register("regular").await;
    let login = |c: &reqwest::Client, name: &str, password: &str| {
        c.post(app.url("/douyin/user/login/")).form(&[("username", name), ("password", password)]).send()
    };
    // Successful sign-ins never count, however many.
    let regular = client_from("127.0.2.1");
    for _ in 0..30 {
        let r = login(&regular, "regular", "secret123").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status_code"], 0);
    }
    // Four failures for one account, from four addresses; then it is refused,
    // even with the right password, until failures age out.
    for i in 0..4 {
        let r = login(&client_from(&format!("127.0.3.{}", i + 1)), "victim", "wrongpass").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status_code"], 401);
    }
    let locked = login(&client_from("127.0.3.9"), "victim", "secret123").await.unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((60..=15 * 60).contains(&retry), "until one failure ages out: {retry}");
    let body: Value = locked.json().await.unwrap();
    assert!(body["status_msg"].as_str().unwrap().contains("account"), "{body}");
    assert_eq!((body["user_id"].clone(), body["token"].clone()), (json!(0), json!("")), "the route's keys: {body}");

    // Six failures from one address across accounts; then that address is
    // refused, others are not.
    let stuffer = client_from("127.0.4.1");
    for i in 0..6 {
        let r = login(&stuffer, &format!("nobody{i}"), "wrongpass").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let refused = login(&stuffer, "regular", "secret123").await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.json::<Value>().await.unwrap()["status_msg"].as_str().unwrap().contains("address"));
    assert_eq!(login(&regular, "regular", "secret123").await.unwrap().status(), StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn registrations_and_publishes_have_their_own_limits() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_register_per_min = 1;
        c.rate_limit_register_burst = 3;
        c.rate_limit_publish_per_min = 2;
    })
    .await;
    let register = |c: &reqwest::Client, name: String| {
        c.post(app.url("/douyin/user/register/")).form(&[("username", name.as_str()), ("password", "secret123")]).send()
    };
    let signups = client_from("127.0.5.1");
    let mut token = String::new();
    for i in 0..3 {
        let r: Value = register(&signups, format!("signup{i}")).await.unwrap().json().await.unwrap();
        assert_eq!(r["status_code"], 0, "{r}");
        token = r["token"].as_str().unwrap().to_owned();
    }
    let refused = register(&signups, "signup3".into()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((2..=60).contains(&retry), "{retry}");
    let other: Value = register(&client_from("127.0.5.2"), "signup4".into()).await.unwrap().json().await.unwrap();
    assert_eq!(other["status_code"], 0, "another address may register: {other}");

    // Publish: 2 per minute per user, also with the token in the multipart body.
    let publish = |client: reqwest::Client| {
        let form = reqwest::multipart::Form::new()
            .text("token", token.clone())
            .text("title", "limited")
            .part("data", reqwest::multipart::Part::bytes(sample_mp4()).file_name("a.mp4"));
        client.post(app.url("/douyin/publish/action/")).multipart(form).send()
    };
    for ip in ["127.0.0.5", "127.0.0.6"] {
        let r = publish(client_from(ip)).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.json::<Value>().await.unwrap()["status_code"], 0);
    }
    let third = publish(client_from("127.0.0.7")).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "the user's third publish in a minute");
    let retry: u64 = third.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((2..=60).contains(&retry), "{retry}");
    app.stop().await;
}

#[tokio::test]
async fn files_and_health_are_never_counted_and_ipv6_counts_by_64() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 3;
        c.trusted_proxies = vec!["127.0.6.0/24".into()];
    })
    .await;
    let client = client_from("127.0.0.30");
    for _ in 0..30 {
        for path in ["/", "/static/avatar.png", "/healthz"] {
            assert_eq!(client.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK, "{path}");
        }
    }
    // The API is: a burst of 3, then refusals (a token comes back each second).
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(client.get(app.url("/douyin/feed/")).send().await.unwrap().status());
    }
    assert!(statuses[..3].iter().all(|s| *s == StatusCode::OK), "{statuses:?}");
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // Behind the trusted proxy, IPv6 clients of one /64 share a bucket: hosts
    // never seen before are refused once their neighbours used it up.
    let proxy = client_from("127.0.6.1");
    let from = |client: String| proxy.get(app.url("/douyin/feed/")).header("x-forwarded-for", client).send();
    let mut refused_hosts = 0;
    for host in 1..=10 {
        if from(format!("2001:db8:1:2::{host:x}")).await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            refused_hosts += 1;
        }
    }
    assert!(refused_hosts >= 5, "one /64, one bucket: {refused_hosts} of 10 hosts refused");
    assert_eq!(from("2001:db8:1:3::1".into()).await.unwrap().status(), StatusCode::OK, "another /64");
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs DOUYIN_TEST_REDIS_URL (a Redis server)"]
async fn replicas_draw_from_the_same_buckets_in_redis() {
    common::needs("DOUYIN_TEST_REDIS_URL");
    let limit = |c: &mut Config| {
        c.rate_limit_ip_per_sec = 1;
        c.rate_limit_ip_burst = 6;
    };
    let first = TestApp::spawn_with(limit).await;
    let prefix = first.config.redis_prefix.clone();
    let second = TestApp::spawn_with(|c| {
        limit(c);
        c.redis_prefix = prefix;
    })
    .await;
    let client = client_from("127.0.7.1");
    // Twelve calls alternating between the replicas: two buckets of 6 would
    // serve them all; one shared bucket refuses about half.
    let mut refused = 0;
    for app in [&first, &second].repeat(6) {
        if client.get(app.url("/douyin/feed/")).send().await.unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 4, "six tokens shared by two replicas: {refused} of 12 refused");
    second.stop().await;
    first.stop().await;
}
