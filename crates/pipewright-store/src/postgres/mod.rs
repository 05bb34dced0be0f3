//! [`PostgresStore`]: every store trait in a PostgreSQL database, through sqlx (the `postgres`
//! feature).
//!
//! Each write is one transaction at `READ COMMITTED` that locks the rows it decides on before
//! it reads them, so writers from any number of processes serialize exactly where they must:
//!
//! - a build transition (claim, start, step, finish, re-queue, approval) reads its build
//!   `FOR NO KEY UPDATE`, applies the shared rules and writes it back: of concurrent claims of
//!   one attempt exactly one wins, and a stale write changes nothing;
//! - an event batch reads its build `FOR SHARE` (batches of one build go on side by side, a
//!   claim or re-queue waits for them) and is one `INSERT … ON CONFLICT DO NOTHING`;
//! - a create takes the one row of `build_ids`, so ids grow in commit order and each job's
//!   numbers have no gaps; a version save takes its resource's row of `version_ids`.
//!
//! A lock wait longer than [`PostgresStore::LOCK_TIMEOUT`], a lost connection, a server that
//! shuts down or is read-only (a fail-over) fail the call as [`StoreError::Unavailable`].
//! The schema is applied at connect, in one transaction under an advisory lock, and its
//! version kept in the table `pipewright_schema`; a database made by a newer version of this
//! crate is refused rather than misread.

mod builds;
mod versions;

use crate::sql::{from_json, int, to_json, uint};
use crate::{Build, BuildId, BuildState, StoreError, StoreResult};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, Row, Transaction};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The schema, one script per version; script `n` takes a database from version `n` to `n + 1`.
const MIGRATIONS: &[&str] = &[include_str!("schema_1.sql")];

/// The key of the transaction-scoped advisory lock that serializes migrations of concurrent
/// connects (`pipewrit` in ASCII).
const MIGRATION_LOCK: i64 = 0x7069_7065_7772_6974;

/// Connections a store keeps open at most.
const MAX_CONNECTIONS: u32 = 10;

/// A [`Store`](crate::Store) in a PostgreSQL database.
///
/// The database should be the store's own (or its own schema, with `search_path` set through
/// the URL's `options`): the tables have plain names (`builds`, `events`, `versions`, …).
pub struct PostgresStore {
    pool: PgPool,
    /// The URL without its password.
    url: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("pool", &self.pool)
            .finish()
    }
}

