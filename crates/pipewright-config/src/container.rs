//! A job's `container { … }` block.

use crate::diag::{Diagnostic, FileId};
use crate::load::{Loader, Reader, header_loc, is_ident, loc_of};
use crate::model::JobContainer;
use hcl::eval::Context;
use hcl_edit::Span;
use hcl_edit::structure::Attribute;
use pipewright_core::Params;

/// The docker runner's settings a job container takes as plain strings.
const STRING_ATTRS: [&str; 6] = ["user", "workdir", "network", "memory", "cpus", "pull"];

impl Loader<'_> {
    /// Reads the job's `container` block, if any.
    pub(crate) fn job_container(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> Option<JobContainer> {
        let blocks = r.blocks("container");
        let mut out = None;
        for (i, b) in blocks.iter().enumerate() {
            let loc = header_loc(file, b);
            if i > 0 {
                self.error(
                    Diagnostic::error("a job has at most one `container`", Some(loc))
                        .label("second container")
                        .help(
                            "steps that need another image can use `run \"docker\" { image = … }`",
                        ),
                );
                continue;
            }
            if self
                .labels(file, b, &[], "container { image = \"alpine:3.20\" }")
                .is_none()
            {
                continue;
            }
            let mut cr = Reader::new(&b.body, "the job's `container` block", file);
            let mut params = Params::new();
            match cr.attr("image").and_then(|a| self.string(file, a, ctx)) {
                Some(image) if !image.trim().is_empty() => params.insert("image", image),
                _ => self.error(
                    Diagnostic::error("the job's `container` needs `image`", Some(loc))
                        .label("no image")
                        .help(
                            "add `image = \"alpine:3.20\"` (any image with `/bin/sh` and `sleep`)",
                        ),
                ),
            }
            for name in STRING_ATTRS {
                if let Some(a) = cr.attr(name)
                    && let Some(v) = self.string(file, a, ctx)
                {
                    if name == "pull"
                        && !matches!(v.as_str(), "always" | "if-not-present" | "never")
                    {
                        self.error(
                            Diagnostic::error(
                                format!("`pull` is always, if-not-present or never, got `{v}`"),
                                Some(loc_of(file, a.value.span())),
                            )
                            .label("unknown pull policy"),
                        );
                    }
                    params.insert(name, v);
                }
            }
            if let Some(a) = cr.attr("privileged")
                && let Some(v) = self.boolean(file, a, ctx)
            {
                params.insert("privileged", v);
            }
            if let Some(a) = cr.attr("env") {
                let env = self.container_env(file, a, ctx);
                params.insert("env", serde_json::Value::Object(env));
            }
            let mounts = match cr.attr("mounts") {
                Some(a) => self.container_mounts(file, a, ctx),
                None => Vec::new(),
            };
            self.finish_reader(cr);
            out = Some(JobContainer {
                params,
                mounts,
                loc,
            });
        }
        out
    }

    fn container_env(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> serde_json::Map<String, serde_json::Value> {
        let mut env = serde_json::Map::new();
        let loc = loc_of(file, a.value.span());
        match self.eval(file, &a.value, ctx) {
            Some(hcl::Value::Object(m)) => {
                for (k, v) in m {
                    if !is_ident(&k) {
                        self.error(
                            Diagnostic::error(
                                format!("`{k}` is not a valid environment variable name"),
                                Some(loc),
                            )
                            .label("invalid name")
                            .help(format!("try `{}`", pipewright_core::env_key(&k))),
                        );
                    }
                    match crate::funcs::to_str(&v) {
                        Ok(s) => {
                            env.insert(k, serde_json::Value::String(s));
                        }
                        Err(_) => self.error(
                            Diagnostic::error(
                                format!("env value `{k}` must be a string"),
                                Some(loc),
                            )
                            .label("not a string"),
                        ),
                    }
                }
            }
            Some(_) => self.error(
                Diagnostic::error("`env` must be a map", Some(loc))
                    .label("not a map")
                    .help("write `env = { NAME = \"value\" }`"),
            ),
            None => {}
        }
        env
    }

    fn container_mounts(&mut self, file: FileId, a: &Attribute, ctx: &Context<'_>) -> Vec<String> {
        let Some(list) = self.string_list(file, a, ctx) else {
            return Vec::new();
        };
        let loc = loc_of(file, a.value.span());
        for m in &list {
            let parts: Vec<&str> = m.split(':').collect();
            let ok = match parts.as_slice() {
                [host, inside] | [host, inside, "ro" | "rw"] => {
                    host.starts_with('/') && inside.starts_with('/')
                }
                _ => false,
            };
            if !ok {
                self.error(
                    Diagnostic::error(
                        format!("mount `{m}` is not `host:container[:ro]`"),
                        Some(loc),
                    )
                    .label("invalid mount")
                    .help("write absolute paths, e.g. `\"/var/cache/cargo:/cache:ro\"`"),
                );
            }
        }
        list
    }
}
