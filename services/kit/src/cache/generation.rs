//! The database's generation (`db_generation`) as cache keys carry it:
//! entries filled from another database, or from this one before a restore,
//! are under other keys and never read.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use sqlx::Row;

use crate::{Result, db::Db};

/// How often the generation is read again: a restore procedure's
/// `douyin new-generation` reaches every reader within this.
pub const GENERATION_CHECK: Duration = Duration::from_secs(5);

/// A generation and when it was read.
type Known = Option<(Arc<str>, Instant)>;

/// The generation of one database, read at most every [`GENERATION_CHECK`].
#[derive(Clone)]
pub struct Generation {
    db: Db,
    known: Arc<Mutex<Known>>,
}

impl Generation {
    pub fn new(db: Db) -> Self {
        Self { db, known: Arc::default() }
    }

    /// The current generation; the last one known while the database does
    /// not answer.
    pub async fn current(&self) -> Result<Arc<str>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some((generation, read_at)) = &known
            && read_at.elapsed() < GENERATION_CHECK
        {
            return Ok(generation.clone());
        }
        match read(self.db.pool()).await {
            Ok(generation) => {
                let generation: Arc<str> = generation.into();
                if known.as_ref().is_some_and(|(old, _)| *old != generation) {
                    tracing::info!(%generation, "the database has a new generation; its caches start empty");
                }
                *self.known.lock().unwrap_or_else(|e| e.into_inner()) = Some((generation.clone(), Instant::now()));
                Ok(generation)
            }
            Err(error) => match known {
                Some((generation, _)) => {
                    tracing::warn!(%error, "database generation not read; keeping the last one");
                    Ok(generation)
                }
                None => Err(error),
            },
        }
    }
}

/// The database's generation (`db_generation`): what the counter's cache keys
/// carry, so that a cache filled from another database is never read.
pub async fn read(pool: &sqlx::AnyPool) -> Result<String> {
    let row = sqlx::query("SELECT generation FROM db_generation WHERE id = 1").fetch_one(pool).await?;
    Ok(row.try_get(0)?)
}

/// Gives the database a new generation, returned: after a backup was restored
/// over it, so the caches of the contents it had before are never read again.
pub async fn renew(pool: &sqlx::AnyPool) -> Result<String> {
    let generation = uuid::Uuid::new_v4().simple().to_string();
    sqlx::query("UPDATE db_generation SET generation = ? WHERE id = 1").bind(&generation).execute(pool).await?;
    Ok(generation)
}
