//! [`SqliteStore`]: every store trait in one SQLite file, through sqlx (the `sqlite` feature).
//!
//! The database runs in WAL mode (readers never wait for the writer). Each write is one
//! `BEGIN IMMEDIATE` transaction, taken under an in-process lock so writers of one process
//! queue without spinning on SQLite's busy handler; another process writing the same file
//! waits up to the busy timeout, then the call fails as [`StoreError::Unavailable`]. The
//! schema is applied at open and its version kept in `PRAGMA user_version`; a database made
//! by a newer version of this crate is refused rather than misread.

mod builds;
mod versions;

use crate::sql::{from_json, int, limit, to_json, uint};
use crate::{Build, BuildId, BuildState, StoreError, StoreResult};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema, one script per version; script `n` takes a database from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[include_str!("schema_1.sql")];

/// A [`Store`](crate::Store) in a SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    write: tokio::sync::Mutex<()>,
    path: PathBuf,
}

impl SqliteStore {
    /// The schema version this crate writes; [`SqliteStore::open`] refuses a newer database.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens (creating when missing) the database at `path` and brings its schema up to
    /// [`SqliteStore::SCHEMA_VERSION`].
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(|e| db_error(&format!("open {}", path.display()), e))?;
        let store = SqliteStore {
            pool,
            write: tokio::sync::Mutex::new(()),
            path,
        };
        store.migrate().await?;
        tracing::debug!(path = %store.path.display(), "sqlite store open");
        Ok(store)
    }

    /// The file the store is in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the connections (the store can no longer be used).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> StoreResult<()> {
        let what = format!("migrate {}", self.path.display());
        let mut tx = self.begin(&what).await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        let known = i64::from(Self::SCHEMA_VERSION);
        if version > known {
            return Err(StoreError::Invalid(format!(
                "{} has schema version {version}, newer than version {known} that this \
                 pipewright knows: use the pipewright that wrote it, or a newer one",
                self.path.display()
            )));
        }
        for (n, script) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(version).unwrap_or(0))
        {
            sqlx::raw_sql(script)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(&format!("{what} to version {}", n + 1), e))?;
            sqlx::raw_sql(&format!("PRAGMA user_version = {}", n + 1))
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(&what, e))?;
            tracing::info!(path = %self.path.display(), version = n + 1, "sqlite schema applied");
        }
        commit(tx, &what).await
    }

    /// Starts a write transaction (the caller holds [`SqliteStore::write`]).
    async fn begin(&self, what: &str) -> StoreResult<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_error(what, e))
    }

    /// A connection for reads.
    async fn read(&self, what: &str) -> StoreResult<sqlx::pool::PoolConnection<Sqlite>> {
        self.pool.acquire().await.map_err(|e| db_error(what, e))
    }
}

async fn commit(tx: Transaction<'static, Sqlite>, what: &str) -> StoreResult<()> {
    tx.commit().await.map_err(|e| db_error(what, e))
}

/// A sqlx error as a [`StoreError`]: a busy or locked database, I/O and pool trouble may pass
/// (`Unavailable`); anything else says the same thing again (`Invalid`).
fn db_error(what: &str, e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Database(d) => d
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6)),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    };
    tracing::debug!(what, error = %e, transient, "sqlite call failed");
    if transient {
        StoreError::Unavailable(format!("sqlite: {what}: {e}"))
    } else {
        StoreError::Invalid(format!("sqlite: {what}: {e}"))
    }
}

/// A column of `row`.
fn col<'r, T>(row: &'r SqliteRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Invalid(format!("stored column `{name}`: {e}")))
}

const BUILD_COLUMNS: &str = "id, pipeline, job, number, state, attempt, worker, inputs, \
     input_values, rerun_of, trigger_text, approvals_required, approved_by, reason, \
     created_at_ms, started_at_ms, finished_at_ms";

fn build_from_row(row: &SqliteRow) -> StoreResult<Build> {
    let opt_u64 = |name: &str| -> StoreResult<Option<u64>> {
        col::<Option<i64>>(row, name)?
            .map(|v| uint(v, name))
            .transpose()
    };
    Ok(Build {
        id: BuildId(uint(col(row, "id")?, "build id")?),
        pipeline: col(row, "pipeline")?,
        job: col(row, "job")?,
        number: uint(col(row, "number")?, "build number")?,
        state: BuildState::parse(&col::<String>(row, "state")?)?,
        attempt: uint(col(row, "attempt")?, "attempt")?,
        worker: col(row, "worker")?,
        inputs: from_json(&col::<String>(row, "inputs")?, "inputs")?,
        input_values: from_json(&col::<String>(row, "input_values")?, "input values")?,
        rerun_of: opt_u64("rerun_of")?.map(BuildId),
        trigger: col(row, "trigger_text")?,
        approvals_required: uint(col(row, "approvals_required")?, "approvals")?,
        approved_by: from_json(&col::<String>(row, "approved_by")?, "approvers")?,
        reason: col(row, "reason")?,
        created_at_ms: uint(col(row, "created_at_ms")?, "creation time")?,
        started_at_ms: opt_u64("started_at_ms")?,
        finished_at_ms: opt_u64("finished_at_ms")?,
    })
}

/// The build `id`, read on `conn`.
async fn load_build(conn: &mut SqliteConnection, id: BuildId) -> StoreResult<Option<Build>> {
    let sql = format!("SELECT {BUILD_COLUMNS} FROM builds WHERE id = ?1");
    let row = sqlx::query(&sql)
        .bind(int(id.0, "build id")?)
        .fetch_optional(conn)
        .await
        .map_err(|e| db_error(&format!("read build {id}"), e))?;
    row.as_ref().map(build_from_row).transpose()
}

/// The build `id`, or [`StoreError::NotFound`].
async fn existing_build(conn: &mut SqliteConnection, id: BuildId) -> StoreResult<Build> {
    load_build(conn, id)
        .await?
        .ok_or_else(|| StoreError::build_not_found(id))
}

/// Writes back what a transition may change.
async fn write_build(conn: &mut SqliteConnection, b: &Build) -> StoreResult<()> {
    let opt = |v: Option<u64>, what: &str| v.map(|v| int(v, what)).transpose();
    sqlx::query(
        "UPDATE builds SET state = ?2, attempt = ?3, worker = ?4, approved_by = ?5, \
         reason = ?6, started_at_ms = ?7, finished_at_ms = ?8 WHERE id = ?1",
    )
    .bind(int(b.id.0, "build id")?)
    .bind(b.state.as_str())
    .bind(i64::from(b.attempt))
    .bind(b.worker.as_deref())
    .bind(to_json(&b.approved_by, "approvers")?)
    .bind(b.reason.as_deref())
    .bind(opt(b.started_at_ms, "start time")?)
    .bind(opt(b.finished_at_ms, "finish time")?)
    .execute(conn)
    .await
    .map_err(|e| db_error(&format!("write build {}", b.id), e))?;
    Ok(())
}
