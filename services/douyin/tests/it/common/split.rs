//! Roles on one in-process server and the gateway on another, talking gRPC
//! over TCP as two processes would.

use std::time::Duration;

use douyin_kit::{Config, Role, shutdown};

type Task = tokio::task::JoinHandle<anyhow::Result<()>>;

/// A gateway (`api`) on its own server whose every peer endpoint is a second
/// server running the given roles on the test's database.
pub struct Split {
    /// The gateway's base URL.
    pub base: String,
    pub http: reqwest::Client,
    /// The roles' server configuration (database, storage, data dir, JWT key).
    pub config: Config,
    servers: Vec<(shutdown::ShutdownTrigger, Task)>,
    _data_dir: tempfile::TempDir,
    schema: Option<(String, String)>,
}

async fn serve(config: Config, roles: &[Role]) -> (douyin::Running, shutdown::ShutdownTrigger) {
    let (trigger, stop) = shutdown::channel();
    (douyin::start(config, roles, stop).await.expect("server starts"), trigger)
}

impl Split {
    /// `roles` on one server with the test configuration changed by `adjust`,
    /// the gateway on another with an in-memory database of its own.
    pub async fn start(roles: &[Role], adjust: impl FnOnce(&mut Config)) -> Split {
        let data_dir = tempfile::tempdir().unwrap();
        let (mut config, schema) = super::test_config(data_dir.path()).await;
        config.jwt_secret = Some("a-shared-secret-for-both-processes-0123456789".into());
        adjust(&mut config);
        let (backend, backend_trigger) = serve(config.clone(), roles).await;
        let endpoint = Some(format!("http://{}", backend.grpc_addr.unwrap()));
        let backend_task = tokio::spawn(backend.wait());

        let mut gateway_config = config.clone();
        gateway_config.database_url = Some("sqlite::memory:".into());
        for role in Role::GRPC {
            let ep = endpoint.clone();
            match role {
                Role::User => gateway_config.user_endpoint = ep,
                Role::Video => gateway_config.video_endpoint = ep,
                Role::Interaction => gateway_config.interaction_endpoint = ep,
                Role::Relation => gateway_config.relation_endpoint = ep,
                Role::Chat => gateway_config.chat_endpoint = ep,
                Role::Counter => gateway_config.counter_endpoint = ep,
                Role::Api => {}
            }
        }
        let (gateway, gateway_trigger) = serve(gateway_config, &[Role::Api]).await;
        let base = format!("http://{}", gateway.http_addr.unwrap());
        let gateway_task = tokio::spawn(gateway.wait());
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
        let servers = vec![(gateway_trigger, gateway_task), (backend_trigger, backend_task)];
        Split { base, http, config, servers, _data_dir: data_dir, schema }
    }

    /// Stops the gateway, then the roles, and drops the test's schema.
    pub async fn stop(self) {
        for (trigger, _) in &self.servers {
            trigger.trigger();
        }
        for (_, task) in self.servers {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some((server, name)) = &self.schema {
            super::drop_schema(server, name).await;
        }
    }
}