impl PostgresStore {
    /// The schema version this crate writes; [`PostgresStore::connect`] refuses a newer
    /// database.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// How long connecting may take, and a call may wait for a pooled connection, before it
    /// fails as [`StoreError::Unavailable`].
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// How long a write waits for a row lock another writer holds before it fails as
    /// [`StoreError::Unavailable`] (PostgreSQL's `lock_timeout`, unless the URL's `options`
    /// set one).
    pub const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to the database at `url` (`postgres://user:password@host:5432/database`, with
    /// the parameters sqlx accepts) and brings its schema up to
    /// [`PostgresStore::SCHEMA_VERSION`].
    ///
    /// An unreachable server fails within [`PostgresStore::CONNECT_TIMEOUT`] as
    /// [`StoreError::Unavailable`]; a URL that cannot be used, refused credentials, a missing
    /// database and a newer schema fail as [`StoreError::Invalid`]. Errors name the URL
    /// without its password.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let shown = redact(url);
        let mut options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Invalid(format!("postgres: `{shown}` is not a usable URL: {e}"))
        })?;
        if options.get_application_name().is_none() {
            options = options.application_name("pipewright");
        }
        if !options
            .get_options()
            .is_some_and(|o| o.contains("lock_timeout"))
        {
            let ms = Self::LOCK_TIMEOUT.as_millis();
            options = options.options([("lock_timeout", format!("{ms}ms"))]);
        }
        let mut conn = Self::first_connection(&options, &shown).await?;
        let migrated = migrate(&mut conn, &shown).await;
        if let Err(e) = conn.close().await {
            tracing::debug!(url = %shown, error = %e, "closing the migration connection failed");
        }
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Self::CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        tracing::debug!(url = %shown, "postgres store connected");
        Ok(PostgresStore { pool, url: shown })
    }

    /// One connection, within the connect timeout: a refused connection fails at once
    /// (a pool would retry it until its timeout), a server that does not answer after it.
    async fn first_connection(
        options: &PgConnectOptions,
        shown: &str,
    ) -> StoreResult<PgConnection> {
        let what = format!("connect to {shown}");
        let until = tokio::time::Instant::now() + Self::CONNECT_TIMEOUT;
        let attempt = async {
            loop {
                match PgConnection::connect_with(options).await {
                    // A server still starting (or shutting down to restart) says so: ask
                    // again until the connect timeout rather than fail a start beside it.
                    Err(sqlx::Error::Database(d))
                        if d.code().as_deref() == Some("57P03")
                            && tokio::time::Instant::now() < until =>
                    {
                        tracing::debug!(url = %shown, "postgres is starting up; asking again");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout_at(until, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(db_error(&what, e)),
            Err(_) => {
                tracing::debug!(url = %shown, "postgres connect timed out");
                Err(StoreError::Unavailable(format!(
                    "postgres: {what}: no answer within {} s",
                    Self::CONNECT_TIMEOUT.as_secs()
                )))
            }
        }
    }

    /// The database URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Closes the connections (the store can no longer be used).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction.
    async fn begin(&self, what: &str) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(|e| db_error(what, e))
    }

    /// A connection for reads.
    async fn read(&self, what: &str) -> StoreResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(|e| db_error(what, e))
    }
}

/// Brings the schema of the database on `conn` up to [`PostgresStore::SCHEMA_VERSION`], in one
/// transaction, or refuses a newer one.
async fn migrate(conn: &mut PgConnection, shown: &str) -> StoreResult<()> {
    let what = format!("migrate {shown}");
    let mut tx = conn.begin().await.map_err(|e| db_error(&what, e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('pipewright_schema') IS NOT NULL")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
    if !exists {
        (&mut *tx)
            .execute(sqlx::raw_sql(
                "CREATE TABLE pipewright_schema (version BIGINT NOT NULL)",
            ))
            .await
            .map_err(|e| db_error(&what, e))?;
    }
    let version: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM pipewright_schema")
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
    let version = version.unwrap_or(0);
    let known = i64::from(PostgresStore::SCHEMA_VERSION);
    if version > known {
        return Err(StoreError::Invalid(format!(
            "{shown} has schema version {version}, newer than version {known} that this \
             pipewright knows: use the pipewright that wrote it, or a newer one"
        )));
    }
    let start = usize::try_from(version).unwrap_or(0);
    for (n, script) in MIGRATIONS.iter().enumerate().skip(start) {
        (&mut *tx)
            .execute(sqlx::raw_sql(script))
            .await
            .map_err(|e| db_error(&format!("{what} to version {}", n + 1), e))?;
        tracing::info!(url = %shown, version = n + 1, "postgres schema applied");
    }
    if start < MIGRATIONS.len() {
        (&mut *tx)
            .execute(sqlx::raw_sql("DELETE FROM pipewright_schema"))
            .await
            .map_err(|e| db_error(&what, e))?;
        sqlx::query("INSERT INTO pipewright_schema (version) VALUES ($1)")
            .bind(known)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
    }
    tx.commit().await.map_err(|e| db_error(&what, e))
}

async fn commit(tx: Transaction<'static, Postgres>, what: &str) -> StoreResult<()> {
    tx.commit().await.map_err(|e| db_error(what, e))
}

/// Whether a SQLSTATE says the same call may succeed later: a lost connection, a server
/// shutting down, starting or out of resources, a lock or statement timeout, a serialization
/// failure or deadlock, a read-only server (a standby during fail-over).
fn transient(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03" | "58030" | "25006"
        )
}

/// A sqlx error as a [`StoreError`]: connection, pool and transient server trouble may pass
/// (`Unavailable`); anything else says the same thing again (`Invalid`).
fn db_error(what: &str, e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::Database(d) => d.code().is_some_and(|c| transient(&c)),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        _ => false,
    };
    tracing::debug!(what, error = %e, transient, "postgres call failed");
    if transient {
        StoreError::Unavailable(format!("postgres: {what}: {e}"))
    } else {
        StoreError::Invalid(format!("postgres: {what}: {e}"))
    }
}

/// `url` as it may be shown: without the password of its user part, and without parameters
/// that carry one (`password=`, `sslpassword=`).
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, query) = rest.split_at(query_at);
    // The last `@` before the parameters ends the user part, even when an unencoded password
    // holds a `/` or `@`: better to hide too much than to show a password.
    let shown = match before_query.rfind('@') {
        Some(at) => {
            let (user_part, host_on) = before_query.split_at(at);
            let user = user_part.split(':').next().unwrap_or_default();
            format!("{user}{host_on}")
        }
        None => before_query.to_owned(),
    };
    let query = match query.strip_prefix('?') {
        Some(params) => {
            let (params, fragment) = params.split_at(params.find('#').unwrap_or(params.len()));
            let kept: Vec<&str> = params
                .split('&')
                .filter(|p| {
                    let key = p.split('=').next().unwrap_or_default();
                    !key.to_ascii_lowercase().ends_with("password")
                })
                .collect();
            if kept.is_empty() {
                fragment.to_owned()
            } else {
                format!("?{}{fragment}", kept.join("&"))
            }
        }
        None => query.to_owned(),
    };
    format!("{scheme}{shown}{query}")
}

