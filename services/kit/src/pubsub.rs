//! Publish/subscribe for live pushes: Redis pub/sub in production (so a message
//! published through one replica reaches subscribers on every replica), an
//! in-process broadcast in the embedded mode.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::{Config, Error, Result};

/// Receives payloads published on a channel. Slow receivers lose the oldest
/// payloads (`Lagged`) instead of blocking publishers.
pub type Subscription = broadcast::Receiver<String>;

#[async_trait]
pub trait PubSub: Send + Sync + 'static {
    async fn publish(&self, channel: &str, payload: String) -> Result<()>;
    /// A receiver of everything published on `channel` from now on.
    fn subscribe(&self, channel: &str) -> Subscription;

    /// Waits at most `timeout` until this process receives what is published
    /// on `channel` (a subscription is live); false if it does not in time.
    /// Redis subscribes in the background, and again after a reconnect.
    async fn until_listening(&self, channel: &str, timeout: Duration) -> bool {
        let _ = (channel, timeout);
        true
    }

    /// Whether this process receives what is published on `channel` now,
    /// as it changes (false while a Redis subscription is being re-made);
    /// None where delivery never stops (in-process).
    fn listening(&self, channel: &str) -> Option<watch::Receiver<bool>> {
        let _ = channel;
        None
    }
}

pub async fn from_config(config: &Config) -> Result<Arc<dyn PubSub>> {
    if !config.redis_cluster_nodes.is_empty() {
        return Ok(Arc::new(RedisPubSub::cluster(&config.redis_cluster_nodes, &config.redis_prefix)?));
    }
    Ok(match &config.redis_url {
        Some(url) => Arc::new(RedisPubSub::new(url, &config.redis_prefix).await?),
        None => Arc::new(MemoryPubSub::default()),
    })
}

const BUFFER: usize = 1024;

/// In-process pub/sub.
#[derive(Default, Clone)]
pub struct MemoryPubSub {
    channels: Arc<std::sync::Mutex<std::collections::HashMap<String, broadcast::Sender<String>>>>,
}

impl MemoryPubSub {
    fn sender(&self, channel: &str) -> broadcast::Sender<String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(channel.to_owned()).or_insert_with(|| broadcast::channel(BUFFER).0).clone()
    }
}

#[async_trait]
impl PubSub for MemoryPubSub {
    async fn publish(&self, channel: &str, payload: String) -> Result<()> {
        let _ = self.sender(channel).send(payload);
        Ok(())
    }

    fn subscribe(&self, channel: &str) -> Subscription {
        self.sender(channel).subscribe()
    }
}

/// Redis pub/sub. Each subscribed channel has one Redis subscription per
/// process, kept alive (and re-established after Redis restarts) by a task that
/// fans payloads out to local receivers.
///
/// In a Redis Cluster a `PUBLISH` on any node reaches the subscribers of
/// every node (the cluster bus forwards it), so a subscription needs one
/// connection to any node: it is made to the listed nodes in turn, moving on
/// to the next when its node goes away.
#[derive(Clone)]
pub struct RedisPubSub {
    clients: Arc<[redis::Client]>,
    publisher: Publisher,
    prefix: String,
    local: MemoryPubSub,
    /// Per subscribed channel: whether its Redis subscription is live.
    listening: Arc<std::sync::Mutex<std::collections::HashMap<String, watch::Sender<bool>>>>,
}

