//! `variable` blocks, vars files and `--var` values.

use super::*;

impl Loader<'_> {
    // ---- variables ----

    pub(crate) fn variables(&mut self, file: FileId, blocks: &[&Block], p: &mut Pipeline) {
        struct Decl {
            name: String,
            ty: VarType,
            default: Option<serde_json::Value>,
            secret: Option<(String, Block, Loc)>,
            loc: Loc,
            reported: bool,
        }
        let mut decls: Vec<Decl> = Vec::new();
        for b in blocks {
            let Some(labels) =
                self.labels(file, b, &["name"], "variable \"region\" { type = string }")
            else {
                continue;
            };
            let name = labels[0].to_owned();
            let loc = header_loc(file, b);
            if !is_ident(&name) {
                self.error(
                    Diagnostic::error(format!("`{name}` is not a valid variable name"), Some(loc))
                        .label("invalid name")
                        .help("use letters, digits and `_`, starting with a letter"),
                );
            }
            if let Some(first) = decls.iter().find(|d| d.name == name) {
                self.declared_twice(
                    format!("variable `{name}`"),
                    loc,
                    first.loc,
                    "rename or remove one of them",
                );
                continue;
            }
            let mut r = Reader::new(&b.body, format!("variable `{name}`"), file);
            let ty_attr = r.attr("type");
            r.attr("description");
            let default_attr = r.attr("default");
            let ty = match ty_attr {
                Some(a) => self.var_type(file, a),
                // As in Terraform, `type` may be left out: the default's literal type, else
                // a string.
                None => Some(match default_attr.map(|a| &a.value) {
                    Some(Expression::Number(_)) => VarType::Number,
                    Some(Expression::Bool(_)) => VarType::Bool,
                    _ => VarType::String,
                }),
            };
            let secret_blocks = r.blocks("secret");
            self.finish_reader(r);
            let type_ok = ty.is_some();
            let ty = ty.unwrap_or(VarType::String);
            let mut default = None;
            let mut default_reported = !type_ok;
            if let Some(a) = default_attr {
                let ctx = self.base.clone();
                if let Some(v) = self.eval(file, &a.value, &ctx) {
                    match coerce(&to_json(&v), ty) {
                        Ok(v) => default = Some(v),
                        Err(()) if !type_ok => {}
                        Err(()) => {
                            default_reported = true;
                            let d = Diagnostic::error(
                                format!(
                                    "the default of variable `{name}` is {}, but its type is {}",
                                    describe(&v),
                                    ty.as_str()
                                ),
                                Some(loc_of(file, a.value.span())),
                            )
                            .label(format!("not a {}", ty.as_str()))
                            .help(format!(
                                "change the default or the type (`type = {}`)",
                                json_type(&to_json(&v))
                            ));
                            self.error(d);
                        }
                    }
                }
            }
            let mut secret = None;
            for (i, sb) in secret_blocks.iter().enumerate() {
                if i > 0 {
                    self.error(
                        Diagnostic::error(format!("variable `{name}` has more than one `secret` block"), Some(header_loc(file, sb)))
                            .label("second secret")
                            .help("a variable comes from one secret; declare another variable for the other"),
                    );
                    continue;
                }
                if let Some(l) = self.labels(
                    file,
                    sb,
                    &["secret type"],
                    "secret \"vault\" { path = \"secret/data/db\" key = \"password\" }",
                ) {
                    let sloc = header_loc(file, sb);
                    self.refs
                        .push((Ref::Type(TypeKind::Secret, l[0].to_owned()), sloc));
                    secret = Some((l[0].to_owned(), (*sb).clone(), sloc));
                }
            }
            self.declared_vars.push(name.clone());
            decls.push(Decl {
                name,
                ty,
                default,
                secret,
                loc,
                reported: default_reported,
            });
        }

        // Values from vars files then --var (later wins).
        let mut supplied: IndexMap<String, (serde_json::Value, VarOrigin, Option<Loc>)> =
            IndexMap::new();
        for path in self.opts.vars_files.clone() {
            for (k, v, loc) in self.read_vars_file(&path) {
                if !decls.iter().any(|d| d.name == k) {
                    let help = suggest(&k, decls.iter().map(|d| d.name.as_str()))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| "remove it or declare the variable".into());
                    self.error(
                        Diagnostic::warning(
                            format!("vars file sets `{k}`, which the pipeline does not declare"),
                            loc,
                        )
                        .label("unused value")
                        .help(help),
                    );
                    continue;
                }
                supplied.insert(k, (v, VarOrigin::VarsFile(path.display().to_string()), loc));
            }
        }
        for (k, v) in &self.opts.vars {
            if !decls.iter().any(|d| &d.name == k) {
                let help = suggest(k, decls.iter().map(|d| d.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        let names: Vec<String> =
                            decls.iter().map(|d| format!("`{}`", d.name)).collect();
                        if names.is_empty() {
                            "the pipeline declares no variables".into()
                        } else {
                            format!("declared variables: {}", names.join(", "))
                        }
                    });
                self.error(
                    Diagnostic::error(format!("--var `{k}`: no variable `{k}` is declared"), None)
                        .help(help),
                );
                continue;
            }
            supplied.insert(
                k.clone(),
                (serde_json::Value::String(v.clone()), VarOrigin::Cli, None),
            );
        }

        for d in &decls {
            let (value, origin) = if let Some((v, origin, loc)) = supplied.get(&d.name) {
                match coerce(v, d.ty) {
                    Ok(v) => (v, origin.clone()),
                    Err(()) => {
                        let from = match origin {
                            VarOrigin::Cli => "--var".to_owned(),
                            VarOrigin::VarsFile(f) => format!("vars file `{f}`"),
                            _ => "input".to_owned(),
                        };
                        self.error(
                            Diagnostic::error(
                                format!(
                                    "variable `{}` is a {}, but {from} gives {}",
                                    d.name,
                                    d.ty.as_str(),
                                    v
                                ),
                                *loc,
                            )
                            .label(format!("not a {}", d.ty.as_str()))
                            .help(match d.ty {
                                VarType::Number => "give a number, e.g. `3` or `2.5`",
                                VarType::Bool => "give `true` or `false`",
                                VarType::String => "give a string",
                            }),
                        );
                        continue;
                    }
                }
            } else if d.secret.is_some() {
                (
                    serde_json::Value::String(secret_placeholder(&d.name)),
                    VarOrigin::Secret,
                )
            } else if let Some(v) = &d.default {
                (v.clone(), VarOrigin::Default)
            } else if d.reported {
                continue;
            } else {
                self.error(
                    Diagnostic::error(format!("variable `{}` has no value", d.name), Some(d.loc))
                        .label("no default, no secret, not set")
                        .help(format!(
                            "pass `--var {}=…`, set it in a vars file, or add a `default`",
                            d.name
                        )),
                );
                continue;
            };
            p.variables.insert(
                d.name.clone(),
                Variable {
                    name: d.name.clone(),
                    ty: d.ty,
                    value,
                    origin,
                    secret: None,
                    loc: d.loc,
                },
            );
        }

        // `var` is visible everywhere after this point.
        let mut obj = hcl::Map::new();
        for d in &decls {
            // Variables already reported as broken evaluate to "" so their uses do not pile up
            // follow-on errors.
            let v = p
                .variables
                .get(&d.name)
                .map_or(hcl::Value::String(String::new()), |v| {
                    hcl::to_value(&v.value).unwrap_or(hcl::Value::Null)
                });
            obj.insert(d.name.clone(), v);
        }
        Arc::make_mut(&mut self.base).declare_var("var", hcl::Value::Object(obj));

        // Secret bindings may reference other variables (chained secrets).
        let ctx = self.base.clone();
        for d in &decls {
            let Some((ty, block, _)) = &d.secret else {
                continue;
            };
            let mut r = Reader::new(
                &block.body,
                format!("the secret of variable `{}`", d.name),
                file,
            );
            let path = r
                .attr("path")
                .and_then(|a| self.string(file, a, &ctx))
                .unwrap_or_default();
            let key = match r.attr("key") {
                Some(a) => self.string(file, a, &ctx),
                None => {
                    self.error(
                        Diagnostic::error(
                            format!("the secret of variable `{}` has no `key`", d.name),
                            Some(header_loc(file, block)),
                        )
                        .label("missing `key`")
                        .help("add `key = \"…\"`: the entry to read at `path`"),
                    );
                    None
                }
            };
            self.finish_reader(r);
            if let (Some(key), Some(var)) = (key, p.variables.get_mut(&d.name)) {
                var.secret = Some(SecretBinding {
                    secret_type: ty.clone(),
                    path,
                    key,
                });
            }
        }
        crate::validate::secret_chains(self, p);
    }

    pub(crate) fn var_type(&mut self, file: FileId, a: &Attribute) -> Option<VarType> {
        let raw = match &a.value {
            Expression::Variable(v) => v.as_str().to_owned(),
            Expression::String(s) => s.as_str().to_owned(),
            _ => String::new(),
        };
        match raw.as_str() {
            "string" => Some(VarType::String),
            "number" => Some(VarType::Number),
            "bool" => Some(VarType::Bool),
            _ => {
                let alias = match raw.as_str() {
                    "int" | "integer" | "float" | "double" => Some("number"),
                    "boolean" => Some("bool"),
                    "str" | "text" => Some("string"),
                    _ => None,
                };
                let help = match alias.or_else(|| suggest(&raw, ["string", "number", "bool"])) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use `string`, `number` or `bool`".to_owned(),
                };
                self.error(
                    Diagnostic::error(
                        "unsupported variable type",
                        Some(loc_of(file, a.value.span())),
                    )
                    .label("not a type")
                    .help(help),
                );
                None
            }
        }
    }

    pub(crate) fn read_vars_file(
        &mut self,
        path: &Path,
    ) -> Vec<(String, serde_json::Value, Option<Loc>)> {
        let text = match read_capped(path, MAX_PIPELINE_BYTES) {
            Ok(t) => t,
            Err(e) => {
                self.error(
                    Diagnostic::error(
                        format!("cannot read vars file `{}`: {e}", path.display()),
                        None,
                    )
                    .help("check the path given to --vars-file"),
                );
                return vec![];
            }
        };
        let file = self.sources.add(path.display().to_string(), text.clone());
        let is_json = path.extension().is_some_and(|e| e == "json");
        if is_json {
            let parsed: Result<serde_json::Map<String, serde_json::Value>, _> =
                serde_json::from_str(&text);
            match parsed {
                Ok(map) => map
                    .into_iter()
                    .map(|(k, v)| {
                        let loc = text
                            .find(&format!("\"{k}\""))
                            .map(|i| Loc::new(file, i..i + k.len() + 2));
                        (k, v, loc)
                    })
                    .collect(),
                Err(e) => {
                    let off = line_col_offset(&text, e.line(), e.column());
                    self.error(
                        Diagnostic::error(
                            format!("invalid JSON vars file: {e}"),
                            Some(Loc::new(file, off..off)),
                        )
                        .label("here")
                        .help("a JSON vars file is one object: {\"name\": \"value\", …}"),
                    );
                    vec![]
                }
            }
        } else {
            let body = match hcl_edit::parser::parse_body(&text) {
                Ok(b) => b,
                Err(e) => {
                    self.parse_error(file, &e);
                    return vec![];
                }
            };
            let ctx = self.base.clone();
            let mut out = Vec::new();
            for s in body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        if let Some(v) = self.eval(file, &a.value, &ctx) {
                            out.push((
                                a.key.as_str().to_owned(),
                                to_json(&v),
                                Some(loc_of(file, a.key.span())),
                            ));
                        }
                    }
                    Structure::Block(b) => self.error(
                        Diagnostic::error(
                            "a vars file holds only `name = value` lines",
                            Some(header_loc(file, b)),
                        )
                        .label("block not allowed"),
                    ),
                }
            }
            out
        }
    }
}
