//! The HCL function library (hcl-rs ships none): string, collection, numeric, encoding, time,
//! regex, set and conversion functions with Terraform's names and behaviour.

use base64::Engine as _;
use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

type R = Result<Value, String>;

fn s(args: &FuncArgs, i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {} must be a string", i + 1))
}

fn n(args: &FuncArgs, i: usize) -> Result<f64, String> {
    args.get(i)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("argument {} must be a number", i + 1))
}

fn arr(args: &FuncArgs, i: usize) -> Result<&Vec<Value>, String> {
    args.get(i)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("argument {} must be a list", i + 1))
}

fn obj(args: &FuncArgs, i: usize) -> Result<&Map<String, Value>, String> {
    args.get(i)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("argument {} must be a map", i + 1))
}

fn num(f: f64) -> R {
    if f.fract() == 0.0 && f.abs() < 9.0e15 {
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| "result is not a finite number".to_owned())
}

fn idx(f: f64, what: &str) -> Result<usize, String> {
    if f < 0.0 || f.fract() != 0.0 {
        return Err(format!("{what} must be a whole number ≥ 0, got {f}"));
    }
    Ok(f as usize)
}

/// Renders a primitive value as a string (Terraform's automatic conversion).
pub(crate) fn to_str(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("null cannot be used as a string".into()),
        Value::Array(_) => Err("a list cannot be used as a string".into()),
        Value::Object(_) => Err("a map cannot be used as a string".into()),
    }
}

fn sorted_distinct(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in items {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    out.sort_by_key(|v| to_str(v).unwrap_or_default());
    out
}

// ---- strings ----
fn chomp(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.trim_end_matches(['\n', '\r']).to_owned().into())
}
fn lower(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.to_lowercase().into())
}
fn upper(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.to_uppercase().into())
}
/// POSIX shell single-quoting: the value becomes one word, whatever it holds
/// (`it's` → `'it'\''s'`).
fn shellquote(a: FuncArgs) -> R {
    let v = s(&a, 0)?;
    Ok(format!("'{}'", v.replace('\'', r"'\''")).into())
}
fn title(a: FuncArgs) -> R {
    let mut out = String::new();
    let mut start = true;
    for c in s(&a, 0)?.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    Ok(out.into())
}
fn strlen(a: FuncArgs) -> R {
    num(s(&a, 0)?.chars().count() as f64)
}
fn strrev(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.chars().rev().collect::<String>().into())
}
fn substr(a: FuncArgs) -> R {
    let chars: Vec<char> = s(&a, 0)?.chars().collect();
    let offset = n(&a, 1)?;
    let len = n(&a, 2)?;
    let start = if offset < 0.0 {
        chars.len().saturating_sub((-offset) as usize)
    } else {
        (offset as usize).min(chars.len())
    };
    let end = if len < 0.0 {
        chars.len()
    } else {
        (start + len as usize).min(chars.len())
    };
    Ok(chars[start..end].iter().collect::<String>().into())
}
fn trim(a: FuncArgs) -> R {
    let cut = s(&a, 1)?;
    Ok(s(&a, 0)?
        .trim_matches(|c| cut.contains(c))
        .to_owned()
        .into())
}
fn trimprefix(a: FuncArgs) -> R {
    let v = s(&a, 0)?;
    Ok(v.strip_prefix(s(&a, 1)?).unwrap_or(v).to_owned().into())
}
fn trimsuffix(a: FuncArgs) -> R {
    let v = s(&a, 0)?;
    Ok(v.strip_suffix(s(&a, 1)?).unwrap_or(v).to_owned().into())
}
fn trimspace(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.trim().to_owned().into())
}
fn startswith(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.starts_with(s(&a, 1)?).into())
}
fn endswith(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.ends_with(s(&a, 1)?).into())
}
fn strcontains(a: FuncArgs) -> R {
    Ok(s(&a, 0)?.contains(s(&a, 1)?).into())
}
fn replace(a: FuncArgs) -> R {
    let (v, from, to) = (s(&a, 0)?, s(&a, 1)?, s(&a, 2)?);
    if from.len() > 2 && from.starts_with('/') && from.ends_with('/') {
        let re = regex::Regex::new(&from[1..from.len() - 1]).map_err(|e| e.to_string())?;
        return Ok(re.replace_all(v, to).into_owned().into());
    }
    Ok(v.replace(from, to).into())
}
fn split(a: FuncArgs) -> R {
    let (sep, v) = (s(&a, 0)?, s(&a, 1)?);
    if v.is_empty() {
        return Ok(Value::Array(vec![]));
    }
    Ok(Value::Array(
        v.split(sep).map(|p| Value::String(p.to_owned())).collect(),
    ))
}
fn join(a: FuncArgs) -> R {
    let sep = s(&a, 0)?;
    let mut parts = Vec::new();
    for list in a.iter().skip(1) {
        let list = list
            .as_array()
            .ok_or("join takes lists after the separator")?;
        for v in list {
            parts.push(to_str(v)?);
        }
    }
    Ok(parts.join(sep).into())
}
fn indent(a: FuncArgs) -> R {
    let pad = " ".repeat(idx(n(&a, 0)?, "indent")?);
    let v = s(&a, 1)?;
    let mut out = String::new();
    for (i, line) in v.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    Ok(out.into())
}

