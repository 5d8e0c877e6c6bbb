//! The relational database: SQLite (embedded default) or MySQL/MariaDB, one
//! pool per process, and per-service migrations for each dialect.

use std::{sync::Once, time::Duration};

use sqlx::{
    Transaction,
    any::AnyPoolOptions,
    migrate::{Migration, Migrator},
};

pub use sqlx::AnyPool;

use crate::{Config, Error, Result};

mod replica;

pub use replica::Freshness;

/// The SQL dialect behind the pool; repositories pick statements by it where the
/// two differ (upserts, `INSERT IGNORE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    MySql,
}

/// A pool plus its dialect. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    /// The read replica, for reads that tolerate lag ([`Db::read`]).
    replica: Option<replica::Replica>,
    /// SQLite: a file next to the database, locked while migrating.
    sqlite_lock_path: Option<std::path::PathBuf>,
}

/// Held while migrations run; released on drop (SQLite) or explicitly (MySQL).
enum MigrationLock {
    MySql(sqlx::pool::PoolConnection<sqlx::Any>),
    Sqlite(#[allow(dead_code)] Option<std::fs::File>),
}

/// The migrations of one service, one set per dialect.
pub struct ServiceMigrations {
    pub service: &'static str,
    pub sqlite: &'static Migrator,
    pub mysql: &'static Migrator,
}

static DRIVERS: Once = Once::new();

impl Db {
    /// Opens the configured database (creating the SQLite file on first start).
    /// Connections are made lazily: a database that is down at start is reported
    /// by health checks, not by a failed start.
    pub async fn connect(config: &Config) -> Result<Self> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                std::fs::create_dir_all(&config.data_dir)
                    .map_err(|e| Error::internal(format!("creating data dir: {e}")))?;
                format!("sqlite://{}/douyin.db?mode=rwc", config.data_dir.display())
            }
        };
        let dialect = if url.starts_with("sqlite:") { Dialect::Sqlite } else { Dialect::MySql };
        let max = config.database_max_connections.max(1);
        let pool = open(&url, dialect, max, Duration::from_secs(5))?;
        let replica = match config.database_read_url.as_deref().filter(|u| !u.is_empty()) {
            Some(_) if dialect == Dialect::Sqlite => {
                tracing::warn!("database_read_url is ignored: the primary is SQLite");
                None
            }
            // A replica that is down should cost a read little before it falls back.
            Some(read_url) => Some(replica::Replica::new(open(read_url, dialect, max, Duration::from_secs(1))?)),
            None => None,
        };
        let sqlite_lock_path = url
            .strip_prefix("sqlite://")
            .map(|rest| rest.split('?').next().unwrap_or(rest))
            .filter(|path| !path.is_empty() && !path.contains(":memory:"))
            .map(|path| std::path::PathBuf::from(format!("{path}.migrate-lock")));
        Ok(Self { pool, dialect, replica, sqlite_lock_path })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// A transaction that will write. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so concurrent writers queue instead of failing.
    pub async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::MySql => self.pool.begin().await?,
        })
    }

    /// Refuses a write by `user_id` when its account does not exist, inside
    /// the write's transaction `conn`: on MySQL the user's row stays
    /// share-locked until the write commits, so it cannot be deleted under it
    /// (SQLite's write lock already excludes that).
    pub async fn require_account(&self, conn: &mut sqlx::AnyConnection, user_id: i64) -> Result<()> {
        let sql = match self.dialect {
            Dialect::Sqlite => "SELECT id FROM users WHERE id = ?",
            Dialect::MySql => "SELECT id FROM users WHERE id = ? LOCK IN SHARE MODE",
        };
        match sqlx::query(sql).bind(user_id).fetch_optional(conn).await? {
            Some(_) => Ok(()),
            None => Err(crate::Error::Unauthenticated("the account of this token no longer exists".into())),
        }
    }

    /// Those of `ids` (sorted, unique) whose accounts exist, inside a write's
    /// transaction `conn`, their rows locked until it commits on MySQL (as
    /// [`Db::require_account`], for a batch of writers).
    pub async fn lock_accounts(&self, conn: &mut sqlx::AnyConnection, ids: &[i64]) -> Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        use sqlx::Row;
        let lock = if self.dialect == Dialect::MySql { " ORDER BY id FOR UPDATE" } else { "" };
        let ids = padded(ids);
        let sql = format!("SELECT id FROM users WHERE id IN ({}){lock}", placeholders(ids.len()));
        let rows = bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)), &ids).fetch_all(conn).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// `INSERT IGNORE` in the pool's dialect.
    pub fn insert_ignore(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "INSERT OR IGNORE",
            Dialect::MySql => "INSERT IGNORE",
        }
    }

    /// Answers a trivial query (health checks).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Reads at most one row of `table` (a name from the migrations, never
    /// input): answers while the database is reachable and the table exists.
    pub async fn check_table(&self, table: &'static str) -> Result<()> {
        let sql = format!("SELECT 1 FROM {table} LIMIT 1");
        sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(&self.pool).await?;
        Ok(())
    }

    /// Applies every pending migration of the given services, each service with
    /// its own bookkeeping table so sets never collide.
    pub async fn migrate(&self, sets: &[&ServiceMigrations]) -> Result<()> {
        // Several processes may start at once against one database: one
        // migrates while the others wait (MySQL advisory lock; SQLite file lock).
        let guard = self.migration_lock().await?;
        let result = self.apply_migrations(sets).await;
        if let MigrationLock::MySql(mut conn) = guard {
            // Released whatever happened: the connection goes back to the pool.
            sqlx::query("SELECT RELEASE_LOCK(CONCAT('douyin_migrations:', DATABASE()))").execute(&mut *conn).await?;
        }
        result
    }

    async fn apply_migrations(&self, sets: &[&ServiceMigrations]) -> Result<()> {
        for set in sets {
            let source = match self.dialect {
                Dialect::Sqlite => set.sqlite,
                Dialect::MySql => set.mysql,
            };
            let migrations: Vec<Migration> = source.iter().cloned().collect();
            let mut migrator = Migrator::with_migrations(migrations);
            migrator.dangerous_set_table_name(format!("_douyin_{}_migrations", set.service));
            migrator.run(&self.pool).await.map_err(|e| Error::internal(format!("migrating {}: {e}", set.service)))?;
        }
        Ok(())
    }

    async fn migration_lock(&self) -> Result<MigrationLock> {
        match self.dialect {
            Dialect::MySql => {
                use sqlx::Row;
                let mut conn = self.pool.acquire().await?;
                let row = sqlx::query("SELECT GET_LOCK(CONCAT('douyin_migrations:', DATABASE()), 120)")
                    .fetch_one(&mut *conn)
                    .await?;
                let got: Option<i64> = row.try_get(0).ok();
                if got != Some(1) {
                    return Err(Error::Unavailable("another process holds the migration lock".into()));
                }
                Ok(MigrationLock::MySql(conn))
            }
            Dialect::Sqlite => {
                let path = self.sqlite_lock_path.clone();
                let file = tokio::task::spawn_blocking(move || -> std::io::Result<Option<std::fs::File>> {
                    let Some(path) = path else { return Ok(None) };
                    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
                    file.lock()?;
                    Ok(Some(file))
                })
                .await
                .map_err(|e| Error::internal(format!("migration lock: {e}")))?
                .map_err(|e| Error::internal(format!("migration lock: {e}")))?;
                Ok(MigrationLock::Sqlite(file))
            }
        }
    }

    pub async fn close(&self) {
        if let Some(replica) = &self.replica {
            replica.pool.close().await;
        }
        self.pool.close().await;
    }
}

