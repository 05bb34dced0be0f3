//! `service` steps: which service type a step runs, and its params checked against that type.

use crate::catalog::{Catalog, TypeKind};
use crate::diag::Diagnostic;
use crate::load::Loader;
use crate::model::{Pipeline, ServiceStep, TypeSource};
use crate::validate::did_you_mean_of;
use crate::{Loc, RunnerRule};

/// The built-in service type that runs a container image: `service "db" { image = "…" }`.
pub const IMAGE_SERVICE_TYPE: &str = "docker";

/// True when `step` runs a container image: it sets `image` and its label is not a
/// `service_type` declared in `p` (a declared type gets `image` as one of its params). Its label
/// then names the service (`SERVICE_<LABEL>_*`) and [`IMAGE_SERVICE_TYPE`] runs it.
pub fn image_service(p: &Pipeline, step: &ServiceStep) -> bool {
    !p.service_types.contains_key(&step.service_type) && step.params.get("image").is_some()
}

/// Checks a `service "NAME"` step: NAME must be a declared or built-in service type unless the
/// step sets `image`, and the params must be ones the type reads (when it declares them).
pub(crate) fn check_step(
    l: &mut Loader<'_>,
    p: &Pipeline,
    catalog: &Catalog,
    name: &str,
    params: &[(String, Loc)],
    image: Option<Loc>,
    loc: Loc,
) {
    let (builtin, what, complete) = match p.service_types.get(name).map(|t| &t.source) {
        Some(TypeSource::Builtin { name: b }) => {
            (b.as_str(), format!("service type `{name}`"), false)
        }
        // Command-defined: its params are `$param_*`, any name goes.
        Some(_) => return,
        None if image.is_some() => {
            if !catalog.has(TypeKind::Service, IMAGE_SERVICE_TYPE) {
                l.error(
                    Diagnostic::error(
                        format!("service `{name}` runs an image, but this engine has no container services"),
                        image,
                    )
                    .label("`image` needs the built-in `docker` service type")
                    .help("use a pipewright binary built with the `docker` feature, or declare a `service_type` with start/stop commands"),
                );
                return;
            }
            (
                IMAGE_SERVICE_TYPE,
                format!("container service `{name}`"),
                true,
            )
        }
        None if catalog.has(TypeKind::Service, name) => {
            (name, format!("service type `{name}`"), true)
        }
        None => {
            unknown_type(l, p, catalog, name, loc);
            return;
        }
    };
    let Some(rule) = catalog.service_params.get(builtin) else {
        return;
    };
    check_params(l, rule, &what, params, complete, loc);
}

fn unknown_type(l: &mut Loader<'_>, p: &Pipeline, catalog: &Catalog, name: &str, loc: Loc) {
    let builtins = catalog.names(TypeKind::Service);
    let help = did_you_mean_of(
        name,
        p.service_types
            .keys()
            .map(String::as_str)
            .chain(builtins.iter().copied()),
    )
    .unwrap_or_else(|| {
        let mut h = format!("declare it: `service_type \"{name}\" {{ … }}`");
        if catalog.has(TypeKind::Service, IMAGE_SERVICE_TYPE) {
            h.push_str(&format!(
                ", or run a container image: `service \"{name}\" {{ image = \"…\" }}`"
            ));
        }
        h
    });
    l.error(
        Diagnostic::error(format!("unknown service type `{name}`"), Some(loc))
            .label(format!("no service type named `{name}`"))
            .help(help),
    );
}

fn check_params(
    l: &mut Loader<'_>,
    rule: &RunnerRule,
    what: &str,
    params: &[(String, Loc)],
    complete: bool,
    loc: Loc,
) {
    if let Some(known) = &rule.known {
        for (given, at) in params {
            if known.contains(&given.as_str()) {
                continue;
            }
            let help = did_you_mean_of(given, known.iter().copied()).unwrap_or_else(|| {
                format!(
                    "a {what} reads {}",
                    known
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            });
            l.error(
                Diagnostic::error(format!("{what} has no parameter `{given}`"), Some(*at))
                    .label("unknown parameter")
                    .help(help),
            );
        }
    }
    if complete {
        for req in &rule.required {
            if !params.iter().any(|(n, _)| n == req) {
                l.error(
                    Diagnostic::error(format!("{what} needs `{req}`"), Some(loc))
                        .label(format!("`{req}` missing"))
                        .help(format!("set `{req} = …` in the step")),
                );
            }
        }
    }
}
