//! One typed configuration for every role, layered: built-in defaults, then an
//! optional TOML file, then `DOUYIN_*` environment variables, then flags.

mod listen;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment, Metadata, Profile, Provider,
    providers::{Env, Format, Serialized, Toml},
    value::{Dict, Map, Value},
};
use serde::{Deserialize, Serialize};

use crate::Role;

pub use listen::ListenAddr;

/// Every setting of a douyin process. Environment keys are `DOUYIN_` plus the
/// field name in upper case (`http_addr` is `DOUYIN_HTTP_ADDR`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Gateway (api role) HTTP listen address.
    pub http_addr: SocketAddr,
    /// gRPC listen address shared by the gRPC roles of this process (`host:port`
    /// or a port). Unset: none under `serve all` (its roles call each other
    /// in-process), `0.0.0.0:50051` for split roles; a bare port binds
    /// loopback under `serve all`, every interface otherwise.
    pub grpc_addr: Option<ListenAddr>,
    /// Admin HTTP listener (metrics, health) of every process.
    pub admin_addr: SocketAddr,
    /// Embedded mode: SQLite file, media objects, generated JWT key.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `mysql://user:pass@host:3306/db`; unset = SQLite in the data dir.
    pub database_url: Option<String>,
    /// MySQL replica for reads that tolerate lag; unset = every read on the primary.
    pub database_read_url: Option<String>,
    /// Connections per database pool.
    pub database_max_connections: u32,
    /// Run migrations when the process starts.
    pub migrate: bool,
    /// `redis://host:6379/0`; unset = in-process cache and pub/sub.
    pub redis_url: Option<String>,
    /// `redis://h1:6379,redis://h2:6379,…`: nodes of a Redis Cluster, used in
    /// place of `redis_url` (any few masters; the rest are discovered).
    pub redis_cluster_nodes: Vec<String>,
    /// Prefix of every Redis key and channel this deployment uses.
    pub redis_prefix: String,
    pub s3_endpoint: Option<String>,
    pub s3_bucket: String,
    pub s3_region: String,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    /// S3 address clients see (presigned URLs); defaults to the endpoint.
    pub s3_public_endpoint: Option<String>,
    /// Lifetime of presigned media URLs, seconds.
    pub s3_presign_secs: u64,
    /// Base URL clients use to reach the gateway; unset = derived from the request.
    pub public_url: Option<String>,
    /// HS256 key; unset = generated once and kept in the data dir.
    pub jwt_secret: Option<String>,
    /// Token lifetime, seconds.
    pub jwt_ttl_secs: u64,
    /// Key (at least 32 bytes) that signs the credential of every call between
    /// processes; required by split roles.
    pub service_secret: Option<String>,
    pub user_endpoint: Option<String>,
    pub video_endpoint: Option<String>,
    pub interaction_endpoint: Option<String>,
    pub relation_endpoint: Option<String>,
    pub chat_endpoint: Option<String>,
    pub counter_endpoint: Option<String>,
    /// Seed demo videos into an empty database; unset = on for SQLite only.
    pub demo_content: Option<bool>,
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: u64,
    /// Largest accepted request body other than uploads, bytes.
    pub max_body_bytes: u64,
    /// Deadline of one gRPC call between roles, milliseconds.
    pub rpc_timeout_ms: u64,
    /// Deadline of an upload call (publish), seconds.
    pub upload_timeout_secs: u64,
    /// An upload that sends nothing for this long is abandoned, seconds.
    pub upload_idle_timeout_secs: u64,
    /// Uploads in progress at once at one gateway, everyone's together; 0 = unlimited.
    pub uploads_max_in_progress: u32,
    /// Uploads in progress at once per signed-in user at one gateway; 0 = unlimited.
    pub uploads_max_per_user: u32,
    /// Uploads in progress at once per client address (IPv6 by /64) at one
    /// gateway; 0 = unlimited.
    pub uploads_max_per_address: u32,
    /// Bytes of a file part that arrives before its token held in memory
    /// (never on disk) until the token is checked; more is refused.
    pub upload_early_data_bytes: u64,
    /// Bytes all uploads together may hold in memory that way.
    pub upload_early_data_budget_bytes: u64,
    /// Connect deadline towards a peer, milliseconds.
    pub connect_timeout_ms: u64,
    /// Deadline of one HTTP request at the gateway, seconds (uploads excepted).
    pub request_timeout_secs: u64,
    /// A connection to the gateway must send a request's headers within this
    /// long once it starts one (its first from the accept), seconds.
    pub http_header_timeout_secs: u64,
    /// A gateway connection that moves no byte for this long is closed,
    /// seconds; keep it above the upstream keep-alive of the proxy in front
    /// (ingress-nginx: 60 s), so the proxy never sends on a closed socket.
    pub http_idle_timeout_secs: u64,
    /// Open connections at one gateway; 0 = only the open-files limit.
    pub http_max_connections: u32,
    /// Open connections per client address (IPv6 by /64) at one gateway,
    /// trusted proxies excepted; 0 = unlimited.
    pub http_max_connections_per_address: u32,
    /// After SIGTERM: how long the process reports NOT_SERVING while still
    /// accepting (callers move off it), seconds.
    pub shutdown_delay_secs: u64,
    /// How long in-flight requests may run once it stops accepting, seconds.
    pub shutdown_grace_secs: u64,
    /// How often health checks probe the backends, seconds.
    pub health_interval_secs: u64,
    /// Words refused in comments (`[a, b]` in the environment); empty: the
    /// interaction role's built-in list.
    pub sensitive_words: Vec<String>,
    /// `json` or `pretty`; unset = pretty in a terminal, JSON otherwise.
    pub log_format: Option<String>,
    /// Log filter (`DOUYIN_LOG`, as `RUST_LOG` takes it); wins over `RUST_LOG`.
    pub log: Option<String>,
    /// Path of the ffmpeg binary used for covers; covers fall back to a default image without it.
    pub ffmpeg_path: String,
    /// Deadline for extracting one cover, seconds.
    pub cover_timeout_secs: u64,
    /// API requests per second per client address (IPv6: per /64), the
    /// refill of a token bucket of `rate_limit_ip_burst`; 0 = unlimited.
    pub rate_limit_ip_per_sec: u32,
    /// Requests a client address may make at once before its rate applies.
    pub rate_limit_ip_burst: u32,
    /// New gateway connections per second per client address (IPv6: per
    /// /64; trusted proxies excepted), the refill of a bucket of
    /// `rate_limit_connections_burst`; 0 = unlimited.
    pub rate_limit_connections_per_sec: u32,
    /// Connections a client address may open at once before its rate applies.
    pub rate_limit_connections_burst: u32,
    /// API requests per second per signed-in user (wherever the token
    /// arrives), the refill of a bucket of `rate_limit_user_burst`; 0 = unlimited.
    pub rate_limit_user_per_sec: u32,
    /// Requests a user may make at once before the user's rate applies.
    pub rate_limit_user_burst: u32,
    /// Registrations per minute per client address (bucket of
    /// `rate_limit_register_burst`); 0 = unlimited.
    pub rate_limit_register_per_min: u32,
    /// Registrations a client address may make at once.
    pub rate_limit_register_burst: u32,
    /// Failed sign-ins per account per 15 minutes: past half of them each
    /// attempt is slowed, past all refused until they age out; 0 = unlimited.
    pub rate_limit_login_failures_per_account: u32,
    /// Failed sign-ins per client address per 15 minutes, slowed and refused
    /// the same way; 0 = unlimited.
    pub rate_limit_login_failures_per_ip: u32,
    /// Publishes per minute per user (also the burst); 0 = unlimited.
    pub rate_limit_publish_per_min: u32,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` names the
    /// client for rate limiting; empty = the connection's peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: ([0, 0, 0, 0], 8080).into(),
            grpc_addr: None,
            admin_addr: ([0, 0, 0, 0], 9090).into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            database_read_url: None,
            database_max_connections: 16,
            migrate: true,
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            redis_prefix: "douyin".into(),
            s3_endpoint: None,
            s3_bucket: "douyin".into(),
            s3_region: "us-east-1".into(),
            s3_access_key: None,
            s3_secret_key: None,
            s3_public_endpoint: None,
            s3_presign_secs: 6 * 3600,
            public_url: None,
            jwt_secret: None,
            jwt_ttl_secs: 7 * 24 * 3600,
            service_secret: None,
            user_endpoint: None,
            video_endpoint: None,
            interaction_endpoint: None,
            relation_endpoint: None,
            chat_endpoint: None,
            counter_endpoint: None,
            demo_content: None,
            max_upload_bytes: 64 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            rpc_timeout_ms: 5_000,
            upload_timeout_secs: 300,
            upload_idle_timeout_secs: 30,
            uploads_max_in_progress: 64,
            uploads_max_per_user: 2,
            uploads_max_per_address: 16,
            upload_early_data_bytes: 8 * 1024 * 1024,
            upload_early_data_budget_bytes: 32 * 1024 * 1024,
            connect_timeout_ms: 1_000,
            request_timeout_secs: 30,
            http_header_timeout_secs: 10,
            http_idle_timeout_secs: 75,
            http_max_connections: 4096,
            http_max_connections_per_address: 256,
            shutdown_delay_secs: 5,
            shutdown_grace_secs: 20,
            health_interval_secs: 5,
            sensitive_words: Vec::new(),
            log_format: None,
            log: None,
            ffmpeg_path: "ffmpeg".into(),
            cover_timeout_secs: 10,
            rate_limit_ip_per_sec: 100,
            rate_limit_ip_burst: 500,
            rate_limit_connections_per_sec: 20,
            rate_limit_connections_burst: 200,
            rate_limit_user_per_sec: 20,
            rate_limit_user_burst: 200,
            rate_limit_register_per_min: 10,
            rate_limit_register_burst: 50,
            rate_limit_login_failures_per_account: 10,
            rate_limit_login_failures_per_ip: 100,
            rate_limit_publish_per_min: 10,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Where configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// Defaults, then `file` (if given), then `DOUYIN_*` from the environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        Self::extract(&Self::figment(file))
    }

    /// The layered sources, so callers can merge flags on top; read them
    /// with [`Config::extract`].
    pub fn figment(file: Option<&std::path::Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment.merge(EnvStrings::new())
    }

    /// Reads a configuration from `figment`. Environment values arrive as
    /// text and become numbers or booleans only where the setting is one.
    pub fn extract(figment: &Figment) -> Result<Self, ConfigError> {
        figment.extract_lossy().map_err(|e| ConfigError(Box::new(e)))
    }

    /// The endpoint configured for a peer role, if any.
    pub fn endpoint(&self, role: Role) -> Option<&str> {
        match role {
            Role::Api => None,
            Role::User => self.user_endpoint.as_deref(),
            Role::Video => self.video_endpoint.as_deref(),
            Role::Interaction => self.interaction_endpoint.as_deref(),
            Role::Relation => self.relation_endpoint.as_deref(),
            Role::Chat => self.chat_endpoint.as_deref(),
            Role::Counter => self.counter_endpoint.as_deref(),
        }
    }

    /// True when the database is SQLite (explicitly or by default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.as_deref().is_none_or(|url| url.starts_with("sqlite:"))
    }

    /// Whether demo videos are seeded into an empty database.
    pub fn demo_content(&self) -> bool {
        self.demo_content.unwrap_or_else(|| self.is_sqlite())
    }

    /// Where a process hosting `roles` listens for gRPC, if anywhere: nowhere
    /// for `serve all` unless `grpc_addr` is set, else `grpc_addr` (a bare port
    /// on loopback for `serve all`, every interface otherwise) or `0.0.0.0:50051`.
    pub fn grpc_listen(&self, roles: &[Role]) -> Option<SocketAddr> {
        if roles.iter().all(|r| *r == Role::Api) {
            return None;
        }
        let all_in_one = Role::ALL.iter().all(|r| roles.contains(r));
        match self.grpc_addr {
            Some(addr) => Some(addr.resolve(if all_in_one { ListenAddr::LOOPBACK } else { ListenAddr::ANY })),
            None if all_in_one => None,
            None => Some(SocketAddr::new(ListenAddr::ANY, 50051)),
        }
    }

    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay_secs)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }
}

/// `DOUYIN_*` environment variables, each kept as the text it is: a secret of
/// `0123456789`, a prefix of `true` or a bucket named `2024` stay strings (the
/// stock provider would guess a number or a boolean and refuse the setting, or
/// drop leading zeros). Settings that are lists take `[a, b]` or `a,b`.
struct EnvStrings {
    list_keys: Vec<String>,
}

impl EnvStrings {
    fn new() -> Self {
        let defaults = Serialized::defaults(Config::default()).data().unwrap_or_default();
        let list_keys = defaults
            .values()
            .flat_map(|dict| dict.iter())
            .filter(|(_, value)| matches!(value, Value::Array(..)))
            .map(|(key, _)| key.clone())
            .collect();
        Self { list_keys }
    }

    fn env() -> Env {
        Env::prefixed("DOUYIN_").ignore(&["CONFIG"]).map(|key| key.as_str().to_ascii_lowercase().into())
    }
}

/// `[a, "b"]`, `a,b` or a single item; blank items dropped.
fn list_items(raw: &str) -> Vec<Value> {
    let raw = raw.trim();
    let inner = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(raw);
    inner
        .split(',')
        .map(str::trim)
        .map(|item| {
            item.strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .or_else(|| item.strip_prefix('\'').and_then(|i| i.strip_suffix('\'')))
                .unwrap_or(item)
        })
        .filter(|item| !item.is_empty())
        .map(Value::from)
        .collect()
}

impl Provider for EnvStrings {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable(s)")
            .interpolater(|_: &Profile, keys: &[&str]| format!("DOUYIN_{}", keys.join(".").to_ascii_uppercase()))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for (key, raw) in Self::env().iter() {
            let key = key.as_str().to_owned();
            let value = if self.list_keys.contains(&key) { Value::from(list_items(&raw)) } else { Value::from(raw) };
            dict.insert(key, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests;
