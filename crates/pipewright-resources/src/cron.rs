//! `cron`: a version per tick of a schedule.

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use pipewright_core::Schedule;
use pipewright_core::{
    Ctx, Error, ErrorKind, Metadata, Params, Resource, ResourceCapabilities, Result, Version,
};
use std::path::Path;

/// Yields the newest tick at or before now that is newer than the last version; ticks missed
/// while nobody checked collapse into that one version.
#[derive(Debug, Clone)]
pub struct CronResource {
    schedule: Schedule,
}

impl CronResource {
    /// A resource for `schedule`.
    pub fn new(schedule: Schedule) -> Self {
        Self { schedule }
    }

    /// From `params { schedule = "0 3 * * *" }` (or `@every 1h`).
    pub fn from_params(params: &Params) -> Result<Self> {
        let s = crate::required(params, "schedule", "cron")?;
        let schedule = Schedule::parse(&s)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("cron `schedule`: {e}")))?;
        Ok(Self::new(schedule))
    }

    /// The newest tick at or before `now`.
    pub fn tick_at_or_before(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        match &self.schedule {
            Schedule::Every(d) => {
                let step = i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
                let ms = now.timestamp_millis();
                Utc.timestamp_millis_opt(ms - ms.rem_euclid(step))
                    .single()
                    .ok_or_else(|| Error::new(ErrorKind::Other, "time out of range"))
            }
            Schedule::Cron(expr) => {
                let cron = croner::parser::CronParser::new()
                    .parse(expr)
                    .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.to_string()))?;
                cron.find_previous_occurrence(&now, true)
                    .map_err(|e| Error::new(ErrorKind::Other, e.to_string()))
            }
        }
    }
}

#[async_trait]
impl Resource for CronResource {
    fn capabilities(&self) -> ResourceCapabilities {
        ResourceCapabilities::READ_ONLY
    }

    async fn check(&self, _ctx: &Ctx, last: Option<&Version>) -> Result<Vec<Version>> {
        let tick = self.tick_at_or_before(Utc::now())?.to_rfc3339();
        // RFC 3339 in UTC sorts as time does.
        if last
            .and_then(|v| v.get("time"))
            .is_some_and(|t| t >= tick.as_str())
        {
            return Ok(Vec::new());
        }
        Ok(vec![Version::from_pairs([("time", tick)])])
    }

    async fn get(&self, _ctx: &Ctx, version: &Version, dest: &Path) -> Result<Metadata> {
        let time = version.get("time").unwrap_or_default();
        tokio::fs::write(dest.join("time"), format!("{time}\n")).await?;
        let mut m = Metadata::new();
        m.push("time", time);
        Ok(m)
    }

    async fn put(&self, _ctx: &Ctx, _src: &Path, _params: &Params) -> Result<Vec<Version>> {
        Err(Error::unsupported("put", "the cron resource"))
    }
}
