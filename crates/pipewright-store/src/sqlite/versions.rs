//! [`VersionStore`] on SQLite.

use super::{SqliteStore, col, commit, db_error, from_json, int, limit, to_json, uint};
use crate::StoreResult;
use crate::sql::v_err;
use async_trait::async_trait;
use pipewright_core::Version;
use pipewright_versions::{BuildRecord, VersionId, VersionStore};
use std::collections::BTreeSet;

type VResult<T> = pipewright_versions::StoreResult<T>;

fn vid(v: i64) -> StoreResult<VersionId> {
    uint(v, "version id").map(VersionId)
}

impl SqliteStore {
    async fn save(&self, resource: &str, versions: &[Version]) -> StoreResult<Vec<VersionId>> {
        let what = format!("save {} versions of {resource}", versions.len());
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        let mut ids = Vec::with_capacity(versions.len());
        for v in versions {
            let json = to_json(v, "version")?;
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM versions WHERE resource = ?1 AND version = ?2")
                    .bind(resource)
                    .bind(&json)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db_error(&what, e))?;
            let id = match found {
                Some(id) => id,
                None => sqlx::query_scalar(
                    "INSERT INTO versions (resource, id, version) VALUES (?1, \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM versions WHERE resource = ?1), ?2) \
                     RETURNING id",
                )
                .bind(resource)
                .bind(&json)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(&what, e))?,
            };
            ids.push(vid(id)?);
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
            "SELECT id, version FROM versions WHERE resource = ?1 {filter} \
             ORDER BY id DESC LIMIT ?3"
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
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        sqlx::query(
            "INSERT INTO version_builds (job, number, status, passes) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (job, number) DO UPDATE SET status = excluded.status, \
             passes = excluded.passes",
        )
        .bind(&b.job)
        .bind(number)
        .bind(b.status.as_str())
        .bind(b.status.passes())
        .execute(&mut *tx)
        .await
        .map_err(|e| db_error(&what, e))?;
        sqlx::query("DELETE FROM version_touches WHERE job = ?1 AND number = ?2")
            .bind(&b.job)
            .bind(number)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(&what, e))?;
        let mut touches: Vec<(&str, VersionId, bool)> = b
            .inputs
            .iter()
            .map(|(r, v)| (r.as_str(), *v, false))
            .collect();
        for (r, vs) in &b.outputs {
            touches.extend(vs.iter().map(|v| (r.as_str(), *v, true)));
        }
        for (resource, v, output) in touches {
            sqlx::query(
                "INSERT INTO version_touches (job, number, resource, version_id, output) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .bind(&b.job)
            .bind(number)
            .bind(resource)
            .bind(int(v.0, "version id")?)
            .bind(output)
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
             WHERE t.job = ?1 AND t.resource = ?2 AND b.passes = 1",
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
        let _w = self.write.lock().await;
        let mut tx = self.begin(&what).await?;
        let q = match version {
            Some(v) => sqlx::query(
                "INSERT INTO pins (resource, version_id) VALUES (?1, ?2) \
                 ON CONFLICT (resource) DO UPDATE SET version_id = excluded.version_id",
            )
            .bind(resource)
            .bind(int(v.0, "version id")?),
            None => sqlx::query("DELETE FROM pins WHERE resource = ?1").bind(resource),
        };
        q.execute(&mut *tx).await.map_err(|e| db_error(&what, e))?;
        commit(tx, &what).await
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
impl VersionStore for SqliteStore {
    async fn save_versions(&self, resource: &str, versions: &[Version]) -> VResult<Vec<VersionId>> {
        self.save(resource, versions).await.map_err(v_err)
    }

    async fn latest_version(&self, resource: &str) -> VResult<Option<(VersionId, Version)>> {
        let what = format!("read the latest version of {resource}");
        let page = self
            .versions_where(&what, resource, "AND ?2 IS NULL", None, 1)
            .await;
        page.map(|p| p.into_iter().next()).map_err(v_err)
    }

    async fn version(&self, resource: &str, id: VersionId) -> VResult<Option<Version>> {
        let what = format!("read version {} of {resource}", id.0);
        let key = int(id.0, "version id").map_err(v_err)?;
        let page = self
            .versions_where(&what, resource, "AND id = ?2", Some(key), 1)
            .await;
        page.map(|p| p.into_iter().next().map(|(_, v)| v))
            .map_err(v_err)
    }

    async fn find_version(&self, resource: &str, version: &Version) -> VResult<Option<VersionId>> {
        let what = format!("find a version of {resource}");
        let json = to_json(version, "version").map_err(v_err)?;
        let mut conn = self.read(&what).await.map_err(v_err)?;
        let id: Option<i64> =
            sqlx::query_scalar("SELECT id FROM versions WHERE resource = ?1 AND version = ?2")
                .bind(resource)
                .bind(json)
                .fetch_optional(&mut *conn)
                .await
                .map_err(|e| v_err(db_error(&what, e)))?;
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
        self.versions_where(&what, resource, "AND (?2 IS NULL OR id < ?2)", key, n)
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
                "SELECT version_id FROM pins WHERE resource = ?1",
                resource,
            )
            .await
            .map_err(v_err)?;
        id.map(vid).transpose().map_err(v_err)
    }
}
