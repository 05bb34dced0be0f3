//! [`BuildStore`] and [`EventStore`] on SQLite: each write reads the build in its transaction,
//! applies the shared rules and writes it back.

use super::{
    BUILD_COLUMNS, SqliteStore, build_from_row, col, commit, db_error, existing_build, int, limit,
    load_build, to_json, uint, write_build,
};
use crate::{
    Build, BuildId, BuildState, BuildStore, EventRecord, EventStore, NewBuild, StepSummary,
    StoreError, StoreResult, rules,
};
use async_trait::async_trait;
use pipewright_core::{BuildStatus, StepId, StepStatus};
use sqlx::Row;

impl SqliteStore {
    /// One transaction: read build `id`, apply `rule`, write it back when it changed it.
    async fn transition(
        &self,
        id: BuildId,
        what: &str,
        rule: impl FnOnce(&mut Build) -> StoreResult<()> + Send,
    ) -> StoreResult<Build> {
        let _w = self.write.lock().await;
        let mut tx = self.begin(what).await?;
        let mut b = existing_build(&mut tx, id).await?;
        let before = b.clone();
        rule(&mut b)?;
        if b != before {
            write_build(&mut tx, &b).await?;
        }
        commit(tx, what).await?;
        Ok(b)
    }

    async fn insert_build(&self, new: NewBuild) -> StoreResult<Build> {
        let what = format!("create a build of {}/{}", new.pipeline, new.job);
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        if let Some(r) = new.rerun_of {
            load_build(&mut tx, r)
                .await?
                .ok_or_else(|| rules::no_rerun_target(r))?;
        }
        let number: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE pipeline = ?1 AND job = ?2",
        )
        .bind(&new.pipeline)
        .bind(&new.job)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        let mut b = rules::created(BuildId(0), uint(number, "build number")?, new);
        let rerun_of = b.rerun_of.map(|r| int(r.0, "build id")).transpose()?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO builds (pipeline, job, number, state, attempt, worker, inputs, \
             input_values, rerun_of, trigger_text, approvals_required, approved_by, reason, \
             created_at_ms) VALUES (?1, ?2, ?3, ?4, 0, NULL, ?5, ?6, ?7, ?8, ?9, '[]', NULL, ?10) \
             RETURNING id",
        )
        .bind(&b.pipeline)
        .bind(&b.job)
        .bind(number)
        .bind(b.state.as_str())
        .bind(to_json(&b.inputs, "inputs")?)
        .bind(to_json(&b.input_values, "input values")?)
        .bind(rerun_of)
        .bind(&b.trigger)
        .bind(i64::from(b.approvals_required))
        .bind(int(b.created_at_ms, "creation time")?)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        commit(tx, &what).await?;
        b.id = BuildId(uint(id, "build id")?);
        rules::log_created(&b);
        Ok(b)
    }

    async fn query_builds<'q>(
        &self,
        what: &str,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> StoreResult<Vec<Build>> {
        let mut conn = self.read(what).await?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error(what, e))?;
        rows.iter().map(build_from_row).collect()
    }
}

fn step_from_row(row: &sqlx::sqlite::SqliteRow) -> StoreResult<StepSummary> {
    let status: String = col(row, "status")?;
    Ok(StepSummary {
        // Stored as the id's JSON (`{"path":[…],"role":"step"}`): unique per step of a build.
        step: {
            let text: String = col(row, "step")?;
            serde_json::from_str::<StepId>(&text)
                .map_err(|_| StoreError::Invalid(format!("stored step id `{text}`")))?
        },
        status: serde_json::from_value::<StepStatus>(serde_json::Value::String(status.clone()))
            .map_err(|_| StoreError::Invalid(format!("stored step status `{status}`")))?,
        attempts: uint(col(row, "attempts")?, "step attempts")?,
        duration_ms: col::<Option<i64>>(row, "duration_ms")?
            .map(|d| uint(d, "step duration"))
            .transpose()?,
        reason: col(row, "reason")?,
    })
}

