//! Exports between steps: `GET_<STEP>_<KEY>`, `TASK_<STEP>_<KEY>`, and the job-wide names a
//! step writes to `$PIPEWRIGHT_ENV`.

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
    Ok(read_bounded(path, "$PIPEWRIGHT_OUTPUT")?
        .map(|text| parse_outputs(&text, prefix))
        .unwrap_or_default())
}

/// A file a task wrote for the engine, at most [`MAX_OUTPUT_BYTES`]; `None` when missing.
fn read_bounded(path: &Path, what: &str) -> Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::from(e).with_context("output file", path.display().to_string()));
        }
    };
    if meta.len() > MAX_OUTPUT_BYTES {
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "{what} is {} bytes; the limit is {MAX_OUTPUT_BYTES} (write large data to a file in the workspace instead)",
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| Error::from(e).with_context("output file", path.display().to_string()))
}

/// Names a step may not set for the job: the engine's own, which later steps rely on.
fn reserved(name: &str) -> bool {
    name == "WORKDIR"
        || ["BUILD_", "GET_", "TASK_", "INPUT_", "PIPEWRIGHT_"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Reads a step's `$PIPEWRIGHT_ENV`: `KEY=VALUE` lines (blank lines and `#` comments
/// ignored) exported as `KEY`, exactly as written, to every later step of the job. A name that
/// is not a variable name or is the engine's own fails the step rather than vanish.
pub fn read_job_env(path: &Path) -> Result<BTreeMap<String, String>> {
    let Some(text) = read_bounded(path, "$PIPEWRIGHT_ENV")? else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: String| {
            Error::new(
                ErrorKind::Failed,
                format!("$PIPEWRIGHT_ENV line {}: {why}", n + 1),
            )
        };
        let Some((k, v)) = line.split_once('=') else {
            return Err(fail("expected `KEY=VALUE`".into()));
        };
        let key = k.trim();
        let valid = key.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic())
            && key.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
        if !valid {
            return Err(fail(format!("`{key}` is not a variable name")));
        }
        if reserved(key) {
            return Err(fail(format!(
                "`{key}` is the engine's (WORKDIR and names starting BUILD_, GET_, TASK_, \
                 INPUT_, PIPEWRIGHT_ cannot be set for the job)"
            )));
        }
        out.insert(key.to_owned(), v.trim_end_matches('\r').to_owned());
    }
    Ok(out)
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

    #[test]
    fn job_env_keeps_names_and_refuses_the_engines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env");
        assert!(read_job_env(&path).unwrap().is_empty());
        std::fs::write(&path, "# c\nPIP_INDEX=https://x/?a=b\n\nMixed_Case=1\n").unwrap();
        let env = read_job_env(&path).unwrap();
        assert_eq!(env["PIP_INDEX"], "https://x/?a=b");
        assert_eq!(env["Mixed_Case"], "1");
        assert_eq!(env.len(), 2);
        std::fs::write(&path, "OK=1\nBUILD_ID=x\n").unwrap();
        let e = read_job_env(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("`BUILD_ID` is the engine's"),
            "{e}"
        );
        std::fs::write(&path, "1BAD=x\n").unwrap();
        let e = read_job_env(&path).unwrap_err().to_string();
        assert!(e.contains("not a variable name"), "{e}");
    }
}
