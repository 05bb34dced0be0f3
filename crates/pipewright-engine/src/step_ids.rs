//! Typed step ids: every step and hook of a job gets its path once, when the build starts.
//!
//! The path is the names from the job down: an `in_parallel` group adds `in_parallel`; an if
//! chain adds its name (the `if`'s label) and then the branch (the `if`/`else_if` label, or
//! `else`); a hook adds `on_success`, `on_failure`, `on_cancel` or `ensure` to its owner's path
//! (with `#2`, `#3`… when the list has several); a name repeated among its siblings gets `#2`,
//! `#3`… from its second occurrence. So ids are unique within a build.

use pipewright_config::{HookAction, Hooks, Job, Step, StepKind};
use pipewright_core::{StepId, StepRole};
use std::collections::HashMap;

/// The ids of one job's steps and hooks, looked up by the address of their declaration (the job
/// is borrowed, unchanged, for the whole build).
#[derive(Debug, Default)]
pub(crate) struct StepIds {
    by_addr: HashMap<usize, StepId>,
}

fn addr<T>(t: &T) -> usize {
    std::ptr::from_ref(t) as usize
}

fn numbered(name: &str, n: usize) -> String {
    if n > 1 {
        format!("{name}#{n}")
    } else {
        name.to_owned()
    }
}

impl StepIds {
    pub(crate) fn new(job: &Job) -> Self {
        let mut ids = Self::default();
        ids.steps(&job.steps, &[]);
        ids.hooks(&job.hooks, &[]);
        ids
    }

    fn steps(&mut self, steps: &[Step], parent: &[String]) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for s in steps {
            let n = seen.entry(s.name.as_str()).or_insert(0);
            *n += 1;
            let mut path = parent.to_vec();
            path.push(numbered(&s.name, *n));
            self.by_addr
                .insert(addr(s), StepId::new(path.clone(), StepRole::Step));
            match &s.kind {
                StepKind::InParallel(p) => self.steps(&p.steps, &path),
                StepKind::If(chain) => {
                    let mut labels: HashMap<&str, usize> = HashMap::new();
                    for b in &chain.branches {
                        let n = labels.entry(b.label.as_str()).or_insert(0);
                        *n += 1;
                        let mut branch = path.clone();
                        branch.push(numbered(&b.label, *n));
                        self.steps(&b.steps, &branch);
                    }
                    if let Some(e) = &chain.else_steps {
                        let mut branch = path.clone();
                        branch.push("else".into());
                        self.steps(e, &branch);
                    }
                }
                _ => {}
            }
            self.hooks(&s.hooks, &path);
        }
    }

    fn hooks(&mut self, hooks: &Hooks, owner: &[String]) {
        for (kind, list) in [
            ("on_success", &hooks.on_success),
            ("on_failure", &hooks.on_failure),
            ("on_cancel", &hooks.on_cancel),
            ("ensure", &hooks.ensure),
        ] {
            for (i, action) in list.iter().enumerate() {
                let mut path = owner.to_vec();
                path.push(if list.len() > 1 {
                    format!("{kind}#{}", i + 1)
                } else {
                    kind.to_owned()
                });
                let id = StepId::new(path, StepRole::Hook);
                // A hook that is a step (`on_success { put … }`) is known by its hook's id.
                if let HookAction::Step(step) = action {
                    self.by_addr.insert(addr(step.as_ref()), id.clone());
                }
                self.by_addr.insert(addr(action), id);
            }
        }
    }

    /// The id of a step of the job (of a hook, for a hook's step).
    pub(crate) fn step(&self, step: &Step) -> StepId {
        self.by_addr
            .get(&addr(step))
            .cloned()
            .unwrap_or_else(|| StepId::new([step.name.as_str()], StepRole::Step))
    }

    /// The id of a `service` step's start or stop.
    pub(crate) fn service(&self, step: &Step, role: StepRole) -> StepId {
        StepId {
            role,
            ..self.step(step)
        }
    }

    /// The id of a hook action of the job.
    pub(crate) fn hook(&self, action: &HookAction, fallback: &str) -> StepId {
        self.by_addr
            .get(&addr(action))
            .cloned()
            .unwrap_or_else(|| StepId::new([fallback], StepRole::Hook))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_job_and_stay_unique() {
        let task = |name: &str| {
            format!("task \"{name}\" {{\n run \"shell\" {{\n cmd = \"true\"\n }}\n }}\n")
        };
        let text = format!(
            "job \"j\" {{\n task \"prep\" {{\n run \"shell\" {{\n cmd = \"true\"\n }}\n \
             on_failure \"shell\" {{\n cmd = \"true\"\n }}\n }}\n \
             in_parallel {{\n {}}}\n in_parallel {{\n {}}}\n \
             if \"stable\" {{\n condition = \"1 == 1\"\n {}}}\n else {{\n {}}}\n \
             ensure \"shell\" {{\n cmd = \"true\"\n }}\n ensure \"shell\" {{\n cmd = \"true\"\n }}\n}}\n",
            task("unit"),
            task("lint"),
            task("publish"),
            task("preview"),
        );
        let p = pipewright_config::load_str("t.hcl", &text, &Default::default())
            .map_err(|e| e.render(false))
            .unwrap_or_else(|e| panic!("{e}"));
        let job = &p.pipeline.jobs["j"];
        let ids = StepIds::new(job);
        let path = |s: &Step| ids.step(s).path.join("/");
        assert_eq!(path(&job.steps[0]), "prep");
        let StepKind::InParallel(p2) = &job.steps[2].kind else {
            panic!("not a group")
        };
        assert_eq!(path(&p2.steps[0]), "in_parallel#2/lint");
        let StepKind::If(chain) = &job.steps[3].kind else {
            panic!("not an if")
        };
        assert_eq!(path(&chain.branches[0].steps[0]), "stable/stable/publish");
        let else_steps = chain.else_steps.as_deref().unwrap_or_default();
        assert_eq!(path(&else_steps[0]), "stable/else/preview");
        let hook = ids.hook(&job.steps[0].hooks.on_failure[0], "?");
        assert_eq!(hook.to_string(), "prep:on_failure");
        let ensure = ids.hook(&job.hooks.ensure[1], "?");
        assert_eq!(ensure.path, ["ensure#2"]);
        assert_eq!(ensure.to_string(), "job:ensure#2");
    }
}
