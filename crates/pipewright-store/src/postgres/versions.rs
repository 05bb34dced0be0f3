//! [`VersionStore`] on PostgreSQL.

use super::{PostgresStore, col, commit, db_error};
use crate::StoreResult;
use crate::sql::{from_json, int, limit, to_json, uint, v_err};
use async_trait::async_trait;
use pipewright_core::Version;
use pipewright_versions::{BuildRecord, VersionId, VersionStore};
use std::collections::BTreeSet;

type VResult<T> = pipewright_versions::StoreResult<T>;

fn vid(v: i64) -> StoreResult<VersionId> {
    uint(v, "version id").map(VersionId)
}

/// Finds a version by value: through the digest index, then compared whole.
const FIND: &str = "SELECT id FROM versions WHERE resource = $1 AND md5(version) = md5($2) \
     AND version = $2";

impl PostgresStore {
    async fn save(&self, resource: &str, versions: &[Version]) -> StoreResult<Vec<VersionId>> {
        let what = format!("save {} versions of {resource}", versions.len());
        let mut tx = self.begin(&what).await?;
        // The resource's row of `version_ids` is held until commit: saves of one resource
        // queue here, and each then sees the versions saved before it.
        let mut last: i64 = sqlx::query_scalar(
            "INSERT INTO version_ids (resource, last) VALUES ($1, 0) \
             ON CONFLICT (resource) DO UPDATE SET last = version_ids.last RETURNING last",
        )
        .bind(resource)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        let first = last;
        let mut ids = Vec::with_capacity(versions.len());
        for v in versions {
            let json = to_json(v, "version")?;
            let found: Option<i64> = sqlx::query_scalar(FIND)
                .bind(resource)
                .bind(&json)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error(&what, e))?;
            let id = match found {
                Some(id) => id,
                None => {
                    last += 1;
                    sqlx::query("INSERT INTO versions (resource, id, version) VALUES ($1, $2, $3)")
                        .bind(resource)
                        .bind(last)
                        .bind(&json)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_error(&what, e))?;
                    last
                }
            };
            ids.push(vid(id)?);
        }
        if last != first {
            sqlx::query("UPDATE version_ids SET last = $2 WHERE resource = $1")
                .bind(resource)
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(&what, e))?;
        }
        commit(tx, &what).await?;
        Ok(ids)
    }

    async fn versions_where(
        &self,
        what: &str,
        resource: &str,
        filter: &str,
        key: Option<i64>,
        n: usize,
    ) -> StoreResult<Vec<(VersionId, Version)>> {
        let sql = format!(
            "SELECT id, version FROM versions WHERE resource = $1 {filter} \
             ORDER BY id DESC LIMIT $3"
        );
        let mut conn = self.read(what).await?;
        let rows = sqlx::query(&sql)
            .bind(resource)
            .bind(key)
            .bind(limit(n))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| db_error(what, e))?;
        rows.iter()
            .map(|r| {
                Ok((
                    vid(col(r, "id")?)?,
                    from_json(&col::<String>(r, "version")?, "version")?,
                ))
            })
            .collect()
    }

    async fn record(&self, b: BuildRecord) -> StoreResult<()> {
        let what = format!("record build {} of {}", b.number, b.job);
        let number = int(b.number, "build number")?;
        let mut resources = Vec::new();
        let mut ids = Vec::new();
        let mut outputs = Vec::new();
        for (r, v) in &b.inputs {
            resources.push(r.as_str());
            ids.push(int(v.0, "version id")?);
            outputs.push(false);
        }
        for (r, vs) in &b.outputs {
            for v in vs {
                resources.push(r.as_str());
                ids.push(int(v.0, "version id")?);
                outputs.push(true);
            }
        }
        let mut tx = self.begin(&what).await?;
        // The upsert holds the build's row until commit, so records of one build replace
        // each other whole.
        sqlx::query(
            "INSERT INTO version_builds (job, number, status, passes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, number) DO UPDATE SET status = EXCLUDED.status, \
             passes = EXCLUDED.passes",
        )
        .bind(&b.job)
        .bind(number)
        .bind(b.status.as_str())
        .bind(b.status.passes())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        sqlx::query("DELETE FROM version_touches WHERE job = $1 AND number = $2")
            .bind(&b.job)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        if !resources.is_empty() {
            sqlx::query(
                "INSERT INTO version_touches (job, number, resource, version_id, output) \
                 SELECT $1, $2, t.resource, t.version_id, t.output \
                 FROM UNNEST($3::TEXT[], $4::BIGINT[], $5::BOOLEAN[]) \
                 AS t (resource, version_id, output)",
            )
            .bind(&b.job)
            .bind(number)
            .bind(resources)
            .bind(ids)
            .bind(outputs)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        }
        commit(tx, &what).await
    }

    async fn passed(&self, job: &str, resource: &str) -> StoreResult<BTreeSet<VersionId>> {
        let what = format!("read versions of {resource} that passed {job}");
        let mut conn = self.read(&what).await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT t.version_id FROM version_touches t JOIN version_builds b \
             ON b.job = t.job AND b.number = t.number \
             WHERE t.job = $1 AND t.resource = $2 AND b.passes",
        )
        .bind(job)
        .bind(resource)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| db_error(&what, e))?;
        ids.into_iter().map(vid).collect()
    }

    async fn set_pin(&self, resource: &str, version: Option<VersionId>) -> StoreResult<()> {
        let what = format!("pin {resource}");
        let q = match version {
            Some(v) => sqlx::query(
                "INSERT INTO pins (resource, version_id) VALUES ($1, $2) \
                 ON CONFLICT (resource) DO UPDATE SET version_id = EXCLUDED.version_id",
            )
            .bind(resource)
            .bind(int(v.0, "version id")?),
            None => sqlx::query("DELETE FROM pins WHERE resource = $1").bind(resource),
        };
        let mut conn = self.read(&what).await?;
        q.execute(&mut *conn)
            .await
            .map_err(|e| db_error(&what, e))?;
        Ok(())
    }

    /// The id of the version whose JSON is `json`.
    async fn find_id(&self, what: &str, resource: &str, json: &str) -> StoreResult<Option<i64>> {
        let mut conn = self.read(what).await?;
        sqlx::query_scalar(FIND)
            .bind(resource)
            .bind(json)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error(what, e))
    }

    async fn scalar(&self, what: &str, sql: &str, resource: &str) -> StoreResult<Option<i64>> {
        let mut conn = self.read(what).await?;
        sqlx::query_scalar(sql)
            .bind(resource)
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error(what, e))
    }
}

