//! Reading the files a pipeline names: the pipeline itself, vars files and type definitions.
//!
//! Every read is capped and refuses what is not a regular file (a `/dev/zero` or a FIFO would
//! otherwise exhaust memory or hang), and a type definition's relative path must stay inside
//! the pipeline's directory unless the loader allows more.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest pipeline or vars file read (a pipeline is text a person writes; larger files
/// are a mistake or an attack, and loading costs memory in proportion).
pub const MAX_PIPELINE_BYTES: u64 = 4 << 20;

/// The largest type definition read from a file (the same cap as a URL fetch).
pub const MAX_DEFINITION_BYTES: u64 = 1 << 20;

/// Why a file could not be read. The message never contains the file's content.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The OS refused (missing, permissions).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A device, FIFO, socket or directory.
    #[error("it is not a regular file ({0})")]
    NotRegular(&'static str),
    /// Over the cap.
    #[error("it is larger than the {limit}-byte limit")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("it is not UTF-8 text")]
    NotText,
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Reads `path` as UTF-8 text of at most `limit` bytes; symlinks are followed and their
/// target must be a regular file.
pub fn read_capped(path: &Path, limit: u64) -> Result<String, ReadError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind_of(&meta)));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    // Files under /proc report a size of 0: the cap is enforced on what is read as well.
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    String::from_utf8(buf).map_err(|_| ReadError::NotText)
}

/// Where a type definition's `source` path points, or why it may not be read.
pub(crate) fn definition_path(
    src: &str,
    pipeline_dir: &Path,
    allow_outside: bool,
) -> Result<PathBuf, String> {
    if Path::new(src).is_absolute() {
        return Ok(PathBuf::from(src));
    }
    let path = pipeline_dir.join(src);
    if allow_outside {
        return Ok(path);
    }
    // Compare real paths, so neither `..` nor a symlink leaves the directory.
    let base = std::fs::canonicalize(if pipeline_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        pipeline_dir
    })
    .map_err(|e| format!("cannot resolve the pipeline's directory: {e}"))?;
    let real = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
    if real.starts_with(&base) {
        Ok(real)
    } else {
        Err(format!(
            "`{src}` is outside the pipeline's directory `{}`",
            base.display()
        ))
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(end, |i| end - i - 1) + 1;
    (line, col)
}

/// The text inside each `${…}` of an HCL string template, skipping `$${` escapes. Nested
/// braces are balanced so `${f({a = 1})}` is one interpolation.
pub(crate) fn interpolations(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] == b'$' && bytes[i + 1] == b'$' {
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes[i + 1] == b'{' {
            let start = i + 2;
            let mut depth = 1;
            let mut j = start;
            while j < bytes.len() && depth > 0 {
                match bytes[j] {
                    b'{' => depth += 1,
                    b'}' => depth -= 1,
                    _ => {}
                }
                j += 1;
            }
            if depth == 0 {
                out.push(&text[start..j - 1]);
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_fifos_and_directories() {
        assert!(matches!(
            read_capped(Path::new("/dev/zero"), 10),
            Err(ReadError::NotRegular("a device"))
        ));
        assert!(matches!(
            read_capped(Path::new("/"), 10),
            Err(ReadError::NotRegular("a directory"))
        ));
    }

    #[test]
    fn caps_files_that_report_no_size() {
        // /proc files claim 0 bytes; the read itself stops at the cap.
        let r = read_capped(Path::new("/proc/self/maps"), 16);
        assert!(matches!(r, Err(ReadError::TooLarge { limit: 16 })), "{r:?}");
    }

    #[test]
    fn finds_interpolations_but_not_escapes() {
        assert_eq!(
            interpolations(r#""echo ${var.a} $${HOME} ${f({x = 1})}""#),
            ["var.a", "f({x = 1})"]
        );
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