/// A lazily connecting pool for `url`, each connection set up for `dialect`.
fn open(url: &str, dialect: Dialect, max: u32, acquire_timeout: Duration) -> Result<AnyPool> {
    AnyPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        // Every acquire reports its wait as a TRACE event, for the wait-time histogram.
        .acquire_time_level(log::LevelFilter::Trace)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                use sqlx::Executor;
                match dialect {
                    Dialect::Sqlite => {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Dialect::MySql => {
                        conn.execute("SET NAMES utf8mb4").await?;
                    }
                }
                Ok(())
            })
        })
        .connect_lazy(url)
        .map_err(|e| Error::internal(format!("database url: {e}")))
}

/// A query on the Any driver.
pub type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds each id in turn, after any earlier parameters (for an `IN (…)` list
/// written with [`placeholders`]).
pub fn bind_ids<'q>(query: AnyQuery<'q>, ids: &[i64]) -> AnyQuery<'q> {
    ids.iter().fold(query, |query, id| query.bind(*id))
}

/// Rows of `select` (a statement ending in `… IN`) for the ids in `ids`; no
/// statement at all for an empty list.
pub async fn fetch_in(pool: &AnyPool, select: &str, ids: &[i64]) -> Result<Vec<sqlx::any::AnyRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{select} ({})", placeholders(ids.len()));
    Ok(bind_ids(sqlx::query(sqlx::AssertSqlSafe(sql)), ids).fetch_all(pool).await?)
}