#[async_trait]
impl VersionStore for PostgresStore {
    async fn save_versions(&self, resource: &str, versions: &[Version]) -> VResult<Vec<VersionId>> {
        self.save(resource, versions).await.map_err(v_err)
    }

    async fn latest_version(&self, resource: &str) -> VResult<Option<(VersionId, Version)>> {
        let what = format!("read the latest version of {resource}");
        let page = self
            .versions_where(&what, resource, "AND $2::BIGINT IS NULL", None, 1)
            .await;
        page.map(|p| p.into_iter().next()).map_err(v_err)
    }

    async fn version(&self, resource: &str, id: VersionId) -> VResult<Option<Version>> {
        let what = format!("read version {} of {resource}", id.0);
        let key = int(id.0, "version id").map_err(v_err)?;
        let page = self
            .versions_where(&what, resource, "AND id = $2", Some(key), 1)
            .await;
        page.map(|p| p.into_iter().next().map(|(_, v)| v))
            .map_err(v_err)
    }

    async fn find_version(&self, resource: &str, version: &Version) -> VResult<Option<VersionId>> {
        let what = format!("find a version of {resource}");
        let json = to_json(version, "version").map_err(v_err)?;
        let id = self.find_id(&what, resource, &json).await.map_err(v_err)?;
        id.map(vid).transpose().map_err(v_err)
    }

    async fn versions(
        &self,
        resource: &str,
        n: usize,
        before: Option<VersionId>,
    ) -> VResult<Vec<(VersionId, Version)>> {
        let what = format!("list versions of {resource}");
        let key = before
            .map(|b| int(b.0, "version id"))
            .transpose()
            .map_err(v_err)?;
        self.versions_where(
            &what,
            resource,
            "AND ($2::BIGINT IS NULL OR id < $2)",
            key,
            n,
        )
        .await
        .map_err(v_err)
    }

    async fn record_build(&self, build: BuildRecord) -> VResult<()> {
        self.record(build).await.map_err(v_err)
    }

    async fn passed_versions(&self, job: &str, resource: &str) -> VResult<BTreeSet<VersionId>> {
        self.passed(job, resource).await.map_err(v_err)
    }

    async fn pin(&self, resource: &str, version: Option<VersionId>) -> VResult<()> {
        self.set_pin(resource, version).await.map_err(v_err)
    }

    async fn pinned(&self, resource: &str) -> VResult<Option<VersionId>> {
        let what = format!("read the pin of {resource}");
        let id = self
            .scalar(
                &what,
                "SELECT version_id FROM pins WHERE resource = $1",
                resource,
            )
            .await
            .map_err(v_err)?;
        id.map(vid).transpose().map_err(v_err)
    }
}