#[async_trait]
impl BuildStore for SqliteStore {
    async fn create_build(&self, new: NewBuild) -> StoreResult<Build> {
        rules::validate_new(&new)?;
        self.insert_build(new).await
    }

    async fn build(&self, id: BuildId) -> StoreResult<Option<Build>> {
        let mut conn = self.read(&format!("read build {id}")).await?;
        load_build(&mut conn, id).await
    }

    async fn job_builds(
        &self,
        pipeline: &str,
        job: &str,
        n: usize,
        before: Option<u64>,
    ) -> StoreResult<Vec<Build>> {
        let before = before.map(|b| int(b, "build number")).transpose()?;
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE pipeline = ?1 AND job = ?2 \
             AND (?3 IS NULL OR number < ?3) ORDER BY number DESC LIMIT ?4"
        );
        let what = format!("list builds of {pipeline}/{job}");
        let q = sqlx::query(&sql)
            .bind(pipeline)
            .bind(job)
            .bind(before)
            .bind(limit(n));
        self.query_builds(&what, q).await
    }

    async fn builds_in_state(
        &self,
        states: &[BuildState],
        n: usize,
        after: Option<BuildId>,
    ) -> StoreResult<Vec<Build>> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let after = int(after.map_or(0, |a| a.0), "build id")?;
        let marks = (0..states.len())
            .map(|i| format!("?{}", i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE id > ?1 AND state IN ({marks}) \
             ORDER BY id LIMIT ?2"
        );
        let q = states
            .iter()
            .fold(sqlx::query(&sql).bind(after).bind(limit(n)), |q, s| {
                q.bind(s.as_str())
            });
        self.query_builds("list builds by state", q).await
    }

    async fn approve_build(&self, id: BuildId, by: &str) -> StoreResult<Build> {
        self.transition(id, &format!("approve build {id}"), |b| {
            rules::approve(b, by)
        })
        .await
    }

    async fn claim_build(&self, id: BuildId, attempt: u32, worker: &str) -> StoreResult<Build> {
        let what = format!("claim build {id} attempt {attempt}");
        self.transition(id, &what, |b| rules::claim(b, attempt, worker))
            .await
    }

    async fn start_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build> {
        let what = format!("start build {id} attempt {attempt}");
        self.transition(id, &what, |b| rules::start(b, attempt))
            .await
    }

    async fn record_step(&self, id: BuildId, attempt: u32, step: &StepSummary) -> StoreResult<()> {
        let what = format!("record step `{}` of build {id}", step.step);
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        let b = existing_build(&mut tx, id).await?;
        rules::record_step(&b, attempt, &step.step)?;
        sqlx::query(
            "INSERT INTO build_steps (build_id, step, position, status, attempts, duration_ms, \
             reason) VALUES (?1, ?2, \
             (SELECT COALESCE(MAX(position), 0) + 1 FROM build_steps WHERE build_id = ?1), \
             ?3, ?4, ?5, ?6) \
             ON CONFLICT (build_id, step) DO UPDATE SET status = excluded.status, \
             attempts = excluded.attempts, duration_ms = excluded.duration_ms, \
             reason = excluded.reason",
        )
        .bind(int(id.0, "build id")?)
        .bind(
            serde_json::to_string(&step.step)
                .map_err(|e| StoreError::Invalid(format!("step id: {e}")))?,
        )
        .bind(step.status.as_str())
        .bind(i64::from(step.attempts))
        .bind(step.duration_ms.map(|d| int(d, "duration")).transpose()?)
        .bind(step.reason.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        commit(tx, &what).await
    }

    async fn build_steps(&self, id: BuildId) -> StoreResult<Vec<StepSummary>> {
        let what = format!("read steps of build {id}");
        let mut conn = self.read(&what).await?;
        existing_build(&mut conn, id).await?;
        let rows = sqlx::query(
            "SELECT step, status, attempts, duration_ms, reason FROM build_steps \
             WHERE build_id = ?1 ORDER BY position",
        )
        .bind(int(id.0, "build id")?)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(&what, e))?;
        rows.iter().map(step_from_row).collect()
    }

    async fn finish_build(
        &self,
        id: BuildId,
        attempt: u32,
        status: BuildStatus,
        reason: Option<String>,
    ) -> StoreResult<Build> {
        let what = format!("finish build {id} attempt {attempt} as {status}");
        self.transition(id, &what, |b| {
            rules::finish(b, attempt, status, reason).map(|_| ())
        })
        .await
    }

    async fn requeue_build(&self, id: BuildId, attempt: u32) -> StoreResult<Build> {
        let what = format!("re-queue build {id} attempt {attempt}");
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        let mut b = existing_build(&mut tx, id).await?;
        rules::requeue(&mut b, attempt)?;
        write_build(&mut tx, &b).await?;
        sqlx::query("DELETE FROM build_steps WHERE build_id = ?1")
            .bind(int(id.0, "build id")?)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        commit(tx, &what).await?;
        Ok(b)
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn append_events(
        &self,
        id: BuildId,
        attempt: u32,
        events: &[EventRecord],
    ) -> StoreResult<usize> {
        let what = format!("append {} events to build {id}", events.len());
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        rules::fence(&existing_build(&mut tx, id).await?, attempt)?;
        let build = int(id.0, "build id")?;
        let mut new = 0;
        for e in events {
            let done = sqlx::query(
                "INSERT INTO events (build_id, seq, body, log) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (build_id, seq) DO NOTHING",
            )
            .bind(build)
            .bind(int(e.seq, "event seq")?)
            .bind(to_json(&e.body, "event")?)
            .bind(e.log.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|err| db_error(&what, err))?;
            new += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        commit(tx, &what).await?;
        Ok(new)
    }

    async fn events_after(
        &self,
        id: BuildId,
        after: Option<u64>,
        n: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let what = format!("read events of build {id}");
        let mut conn = self.read(&what).await?;
        existing_build(&mut conn, id).await?;
        let rows = sqlx::query(
            "SELECT seq, body, log FROM events WHERE build_id = ?1 \
             AND (?2 IS NULL OR seq > ?2) ORDER BY seq LIMIT ?3",
        )
        .bind(int(id.0, "build id")?)
        .bind(after.map(|a| int(a, "event seq")).transpose()?)
        .bind(limit(n))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(&what, e))?;
        rows.iter()
            .map(|row| {
                Ok(EventRecord {
                    seq: uint(col(row, "seq")?, "event seq")?,
                    body: super::from_json(&col::<String>(row, "body")?, "event")?,
                    log: col(row, "log")?,
                })
            })
            .collect()
    }

    async fn last_event_seq(&self, id: BuildId) -> StoreResult<Option<u64>> {
        let what = format!("read the last event of build {id}");
        let mut conn = self.read(&what).await?;
        existing_build(&mut conn, id).await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE build_id = ?1")
                .bind(int(id.0, "build id")?)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error(&what, e))?;
        last.map(|l| uint(l, "event seq")).transpose()
    }

    async fn log_text(&self, id: BuildId) -> StoreResult<String> {
        let what = format!("read the log of build {id}");
        let mut conn = self.read(&what).await?;
        existing_build(&mut conn, id).await?;
        let rows = sqlx::query(
            "SELECT log FROM events WHERE build_id = ?1 AND log IS NOT NULL ORDER BY seq",
        )
        .bind(int(id.0, "build id")?)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(&what, e))?;
        let mut text = String::new();
        for row in &rows {
            text.push_str(
                row.try_get::<&str, _>("log")
                    .map_err(|e| db_error(&what, e))?,
            );
        }
        Ok(text)
    }
}
