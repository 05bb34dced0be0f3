//! Diagnostics: every problem found in one pass, each pointing at file:line:col with the source
//! line, a caret and, where one exists, a fix.

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use std::fmt;
use std::ops::Range;

/// Identifies a file in [`Sources`].
pub type FileId = usize;

/// A byte range in one source file. Kept on model items so later stages (the engine, the
/// server) can point back at the HCL that declared them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Loc {
    /// The file.
    pub file: FileId,
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

impl Loc {
    /// A location from a file and a byte range.
    pub fn new(file: FileId, range: Range<usize>) -> Self {
        Self {
            file,
            start: range.start,
            end: range.end,
        }
    }

    /// The byte range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.end
    }
}

/// The text of every file a pipeline was loaded from (the pipeline, vars files, type
/// definitions), so diagnostics can quote them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<(String, String)>,
}

impl Sources {
    /// No files.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        self.files.push((name.into(), text.into()));
        self.files.len() - 1
    }

    /// A file's name.
    pub fn name(&self, id: FileId) -> &str {
        self.files
            .get(id)
            .map(|f| f.0.as_str())
            .unwrap_or("<unknown>")
    }

    /// A file's text.
    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.1.as_str()).unwrap_or("")
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(id);
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    fn files(&self) -> SimpleFiles<&str, &str> {
        let mut files = SimpleFiles::new();
        for (name, text) in &self.files {
            files.add(name.as_str(), text.as_str());
        }
        files
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The pipeline is still usable.
    Warning,
    /// The pipeline cannot be used.
    Error,
}

/// One problem found while loading a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Where, when the problem has a place in a file (a `--var` flag has none).
    pub loc: Option<Loc>,
    /// Short text shown under the caret.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
    /// Other places that explain the problem (the first declaration of a duplicate…).
    pub related: Vec<(Loc, String)>,
}

impl Diagnostic {
    /// An error at `loc`.
    pub fn error(message: impl Into<String>, loc: Option<Loc>) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            loc,
            label: String::new(),
            help: None,
            related: Vec::new(),
        }
    }

    /// A warning at `loc`.
    pub fn warning(message: impl Into<String>, loc: Option<Loc>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(message, loc)
        }
    }

    /// Sets the label under the caret.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets the fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Sets the fix when there is one.
    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// Adds a related location.
    pub fn related(mut self, loc: Loc, label: impl Into<String>) -> Self {
        self.related.push((loc, label.into()));
        self
    }

    /// `file:line:col`, or `None` for diagnostics without a place.
    pub fn position(&self, sources: &Sources) -> Option<String> {
        let loc = self.loc?;
        let (line, col) = sources.line_col(loc.file, loc.start);
        Some(format!("{}:{line}:{col}", sources.name(loc.file)))
    }

    fn to_codespan(&self) -> CsDiagnostic<FileId> {
        let base = match self.severity {
            Severity::Error => CsDiagnostic::error(),
            Severity::Warning => CsDiagnostic::warning(),
        };
        let mut labels = Vec::new();
        if let Some(loc) = self.loc {
            labels.push(Label::primary(loc.file, loc.range()).with_message(self.label.clone()));
        }
        for (loc, msg) in &self.related {
            labels.push(Label::secondary(loc.file, loc.range()).with_message(msg.clone()));
        }
        let mut notes = Vec::new();
        if let Some(help) = &self.help {
            notes.push(format!("help: {help}"));
        }
        base.with_message(self.message.clone())
            .with_labels(labels)
            .with_notes(notes)
    }
}

/// Renders diagnostics like rustc: `error: …`, `--> file:line:col`, the line, a caret, `= help: …`.
pub fn render(diagnostics: &[Diagnostic], sources: &Sources, color: bool) -> String {
    let files = sources.files();
    let config = term::Config::default();
    let mut out = String::new();
    for d in diagnostics {
        let cs = d.to_codespan();
        if color {
            let mut buf = term::termcolor::Buffer::ansi();
            if term::emit_to_write_style(&mut buf, &config, &files, &cs).is_ok() {
                out.push_str(&String::from_utf8_lossy(buf.as_slice()));
                continue;
            }
        }
        match term::emit_into_string(&config, &files, &cs) {
            Ok(s) => out.push_str(&s),
            // A location outside its file (never produced by the loader) still gets a line.
            Err(_) => out.push_str(&format!("error: {}\n", d.message)),
        }
    }
    out
}

/// The error returned when a pipeline cannot be loaded: every diagnostic found, with the
/// sources needed to render them.
#[derive(Debug, Clone, thiserror::Error)]
pub struct LoadError {
    /// Every problem, errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// The files the diagnostics point into.
    pub sources: Sources,
}

impl LoadError {
    /// Rendered like rustc, optionally with ANSI colours.
    pub fn render(&self, color: bool) -> String {
        render(&self.diagnostics, &self.sources, color)
    }

    /// The number of errors (not warnings).
    pub fn error_count(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.error_count();
        writeln!(
            f,
            "pipeline has {n} error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        f.write_str(&self.render(false))
    }
}

/// Suggests the closest of `candidates` to `name` (edit distance ≤ 2, or a case-insensitive
/// match), for "did you mean" hints.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == name {
            continue;
        }
        let d = if c.eq_ignore_ascii_case(name) {
            0
        } else {
            strsim::damerau_levenshtein(name, c)
        };
        let limit = if name.chars().count() <= 3 { 1 } else { 2 };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let mut s = Sources::new();
        let id = s.add("p.hcl", "a\nbé c\n");
        assert_eq!(s.line_col(id, 0), (1, 1));
        assert_eq!(s.line_col(id, 2), (2, 1));
        assert_eq!(s.line_col(id, 6), (2, 4));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("triggr", ["trigger", "passed"]), Some("trigger"));
        assert_eq!(suggest("zzz", ["trigger", "passed"]), None);
    }
}
