//! Evaluating attribute values: expressions, typed reads, params and their checks.

use super::*;

impl Loader<'_> {
    // ---- expressions ----

    /// Evaluates an expression; on error reports it at the expression and returns `None`.
    pub(crate) fn eval(
        &mut self,
        file: FileId,
        expr: &Expression,
        ctx: &Context<'_>,
    ) -> Option<hcl::Value> {
        let loc = loc_of(file, expr.span());
        let e: hcl::Expression = expr.clone().into();
        match e.evaluate(ctx) {
            Ok(v) => Some(v),
            Err(err) => {
                let d = self.eval_diag(err, loc);
                self.error(d);
                None
            }
        }
    }

    pub(crate) fn eval_diag(&self, err: hcl::eval::Error, loc: Loc) -> Diagnostic {
        use hcl::eval::ErrorKind as K;
        let expr_text = err.expr().map(|e| e.to_string());
        match err.kind() {
            K::NoSuchKey(key)
                if expr_text
                    .as_deref()
                    .is_some_and(|t| t.contains(&format!("var.{key}"))) =>
            {
                let help = match suggest(key, self.declared_vars.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `var.{s}`?"),
                    None => format!("declare it: `variable \"{key}\" {{ type = string }}`"),
                };
                Diagnostic::error(format!("unknown variable `var.{key}`"), Some(loc))
                    .label("no such variable")
                    .help(help)
            }
            K::UndefinedVar(name) if name.as_str() == "each" => Diagnostic::error(
                "`each` is only available inside a job with `for_each` or `matrix`",
                Some(loc),
            )
            .label("not in a for_each job"),
            K::UndefinedVar(name) => {
                let help = if suggest(name.as_str(), ["var"]).is_some() || name.as_str() == "vars" {
                    "variables are written `var.<name>`".to_owned()
                } else {
                    format!(
                        "only `var.<name>` (and `each` in for_each jobs) can be referenced; for a literal string write \"{name}\""
                    )
                };
                Diagnostic::error(format!("unknown name `{name}`"), Some(loc))
                    .label("not defined")
                    .help(help)
            }
            K::UndefinedFunc(name) => {
                let names = funcs::function_names();
                let help = match suggest(name.to_string().as_str(), names.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "see docs/pipeline-language.md for the function library".to_owned(),
                };
                Diagnostic::error(format!("unknown function `{name}`"), Some(loc))
                    .label("no such function")
                    .help(help)
            }
            K::FuncCall(name, msg) => {
                Diagnostic::error(format!("call to `{name}` failed: {msg}"), Some(loc))
                    .label("this call")
            }
            _ => Diagnostic::error(format!("cannot evaluate expression: {err}"), Some(loc))
                .label("here"),
        }
    }

    pub(crate) fn type_error(&mut self, file: FileId, a: &Attribute, want: &str, got: &hcl::Value) {
        let d = Diagnostic::error(
            format!(
                "`{}` must be {want}, found {}",
                a.key.as_str(),
                describe(got)
            ),
            Some(loc_of(file, a.value.span())),
        )
        .label(format!("expected {want}"));
        self.error(d);
    }

    pub(crate) fn string(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<String> {
        let v = self.eval(file, &a.value, ctx)?;
        match funcs::to_str(&v) {
            Ok(s) if !v.is_null() => Some(s),
            _ => {
                self.type_error(file, a, "a string", &v);
                None
            }
        }
    }

    pub(crate) fn boolean(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<bool> {
        let v = self.eval(file, &a.value, ctx)?;
        match &v {
            hcl::Value::Bool(b) => Some(*b),
            hcl::Value::String(s) if s == "true" => Some(true),
            hcl::Value::String(s) if s == "false" => Some(false),
            _ => {
                self.type_error(file, a, "`true` or `false`", &v);
                None
            }
        }
    }

    pub(crate) fn uint(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
        min: u32,
    ) -> Option<u32> {
        let v = self.eval(file, &a.value, ctx)?;
        let n = match &v {
            hcl::Value::Number(n) => n.as_f64(),
            hcl::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if n.fract() == 0.0 && n >= f64::from(min) && n <= f64::from(u32::MAX) => {
                Some(n as u32)
            }
            Some(n) => {
                let d = Diagnostic::error(
                    format!(
                        "`{}` must be a whole number ≥ {min}, found {n}",
                        a.key.as_str()
                    ),
                    Some(loc_of(file, a.value.span())),
                )
                .label("out of range");
                self.error(d);
                None
            }
            None => {
                self.type_error(file, a, "a number", &v);
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<std::time::Duration> {
        let s = self.string(file, a, ctx)?;
        match crate::parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                let d = Diagnostic::error(
                    format!("invalid duration `{s}` for `{}`: {e}", a.key.as_str()),
                    Some(loc_of(file, a.value.span())),
                )
                .label("not a duration")
                .help("write a number and a unit, e.g. `30s`, `5m`, `1h30m` (units: ms, s, m, h)");
                self.error(d);
                None
            }
        }
    }

    pub(crate) fn string_list(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<Vec<String>> {
        let v = self.eval(file, &a.value, ctx)?;
        let Some(items) = v.as_array() else {
            self.type_error(file, a, "a list of strings", &v);
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match funcs::to_str(item) {
                Ok(s) => out.push(s),
                Err(_) => {
                    self.type_error(file, a, "a list of strings", &v);
                    return None;
                }
            }
        }
        Some(out)
    }

    pub(crate) fn json(
        &mut self,
        file: FileId,
        a: &Attribute,
        ctx: &Context<'_>,
    ) -> Option<serde_json::Value> {
        let v = self.eval(file, &a.value, ctx)?;
        Some(to_json(&v))
    }

    /// Reads `name = [slug, …]` tags: lowercase slugs, at most 10.
    pub(crate) fn slugs(&mut self, file: FileId, a: &Attribute, ctx: &Context<'_>) -> Vec<String> {
        let Some(list) = self.string_list(file, a, ctx) else {
            return vec![];
        };
        let loc = loc_of(file, a.value.span());
        if list.len() > 10 {
            self.error(
                Diagnostic::error(
                    format!(
                        "`{}` has {} entries; at most 10 are allowed",
                        a.key.as_str(),
                        list.len()
                    ),
                    Some(loc),
                )
                .label("too many"),
            );
        }
        for s in &list {
            if !is_slug(s) {
                self.error(
                    Diagnostic::error(format!("`{s}` is not a valid slug"), Some(loc))
                        .label("invalid entry")
                        .help(format!(
                            "use lowercase letters, digits and `-`, e.g. `{}`",
                            slugify(s)
                        )),
                );
            }
        }
        list
    }

    /// `params { k = v }` or the rest of a body's attributes, evaluated to JSON.
    pub(crate) fn params_of(
        &mut self,
        file: FileId,
        attrs: &[&Attribute],
        ctx: &Context<'_>,
    ) -> Params {
        self.params_of_located(file, attrs, ctx).0
    }

    /// [`Self::params_of`], and where each value was written.
    pub(crate) fn params_of_located(
        &mut self,
        file: FileId,
        attrs: &[&Attribute],
        ctx: &Context<'_>,
    ) -> (Params, ParamLocs) {
        let mut p = Params::new();
        let mut locs = ParamLocs::new();
        for a in attrs {
            // A value that failed to evaluate was reported; keep the key so later checks
            // ("runner needs `cmd`") do not pile a second, wrong error on top.
            let v = self.json(file, a, ctx).unwrap_or(serde_json::Value::Null);
            p.insert(a.key.as_str(), v);
            locs.push((a.key.to_string(), loc_of(file, a.value.span())));
        }
        (p, locs)
    }

    /// Reads a `params { … }` block (attributes only).
    pub(crate) fn params_block(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> Params {
        self.params_block_located(file, r, ctx).0
    }

    /// [`Self::params_block`], and where each value was written.
    pub(crate) fn params_block_located(
        &mut self,
        file: FileId,
        r: &mut Reader<'_>,
        ctx: &Context<'_>,
    ) -> (Params, ParamLocs) {
        let mut p = Params::new();
        let mut locs = ParamLocs::new();
        let blocks = r.blocks("params");
        for (i, b) in blocks.iter().enumerate() {
            if i > 0 {
                self.error(
                    Diagnostic::error(
                        format!("`params` is given twice in {}", r.what),
                        Some(header_loc(file, b)),
                    )
                    .label("second block")
                    .help("merge the two blocks"),
                );
            }
            self.labels(file, b, &[], "params { key = \"value\" }");
            let mut inner = Reader::new(&b.body, "a `params` block", file);
            let attrs = inner.rest_attrs();
            let (params, at) = self.params_of_located(file, &attrs, ctx);
            p.0.extend(params.0);
            locs.extend(at);
            self.finish_reader(inner);
        }
        (p, locs)
    }

    /// Notes the values among `params` that start with `-`, so the check of built-in resource
    /// types (run once every type is known) can refuse those the type passes to a command.
    pub(crate) fn note_option_like(
        &mut self,
        resource: &str,
        what: String,
        values: impl IntoIterator<Item = (String, Option<String>, Loc)>,
    ) {
        let found: Vec<(String, Loc)> = values
            .into_iter()
            .filter(|(_, v, _)| v.as_deref().is_some_and(|v| v.starts_with('-')))
            .map(|(k, _, loc)| (k, loc))
            .collect();
        if let Some((_, loc)) = found.first() {
            let loc = *loc;
            self.refs.push((
                Ref::Arguments {
                    resource: resource.to_owned(),
                    what,
                    values: found,
                },
                loc,
            ));
        }
    }

    /// Notes the params given to `resource` (its block, or a put of it with `put`), for the
    /// check against the params its type reads.
    pub(crate) fn note_resource_params(
        &mut self,
        resource: &str,
        put: bool,
        locs: &ParamLocs,
        at: Loc,
    ) {
        let params = locs.clone();
        if params.is_empty() {
            return;
        }
        self.refs.push((
            Ref::ResourceParams {
                resource: resource.to_owned(),
                put,
                params,
            },
            at,
        ));
    }

    /// [`Self::note_option_like`] for a params map and where its values were written.
    pub(crate) fn note_option_like_params(
        &mut self,
        resource: &str,
        what: String,
        params: &Params,
        locs: &ParamLocs,
    ) {
        let values = locs.iter().map(|(k, loc)| {
            let v = params.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            (k.clone(), v, *loc)
        });
        let values: Vec<_> = values.collect();
        self.note_option_like(resource, what, values);
    }
}

impl Loader<'_> {
    /// Refuses an `outputs` glob that does not parse (`dist/[x`), which would otherwise fail
    /// only once the task has run.
    pub(crate) fn check_output_globs(&mut self, file: FileId, a: &Attribute, list: &[String]) {
        for entry in list {
            if !entry.contains(['*', '?', '[', '{']) {
                continue;
            }
            if let Err(e) = globset::Glob::new(entry) {
                self.error(
                    Diagnostic::error(
                        format!("output pattern `{entry}` is not a glob: {}", e.kind()),
                        Some(loc_of(file, a.value.span())),
                    )
                    .label("invalid pattern")
                    .help("`*` matches within a directory, `**` across them, `?` one character, `[ab]` a set, `{a,b}` alternatives"),
                );
            }
        }
    }
}
