//! Exports between steps: `GET_<STEP>_<KEY>` and `TASK_<STEP>_<KEY>`.

use pipewright_core::{Error, ErrorKind, Result, env_key};
use std::collections::BTreeMap;
use std::path::Path;

/// The largest `$PIPEWRIGHT_OUTPUT` file a task may write.
pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// The prefix of a step's exports: `TASK_BUILD_`, `GET_SRC_`…
pub fn export_prefix(kind: &str, step: &str) -> String {
    format!("{kind}_{}_", env_key(step).to_ascii_uppercase())
}

/// Parses a task's output file: `KEY=VALUE` lines (split at the first `=`), blank lines and
/// `#` comments ignored, keys upper-cased and made safe for the environment. A missing file
/// means no outputs.
pub fn read_outputs(path: &Path, prefix: &str) -> Result<BTreeMap<String, String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(Error::from(e).with_context("output file", path.display().to_string()));
        }
    };
    if meta.len() > MAX_OUTPUT_BYTES {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "$PIPEWRIGHT_OUTPUT is {} bytes; the limit is {MAX_OUTPUT_BYTES} (write large data to a file in the workspace instead)",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::from(e).with_context("output file", path.display().to_string()))?;
    Ok(parse_outputs(&text, prefix))
}

/// Parses `KEY=VALUE` lines into `<prefix><KEY>` exports (read from `$PIPEWRIGHT_OUTPUT` after a step).
pub fn parse_outputs(text: &str, prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let key = env_key(k.trim()).to_ascii_uppercase();
        if key.is_empty() {
            continue;
        }
        out.insert(
            format!("{prefix}{key}"),
            v.trim_end_matches('\r').to_owned(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_lines() {
        let out = parse_outputs(
            "# comment\nVERSION=1.4.0\n\ncoverage = 80\nurl=http://x/?a=b\nnot a pair\n",
            &export_prefix("TASK", "unit-tests"),
        );
        assert_eq!(out["TASK_UNIT_TESTS_VERSION"], "1.4.0");
        assert_eq!(out["TASK_UNIT_TESTS_COVERAGE"], " 80");
        assert_eq!(out["TASK_UNIT_TESTS_URL"], "http://x/?a=b");
        assert_eq!(out.len(), 3);
    }
}
