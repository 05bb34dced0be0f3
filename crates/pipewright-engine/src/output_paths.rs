//! A task's `outputs`: paths that must exist after it succeeds, or globs (`dist/*.whl`) that
//! must match at least one path.

use std::path::Path;

/// Whether an `outputs` entry is a glob rather than a path.
fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The outputs that are missing, each said in a sentence: `output `x` was not created`,
/// `output pattern `dist/*.whl` matched nothing`. Empty when all are there.
pub fn missing(workdir: &Path, outputs: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for entry in outputs {
        if !is_glob(entry) {
            if !workdir.join(entry).exists() {
                out.push(format!("output `{entry}` was not created"));
            }
            continue;
        }
        match matches_any(workdir, entry) {
            Ok(true) => {}
            Ok(false) => out.push(format!("output pattern `{entry}` matched nothing")),
            Err(e) => out.push(format!("output pattern `{entry}` is not a glob: {e}")),
        }
    }
    out
}

/// Whether anything under `workdir` matches `pattern` (relative, `/`-separated; `*` stays
/// within one directory, `**` crosses them). Only the directories the pattern can reach are
/// read, and symlinked directories are not followed.
fn matches_any(workdir: &Path, pattern: &str) -> Result<bool, globset::Error> {
    let pattern = pattern.trim_start_matches("./");
    let glob = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()?
        .compile_matcher();
    let parts: Vec<&str> = pattern.split('/').collect();
    let fixed = parts.iter().take_while(|p| !is_glob(p)).count();
    let start = parts[..fixed].join("/");
    let depth = if pattern.contains("**") {
        usize::MAX
    } else {
        parts.len() - fixed
    };
    let mut stack = vec![(workdir.join(&start), start, 0usize)];
    while let Some((dir, rel, level)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if glob.is_match(&path) {
                return Ok(true);
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && level + 1 < depth {
                stack.push((e.path(), path, level + 1));
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn globs_match_and_the_empty_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        std::fs::create_dir_all(w.join("dist/sub")).unwrap();
        std::fs::write(w.join("dist/app-1.0-py3-none-any.whl"), "").unwrap();
        std::fs::write(w.join("dist/sub/deep.tar.gz"), "").unwrap();
        std::fs::write(w.join("report.xml"), "").unwrap();
        let all = outputs(&[
            "dist/*.whl",
            "./dist/*.whl",
            "dist/**/*.tar.gz",
            "report.xml",
            "*.xml",
        ]);
        assert_eq!(missing(w, &all), Vec::<String>::new());
        let bad = outputs(&["dist/*.tar.gz", "build/*.whl", "gone.txt", "dist/[x"]);
        let m = missing(w, &bad);
        assert_eq!(
            m[0], "output pattern `dist/*.tar.gz` matched nothing",
            "{m:?}"
        );
        assert_eq!(m[1], "output pattern `build/*.whl` matched nothing");
        assert_eq!(m[2], "output `gone.txt` was not created");
        assert!(
            m[3].starts_with("output pattern `dist/[x` is not a glob"),
            "{m:?}"
        );
    }
}