impl RedisPubSub {
    pub async fn new(url: &str, prefix: &str) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|e| Error::internal(format!("redis url: {e}")))?;
        // Reconnects at most half a second apart (the default backoff grows to
        // 6 s): a push published the moment Redis is back goes out live, and
        // the resync notice for those lost meanwhile follows at once.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let publisher = redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| Error::Unavailable(format!("redis: {e}")))?;
        Ok(Self {
            clients: Arc::new([client]),
            publisher: Publisher::Single(crate::telemetry::TracedConnection::new(publisher)),
            prefix: prefix.to_owned(),
            local: MemoryPubSub::default(),
            listening: Arc::default(),
        })
    }

    /// Pub/sub through a Redis Cluster: publishes through the cluster
    /// connection, subscribes at one of `nodes`.
    pub fn cluster(nodes: &[String], prefix: &str) -> Result<Self> {
        let open = |url: &String| redis::Client::open(url.as_str());
        let clients: Vec<redis::Client> = nodes
            .iter()
            .map(open)
            .collect::<redis::RedisResult<_>>()
            .map_err(|e| Error::internal(format!("redis url: {e}")))?;
        let client = redis::cluster::ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::internal(format!("redis cluster nodes: {e}")))?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2));
        let publisher = client.get_pending_async_connection_with_config(config);
        Ok(Self {
            clients: clients.into(),
            publisher: Publisher::Cluster(crate::telemetry::TracedConnection::new(publisher)),
            prefix: prefix.to_owned(),
            local: MemoryPubSub::default(),
            listening: Arc::default(),
        })
    }

    fn channel(&self, channel: &str) -> String {
        format!("{}:{channel}", self.prefix)
    }

    fn ensure_listener(&self, channel: &str) {
        let mut listening = self.listening.lock().unwrap_or_else(|e| e.into_inner());
        if listening.contains_key(channel) {
            return;
        }
        let live = watch::Sender::new(false);
        listening.insert(channel.to_owned(), live.clone());
        let clients = self.clients.clone();
        let redis_channel = self.channel(channel);
        let local = self.local.sender(channel);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            for turn in 0.. {
                let client = &clients[turn % clients.len()];
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => {
                        if pubsub.subscribe(&redis_channel).await.is_ok() {
                            backoff = Duration::from_millis(100);
                            live.send_replace(true);
                            forward(pubsub, &local).await;
                            live.send_replace(false);
                        }
                        tracing::warn!(channel = %redis_channel, "redis subscription ended; resubscribing");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "redis subscription failed; retrying");
                    }
                }
                // At most a second between attempts: pushes published while
                // this process is not subscribed are lost to it (its sessions
                // catch up from the database once it is back).
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }
}

/// Where publishes go: one Redis, or a Redis Cluster.
#[derive(Clone)]
enum Publisher {
    Single(crate::telemetry::TracedConnection<redis::aio::ConnectionManager>),
    Cluster(crate::telemetry::TracedConnection<redis::cluster_async::ClusterConnection>),
}

/// How often an idle subscription checks that its connection is alive.
const LIVENESS_EVERY: Duration = Duration::from_secs(15);

/// Fans payloads out to local receivers until the connection ends or stops
/// answering pings (a half-open connection would otherwise look subscribed
/// forever).
async fn forward(pubsub: redis::aio::PubSub, local: &broadcast::Sender<String>) {
    let (mut sink, mut messages) = pubsub.split();
    let mut check = tokio::time::interval(LIVENESS_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            msg = messages.next() => match msg {
                Some(msg) => {
                    if let Ok(payload) = msg.get_payload::<String>() {
                        let _ = local.send(payload);
                    }
                }
                None => return,
            },
            _ = check.tick() => {
                let pong = tokio::time::timeout(LIVENESS_EVERY, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    return;
                }
            }
        }
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, channel: &str, payload: String) -> Result<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(self.channel(channel)).arg(payload);
        let _: i64 = match &self.publisher {
            Publisher::Single(conn) => cmd.query_async(&mut conn.clone()).await?,
            Publisher::Cluster(conn) => cmd.query_async(&mut conn.clone()).await?,
        };
        Ok(())
    }

    fn subscribe(&self, channel: &str) -> Subscription {
        let receiver = self.local.subscribe(channel);
        self.ensure_listener(channel);
        receiver
    }

    fn listening(&self, channel: &str) -> Option<watch::Receiver<bool>> {
        self.ensure_listener(channel);
        self.listening.lock().unwrap_or_else(|e| e.into_inner()).get(channel).map(watch::Sender::subscribe)
    }

    async fn until_listening(&self, channel: &str, timeout: Duration) -> bool {
        let live = self.listening.lock().unwrap_or_else(|e| e.into_inner()).get(channel).map(watch::Sender::subscribe);
        let Some(mut live) = live else { return false };
        matches!(tokio::time::timeout(timeout, live.wait_for(|up| *up)).await, Ok(Ok(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_pubsub_delivers_to_every_subscriber() {
        let bus = MemoryPubSub::default();
        let mut a = bus.subscribe("chat");
        let mut b = bus.subscribe("chat");
        let mut other = bus.subscribe("other");
        bus.publish("chat", "hello".into()).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), "hello");
        assert_eq!(b.recv().await.unwrap(), "hello");
        assert!(other.try_recv().is_err());
    }
}
