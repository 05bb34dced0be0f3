//! [`BuildStore`] and [`EventStore`] on PostgreSQL: each write locks the build's row in its
//! transaction, applies the shared rules and writes it back.

use super::{
    BUILD_COLUMNS, Lock, PostgresStore, build_from_row, col, commit, db_error, ensure_build,
    existing_build, load_build, write_build,
};
use crate::sql::{int, limit, to_json, uint};
use crate::{
    Build, BuildId, BuildState, BuildStore, EventRecord, EventStore, NewBuild, StepSummary,
    StoreError, StoreResult, rules,
};
use async_trait::async_trait;
use pipewright_core::{BuildStatus, StepId, StepStatus};
use sqlx::postgres::{PgArguments, PgRow};

impl PostgresStore {
    /// One transaction: lock build `id`, apply `rule`, write it back when it changed it.
    async fn transition(
        &self,
        id: BuildId,
        what: &str,
        rule: impl FnOnce(&mut Build) -> StoreResult<()> + Send,
    ) -> StoreResult<Build> {
        let mut tx = self.begin(what).await?;
        let mut b = existing_build(&mut tx, id, Lock::Update).await?;
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
        let mut tx = self.begin(&what).await?;
        if let Some(r) = new.rerun_of {
            load_build(&mut tx, r, Lock::None)
                .await?
                .ok_or_else(|| rules::no_rerun_target(r))?;
        }
        // The one row of `build_ids` is held until commit: creates queue here, and each one
        // then reads every build committed before it.
        let id: i64 = sqlx::query_scalar("UPDATE build_ids SET last = last + 1 RETURNING last")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        let number: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE pipeline = $1 AND job = $2",
        )
        .bind(&new.pipeline)
        .bind(&new.job)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        let mut b = rules::created(
            BuildId(uint(id, "build id")?),
            uint(number, "build number")?,
            new,
        );
        let rerun_of = b.rerun_of.map(|r| int(r.0, "build id")).transpose()?;
        sqlx::query(
            "INSERT INTO builds (id, pipeline, job, number, state, attempt, worker, inputs, \
             input_values, rerun_of, trigger_text, approvals_required, approved_by, reason, \
             created_at_ms) VALUES ($1, $2, $3, $4, $5, 0, NULL, $6, $7, $8, $9, $10, '[]', \
             NULL, $11)",
        )
        .bind(id)
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
        .execute(&mut *tx)
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
        query: sqlx::query::Query<'q, sqlx::Postgres, PgArguments>,
    ) -> StoreResult<Vec<Build>> {
        let mut conn = self.read(what).await?;
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error(what, e))?;
        rows.iter().map(build_from_row).collect()
    }
}