/// `format` with `%s`, `%d`, `%f`, `%v`, `%q`, `%t` and `%%` verbs.
fn format_impl(spec: &str, vals: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut it = vals.iter();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(verb) = chars.next() else {
            return Err("format string ends with `%`".into());
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let v = it
            .next()
            .ok_or_else(|| format!("not enough arguments for `%{verb}`"))?;
        match verb {
            's' | 'v' => out.push_str(&to_str(v)?),
            'd' => out.push_str(&format!(
                "{}",
                v.as_f64().ok_or("`%d` needs a number")?.trunc() as i64
            )),
            'f' => out.push_str(&format!("{:.6}", v.as_f64().ok_or("`%f` needs a number")?)),
            't' => out.push_str(&v.as_bool().ok_or("`%t` needs a bool")?.to_string()),
            'q' => out.push_str(&serde_json::to_string(&to_str(v)?).map_err(|e| e.to_string())?),
            other => return Err(format!("unsupported format verb `%{other}`")),
        }
    }
    Ok(out)
}
fn format(a: FuncArgs) -> R {
    let spec = s(&a, 0)?;
    Ok(format_impl(spec, &a[1..])?.into())
}
fn formatlist(a: FuncArgs) -> R {
    let spec = s(&a, 0)?;
    let len = a[1..]
        .iter()
        .filter_map(Value::as_array)
        .map(Vec::len)
        .max()
        .unwrap_or(1);
    let mut out = Vec::new();
    for i in 0..len {
        let mut row = Vec::new();
        for v in &a[1..] {
            match v.as_array() {
                Some(list) => row.push(
                    list.get(i)
                        .cloned()
                        .ok_or("formatlist lists must have the same length")?,
                ),
                None => row.push(v.clone()),
            }
        }
        out.push(Value::String(format_impl(spec, &row)?));
    }
    Ok(Value::Array(out))
}

