//! A task's `env = { … }` values: which `$NAME`s expand, and how they meet secrets.

use crate::build::Build;
use pipewright_core::{Ctx, Result};
use std::collections::BTreeMap;

impl Build<'_> {
    /// A task's `env`: each value expanded ([`expand_value`]) around its secret placeholders,
    /// which are resolved on their own.
    pub(crate) async fn task_env(
        &self,
        env: &indexmap::IndexMap<String, String>,
        ctx: &Ctx,
    ) -> Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        for (k, v) in env {
            let mut value = String::new();
            for piece in pieces(v) {
                match piece {
                    Piece::Text(t) => value.push_str(&expand_value(t, &ctx.env)),
                    Piece::Secret(p) => value.push_str(&self.resolve_secrets(p, ctx).await?),
                }
            }
            out.insert(k.clone(), value);
        }
        Ok(out)
    }
}

/// A `put` step's params with their strings expanded as `env` values are ([`expand_value`]),
/// in maps and lists too; secret placeholders are kept whole, for the resource's own
/// resolution.
pub(crate) fn expand_params(
    params: &pipewright_core::Params,
    env: &BTreeMap<String, String>,
) -> pipewright_core::Params {
    fn walk(v: &serde_json::Value, env: &BTreeMap<String, String>) -> serde_json::Value {
        match v {
            serde_json::Value::String(s) => {
                let mut out = String::with_capacity(s.len());
                for piece in pieces(s) {
                    match piece {
                        Piece::Text(t) => out.push_str(&expand_value(t, env)),
                        Piece::Secret(p) => out.push_str(p),
                    }
                }
                serde_json::Value::String(out)
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.iter().map(|v| walk(v, env)).collect())
            }
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.iter().map(|(k, v)| (k.clone(), walk(v, env))).collect(),
            ),
            other => other.clone(),
        }
    }
    let mut out = params.clone();
    for v in out.0.values_mut() {
        *v = walk(v, env);
    }
    out
}

/// Whether `$name` in a task's `env` value expands: the workspace, the build's metadata and
/// inputs, and earlier steps' exports. Anything else (`$HOME`, `$PATH`) is left for the
/// process, as before expansion existed.
pub fn expands(name: &str) -> bool {
    name == "WORKDIR"
        || ["BUILD_", "GET_", "TASK_", "INPUT_"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// Expands a task's `env` value: `$NAME` and `${NAME}` for the names [`expands`] accepts
/// (empty when not set), `$$` for a literal `$`; every other `$` stays as written.
pub fn expand_value(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (name, tail) = match after.strip_prefix('{') {
            Some(inner) => match inner.find('}') {
                Some(end) => (&inner[..end], &inner[end + 1..]),
                None => ("", after),
            },
            None => {
                let len = after
                    .find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
                    .unwrap_or(after.len());
                (&after[..len], &after[len..])
            }
        };
        if expands(name) {
            out.push_str(env.get(name).map(String::as_str).unwrap_or_default());
            rest = tail;
        } else {
            // Left exactly as written, for the process to read.
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What shells and common tools print for a variable that is not set.
const UNSET_PHRASES: [&str; 7] = [
    "unbound variable",
    "parameter not set",
    "parameter null or not set",
    "undefined variable",
    "is not set",
    "is unset",
    "environment variable not found",
];

/// Whether a failed command looks like it missed a variable, which is when listing the
/// available ones helps: exit code 127 (a command named by an empty variable, or not
/// installed), or output that mentions an unset name.
pub fn missing_variable(exit: pipewright_core::ExitStatus, output: &str) -> bool {
    if exit == pipewright_core::ExitStatus::Code(127) {
        return true;
    }
    let output = output.to_ascii_lowercase();
    UNSET_PHRASES.iter().any(|p| output.contains(p))
}

/// A piece of an `env` value: text to expand, or a secret placeholder to resolve as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Plain text.
    Text(&'a str),
    /// A whole `((secret:VAR))` placeholder.
    Secret(&'a str),
}

/// Splits a value at its secret placeholders, so expansion never sees a secret's value and an
/// expanded export can never smuggle in a placeholder.
pub fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("((secret:") {
        let Some(end) = rest[i..].find("))") else {
            break;
        };
        if i > 0 {
            out.push(Piece::Text(&rest[..i]));
        }
        out.push(Piece::Secret(&rest[i..i + end + 2]));
        rest = &rest[i + end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("WORKDIR".to_owned(), "/w/b1".to_owned()),
            ("BUILD_NUMBER".to_owned(), "7".to_owned()),
            ("TASK_VERSION_V".to_owned(), "1.4".to_owned()),
            ("HOME".to_owned(), "/home/me".to_owned()),
        ])
    }

    #[test]
    fn expands_the_build_names_and_leaves_the_rest() {
        let e = env();
        assert_eq!(expand_value("$WORKDIR/.pip", &e), "/w/b1/.pip");
        assert_eq!(
            expand_value("v${TASK_VERSION_V}-$BUILD_NUMBER", &e),
            "v1.4-7"
        );
        assert_eq!(expand_value("$GET_SRC_REF", &e), "");
        assert_eq!(expand_value("$HOME/x ${HOME}", &e), "$HOME/x ${HOME}");
        assert_eq!(expand_value("${WORKDIR", &e), "${WORKDIR");
        assert_eq!(expand_value("cost: $5 and $", &e), "cost: $5 and $");
    }

    #[test]
    fn a_doubled_dollar_is_a_literal_one() {
        let e = env();
        assert_eq!(expand_value("$$WORKDIR", &e), "$WORKDIR");
        assert_eq!(expand_value("a$$$WORKDIR", &e), "a$/w/b1");
    }

    #[test]
    fn a_missing_variable_is_told_from_other_failures() {
        use pipewright_core::ExitStatus;
        assert!(missing_variable(ExitStatus::Code(127), ""));
        assert!(missing_variable(
            ExitStatus::Code(2),
            "sh: 1: VERSION: parameter not set\n"
        ));
        assert!(missing_variable(
            ExitStatus::Code(1),
            "bash: TOKEN: unbound variable"
        ));
        assert!(!missing_variable(
            ExitStatus::Code(1),
            "AssertionError: 3 != 4\n"
        ));
        assert!(!missing_variable(ExitStatus::Signal(9), ""));
    }

    #[test]
    fn splits_at_secret_placeholders() {
        assert_eq!(
            pieces("$WORKDIR:((secret:token)):x((secret:"),
            [
                Piece::Text("$WORKDIR:"),
                Piece::Secret("((secret:token))"),
                Piece::Text(":x((secret:"),
            ]
        );
        assert_eq!(pieces("((secret:a))"), [Piece::Secret("((secret:a))")]);
    }
}