/// A column of `row`.
fn col<'r, T>(row: &'r PgRow, name: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(name)
        .map_err(|e| StoreError::Invalid(format!("stored column `{name}`: {e}")))
}

const BUILD_COLUMNS: &str = "id, pipeline, job, number, state, attempt, worker, inputs, \
     input_values, rerun_of, trigger_text, approvals_required, approved_by, reason, \
     created_at_ms, started_at_ms, finished_at_ms";

fn build_from_row(row: &PgRow) -> StoreResult<Build> {
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

/// The row lock a read of a build takes in its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lock {
    /// None: a plain read.
    None,
    /// `FOR SHARE`: the build keeps its attempt until the transaction ends; others may share.
    Share,
    /// `FOR NO KEY UPDATE`: the transaction is the build's only writer until it ends.
    Update,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::None => "",
            Lock::Share => " FOR SHARE",
            Lock::Update => " FOR NO KEY UPDATE",
        }
    }
}

/// The build `id`, read on `conn` with `lock`.
async fn load_build(
    conn: &mut PgConnection,
    id: BuildId,
    lock: Lock,
) -> StoreResult<Option<Build>> {
    let sql = format!(
        "SELECT {BUILD_COLUMNS} FROM builds WHERE id = $1{}",
        lock.clause()
    );
    let row = sqlx::query(&sql)
        .bind(int(id.0, "build id")?)
        .fetch_optional(conn)
        .await
        .map_err(|e| db_error(&format!("read build {id}"), e))?;
    row.as_ref().map(build_from_row).transpose()
}

/// The build `id` read with `lock`, or [`StoreError::NotFound`].
async fn existing_build(conn: &mut PgConnection, id: BuildId, lock: Lock) -> StoreResult<Build> {
    load_build(conn, id, lock)
        .await?
        .ok_or_else(|| StoreError::build_not_found(id))
}

/// [`StoreError::NotFound`] unless build `id` exists.
async fn ensure_build(conn: &mut PgConnection, id: BuildId) -> StoreResult<()> {
    let found: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM builds WHERE id = $1)")
        .bind(int(id.0, "build id")?)
        .fetch_one(conn)
        .await
        .map_err(|e| db_error(&format!("read build {id}"), e))?;
    if found {
        Ok(())
    } else {
        Err(StoreError::build_not_found(id))
    }
}

/// Writes back what a transition may change.
async fn write_build(conn: &mut PgConnection, b: &Build) -> StoreResult<()> {
    let opt = |v: Option<u64>, what: &str| v.map(|v| int(v, what)).transpose();
    sqlx::query(
        "UPDATE builds SET state = $2, attempt = $3, worker = $4, approved_by = $5, \
         reason = $6, started_at_ms = $7, finished_at_ms = $8 WHERE id = $1",
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

#[cfg(test)]
mod tests {
    use super::{PostgresStore, redact, transient};

    /// A server connects from a spawned task: the future must be `Send` (sqlx's generic
    /// executors make that easy to lose).
    #[test]
    fn connect_is_send() {
        fn send<T: Send>(_: &T) {}
        send(&PostgresStore::connect("postgres://localhost/ci"));
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        let cases = [
            (
                "postgres://app:s3cret@db.example:5432/ci",
                "postgres://app@db.example:5432/ci",
            ),
            ("postgres://app@db:5432/ci", "postgres://app@db:5432/ci"),
            ("postgres://db/ci", "postgres://db/ci"),
            (
                "postgresql://app:pa/ss@w@rd@db/ci?sslmode=require",
                "postgresql://app@db/ci?sslmode=require",
            ),
            (
                "postgres://db/ci?password=s3cret&sslmode=disable",
                "postgres://db/ci?sslmode=disable",
            ),
            ("postgres://db/ci?sslpassword=s3cret", "postgres://db/ci"),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
            assert!(!redact(url).contains("s3cret"), "{url}");
        }
    }

    #[test]
    fn transient_sqlstates() {
        for code in [
            "08006", "08001", "40001", "40P01", "55P03", "57P01", "53300", "25006",
        ] {
            assert!(transient(code), "{code}");
        }
        for code in ["23505", "42P01", "28P01", "3D000", "22021"] {
            assert!(!transient(code), "{code}");
        }
    }
}