// ---- collections ----
fn chunklist(a: FuncArgs) -> R {
    let size = idx(n(&a, 1)?, "chunk size")?;
    let list = arr(&a, 0)?;
    if size == 0 {
        return Ok(Value::Array(vec![Value::Array(list.clone())]));
    }
    Ok(Value::Array(
        list.chunks(size)
            .map(|c| Value::Array(c.to_vec()))
            .collect(),
    ))
}
fn coalesce(a: FuncArgs) -> R {
    a.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "coalesce: every argument is null or empty".into())
}
fn coalescelist(a: FuncArgs) -> R {
    a.iter()
        .find(|v| v.as_array().is_some_and(|l| !l.is_empty()))
        .cloned()
        .ok_or_else(|| "coalescelist: every list is empty".into())
}
fn compact(a: FuncArgs) -> R {
    Ok(Value::Array(
        arr(&a, 0)?
            .iter()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .cloned()
            .collect(),
    ))
}
fn concat(a: FuncArgs) -> R {
    let mut out = Vec::new();
    for v in a.iter() {
        out.extend(v.as_array().ok_or("concat takes lists")?.iter().cloned());
    }
    Ok(Value::Array(out))
}
fn contains(a: FuncArgs) -> R {
    let needle = a.get(1).ok_or("contains needs a value")?;
    Ok(arr(&a, 0)?.contains(needle).into())
}
fn distinct(a: FuncArgs) -> R {
    let mut out: Vec<Value> = Vec::new();
    for v in arr(&a, 0)? {
        if !out.contains(v) {
            out.push(v.clone());
        }
    }
    Ok(Value::Array(out))
}
fn element(a: FuncArgs) -> R {
    let list = arr(&a, 0)?;
    if list.is_empty() {
        return Err("element: the list is empty".into());
    }
    let i = idx(n(&a, 1)?, "index")?;
    Ok(list[i % list.len()].clone())
}
fn flatten_into(v: &[Value], out: &mut Vec<Value>) {
    for item in v {
        match item {
            Value::Array(inner) => flatten_into(inner, out),
            other => out.push(other.clone()),
        }
    }
}
fn flatten(a: FuncArgs) -> R {
    let mut out = Vec::new();
    flatten_into(arr(&a, 0)?, &mut out);
    Ok(Value::Array(out))
}
fn keys(a: FuncArgs) -> R {
    let mut k: Vec<&String> = obj(&a, 0)?.keys().collect();
    k.sort();
    Ok(Value::Array(
        k.into_iter().map(|k| k.clone().into()).collect(),
    ))
}
fn values(a: FuncArgs) -> R {
    let m = obj(&a, 0)?;
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(|k| m[k].clone()).collect()))
}
fn length(a: FuncArgs) -> R {
    let len = match a.first() {
        Some(Value::Array(l)) => l.len(),
        Some(Value::Object(m)) => m.len(),
        Some(Value::String(s)) => s.chars().count(),
        _ => return Err("length takes a list, map or string".into()),
    };
    num(len as f64)
}
fn lookup(a: FuncArgs) -> R {
    let m = obj(&a, 0)?;
    let key = s(&a, 1)?;
    match (m.get(key), a.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!("lookup: no key `{key}` and no default")),
    }
}
fn merge(a: FuncArgs) -> R {
    let mut out = Map::new();
    for v in a.iter() {
        if v.is_null() {
            continue;
        }
        for (k, v) in v.as_object().ok_or("merge takes maps")? {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(Value::Object(out))
}
fn one(a: FuncArgs) -> R {
    let list = arr(&a, 0)?;
    match list.len() {
        0 => Ok(Value::Null),
        1 => Ok(list[0].clone()),
        n => Err(format!("one: the list has {n} elements, expected 0 or 1")),
    }
}
fn range(a: FuncArgs) -> R {
    let (start, end, step) = match a.len() {
        1 => (0.0, n(&a, 0)?, 1.0),
        2 => (n(&a, 0)?, n(&a, 1)?, 1.0),
        3 => (n(&a, 0)?, n(&a, 1)?, n(&a, 2)?),
        _ => return Err("range takes 1 to 3 numbers".into()),
    };
    if step == 0.0 || (end - start) / step > 10_000.0 {
        return Err("range: step must be non-zero and the range at most 10000 elements".into());
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x < end) || (step < 0.0 && x > end) {
        out.push(num(x)?);
        x += step;
    }
    Ok(Value::Array(out))
}
fn reverse(a: FuncArgs) -> R {
    Ok(Value::Array(arr(&a, 0)?.iter().rev().cloned().collect()))
}
fn slice(a: FuncArgs) -> R {
    let list = arr(&a, 0)?;
    let (from, to) = (idx(n(&a, 1)?, "start")?, idx(n(&a, 2)?, "end")?);
    if from > to || to > list.len() {
        return Err(format!(
            "slice: {from}..{to} is out of range for a list of {}",
            list.len()
        ));
    }
    Ok(Value::Array(list[from..to].to_vec()))
}
fn sort(a: FuncArgs) -> R {
    let mut items = arr(&a, 0)?
        .iter()
        .map(to_str)
        .collect::<Result<Vec<_>, _>>()?;
    items.sort();
    Ok(Value::Array(items.into_iter().map(Value::String).collect()))
}
fn zipmap(a: FuncArgs) -> R {
    let (k, v) = (arr(&a, 0)?, arr(&a, 1)?);
    if k.len() != v.len() {
        return Err("zipmap: the lists must have the same length".into());
    }
    let mut out = Map::new();
    for (k, v) in k.iter().zip(v) {
        out.insert(to_str(k)?, v.clone());
    }
    Ok(Value::Object(out))
}
fn alltrue(a: FuncArgs) -> R {
    Ok(arr(&a, 0)?
        .iter()
        .all(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
        .into())
}
fn anytrue(a: FuncArgs) -> R {
    Ok(arr(&a, 0)?
        .iter()
        .any(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
        .into())
}
fn sum(a: FuncArgs) -> R {
    let list = arr(&a, 0)?;
    if list.is_empty() {
        return Err("sum: the list is empty".into());
    }
    let mut t = 0.0;
    for v in list {
        t += v.as_f64().ok_or("sum takes a list of numbers")?;
    }
    num(t)
}
fn transpose(a: FuncArgs) -> R {
    let mut out: Map<String, Value> = Map::new();
    for (k, list) in obj(&a, 0)? {
        for v in list.as_array().ok_or("transpose takes a map of lists")? {
            let entry = out
                .entry(to_str(v)?)
                .or_insert_with(|| Value::Array(vec![]));
            if let Value::Array(l) = entry {
                l.push(Value::String(k.clone()));
            }
        }
    }
    Ok(Value::Object(out))
}

// ---- numbers ----
fn abs(a: FuncArgs) -> R {
    num(n(&a, 0)?.abs())
}
fn ceil(a: FuncArgs) -> R {
    num(n(&a, 0)?.ceil())
}
fn floor(a: FuncArgs) -> R {
    num(n(&a, 0)?.floor())
}
fn log(a: FuncArgs) -> R {
    num(n(&a, 0)?.log(n(&a, 1)?))
}
fn max(a: FuncArgs) -> R {
    let mut best: Option<f64> = None;
    for v in a.iter() {
        let x = v.as_f64().ok_or("max takes numbers")?;
        best = Some(best.map_or(x, |b: f64| b.max(x)));
    }
    num(best.ok_or("max needs at least one number")?)
}
fn min(a: FuncArgs) -> R {
    let mut best: Option<f64> = None;
    for v in a.iter() {
        let x = v.as_f64().ok_or("min takes numbers")?;
        best = Some(best.map_or(x, |b: f64| b.min(x)));
    }
    num(best.ok_or("min needs at least one number")?)
}
fn parseint(a: FuncArgs) -> R {
    let base = n(&a, 1)? as u32;
    if !(2..=36).contains(&base) {
        return Err("parseint: base must be between 2 and 36".into());
    }
    let v = i64::from_str_radix(s(&a, 0)?, base).map_err(|e| format!("parseint: {e}"))?;
    num(v as f64)
}
fn pow(a: FuncArgs) -> R {
    num(n(&a, 0)?.powf(n(&a, 1)?))
}
fn signum(a: FuncArgs) -> R {
    let x = n(&a, 0)?;
    num(if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    })
}

// ---- encoding ----
fn jsonencode(a: FuncArgs) -> R {
    let v = a.first().ok_or("jsonencode needs a value")?;
    Ok(serde_json::to_string(v).map_err(|e| e.to_string())?.into())
}
fn jsondecode(a: FuncArgs) -> R {
    let j: serde_json::Value =
        serde_json::from_str(s(&a, 0)?).map_err(|e| format!("jsondecode: {e}"))?;
    hcl::to_value(j).map_err(|e| e.to_string())
}
fn base64encode(a: FuncArgs) -> R {
    Ok(base64::engine::general_purpose::STANDARD
        .encode(s(&a, 0)?)
        .into())
}
fn base64decode(a: FuncArgs) -> R {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s(&a, 0)?)
        .map_err(|e| format!("base64decode: {e}"))?;
    String::from_utf8(bytes)
        .map(Value::String)
        .map_err(|_| "base64decode: the result is not UTF-8".into())
}
fn urlencode(a: FuncArgs) -> R {
    Ok(
        percent_encoding::utf8_percent_encode(s(&a, 0)?, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .into(),
    )
}
fn csvdecode(a: FuncArgs) -> R {
    let rows = parse_csv(s(&a, 0)?)?;
    let Some((header, body)) = rows.split_first() else {
        return Ok(Value::Array(vec![]));
    };
    let mut out = Vec::new();
    for (i, row) in body.iter().enumerate() {
        if row.len() != header.len() {
            return Err(format!(
                "csvdecode: row {} has {} fields, the header has {}",
                i + 2,
                row.len(),
                header.len()
            ));
        }
        let m: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(row.iter().cloned().map(Value::String))
            .collect();
        out.push(Value::Object(m));
    }
    Ok(Value::Array(out))
}
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err("csvdecode: unterminated quoted field".into());
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

// ---- time ----
fn timestamp(_a: FuncArgs) -> R {
    Ok(chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
        .into())
}
fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}
fn timeadd(a: FuncArgs) -> R {
    let t = parse_time(s(&a, 0)?)?;
    let d = s(&a, 1)?;
    let (neg, d) = d.strip_prefix('-').map_or((false, d), |r| (true, r));
    let dur = crate::parse_duration(d)?;
    let delta = chrono::Duration::from_std(dur).map_err(|e| e.to_string())?;
    let t = if neg { t - delta } else { t + delta };
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        .into())
}
fn formatdate(a: FuncArgs) -> R {
    let spec = s(&a, 0)?;
    let t = parse_time(s(&a, 1)?)?;
    // Terraform's tokens, longest first, translated to chrono's.
    const TOKENS: [(&str, &str); 20] = [
        ("YYYY", "%Y"),
        ("YY", "%y"),
        ("MMMM", "%B"),
        ("MMM", "%b"),
        ("MM", "%m"),
        ("M", "%-m"),
        ("DD", "%d"),
        ("D", "%-d"),
        ("EEEE", "%A"),
        ("EEE", "%a"),
        ("hh", "%H"),
        ("h", "%-H"),
        ("HH", "%I"),
        ("H", "%-I"),
        ("mm", "%M"),
        ("m", "%-M"),
        ("ss", "%S"),
        ("s", "%-S"),
        ("ZZZZ", "%z"),
        ("aa", "%p"),
    ];
    let mut fmt = String::new();
    let mut rest = spec;
    'outer: while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').ok_or("formatdate: unterminated quote")?;
            fmt.push_str(&r[..end].replace('%', "%%"));
            rest = &r[end + 1..];
            continue;
        }
        for (tok, chrono_fmt) in TOKENS {
            if let Some(r) = rest.strip_prefix(tok) {
                fmt.push_str(chrono_fmt);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_ascii_alphabetic() {
            return Err(format!("formatdate: unknown token starting at `{rest}`"));
        }
        if c == '%' {
            fmt.push_str("%%");
        } else {
            fmt.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(t.format(&fmt).to_string().into())
}

// ---- regex ----
fn captures_value(re: &regex::Regex, caps: &regex::Captures<'_>) -> Value {
    let named: Vec<&str> = re.capture_names().flatten().collect();
    if !named.is_empty() {
        let m: Map<String, Value> = named
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    caps.name(n).map_or(Value::Null, |m| m.as_str().into()),
                )
            })
            .collect();
        return Value::Object(m);
    }
    if caps.len() > 1 {
        return Value::Array(
            caps.iter()
                .skip(1)
                .map(|m| m.map_or(Value::Null, |m| m.as_str().into()))
                .collect(),
        );
    }
    caps.get(0).map_or(Value::Null, |m| m.as_str().into())
}
fn regex_fn(a: FuncArgs) -> R {
    let re = regex::Regex::new(s(&a, 0)?).map_err(|e| e.to_string())?;
    let caps = re
        .captures(s(&a, 1)?)
        .ok_or("regex: the pattern does not match")?;
    Ok(captures_value(&re, &caps))
}
fn regexall(a: FuncArgs) -> R {
    let re = regex::Regex::new(s(&a, 0)?).map_err(|e| e.to_string())?;
    Ok(Value::Array(
        re.captures_iter(s(&a, 1)?)
            .map(|c| captures_value(&re, &c))
            .collect(),
    ))
}
fn regexreplace(a: FuncArgs) -> R {
    let re = regex::Regex::new(s(&a, 1)?).map_err(|e| e.to_string())?;
    Ok(re.replace_all(s(&a, 0)?, s(&a, 2)?).into_owned().into())
}

