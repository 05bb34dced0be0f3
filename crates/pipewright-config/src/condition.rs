//! The condition language of `if` / `else_if` steps.
//!
//! Operators: `==`, `!=`, `>`, `<` (numeric when both sides parse as numbers, else string
//! comparison), `contains`, `!contains`, `&&`, `||` and parentheses. Operands are bare words or
//! single-quoted strings; `$VAR` and `${VAR}` inside them are substituted **after** parsing, so a
//! value can never change the structure of the condition. A lone operand is true unless it is
//! `""`, `false` or `0`.
//!
//! ```
//! use pipewright_config::Condition;
//! let c = Condition::parse("$BRANCH == 'main' && $TASK_TEST_COVERAGE > 80").unwrap();
//! let env = |k: &str| match k {
//!     "BRANCH" => Some("main".to_string()),
//!     "TASK_TEST_COVERAGE" => Some("91.5".to_string()),
//!     _ => None,
//! };
//! assert!(c.eval(&env));
//! // A value that looks like logic stays a value.
//! let evil = |k: &str| (k == "BRANCH").then(|| "x' || 'a' == 'a".to_string());
//! assert!(!Condition::parse("$BRANCH == 'main'").unwrap().eval(&evil));
//! ```

use serde::{Deserialize, Serialize};
use std::fmt;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `<`
    Lt,
    /// `contains`
    Contains,
    /// `!contains`
    NotContains,
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// A lone operand, tested for truthiness.
    Value(Operand),
    /// `left op right`.
    Compare(Operand, CmpOp, Operand),
    /// Both sides true.
    And(Box<Condition>, Box<Condition>),
    /// Either side true.
    Or(Box<Condition>, Box<Condition>),
}

/// An operand: text with `$VAR` references substituted at evaluation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand(pub String);

