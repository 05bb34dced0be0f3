//! Pipelines while the server runs: loaded at start, re-read when their file changes (and on
//! SIGHUP). A valid new version takes effect for new builds; an invalid one is rejected with
//! its diagnostics, kept for the API, and the old one keeps running.

use crate::hub::{Hub, PipelineEntry};
use pipewright_core::CancellationToken;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn mtime(file: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

impl Hub {
    /// Loads `file` as pipeline `name` and starts its check loops. An invalid file is an error
    /// carrying its diagnostics (at start, the server refuses to run with it).
    pub fn add_pipeline(self: &Arc<Self>, name: &str, file: &Path) -> Result<(), String> {
        let stamp = mtime(file);
        let pipeline = (self.loader)(file)?;
        self.install(name, file.to_path_buf(), pipeline, stamp);
        Ok(())
    }

    fn install(
        self: &Arc<Self>,
        name: &str,
        file: PathBuf,
        pipeline: pipewright_config::Pipeline,
        stamp: Option<std::time::SystemTime>,
    ) {
        let checks = self.shutdown.child_token();
        let entry = PipelineEntry {
            name: name.to_owned(),
            file,
            pipeline: Arc::new(pipeline),
            error: None,
            mtime: stamp,
            checks: checks.clone(),
        };
        let resources: Vec<String> = entry.pipeline.resources.keys().cloned().collect();
        let old = match self.pipelines.write() {
            Ok(mut p) => p.insert(name.to_owned(), entry),
            Err(_) => return,
        };
        if let Some(old) = old {
            old.checks.cancel();
        }
        for rid in resources {
            tokio::spawn(crate::checks::check_loop(
                self.clone(),
                name.to_owned(),
                rid,
                checks.clone(),
            ));
        }
        let hub = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move { hub.evaluate_pipeline(&name).await });
    }

    /// Re-reads every pipeline whose file changed (all of them when `force`).
    pub fn reload(self: &Arc<Self>, force: bool) {
        for entry in self.pipelines() {
            let stamp = mtime(&entry.file);
            if !force && stamp == entry.mtime {
                continue;
            }
            match (self.loader)(&entry.file) {
                Ok(p) => {
                    tracing::info!(pipeline = %entry.name, file = %entry.file.display(), "pipeline reloaded");
                    self.install(&entry.name, entry.file.clone(), p, stamp);
                }
                Err(diagnostics) => {
                    tracing::warn!(pipeline = %entry.name, file = %entry.file.display(), "the changed pipeline is invalid; the previous version stays in effect:\n{diagnostics}");
                    self.mark(&entry.name, stamp, Some(diagnostics));
                }
            }
        }
    }

    fn mark(&self, name: &str, stamp: Option<std::time::SystemTime>, error: Option<String>) {
        if let Ok(mut p) = self.pipelines.write()
            && let Some(e) = p.get_mut(name)
        {
            e.mtime = stamp;
            e.error = error;
        }
    }
}

/// Looks at the pipeline files every `reload_every` and on SIGHUP, until `stop`.
pub(crate) async fn watch(hub: Arc<Hub>, stop: CancellationToken) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup_fired = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup_fired = std::future::pending::<()>();
        let force = tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(hub.options.reload_every) => false,
            () = hup_fired => true,
        };
        hub.reload(force);
    }
}