// ---- sets (lists of distinct values, sorted) ----
fn toset(a: FuncArgs) -> R {
    Ok(Value::Array(sorted_distinct(arr(&a, 0)?)))
}
fn setproduct(a: FuncArgs) -> R {
    let mut out: Vec<Vec<Value>> = vec![vec![]];
    for list in a.iter() {
        let list = list.as_array().ok_or("setproduct takes lists")?;
        let mut next = Vec::new();
        for prefix in &out {
            for v in list {
                let mut p = prefix.clone();
                p.push(v.clone());
                next.push(p);
            }
        }
        if next.len() > 10_000 {
            return Err("setproduct: more than 10000 combinations".into());
        }
        out = next;
    }
    Ok(Value::Array(out.into_iter().map(Value::Array).collect()))
}
fn set_args(a: &FuncArgs) -> Result<Vec<Vec<Value>>, String> {
    a.iter()
        .map(|v| {
            v.as_array()
                .map(|l| sorted_distinct(l))
                .ok_or("set functions take lists".to_owned())
        })
        .collect()
}
fn setintersection(a: FuncArgs) -> R {
    let sets = set_args(&a)?;
    let first = sets.first().cloned().unwrap_or_default();
    Ok(Value::Array(
        first
            .into_iter()
            .filter(|v| sets.iter().all(|s| s.contains(v)))
            .collect(),
    ))
}
fn setunion(a: FuncArgs) -> R {
    let all: Vec<Value> = set_args(&a)?.into_iter().flatten().collect();
    Ok(Value::Array(sorted_distinct(&all)))
}
fn setsubtract(a: FuncArgs) -> R {
    let sets = set_args(&a)?;
    let (x, y) = (&sets[0], sets.get(1).cloned().unwrap_or_default());
    Ok(Value::Array(
        x.iter().filter(|v| !y.contains(v)).cloned().collect(),
    ))
}
fn setsymmetricdifference(a: FuncArgs) -> R {
    let sets = set_args(&a)?;
    let all: Vec<Value> = sets.iter().flatten().cloned().collect();
    let once: Vec<Value> = sorted_distinct(&all)
        .into_iter()
        .filter(|v| sets.iter().filter(|s| s.contains(v)).count() % 2 == 1)
        .collect();
    Ok(Value::Array(once))
}