/// `items`, the last repeated up to the next power of two: the `IN` lists
/// and `CASE` arms of a batch then come in a few lengths, so their statements
/// stay prepared.
pub fn padded<T: Clone>(items: &[T]) -> Vec<T> {
    let mut padded = items.to_vec();
    if let Some(last) = items.last() {
        padded.resize(items.len().next_power_of_two(), last.clone());
    }
    padded
}

/// `?, ?, ?` for an `IN (…)` list of `n` parameters (n ≥ 1).
pub fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or_default()
}

/// Commits `tx`, unless the call it serves is too near its deadline to be
/// answered: then it is rolled back and refused, since a caller that gave up
/// would take the committed write for a failure.
pub async fn commit(tx: Transaction<'_, sqlx::Any>) -> Result<()> {
    crate::deadline::check_commit()?;
    tx.commit().await?;
    Ok(())
}

/// True for errors after which the same transaction may simply be run again
/// (MySQL deadlock or lock-wait timeout, SQLite busy).
pub fn is_retryable(error: &crate::Error) -> bool {
    matches!(error, crate::Error::Busy(_))
}

/// Runs `attempt` again (a dozen times, pausing 5 ms growing to 250 ms) while
/// it fails with a retryable database error. Each pause is drawn between half
/// and all of its length, so transactions that deadlocked each other (one is
/// rolled back each time) do not meet again in step: a burst of writers on
/// one row all get through.
pub async fn retry_tx<T, F, Fut>(mut attempt: F) -> crate::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::Result<T>>,
{
    use std::hash::BuildHasher;
    let mut delay = Duration::from_millis(5);
    for n in 0u32..12 {
        match attempt().await {
            Err(error) if is_retryable(&error) => {
                tracing::debug!(%error, "retrying a transaction");
                let draw = std::collections::hash_map::RandomState::new().hash_one(n) % 1000;
                tokio::time::sleep(delay / 2 + delay / 2 * draw as u32 / 1000).await;
                delay = (delay * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
    attempt().await
}

/// The id of the row `result` inserted on `conn`. MySQL reports it with the
/// result; SQLite through the Any driver does not, so it is asked on the same
/// connection.
pub async fn inserted_id(conn: &mut sqlx::AnyConnection, result: &sqlx::any::AnyQueryResult) -> Result<i64> {
    if let Some(id) = result.last_insert_id() {
        return Ok(id);
    }
    use sqlx::Row;
    let row = sqlx::query("SELECT last_insert_rowid()").fetch_one(conn).await?;
    Ok(row.try_get(0)?)
}
