//! `resource` and `notification` blocks.

use super::*;

/// What `on` accepts: build outcomes, and changes from the previous build of the job.
const OUTCOMES: &[&str] = &["success", "failure", "cancel", "all", "fixed", "broken"];

impl Loader<'_> {
    // ---- resources and notifications ----

    pub(crate) fn resource(&mut self, file: FileId, b: &Block, p: &mut Pipeline) {
        let Some(labels) = self.labels(
            file,
            b,
            &["type", "name"],
            "resource \"git\" \"app\" { params { url = \"…\" } }",
        ) else {
            return;
        };
        let (ty, name) = (labels[0].to_owned(), labels[1].to_owned());
        let id = format!("{ty}.{name}");
        let loc = header_loc(file, b);
        if let Some(first) = p.resources.get(&id) {
            self.declared_twice(
                format!("resource `{id}`"),
                loc,
                first.loc,
                "rename or remove one of them",
            );
            return;
        }
        self.refs
            .push((Ref::Type(TypeKind::Resource, ty.clone()), loc));
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("resource `{id}`"), file);
        let (params, locs) = self.params_block_located(file, &mut r, &ctx);
        self.note_option_like_params(&id, format!("resource `{id}`"), &params, &locs);
        self.note_resource_params(&id, false, &locs, loc);
        let check_interval = r.attr("check_interval").and_then(|a| {
            let s = self.string(file, a, &ctx)?;
            match crate::duration::Schedule::parse(&s) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("invalid check_interval `{s}`: {e}"), Some(loc_of(file, a.value.span())))
                            .label("invalid schedule")
                            .help("use `@every <duration>` (at least 10s) or a cron expression such as `*/5 * * * *`"),
                    );
                    None
                }
            }
        });
        let cache = r.attr("cache").and_then(|a| self.boolean(file, a, &ctx));
        let tags = r
            .attr("tags")
            .map(|a| self.slugs(file, a, &ctx))
            .unwrap_or_default();
        let webhook_secret = r.attr("webhook_secret").and_then(|a| {
            let s = self.string(file, a, &ctx)?;
            if s.is_empty() {
                self.error(
                    Diagnostic::error("`webhook_secret` is empty", Some(loc_of(file, a.value.span())))
                        .label("empty secret")
                        .help("set the secret the forge signs deliveries with, e.g. `webhook_secret = var.github_webhook_secret`"),
                );
                return None;
            }
            Some(s)
        });
        self.finish_reader(r);
        p.resources.insert(
            id.clone(),
            Resource {
                id,
                type_name: ty,
                name,
                params,
                check_interval,
                cache,
                tags,
                webhook_secret,
                loc,
            },
        );
    }

    pub(crate) fn notification(&mut self, file: FileId, b: &Block, p: &mut Pipeline) {
        let Some(labels) = self.labels(
            file,
            b,
            &["type", "name"],
            "notification \"slack\" \"team\" { on = [\"failure\"] }",
        ) else {
            return;
        };
        let (ty, name) = (labels[0].to_owned(), labels[1].to_owned());
        let id = format!("{ty}.{name}");
        let loc = header_loc(file, b);
        if let Some(first) = p.notifications.get(&id) {
            self.declared_twice(
                format!("notification `{id}`"),
                loc,
                first.loc,
                "rename or remove one of them",
            );
            return;
        }
        self.refs
            .push((Ref::Type(TypeKind::Notification, ty.clone()), loc));
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("notification `{id}`"), file);
        let (params, param_locs) = self.params_block_located(file, &mut r, &ctx);
        self.refs.push((
            Ref::NotificationParams {
                type_name: ty.clone(),
                what: format!("notification `{id}`"),
                params: param_locs,
                complete: true,
            },
            loc,
        ));
        let message = r.attr("message").and_then(|a| self.string(file, a, &ctx));
        let on_attr = r.attr("on");
        let on = on_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        let jobs_attr = r.attr("jobs");
        let exclude_attr = r.attr("exclude");
        let jobs = jobs_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        let exclude = exclude_attr
            .and_then(|a| self.string_list(file, a, &ctx))
            .unwrap_or_default();
        self.finish_reader(r);
        if let Some(a) = on_attr {
            let l = loc_of(file, a.value.span());
            for o in &on {
                if !OUTCOMES.contains(&o.as_str()) {
                    let help = suggest(o, OUTCOMES.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| {
                            "use `success`, `failure`, `cancel`, `all`, `fixed` or `broken`".into()
                        });
                    self.error(
                        Diagnostic::error(format!("unknown outcome `{o}` in `on`"), Some(l))
                            .label("unknown outcome")
                            .help(help),
                    );
                }
            }
            if on.len() > 1 && on.iter().any(|o| o == "all") {
                self.error(
                    Diagnostic::error("`all` cannot be combined with other outcomes", Some(l))
                        .label("`all` plus more")
                        .help("write `on = [\"all\"]` alone"),
                );
            }
        }
        if let (Some(_), Some(e)) = (jobs_attr, exclude_attr) {
            self.error(
                Diagnostic::error(
                    "`jobs` and `exclude` cannot both be set",
                    Some(loc_of(file, e.key.span())),
                )
                .label("second filter")
                .help("keep one: `jobs` lists the jobs to notify for, `exclude` the ones to skip"),
            );
        }
        for (attr, names) in [(jobs_attr, &jobs), (exclude_attr, &exclude)] {
            if let Some(a) = attr {
                let l = loc_of(file, a.value.span());
                if on.is_empty() {
                    self.error(
                        Diagnostic::error(
                            format!("`{}` needs `on`", a.key.as_str()),
                            Some(loc_of(file, a.key.span())),
                        )
                        .label("filter without dispatch")
                        .help("add `on = [\"failure\"]` (or success, cancel, all, fixed, broken)"),
                    );
                }
                for n in names {
                    self.refs.push((
                        Ref::Job {
                            name: n.clone(),
                            what: "notification filter",
                        },
                        l,
                    ));
                }
            }
        }
        p.notifications.insert(
            id.clone(),
            Notification {
                id,
                type_name: ty,
                name,
                params,
                message,
                on,
                jobs,
                exclude,
                loc,
            },
        );
    }
}