// ---- conversions ----
fn tostring(a: FuncArgs) -> R {
    match a.first() {
        Some(Value::Null) => Ok(Value::Null),
        Some(v) => Ok(to_str(v)?.into()),
        None => Err("tostring needs a value".into()),
    }
}
fn tonumber(a: FuncArgs) -> R {
    match a.first() {
        Some(Value::Number(n)) => Ok(Value::Number(*n)),
        Some(Value::String(s)) => num(s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("tonumber: `{s}` is not a number"))?),
        Some(Value::Null) => Ok(Value::Null),
        _ => Err("tonumber takes a number or a string".into()),
    }
}
fn tobool(a: FuncArgs) -> R {
    match a.first() {
        Some(Value::Bool(b)) => Ok((*b).into()),
        Some(Value::String(s)) if s == "true" => Ok(true.into()),
        Some(Value::String(s)) if s == "false" => Ok(false.into()),
        Some(Value::Null) => Ok(Value::Null),
        _ => Err("tobool takes a bool or the strings \"true\" / \"false\"".into()),
    }
}
fn tolist(a: FuncArgs) -> R {
    Ok(Value::Array(arr(&a, 0)?.clone()))
}
fn tomap(a: FuncArgs) -> R {
    Ok(Value::Object(obj(&a, 0)?.clone()))
}