/// Why a condition does not parse: a message and the byte offset in the condition text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at offset {offset})")]
pub struct ConditionError {
    /// What is wrong.
    pub message: String,
    /// Byte offset in the condition string.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Op(CmpOp),
    And,
    Or,
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{w}`"),
            Tok::Op(op) => write!(f, "`{}`", op_str(*op)),
            Tok::And => f.write_str("`&&`"),
            Tok::Or => f.write_str("`||`"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
        }
    }
}

fn op_str(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
        CmpOp::Gt => ">",
        CmpOp::Lt => "<",
        CmpOp::Contains => "contains",
        CmpOp::NotContains => "!contains",
    }
}

fn tokenize(s: &str) -> Result<Vec<(Tok, usize)>, ConditionError> {
    let err = |message: String, offset| ConditionError { message, offset };
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((Tok::LParen, i));
                i += 1;
            }
            b')' => {
                out.push((Tok::RParen, i));
                i += 1;
            }
            b'&' | b'|' => {
                if b.get(i + 1) != Some(&c) {
                    return Err(err(format!("`{}` must be doubled: `{0}{0}`", c as char), i));
                }
                out.push((if c == b'&' { Tok::And } else { Tok::Or }, i));
                i += 2;
            }
            b'=' => {
                if b.get(i + 1) != Some(&b'=') {
                    return Err(err("use `==` to compare".into(), i));
                }
                out.push((Tok::Op(CmpOp::Eq), i));
                i += 2;
            }
            b'!' => {
                if b.get(i + 1) == Some(&b'=') {
                    out.push((Tok::Op(CmpOp::Ne), i));
                    i += 2;
                } else if s[i + 1..].starts_with("contains") {
                    out.push((Tok::Op(CmpOp::NotContains), i));
                    i += 9;
                } else {
                    return Err(err(
                        "`!` is only allowed in `!=` and `!contains` (there is no negation)".into(),
                        i,
                    ));
                }
            }
            b'>' => {
                out.push((Tok::Op(CmpOp::Gt), i));
                i += 1;
            }
            b'<' => {
                out.push((Tok::Op(CmpOp::Lt), i));
                i += 1;
            }
            b'\'' => {
                let Some(end) = s[i + 1..].find('\'') else {
                    return Err(err("unterminated quoted string".into(), i));
                };
                out.push((Tok::Word(s[i + 1..i + 1 + end].to_owned()), start));
                i += end + 2;
            }
            b'"' => {
                return Err(err("use single quotes for strings in conditions".into(), i));
            }
            _ => {
                // A bare word runs to the next space, parenthesis or operator character; `${…}`
                // keeps its braces together.
                let mut j = i;
                while j < b.len() {
                    let d = b[j];
                    if d == b'$' && b.get(j + 1) == Some(&b'{') {
                        match s[j..].find('}') {
                            Some(close) => j += close + 1,
                            None => return Err(err("unclosed `${`".into(), j)),
                        }
                        continue;
                    }
                    if matches!(
                        d,
                        b' ' | b'\t'
                            | b'\n'
                            | b'\r'
                            | b'('
                            | b')'
                            | b'='
                            | b'!'
                            | b'<'
                            | b'>'
                            | b'&'
                            | b'|'
                            | b'\''
                            | b'"'
                    ) {
                        break;
                    }
                    j += 1;
                }
                let word = &s[i..j];
                let tok = match word {
                    "contains" => Tok::Op(CmpOp::Contains),
                    _ => Tok::Word(word.to_owned()),
                };
                out.push((tok, start));
                i = j;
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.0)
    }

    fn offset(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.end)
    }

    fn err<T>(&self, message: String) -> Result<T, ConditionError> {
        Err(ConditionError {
            message,
            offset: self.offset(),
        })
    }

    fn or(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        let mut left = self.and(depth)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        let mut left = self.cmp(depth)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.cmp(depth)?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn cmp(&mut self, depth: usize) -> Result<Condition, ConditionError> {
        if depth > 64 {
            return self.err("conditions nest too deeply".into());
        }
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return self.err("expected `)`".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Word(left)) => {
                self.pos += 1;
                if let Some(Tok::Op(op)) = self.peek().cloned() {
                    self.pos += 1;
                    match self.peek().cloned() {
                        Some(Tok::Word(right)) => {
                            self.pos += 1;
                            Ok(Condition::Compare(Operand(left), op, Operand(right)))
                        }
                        Some(t) => self.err(format!(
                            "expected a value after `{}`, found {t}",
                            op_str(op)
                        )),
                        None => self.err(format!("expected a value after `{}`", op_str(op))),
                    }
                } else {
                    Ok(Condition::Value(Operand(left)))
                }
            }
            Some(t) => self.err(format!("expected a value or `(`, found {t}")),
            None => self.err("expected a value".into()),
        }
    }
}

impl Condition {
    /// Parses a condition.
    pub fn parse(s: &str) -> Result<Condition, ConditionError> {
        let toks = tokenize(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            end: s.len(),
        };
        let cond = p.or(0)?;
        if let Some(t) = p.peek() {
            let t = t.clone();
            return p.err(format!("unexpected {t}; join conditions with `&&` or `||`"));
        }
        Ok(cond)
    }

    /// The variable names the condition refers to, in order of appearance.
    pub fn variables(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |op: &Operand| out.extend(var_refs(&op.0)));
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Operand)) {
        match self {
            Condition::Value(a) => f(a),
            Condition::Compare(a, _, b) => {
                f(a);
                f(b);
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.walk(f);
                b.walk(f);
            }
        }
    }

    /// Evaluates with `lookup` giving variable values (unknown variables are empty).
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Condition::Value(a) => {
                let v = substitute(&a.0, lookup);
                !(v.is_empty() || v == "false" || v == "0")
            }
            Condition::Compare(a, op, b) => {
                let (a, b) = (substitute(&a.0, lookup), substitute(&b.0, lookup));
                let nums = a
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .zip(b.trim().parse::<f64>().ok());
                match op {
                    CmpOp::Eq => nums.map_or(a == b, |(x, y)| x == y),
                    CmpOp::Ne => nums.map_or(a != b, |(x, y)| x != y),
                    CmpOp::Gt => nums.map_or(a > b, |(x, y)| x > y),
                    CmpOp::Lt => nums.map_or(a < b, |(x, y)| x < y),
                    CmpOp::Contains => a.contains(&b),
                    CmpOp::NotContains => !a.contains(&b),
                }
            }
            Condition::And(a, b) => a.eval(lookup) && b.eval(lookup),
            Condition::Or(a, b) => a.eval(lookup) || b.eval(lookup),
        }
    }
}

fn var_refs(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let (name, next) = split_var(rest);
        if !name.is_empty() {
            out.push(name.to_owned());
        }
        rest = next;
    }
    out
}

/// Splits `rest` (just after a `$`) into the variable name and what follows it.
fn split_var(rest: &str) -> (&str, &str) {
    if let Some(inner) = rest.strip_prefix('{') {
        if let Some(close) = inner.find('}') {
            return (&inner[..close], &inner[close + 1..]);
        }
        return ("", rest);
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (&rest[..end], &rest[end..])
}

fn substitute(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, next) = split_var(after);
        if name.is_empty() {
            out.push('$');
            rest = after;
        } else {
            out.push_str(&lookup(name).unwrap_or_default());
            rest = next;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn operators() {
        let e = env(&[("A", "10"), ("B", "9"), ("S", "feature/x")]);
        assert!(Condition::parse("$A > $B").unwrap().eval(&e)); // numeric, not string order
        assert!(
            Condition::parse("${S} contains 'feature/'")
                .unwrap()
                .eval(&e)
        );
        assert!(Condition::parse("$S !contains main").unwrap().eval(&e));
        assert!(
            Condition::parse("($A == 1 || $A == 10) && $B != 3")
                .unwrap()
                .eval(&e)
        );
        assert!(!Condition::parse("$MISSING").unwrap().eval(&e));
        assert!(Condition::parse("$A").unwrap().eval(&e));
    }

    #[test]
    fn errors_have_offsets() {
        let e = Condition::parse("$A = 1").unwrap_err();
        assert_eq!(e.offset, 3);
        assert!(Condition::parse("!$A").is_err());
        assert!(Condition::parse("$A == ").is_err());
        assert!(Condition::parse("(a == b").is_err());
        assert!(Condition::parse("a b").is_err());
    }

    #[test]
    fn injection_stays_data() {
        let e = env(&[("V", "1 || 1 == 1")]);
        assert!(!Condition::parse("$V == 2").unwrap().eval(&e));
        assert_eq!(Condition::parse("$V == 2").unwrap().variables(), vec!["V"]);
    }
}
