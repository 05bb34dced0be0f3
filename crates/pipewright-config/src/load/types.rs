//! Type declarations (`resource_type`, `runner_type`, …) and where their definitions come from.

use super::*;

impl Loader<'_> {
    // ---- types ----

    pub(crate) fn type_block(&mut self, file: FileId, b: &Block, kind: TypeKind, p: &mut Pipeline) {
        let kw = kind.keyword();
        let Some(labels) = self.labels(file, b, &["name"], &format!("{kw} \"name\" {{ … }}"))
        else {
            return;
        };
        let name = labels[0].to_owned();
        let loc = header_loc(file, b);
        let first = match kind {
            TypeKind::Resource => p.resource_types.get(&name).map(|t| t.loc),
            TypeKind::Runner => p.runner_types.get(&name).map(|t| t.loc),
            TypeKind::Service => p.service_types.get(&name).map(|t| t.loc),
            TypeKind::Secret => p.secret_types.get(&name).map(|t| t.loc),
            TypeKind::Notification => p.notification_types.get(&name).map(|t| t.loc),
        };
        if let Some(first) = first {
            self.declared_twice(format!("{kw} `{name}`"), loc, first, "remove one of them");
            return;
        }
        let ctx = self.base.clone();
        let mut r = Reader::new(&b.body, format!("{kw} `{name}`"), file);
        let source_attr = r.attr("source");
        let sha_attr = r.attr("sha256");
        let sha = sha_attr.and_then(|a| self.string(file, a, &ctx));
        let source_text = source_attr.and_then(|a| self.string(file, a, &ctx));

        let mut def_file = file;
        let mut loaded_body: Option<Body> = None;
        let mut source = TypeSource::Inline;
        let mut builtin_config = Params::new();
        if let (Some(src), Some(sa)) = (&source_text, source_attr) {
            let sloc = loc_of(file, sa.value.span());
            let resolved = self.resolve_source(src, sha.as_deref(), kind, sloc);
            // A built-in secret type takes its configuration (`address`, `token`, `format`…)
            // beside `source`; anything else would be silently ignored: refuse it.
            let config_allowed =
                kind == TypeKind::Secret && matches!(resolved, Some(Resolved::Builtin(_)));
            for s in b.body.iter() {
                let (n, l) = match s {
                    Structure::Attribute(_) if config_allowed => continue,
                    Structure::Attribute(a) => {
                        (a.key.as_str().to_owned(), loc_of(file, a.key.span()))
                    }
                    Structure::Block(bl) => (bl.ident.as_str().to_owned(), header_loc(file, bl)),
                };
                if n != "source" && n != "sha256" {
                    self.error(
                        Diagnostic::error(format!("{kw} `{name}` has both `source` and `{n}`"), Some(l))
                            .label("not allowed with `source`")
                            .related(sloc, "the definition comes from here")
                            .help("remove `source` to define the type inline, or remove the inline definition"),
                    );
                }
            }
            match resolved {
                Some(Resolved::Builtin(n)) => source = TypeSource::Builtin { name: n },
                Some(Resolved::Def {
                    source: s,
                    file: f,
                    body,
                }) => {
                    source = s;
                    def_file = f;
                    loaded_body = Some(body);
                }
                // Already reported; an empty built-in name keeps later checks quiet (the load
                // fails, so this placeholder never reaches a caller).
                None => {
                    source = TypeSource::Builtin {
                        name: String::new(),
                    }
                }
            }
            let rest = r.rest_attrs();
            if config_allowed {
                builtin_config = self.params_of(file, &rest, &ctx);
            }
            r.blocks_of(&[
                "check",
                "pull",
                "push",
                "runner",
                "start",
                "stop",
                "ready_check",
                "get",
                "notify",
                "run",
            ]);
            self.finish_reader(r);
        } else {
            if let Some(a) = sha_attr {
                self.error(
                    Diagnostic::error(
                        "`sha256` pins a `source`, but there is none",
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("nothing to pin")
                    .help("remove `sha256` or add `source = \"…\"`"),
                );
            }
            self.finish_type_body(file, &name, kind, loc, source, r, &ctx, p);
            return;
        }
        if let Some(body) = loaded_body {
            // The fetched file holds one block of the same keyword; its label may differ.
            let mut outer = Reader::new(
                &body,
                format!("`{}`", self.sources.name(def_file)),
                def_file,
            );
            let defs = outer.blocks(kw);
            outer.rest_attrs();
            self.finish_reader(outer);
            match defs.as_slice() {
                [one] => {
                    let r = Reader::new(&one.body, format!("{kw} `{name}`"), def_file);
                    self.finish_type_body(def_file, &name, kind, loc, source, r, &ctx, p);
                }
                _ => self.error(
                    Diagnostic::error(
                        format!(
                            "`{}` must define exactly one `{kw}` block, found {}",
                            self.sources.name(def_file),
                            defs.len()
                        ),
                        source_attr.map(|a| loc_of(file, a.value.span())),
                    )
                    .label("loaded from here"),
                ),
            }
            return;
        }
        // Built-in (or unresolvable) source: record the declaration as is.
        let empty = Body::new();
        let r = Reader::new(&empty, String::new(), file);
        self.finish_type_body(file, &name, kind, loc, source, r, &ctx, p);
        if kind == TypeKind::Secret
            && let Some(t) = p.secret_types.get_mut(&name)
        {
            t.config = builtin_config;
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish_type_body(
        &mut self,
        file: FileId,
        name: &str,
        kind: TypeKind,
        loc: Loc,
        source: TypeSource,
        mut r: Reader<'_>,
        ctx: &Context<'_>,
        p: &mut Pipeline,
    ) {
        let inline = source == TypeSource::Inline
            || matches!(source, TypeSource::File { .. } | TypeSource::Url { .. });
        if kind == TypeKind::Runner {
            let mut run = None;
            for (i, b) in r.blocks("run").into_iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error("`run` is given twice", Some(header_loc(file, b)))
                            .label("second `run`"),
                    );
                    continue;
                }
                self.labels(
                    file,
                    b,
                    &[],
                    "run { path = \"docker\" args = [\"run\", \"$image\"] }",
                );
                let mut rr = Reader::new(
                    &b.body,
                    format!("the `run` block of runner_type `{name}`"),
                    file,
                );
                let path = rr.attr("path").and_then(|a| self.string(file, a, ctx));
                let args = rr
                    .attr("args")
                    .and_then(|a| self.string_list(file, a, ctx))
                    .unwrap_or_default();
                self.finish_reader(rr);
                run = Some(RunTemplate {
                    path: path.unwrap_or_default(),
                    args,
                });
            }
            self.finish_reader(r);
            if inline && run.is_none() {
                self.error(
                    Diagnostic::error(format!("runner_type `{name}` has no `run` block"), Some(loc))
                        .label("missing `run`")
                        .help("add `run { path = \"…\" args = [\"$args\"] }`, or `source = \"pipewright://exec\"`"),
                );
            }
            p.runner_types.insert(
                name.to_owned(),
                RunnerType {
                    name: name.to_owned(),
                    source,
                    run,
                    loc,
                },
            );
            return;
        }
        let params = r
            .attr("params")
            .and_then(|a| self.string_list(file, a, ctx))
            .unwrap_or_default();
        let cache = if kind == TypeKind::Resource {
            r.attr("cache")
                .and_then(|a| self.boolean(file, a, ctx))
                .unwrap_or(false)
        } else {
            false
        };
        let (ops, required): (&[&'static str], &[&'static str]) = match kind {
            TypeKind::Resource => (&["check", "pull", "push"], &[]),
            TypeKind::Service => (&["start", "stop"], &["start", "stop"]),
            TypeKind::Secret => (&["get"], &["get"]),
            TypeKind::Notification => (&["notify"], &["notify"]),
            TypeKind::Runner => (&[], &[]),
        };
        let mut commands = IndexMap::new();
        for op in ops {
            for (i, b) in r.blocks(op).into_iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error(
                            format!("`{op}` is given twice"),
                            Some(header_loc(file, b)),
                        )
                        .label("second definition"),
                    );
                    continue;
                }
                if let Some((c, _)) = self.command(file, b, ctx, &[]) {
                    commands.insert((*op).to_owned(), c);
                }
            }
        }
        let mut ready_check = None;
        if kind == TypeKind::Service {
            for b in r.blocks("ready_check") {
                if let Some((c, extras)) = self.command(file, b, ctx, &["interval", "timeout"]) {
                    let mut rc = ReadyCheck {
                        command: c,
                        interval: std::time::Duration::from_secs(1),
                        timeout: std::time::Duration::from_secs(60),
                    };
                    for (n, a) in extras {
                        if let Some(d) = self.duration(file, &a, ctx) {
                            if n == "interval" {
                                rc.interval = d;
                            } else {
                                rc.timeout = d;
                            }
                        }
                    }
                    ready_check = Some(rc);
                }
            }
        }
        let runner = r
            .blocks("runner")
            .first()
            .and_then(|b| self.command(file, b, ctx, &[]).map(|c| c.0));
        let config = if kind == TypeKind::Secret {
            let rest = r.rest_attrs();
            self.params_of(file, &rest, ctx)
        } else {
            Params::new()
        };
        self.finish_reader(r);
        if inline {
            for op in required {
                if !commands.contains_key(*op) {
                    self.error(
                        Diagnostic::error(
                            format!("{} `{name}` has no `{op}` command", kind.keyword()),
                            Some(loc),
                        )
                        .label(format!("missing `{op}`"))
                        .help(format!(
                            "add `{op} \"exec\" {{ path = \"…\" args = [...] }}`"
                        )),
                    );
                }
            }
        }
        let decl = TypeDecl {
            name: name.to_owned(),
            source,
            params,
            cache,
            commands,
            ready_check,
            runner,
            config,
            loc,
        };
        let map = match kind {
            TypeKind::Resource => &mut p.resource_types,
            TypeKind::Service => &mut p.service_types,
            TypeKind::Secret => &mut p.secret_types,
            _ => &mut p.notification_types,
        };
        map.insert(name.to_owned(), decl);
    }

    pub(crate) fn resolve_source(
        &mut self,
        src: &str,
        sha: Option<&str>,
        kind: TypeKind,
        loc: Loc,
    ) -> Option<Resolved> {
        let builtin = src
            .strip_prefix("pipewright://")
            .or_else(|| src.strip_prefix("pikoci://"));
        if let Some(n) = builtin {
            if self.opts.catalog.has(kind, n) {
                return Some(Resolved::Builtin(n.to_owned()));
            }
            let names = self.opts.catalog.names(kind);
            let help = match suggest(n, names.iter().copied()) {
                Some(s) => format!("did you mean `pipewright://{s}`?"),
                None if names.is_empty() => format!(
                    "this build has no built-in {}s; define the type inline",
                    kind.noun()
                ),
                None => format!(
                    "built-in {}s: {}",
                    kind.noun(),
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.error(
                Diagnostic::error(
                    format!("there is no built-in {} `{n}`", kind.noun()),
                    Some(loc),
                )
                .label("unknown built-in")
                .help(help),
            );
            return None;
        }
        let (text, source, name) = if src.starts_with("https://") || src.starts_with("http://") {
            let Some(fetcher) = self.opts.fetcher.clone() else {
                self.error(
                    Diagnostic::error(format!("cannot load `{src}`: this loader has no URL fetcher"), Some(loc))
                        .label("URL source")
                        .help("download the file and set `source` to its path, or use a loader built with a fetcher"),
                );
                return None;
            };
            let key = (src.to_owned(), sha.map(str::to_owned));
            let fetched = match self.prefetched.remove(&key) {
                Some(r) => r,
                None => fetcher.fetch(src, sha),
            };
            match fetched {
                Ok(t) => (
                    t,
                    TypeSource::Url {
                        url: src.to_owned(),
                        sha256: sha.map(str::to_owned),
                    },
                    src.to_owned(),
                ),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("cannot fetch `{src}`: {e}"), Some(loc))
                            .label("fetch failed"),
                    );
                    return None;
                }
            }
        } else {
            let path = match crate::files::definition_path(
                src,
                &self.dir,
                self.opts.allow_sources_outside,
            ) {
                Ok(p) => p,
                Err(why) => {
                    self.error(
                        Diagnostic::error(format!("cannot read type definition: {why}"), Some(loc))
                            .label("source")
                            .help("keep type definitions in the pipeline's directory (or below it), give an absolute path, or allow other paths explicitly (`--allow-sources-outside`)"),
                    );
                    return None;
                }
            };
            match read_capped(&path, MAX_DEFINITION_BYTES) {
                Ok(t) => (
                    t,
                    TypeSource::File {
                        path: path.clone(),
                        sha256: sha.map(str::to_owned),
                    },
                    path.display().to_string(),
                ),
                Err(e) => {
                    self.error(
                        Diagnostic::error(format!("cannot read type definition `{}`: {e}", path.display()), Some(loc))
                            .label("source")
                            .help("a `source` is `pipewright://NAME`, `https://…`, or a path relative to the pipeline file"),
                    );
                    return None;
                }
            }
        };
        if let Some(want) = sha {
            let got = hex(&sha2::Sha256::digest(text.as_bytes()));
            if !want.eq_ignore_ascii_case(&got) {
                self.error(
                    Diagnostic::error(
                        format!("`{name}` does not match its pinned sha256"),
                        Some(loc),
                    )
                    .label("hash mismatch")
                    .help(format!(
                        "expected {want}, got {got}; update `sha256` if the change is intended"
                    )),
                );
                return None;
            }
        }
        match hcl_edit::parser::parse_body(&text) {
            Ok(body) => {
                let file = self.sources.add(name, text);
                Some(Resolved::Def { source, file, body })
            }
            Err(e) => {
                // The text may be anything the path or URL pointed at (`/proc/self/environ`,
                // a key file): name the position, never show the content.
                let (line, col) = crate::files::line_col(&text, e.location().offset());
                self.error(
                    Diagnostic::error(
                        format!("`{name}` is not a valid type definition: HCL syntax error at {line}:{col}"),
                        Some(loc),
                    )
                    .label("source")
                    .help("a type definition is an HCL file with the body of the type block; its content is not shown here"),
                );
                None
            }
        }
    }
}