/// Every function name the library defines, sorted (for "did you mean" hints).
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = table().iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names
}

fn table() -> Vec<(&'static str, FuncDef)> {
    use ParamType::{Any, Number as Num, String as Str};
    let f = |func, params: Vec<ParamType>| FuncDef::new(func, params);
    let var = |func, fixed: Vec<ParamType>, rest: ParamType| {
        FuncDef::builder()
            .params(fixed)
            .variadic_param(rest)
            .build(func)
    };
    let list = || ParamType::array_of(Any);
    let map = || ParamType::object_of(Any);
    vec![
        ("chomp", f(chomp, vec![Str])),
        ("format", var(format, vec![Str], Any)),
        ("formatlist", var(formatlist, vec![Str], Any)),
        ("indent", f(indent, vec![Num, Str])),
        ("join", var(join, vec![Str], list())),
        ("lower", f(lower, vec![Str])),
        ("replace", f(replace, vec![Str, Str, Str])),
        ("split", f(split, vec![Str, Str])),
        ("strlen", f(strlen, vec![Str])),
        ("strrev", f(strrev, vec![Str])),
        ("substr", f(substr, vec![Str, Num, Num])),
        ("title", f(title, vec![Str])),
        ("trim", f(trim, vec![Str, Str])),
        ("trimprefix", f(trimprefix, vec![Str, Str])),
        ("trimsuffix", f(trimsuffix, vec![Str, Str])),
        ("trimspace", f(trimspace, vec![Str])),
        ("upper", f(upper, vec![Str])),
        ("shellquote", f(shellquote, vec![Str])),
        ("startswith", f(startswith, vec![Str, Str])),
        ("endswith", f(endswith, vec![Str, Str])),
        ("strcontains", f(strcontains, vec![Str, Str])),
        ("chunklist", f(chunklist, vec![list(), Num])),
        ("coalesce", var(coalesce, vec![], Any)),
        ("coalescelist", var(coalescelist, vec![], Any)),
        ("compact", f(compact, vec![list()])),
        ("concat", var(concat, vec![], list())),
        ("contains", f(contains, vec![list(), Any])),
        ("distinct", f(distinct, vec![list()])),
        ("element", f(element, vec![list(), Num])),
        ("flatten", f(flatten, vec![list()])),
        ("keys", f(keys, vec![map()])),
        ("length", f(length, vec![Any])),
        ("lookup", var(lookup, vec![map(), Str], Any)),
        ("merge", var(merge, vec![], Any)),
        ("one", f(one, vec![list()])),
        ("range", var(range, vec![Num], Num)),
        ("reverse", f(reverse, vec![list()])),
        ("slice", f(slice, vec![list(), Num, Num])),
        ("sort", f(sort, vec![list()])),
        ("values", f(values, vec![map()])),
        ("zipmap", f(zipmap, vec![list(), list()])),
        ("alltrue", f(alltrue, vec![list()])),
        ("anytrue", f(anytrue, vec![list()])),
        ("sum", f(sum, vec![list()])),
        ("transpose", f(transpose, vec![map()])),
        ("abs", f(abs, vec![Num])),
        ("ceil", f(ceil, vec![Num])),
        ("floor", f(floor, vec![Num])),
        ("log", f(log, vec![Num, Num])),
        ("max", var(max, vec![], Num)),
        ("min", var(min, vec![], Num)),
        ("parseint", f(parseint, vec![Str, Num])),
        ("pow", f(pow, vec![Num, Num])),
        ("signum", f(signum, vec![Num])),
        ("jsonencode", f(jsonencode, vec![Any])),
        ("jsondecode", f(jsondecode, vec![Str])),
        ("csvdecode", f(csvdecode, vec![Str])),
        ("base64encode", f(base64encode, vec![Str])),
        ("base64decode", f(base64decode, vec![Str])),
        ("urlencode", f(urlencode, vec![Str])),
        ("formatdate", f(formatdate, vec![Str, Str])),
        ("timeadd", f(timeadd, vec![Str, Str])),
        ("timestamp", f(timestamp, vec![])),
        ("regex", f(regex_fn, vec![Str, Str])),
        ("regexall", f(regexall, vec![Str, Str])),
        ("regexreplace", f(regexreplace, vec![Str, Str, Str])),
        ("toset", f(toset, vec![list()])),
        ("setproduct", var(setproduct, vec![], list())),
        (
            "setintersection",
            var(setintersection, vec![list()], list()),
        ),
        ("setunion", var(setunion, vec![list()], list())),
        ("setsubtract", f(setsubtract, vec![list(), list()])),
        (
            "setsymmetricdifference",
            var(setsymmetricdifference, vec![list()], list()),
        ),
        ("tostring", f(tostring, vec![Any])),
        ("tonumber", f(tonumber, vec![Any])),
        ("tobool", f(tobool, vec![Any])),
        ("tolist", f(tolist, vec![list()])),
        ("tomap", f(tomap, vec![map()])),
    ]
}

