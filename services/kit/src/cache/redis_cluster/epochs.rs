//! Marking buckets and moving the epoch on after a loss (see the parent
//! module), and the conditional writes that notice a loss.

use futures::future::join_all;

use super::{BUCKETS, MARK_TIMEOUT, RedisClusterCache};
use crate::{Error, Result};

impl RedisClusterCache {
    /// Sets the marker of every bucket without one to `epoch`.
    pub(super) async fn mark_buckets(&self, epoch: &str) -> Result<()> {
        self.count(BUCKETS as usize);
        let calls = (0..BUCKETS).map(|bucket| {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.marker(bucket)).arg(epoch).arg("NX");
            async move { cmd.query_async::<()>(&mut conn).await }
        });
        match tokio::time::timeout(MARK_TIMEOUT, join_all(calls)).await {
            Ok(results) => results.into_iter().collect::<redis::RedisResult<Vec<()>>>().map(drop).map_err(Into::into),
            Err(_) => Err(Error::Unavailable("redis: buckets not marked in time".into())),
        }
    }

    /// After a write found a bucket without its marker (lost): a new epoch,
    /// the marker of every bucket lost. One process renews at a time.
    pub(super) async fn renew(&self) {
        let Ok(_one) = self.renewing.try_lock() else { return };
        self.count(1);
        let mut conn = self.conn.clone();
        let mut invocation = self.scripts.renew.prepare_invoke();
        invocation.key(self.epoch_key());
        let renewed: Result<String> = self.guard(async move { invocation.invoke_async(&mut conn).await }).await;
        let result = match renewed {
            Ok(epoch) => {
                tracing::warn!(%epoch, "part of the cache was lost; a new epoch marks its buckets");
                self.remember_epoch(Some(&epoch));
                self.mark_buckets(&epoch).await
            }
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            self.remember_epoch(None);
            tracing::warn!(%error, "could not start a new cache epoch after a loss");
        }
    }

    /// Runs per-bucket conditional writes (-1 lost, 0 epoch too old, 1
    /// written); true when every one was written.
    pub(super) async fn conditional(&self, invocations: Vec<redis::ScriptInvocation<'_>>) -> Result<bool> {
        self.count(invocations.len());
        let calls = invocations.into_iter().map(|invocation| {
            let mut conn = self.conn.clone();
            async move { invocation.invoke_async::<i64>(&mut conn).await }
        });
        let outcomes: Vec<i64> =
            self.guard(async { join_all(calls).await.into_iter().collect::<redis::RedisResult<Vec<i64>>>() }).await?;
        if outcomes.contains(&-1) {
            self.renew().await;
        } else if outcomes.contains(&0) {
            self.remember_epoch(None);
        }
        Ok(outcomes.iter().all(|o| *o == 1))
    }
}
