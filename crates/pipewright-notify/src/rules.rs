//! When a notification is dispatched, and how its templates are filled.

use pipewright_core::BuildStatus;

/// A build's end as a dispatch rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `succeeded` or `warning`.
    Success,
    /// `failed` or `errored`.
    Failure,
    /// `cancelled`.
    Cancel,
}

impl Outcome {
    /// The outcome of a finished build (`None` while it is not finished).
    pub fn of(status: BuildStatus) -> Option<Self> {
        match status {
            BuildStatus::Succeeded | BuildStatus::Warning => Some(Self::Success),
            BuildStatus::Failed | BuildStatus::Errored => Some(Self::Failure),
            BuildStatus::Cancelled => Some(Self::Cancel),
            _ => None,
        }
    }
}

/// True when a notification with `on` is dispatched for a build that ended with `status`
/// after a previous build of the same job that ended with `previous` (`None`: unknown, or
/// none). `fixed`: a success after a failure; `broken`: a failure after a success. A cancelled
/// build neither fixes nor breaks, and with no previous build neither fires.
pub fn dispatches(on: &[String], status: BuildStatus, previous: Option<BuildStatus>) -> bool {
    let Some(now) = Outcome::of(status) else {
        return false;
    };
    let before = previous.and_then(Outcome::of);
    on.iter().any(|rule| match rule.as_str() {
        "all" => true,
        "success" => now == Outcome::Success,
        "failure" => now == Outcome::Failure,
        "cancel" => now == Outcome::Cancel,
        "fixed" => now == Outcome::Success && before == Some(Outcome::Failure),
        "broken" => now == Outcome::Failure && before == Some(Outcome::Success),
        _ => false,
    })
}

/// Replaces `$NAME` and `${NAME}` in `template` with `lookup(NAME)` (unknown names: empty).
/// `$$` is a literal `$`, as is a `$` not followed by a name.
pub fn expand(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
            && is_name(&inner[..end])
        {
            out.push_str(&lookup(&inner[..end]).unwrap_or_default());
            rest = &inner[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            if is_name(&after[..len]) {
                out.push_str(&lookup(&after[..len]).unwrap_or_default());
                rest = &after[len..];
            } else {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildStatus::*;

    fn on(rules: &[&str]) -> Vec<String> {
        rules.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn fixed_fires_only_on_a_success_after_a_failure() {
        let fixed = on(&["fixed"]);
        assert!(dispatches(&fixed, Succeeded, Some(Failed)));
        assert!(dispatches(&fixed, Warning, Some(Errored)));
        assert!(!dispatches(&fixed, Succeeded, Some(Succeeded)));
        assert!(!dispatches(&fixed, Succeeded, None));
        assert!(!dispatches(&fixed, Succeeded, Some(Cancelled)));
        assert!(!dispatches(&fixed, Failed, Some(Failed)));
    }

    #[test]
    fn broken_fires_only_on_a_failure_after_a_success() {
        let broken = on(&["broken"]);
        assert!(dispatches(&broken, Failed, Some(Succeeded)));
        assert!(dispatches(&broken, Errored, Some(Warning)));
        assert!(!dispatches(&broken, Failed, Some(Failed)));
        assert!(!dispatches(&broken, Failed, None));
        assert!(!dispatches(&broken, Cancelled, Some(Succeeded)));
        assert!(!dispatches(&broken, Succeeded, Some(Succeeded)));
    }

    #[test]
    fn outcome_rules_ignore_the_previous_build() {
        assert!(dispatches(&on(&["success"]), Succeeded, None));
        assert!(dispatches(&on(&["failure"]), Errored, Some(Failed)));
        assert!(dispatches(&on(&["cancel"]), Cancelled, None));
        assert!(!dispatches(&on(&["cancel"]), Failed, None));
        assert!(dispatches(
            &on(&["success", "broken"]),
            Failed,
            Some(Succeeded)
        ));
        for s in [Succeeded, Failed, Cancelled, Warning, Errored] {
            assert!(dispatches(&on(&["all"]), s, None), "{s:?}");
        }
        assert!(!dispatches(&on(&["all"]), Running, None));
        assert!(!dispatches(&[], Failed, Some(Succeeded)));
    }

    #[test]
    fn templates_expand_names_and_keep_stray_dollars() {
        let vars = |n: &str| match n {
            "BUILD_JOB_NAME" => Some("test".to_owned()),
            "N" => Some("7".to_owned()),
            _ => None,
        };
        assert_eq!(
            expand("$BUILD_JOB_NAME #${N}: $MISSING costs $$5, $1 $ 1 $", &vars),
            "test #7:  costs $5, $1 $ 1 $"
        );
        assert_eq!(expand("${not closed", &vars), "${not closed");
    }
}