/// Declares every library function in `ctx`.
pub fn declare_all(ctx: &mut Context<'_>) {
    for (name, def) in table() {
        ctx.declare_func(name, def);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str) -> Result<Value, String> {
        let mut ctx = Context::new();
        declare_all(&mut ctx);
        let e: hcl::Expression = expr.parse().map_err(|e: hcl::Error| e.to_string())?;
        hcl::eval::Evaluate::evaluate(&e, &ctx).map_err(|e| e.to_string())
    }

    fn ok(expr: &str) -> String {
        match eval(expr) {
            Ok(v) => serde_json::to_string(&v).unwrap(),
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    #[test]
    fn strings() {
        assert_eq!(ok(r#"upper("ab")"#), r#""AB""#);
        assert_eq!(ok(r#"format("%s-%d", "v", 3)"#), r#""v-3""#);
        assert_eq!(ok(r#"formatlist("x%s", ["a", "b"])"#), r#"["xa","xb"]"#);
        assert_eq!(ok(r#"join(",", ["a", "b"], ["c"])"#), r#""a,b,c""#);
        assert_eq!(ok(r#"split(",", "a,b")"#), r#"["a","b"]"#);
        assert_eq!(ok(r#"substr("hello", 1, 3)"#), r#""ell""#);
        assert_eq!(ok(r#"replace("a-b-c", "-", "_")"#), r#""a_b_c""#);
        assert_eq!(ok(r##"replace("a1b22", "/[0-9]+/", "#")"##), r##""a#b#""##);
        assert_eq!(ok(r#"title("hello world")"#), r#""Hello World""#);
        assert_eq!(ok(r#"trim("?!hi!?", "!?")"#), r#""hi""#);
        assert_eq!(ok(r#"indent(2, "a\nb")"#), r#""a\n  b""#);
        assert_eq!(ok(r#"strcontains("abc", "b")"#), "true");
        assert_eq!(ok(r#"shellquote("a b")"#), r#""'a b'""#);
        assert_eq!(ok(r#"shellquote("it's $(x)")"#), r#""'it'\\''s $(x)'""#);
    }

    #[test]
    fn collections() {
        assert_eq!(ok(r#"concat([1], [2, 3])"#), "[1,2,3]");
        assert_eq!(ok(r#"distinct([1, 1, 2])"#), "[1,2]");
        assert_eq!(ok(r#"flatten([[1, [2]], 3])"#), "[1,2,3]");
        assert_eq!(ok(r#"keys({b = 1, a = 2})"#), r#"["a","b"]"#);
        assert_eq!(ok(r#"lookup({a = 1}, "b", 7)"#), "7");
        assert_eq!(ok(r#"merge({a = 1}, {a = 2, b = 3})"#), r#"{"a":2,"b":3}"#);
        assert_eq!(ok("range(3)"), "[0,1,2]");
        assert_eq!(ok("chunklist([1, 2, 3], 2)"), "[[1,2],[3]]");
        assert_eq!(ok(r#"zipmap(["a"], [1])"#), r#"{"a":1}"#);
        assert_eq!(ok("sum([1, 2.5])"), "3.5");
        assert_eq!(ok("length(\"héllo\")"), "5");
        assert_eq!(
            ok(r#"transpose({a = ["x"], b = ["x", "y"]})"#),
            r#"{"x":["a","b"],"y":["b"]}"#
        );
        assert!(eval("element([], 0)").is_err());
    }

    #[test]
    fn numbers_encoding_time_regex_sets() {
        assert_eq!(ok("max(1, 5, 3)"), "5");
        assert_eq!(ok(r#"parseint("ff", 16)"#), "255");
        assert_eq!(ok(r#"base64decode(base64encode("hi"))"#), r#""hi""#);
        assert_eq!(ok(r#"urlencode("a b/c")"#), r#""a%20b%2Fc""#);
        assert_eq!(ok(r#"jsondecode("{\"a\": [1]}")"#), r#"{"a":[1]}"#);
        assert_eq!(
            ok(r#"csvdecode("a,b\n1,\"x,y\"\n")"#),
            r#"[{"a":"1","b":"x,y"}]"#
        );
        assert_eq!(
            ok(r#"timeadd("2024-01-01T00:00:00Z", "90m")"#),
            r#""2024-01-01T01:30:00Z""#
        );
        assert_eq!(
            ok(r#"formatdate("YYYY-MM-DD hh:mm", "2024-03-05T07:08:09Z")"#),
            r#""2024-03-05 07:08""#
        );
        assert_eq!(ok(r#"regex("v([0-9]+)", "release v12")"#), r#"["12"]"#);
        assert_eq!(ok(r#"regexall("[0-9]", "a1b2")"#), r#"["1","2"]"#);
        assert_eq!(ok(r#"toset(["b", "a", "b"])"#), r#"["a","b"]"#);
        assert_eq!(ok(r#"setunion(["a"], ["b", "a"])"#), r#"["a","b"]"#);
        assert_eq!(ok(r#"setintersection(["a", "b"], ["b"])"#), r#"["b"]"#);
        assert_eq!(ok(r#"setsubtract(["a", "b"], ["b"])"#), r#"["a"]"#);
        assert_eq!(
            ok(r#"setsymmetricdifference(["a", "b"], ["b", "c"])"#),
            r#"["a","c"]"#
        );
        assert_eq!(ok(r#"setproduct(["a"], [1, 2])"#), r#"[["a",1],["a",2]]"#);
        assert_eq!(ok(r#"tonumber("42")"#), "42");
        assert_eq!(ok(r#"tostring(true)"#), r#""true""#);
        assert!(eval(r#"tobool("yes")"#).is_err());
    }
}