fn step_from_row(row: &PgRow) -> StoreResult<StepSummary> {
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
impl BuildStore for PostgresStore {
    async fn create_build(&self, new: NewBuild) -> StoreResult<Build> {
        rules::validate_new(&new)?;
        self.insert_build(new).await
    }

    async fn build(&self, id: BuildId) -> StoreResult<Option<Build>> {
        let mut conn = self.read(&format!("read build {id}")).await?;
        load_build(&mut conn, id, Lock::None).await
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
            "SELECT {BUILD_COLUMNS} FROM builds WHERE pipeline = $1 AND job = $2 \
             AND ($3::BIGINT IS NULL OR number < $3) ORDER BY number DESC LIMIT $4"
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
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let sql = format!(
            "SELECT {BUILD_COLUMNS} FROM builds WHERE id > $1 AND state = ANY($3) \
             ORDER BY id LIMIT $2"
        );
        let q = sqlx::query(&sql).bind(after).bind(limit(n)).bind(states);
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
        let mut tx = self.begin(&what).await?;
        // The build's lock also orders the steps' positions.
        let b = existing_build(&mut tx, id, Lock::Update).await?;
        rules::record_step(&b, attempt, &step.step)?;
        sqlx::query(
            "INSERT INTO build_steps (build_id, step, position, status, attempts, duration_ms, \
             reason) VALUES ($1, $2, \
             (SELECT COALESCE(MAX(position), 0) + 1 FROM build_steps WHERE build_id = $1), \
             $3, $4, $5, $6) \
             ON CONFLICT (build_id, step) DO UPDATE SET status = EXCLUDED.status, \
             attempts = EXCLUDED.attempts, duration_ms = EXCLUDED.duration_ms, \
             reason = EXCLUDED.reason",
        )
        .bind(int(id.0, "build id")?)
        .bind(to_json(&step.step, "step id")?)
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
        ensure_build(&mut conn, id).await?;
        let rows = sqlx::query(
            "SELECT step, status, attempts, duration_ms, reason FROM build_steps \
             WHERE build_id = $1 ORDER BY position",
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
        let mut tx = self.begin(&what).await?;
        let mut b = existing_build(&mut tx, id, Lock::Update).await?;
        rules::requeue(&mut b, attempt)?;
        write_build(&mut tx, &b).await?;
        sqlx::query("DELETE FROM build_steps WHERE build_id = $1")
            .bind(int(id.0, "build id")?)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        commit(tx, &what).await?;
        Ok(b)
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_events(
        &self,
        id: BuildId,
        attempt: u32,
        events: &[EventRecord],
    ) -> StoreResult<usize> {
        let what = format!("append {} events to build {id}", events.len());
        let mut seqs = Vec::with_capacity(events.len());
        let mut bodies = Vec::with_capacity(events.len());
        let mut logs = Vec::with_capacity(events.len());
        for e in events {
            seqs.push(int(e.seq, "event seq")?);
            bodies.push(to_json(&e.body, "event")?);
            logs.push(e.log.as_deref().map(str::as_bytes));
        }
        let mut tx = self.begin(&what).await?;
        // Shared: batches of one build go on side by side, while a claim or re-queue (which
        // changes the attempt) waits for them, and they for it.
        rules::fence(&existing_build(&mut tx, id, Lock::Share).await?, attempt)?;
        if events.is_empty() {
            commit(tx, &what).await?;
            return Ok(0);
        }
        // One statement for the batch. Rows go in by seq, so concurrent overlapping batches
        // wait for each other in one order and cannot deadlock; within the batch the first
        // event of a seq is the one kept, as every later write of it is.
        let done = sqlx::query(
            "INSERT INTO events (build_id, seq, body, log) \
             SELECT $1, e.seq, e.body, e.log \
             FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BYTEA[]) WITH ORDINALITY \
             AS e (seq, body, log, ord) \
             ORDER BY e.seq, e.ord \
             ON CONFLICT (build_id, seq) DO NOTHING",
        )
        .bind(int(id.0, "build id")?)
        .bind(seqs)
        .bind(bodies)
        .bind(logs)
        .execute(&mut *tx)
        .await
        .map_err(|err| db_error(&what, err))?;
        commit(tx, &what).await?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(0))
    }

    async fn events_after(
        &self,
        id: BuildId,
        after: Option<u64>,
        n: usize,
    ) -> StoreResult<Vec<EventRecord>> {
        let what = format!("read events of build {id}");
        let mut conn = self.read(&what).await?;
        ensure_build(&mut conn, id).await?;
        let rows = sqlx::query(
            "SELECT seq, body, log FROM events WHERE build_id = $1 \
             AND ($2::BIGINT IS NULL OR seq > $2) ORDER BY seq LIMIT $3",
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
                    body: crate::sql::from_json(&col::<String>(row, "body")?, "event")?,
                    log: col::<Option<Vec<u8>>>(row, "log")?
                        .map(|bytes| log_string(bytes, id))
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn last_event_seq(&self, id: BuildId) -> StoreResult<Option<u64>> {
        let what = format!("read the last event of build {id}");
        let mut conn = self.read(&what).await?;
        ensure_build(&mut conn, id).await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE build_id = $1")
                .bind(int(id.0, "build id")?)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| db_error(&what, e))?;
        last.map(|l| uint(l, "event seq")).transpose()
    }

    async fn log_text(&self, id: BuildId) -> StoreResult<String> {
        let what = format!("read the log of build {id}");
        let mut conn = self.read(&what).await?;
        ensure_build(&mut conn, id).await?;
        let chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT log FROM events WHERE build_id = $1 AND log IS NOT NULL ORDER BY seq",
        )
        .bind(int(id.0, "build id")?)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(&what, e))?;
        log_string(chunks.concat(), id)
    }
}

/// Stored log bytes as text (they were written from a `String`).
fn log_string(bytes: Vec<u8>, id: BuildId) -> StoreResult<String> {
    String::from_utf8(bytes)
        .map_err(|e| StoreError::Invalid(format!("the stored log of build {id} is not UTF-8: {e}")))
}
