//! `matrix { … }`: axes multiplied out, then `exclude` and `include` as GitHub Actions reads
//! them.

use crate::diag::{Diagnostic, FileId, suggest};
use crate::load::{Loader, Reader, header_loc, loc_of};
use hcl::eval::Context;
use hcl_edit::Span;
use hcl_edit::structure::{Attribute, Block};

/// The most jobs one matrix may expand to.
const MAX_COMBINATIONS: usize = 256;

/// One combination: its keys in declaration order.
type Combo = Vec<(String, hcl::Value)>;

impl Loader<'_> {
    /// The matrix's instances as `(key, each.value)`; `None` after an error.
    pub(crate) fn matrix_instances(
        &mut self,
        file: FileId,
        m: &Block,
        base: &Context,
    ) -> Option<Vec<(String, hcl::Value)>> {
        self.labels(file, m, &[], "matrix { os = [\"linux\", \"mac\"] }");
        let mut r = Reader::new(&m.body, "a `matrix` block", file);
        let include = r.attr("include");
        let exclude = r.attr("exclude");
        let axes = r.rest_attrs();
        self.finish_reader(r);
        for a in &axes {
            let name = a.key.as_str();
            if let Some(like) = suggest(name, ["include", "exclude"]) {
                self.error(
                    Diagnostic::error(
                        format!("matrix key `{name}` looks like `{like}`"),
                        Some(loc_of(file, a.key.span())),
                    )
                    .label("not an axis")
                    .help(format!(
                        "write `{like} = [{{ … }}]`; an axis may not be named like `include` or `exclude`"
                    )),
                );
                return None;
            }
        }
        // Each combination with the number of its leading keys that make its instance key.
        let mut combos: Vec<(usize, Combo)> = vec![(0, vec![])];
        let mut axis_names = Vec::new();
        for a in &axes {
            let vals = self.axis_values(file, a, base)?;
            axis_names.push(a.key.as_str().to_owned());
            let mut next = Vec::new();
            for (n, c) in &combos {
                for v in &vals {
                    let mut c = c.clone();
                    c.push((a.key.as_str().to_owned(), v.clone()));
                    next.push((n + 1, c));
                }
            }
            combos = next;
            if combos.len() > MAX_COMBINATIONS {
                self.too_many(file, m);
                return None;
            }
        }
        if axes.is_empty() {
            combos.clear();
        }
        if let Some(a) = exclude {
            for (i, rule) in self.entries(file, a, base)?.into_iter().enumerate() {
                let before = combos.len();
                combos.retain(|(_, c)| !matches(c, &rule, &axis_names));
                if combos.len() == before {
                    self.error(
                        Diagnostic::warning(
                            format!("`exclude` entry {} removes no combination", i + 1),
                            Some(loc_of(file, a.value.span())),
                        )
                        .label("matches nothing")
                        .help("its values must equal an axis's values exactly"),
                    );
                }
            }
        }
        let originals = combos.len();
        if let Some(a) = include {
            for entry in self.entries(file, a, base)? {
                include_entry(&mut combos, originals, entry, &axis_names);
            }
            if combos.len() > MAX_COMBINATIONS {
                self.too_many(file, m);
                return None;
            }
        }
        self.combos_to_instances(file, m, combos)
    }

    fn axis_values(
        &mut self,
        file: FileId,
        a: &Attribute,
        base: &Context,
    ) -> Option<Vec<hcl::Value>> {
        let v = self.eval(file, &a.value, base)?;
        let Some(vals) = v.as_array().filter(|l| !l.is_empty()) else {
            self.error(
                Diagnostic::error(
                    format!("matrix axis `{}` must be a non-empty list", a.key.as_str()),
                    Some(loc_of(file, a.value.span())),
                )
                .label("not a list")
                .help(format!("write `{} = [\"a\", \"b\"]`", a.key.as_str())),
            );
            return None;
        };
        if vals.iter().any(|v| crate::funcs::to_str(v).is_err()) {
            self.error(
                Diagnostic::error(
                    format!(
                        "matrix axis `{}` must list strings, numbers or booleans",
                        a.key.as_str()
                    ),
                    Some(loc_of(file, a.value.span())),
                )
                .label("a list or map in the axis")
                .help("extra values per combination belong in `include = [{ … }]`"),
            );
            return None;
        }
        Some(vals.clone())
    }

    /// `include`/`exclude`: a list of maps of scalars.
    fn entries(&mut self, file: FileId, a: &Attribute, base: &Context) -> Option<Vec<Combo>> {
        let name = a.key.as_str();
        let v = self.eval(file, &a.value, base)?;
        let mut out = Vec::new();
        let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
        for item in items {
            let Some(map) = item
                .as_object()
                .filter(|m| !m.is_empty() && m.values().all(|v| crate::funcs::to_str(v).is_ok()))
            else {
                out.clear();
                break;
            };
            out.push(map.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        }
        if out.is_empty() {
            self.error(
                Diagnostic::error(
                    format!("matrix `{name}` must be a non-empty list of maps of values"),
                    Some(loc_of(file, a.value.span())),
                )
                .label("not a list of maps")
                .help(format!(
                    "write `{name} = [{{ os = \"linux\", python = \"3.13\" }}]`"
                )),
            );
            return None;
        }
        Some(out)
    }

    fn combos_to_instances(
        &mut self,
        file: FileId,
        m: &Block,
        combos: Vec<(usize, Combo)>,
    ) -> Option<Vec<(String, hcl::Value)>> {
        // Every key any combination has, so `each.value.<key>` works in all of them.
        let mut all_keys: Vec<String> = Vec::new();
        for (_, c) in &combos {
            for (k, _) in c {
                if !all_keys.contains(k) {
                    all_keys.push(k.clone());
                }
            }
        }
        let mut out: Vec<(String, hcl::Value)> = Vec::new();
        for (key_len, c) in combos {
            let key = c[..key_len]
                .iter()
                .map(|(_, v)| crate::funcs::to_str(v).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("-");
            if out.iter().any(|(k, _)| k == &key) {
                self.error(
                    Diagnostic::error(
                        format!("the matrix has the combination `{key}` twice"),
                        Some(header_loc(file, m)),
                    )
                    .label("duplicate combination")
                    .help("an `include` entry that adds a combination must differ from the others in an axis value"),
                );
                return None;
            }
            let mut value = hcl::Map::new();
            for k in &all_keys {
                let v = c.iter().find(|(ck, _)| ck == k).map(|(_, v)| v.clone());
                value.insert(k.clone(), v.unwrap_or(hcl::Value::String(String::new())));
            }
            out.push((key, hcl::Value::Object(value)));
        }
        Some(out)
    }

    fn too_many(&mut self, file: FileId, m: &Block) {
        self.error(
            Diagnostic::error(
                format!("the matrix expands to more than {MAX_COMBINATIONS} jobs"),
                Some(header_loc(file, m)),
            )
            .label("too many combinations"),
        );
    }
}

/// Whether every key of `rule` that `c` has holds the same value (an `exclude` rule matches
/// on the keys it names).
fn matches(c: &[(String, hcl::Value)], rule: &Combo, axes: &[String]) -> bool {
    rule.iter().all(|(k, v)| {
        axes.contains(k)
            && c.iter()
                .any(|(ck, cv)| ck == k && crate::funcs::to_str(cv) == crate::funcs::to_str(v))
    })
}

/// GitHub's rule: an entry joins every original combination whose axis values it does not
/// contradict, adding its other keys (added keys may be overwritten, axis values never); an
/// entry that joins none becomes a combination of its own.
fn include_entry(
    combos: &mut Vec<(usize, Combo)>,
    originals: usize,
    entry: Combo,
    axes: &[String],
) {
    let mut joined = false;
    for (_, c) in combos.iter_mut().take(originals) {
        let fits = entry.iter().all(|(k, v)| {
            !axes.contains(k)
                || c.iter()
                    .any(|(ck, cv)| ck == k && crate::funcs::to_str(cv) == crate::funcs::to_str(v))
        });
        if !fits {
            continue;
        }
        joined = true;
        for (k, v) in &entry {
            match c.iter_mut().find(|(ck, _)| ck == k) {
                Some((_, cv)) if !axes.contains(k) => *cv = v.clone(),
                Some(_) => {}
                None => c.push((k.clone(), v.clone())),
            }
        }
    }
    if !joined {
        // Named by its axis values, in axis order, like the others; by all its values if it
        // has none.
        let (mut named, rest): (Combo, Combo) =
            entry.into_iter().partition(|(k, _)| axes.contains(k));
        named.sort_by_key(|(k, _)| axes.iter().position(|a| a == k));
        let n = if named.is_empty() {
            rest.len()
        } else {
            named.len()
        };
        named.extend(rest);
        combos.push((n, named));
    }
}
