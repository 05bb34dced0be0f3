//! `resource` and `notification` blocks.

use super::*;

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
        let params = self.params_block(file, &mut r, &ctx);
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
                if !["success", "failure", "cancel", "all"].contains(&o.as_str()) {
                    let help = suggest(o, ["success", "failure", "cancel", "all"])
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "use `success`, `failure`, `cancel` or `all`".into());
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
                        .help("add `on = [\"failure\"]` (or success, cancel, all)"),
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
