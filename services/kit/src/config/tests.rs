use super::*;

#[test]
fn environment_overrides_defaults() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_HTTP_ADDR", "127.0.0.1:9999");
        jail.set_env("DOUYIN_REDIS_URL", "redis://localhost/1");
        jail.set_env("DOUYIN_SENSITIVE_WORDS", "[foo, bar]");
        jail.set_env("DOUYIN_MIGRATE", "false");
        let config = Config::load(None).expect("config");
        assert_eq!(config.http_addr.port(), 9999);
        assert_eq!(config.redis_url.as_deref(), Some("redis://localhost/1"));
        assert_eq!(config.sensitive_words, vec!["foo", "bar"]);
        assert!(!config.migrate);
        Ok(())
    });
}

#[test]
fn string_settings_stay_strings_whatever_they_look_like() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_JWT_SECRET", "0123456789");
        jail.set_env("DOUYIN_SERVICE_SECRET", "00000000000000000000000000000001");
        jail.set_env("DOUYIN_REDIS_PREFIX", "true");
        jail.set_env("DOUYIN_S3_BUCKET", "2024");
        jail.set_env("DOUYIN_S3_ACCESS_KEY", "00012");
        jail.set_env("DOUYIN_S3_SECRET_KEY", "1e5");
        jail.set_env("DOUYIN_S3_REGION", "-1.50");
        jail.set_env("DOUYIN_PUBLIC_URL", "[not, a, list]");
        jail.set_env("DOUYIN_LOG_FORMAT", "{json}");
        let config = Config::load(None).expect("config");
        assert_eq!(config.jwt_secret.as_deref(), Some("0123456789"));
        assert_eq!(config.service_secret.as_deref(), Some("00000000000000000000000000000001"));
        assert_eq!(config.redis_prefix, "true");
        assert_eq!(config.s3_bucket, "2024");
        assert_eq!(config.s3_access_key.as_deref(), Some("00012"));
        assert_eq!(config.s3_secret_key.as_deref(), Some("1e5"));
        assert_eq!(config.s3_region, "-1.50");
        assert_eq!(config.public_url.as_deref(), Some("[not, a, list]"));
        assert_eq!(config.log_format.as_deref(), Some("{json}"));
        Ok(())
    });
}

#[test]
fn numbers_booleans_and_lists_still_parse() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_JWT_TTL_SECS", "0600");
        jail.set_env("DOUYIN_DEMO_CONTENT", "true");
        jail.set_env("DOUYIN_MIGRATE", "0");
        jail.set_env("DOUYIN_SENSITIVE_WORDS", "[\"007\", true, spam ]");
        jail.set_env("DOUYIN_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.1");
        let config = Config::load(None).expect("config");
        assert_eq!(config.jwt_ttl_secs, 600);
        assert_eq!(config.demo_content, Some(true));
        assert!(!config.migrate);
        assert_eq!(config.sensitive_words, vec!["007", "true", "spam"]);
        assert_eq!(config.trusted_proxies, vec!["10.0.0.0/8", "192.168.1.1"]);
        Ok(())
    });
}

#[test]
fn a_bad_number_is_refused_naming_the_variable() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_JWT_TTL_SECS", "a week");
        let error = Config::load(None).expect_err("refused").to_string();
        assert!(error.contains("DOUYIN_JWT_TTL_SECS"), "{error}");
        Ok(())
    });
}

#[test]
fn file_then_environment() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("douyin.toml", "http_addr = \"127.0.0.1:7000\"\ngrpc_addr = \"127.0.0.1:7001\"")?;
        jail.set_env("DOUYIN_GRPC_ADDR", "127.0.0.1:7002");
        let config = Config::load(Some(std::path::Path::new("douyin.toml"))).expect("config");
        assert_eq!(config.http_addr.port(), 7000);
        assert_eq!(config.grpc_addr, Some("127.0.0.1:7002".parse().unwrap()));
        Ok(())
    });
}

#[test]
fn grpc_listens_only_where_another_process_calls() {
    let mut config = Config::default();
    assert_eq!(config.grpc_listen(&Role::ALL), None, "serve all talks in-process");
    assert_eq!(config.grpc_listen(&[Role::Api]), None, "the gateway serves no gRPC");
    assert_eq!(config.grpc_listen(&[Role::User]), Some("0.0.0.0:50051".parse().unwrap()));
    config.grpc_addr = Some(ListenAddr::Port(7003));
    assert_eq!(config.grpc_listen(&Role::ALL), Some("127.0.0.1:7003".parse().unwrap()));
    assert_eq!(config.grpc_listen(&[Role::Video, Role::Chat]), Some("0.0.0.0:7003".parse().unwrap()));
    config.grpc_addr = Some("0.0.0.0:7004".parse().unwrap());
    assert_eq!(config.grpc_listen(&Role::ALL), Some("0.0.0.0:7004".parse().unwrap()), "as given");
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_GRPC_ADDR", "50052");
        assert_eq!(Config::load(None).expect("config").grpc_addr, Some(ListenAddr::Port(50052)));
        jail.set_env("DOUYIN_GRPC_ADDR", "somewhere");
        let error = Config::load(None).expect_err("refused").to_string();
        assert!(error.contains("DOUYIN_GRPC_ADDR"), "{error}");
        Ok(())
    });
}

#[test]
fn demo_content_defaults_by_dialect() {
    let mut config = Config::default();
    assert!(config.demo_content());
    config.database_url = Some("mysql://root@localhost/test".into());
    assert!(!config.demo_content());
}

#[test]
fn redis_cluster_nodes_are_a_list() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("DOUYIN_REDIS_CLUSTER_NODES", "redis://h1:6379, redis://h2:6379,redis://h3:6379");
        let config = Config::load(None).expect("config");
        assert_eq!(config.redis_cluster_nodes, vec!["redis://h1:6379", "redis://h2:6379", "redis://h3:6379"]);
        assert_eq!(config.redis_url, None);
        Ok(())
    });
}
