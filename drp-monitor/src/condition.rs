//! The condition language, modelled on Gatus: `[STATUS] == 200`, `[STATUS] == any(200, 204)`,
//! `[RESPONSE_TIME] < 500`, `[BODY].status == UP`, `[BODY].items[0].name == web`,
//! `[BODY] == pat(*ready*)`, `len([BODY].items) > 0`, `[CONNECTED] == true`,
//! `[CERTIFICATE_EXPIRATION] > 72h`.
//!
//! A condition is `SUBJECT OPERATOR EXPECTED`:
//!
//! - SUBJECT is a placeholder (see [`Placeholder`]), `[BODY]` optionally followed by a JSON
//!   path (`.field`, `[index]`), or `len(...)` of one.
//! - OPERATOR is `==`, `!=`, `<`, `<=`, `>` or `>=`.
//! - EXPECTED is a value (bare, or `"quoted"` when it holds spaces, commas or parentheses),
//!   `any(V1, V2, ...)` or `pat(GLOB)` (`*` any run, `?` one character); `any` and `pat` go
//!   with `==` and `!=` only.
//!
//! Numbers compare as numbers; `[RESPONSE_TIME]` and `[CERTIFICATE_EXPIRATION]` take a
//! duration (`500ms`, `72h`) or a number of milliseconds. Everything the parser can check
//! without a response is checked when parsing, and errors name the column.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::duration::{HumanDuration, parse_duration};
use crate::probe::Observation;

/// A value a probe observes, named in conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Placeholder {
    /// `[STATUS]`: the HTTP status code.
    Status,
    /// `[RESPONSE_TIME]`: how long the probe took, in milliseconds.
    ResponseTime,
    /// `[BODY]`: the HTTP response body, or a command's standard output.
    Body,
    /// `[CONNECTED]`: whether a connection was made.
    Connected,
    /// `[CERTIFICATE_EXPIRATION]`: time left until the server certificate expires.
    CertificateExpiration,
    /// `[IP]`: the address connected to, or the first address a name resolved to.
    Ip,
    /// `[EXIT_CODE]`: a command's exit status.
    ExitCode,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 7] = [
        Placeholder::Status,
        Placeholder::ResponseTime,
        Placeholder::Body,
        Placeholder::Connected,
        Placeholder::CertificateExpiration,
        Placeholder::Ip,
        Placeholder::ExitCode,
    ];

    /// How it is written, brackets included.
    pub fn as_str(self) -> &'static str {
        match self {
            Placeholder::Status => "[STATUS]",
            Placeholder::ResponseTime => "[RESPONSE_TIME]",
            Placeholder::Body => "[BODY]",
            Placeholder::Connected => "[CONNECTED]",
            Placeholder::CertificateExpiration => "[CERTIFICATE_EXPIRATION]",
            Placeholder::Ip => "[IP]",
            Placeholder::ExitCode => "[EXIT_CODE]",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL
            .into_iter()
            .find(|p| &p.as_str()[1..p.as_str().len() - 1] == name)
    }

    fn value_type(self) -> ValueType {
        match self {
            Placeholder::Status | Placeholder::ExitCode => ValueType::Number,
            Placeholder::ResponseTime | Placeholder::CertificateExpiration => ValueType::Duration,
            Placeholder::Connected => ValueType::Bool,
            Placeholder::Body | Placeholder::Ip => ValueType::Any,
        }
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the expected values of a subject must be, checked when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Number,
    /// Milliseconds, written as a number or a duration.
    Duration,
    Bool,
    /// Text, numbers, booleans, JSON: decided by what is observed.
    Any,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Operator {
    /// How it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "==",
            Operator::Ne => "!=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
        }
    }

    fn is_ordering(self) -> bool {
        !matches!(self, Operator::Eq | Operator::Ne)
    }

    fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Operator::Eq => ordering == Equal,
            Operator::Ne => ordering != Equal,
            Operator::Lt => ordering == Less,
            Operator::Le => ordering != Greater,
            Operator::Gt => ordering == Greater,
            Operator::Ge => ordering != Less,
        }
    }
}

/// One step of a JSON path into `[BODY]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// `.name`
    Field(String),
    /// `[0]`
    Index(usize),
}

#[derive(Debug, Clone, PartialEq)]
struct Subject {
    placeholder: Placeholder,
    path: Vec<PathSegment>,
    /// `len(...)`
    length: bool,
}

impl Subject {
    fn value_type(&self) -> ValueType {
        if self.length {
            ValueType::Number
        } else {
            self.placeholder.value_type()
        }
    }

    fn describe_type(&self) -> String {
        match self.value_type() {
            ValueType::Number if self.length => "len(...) is a number".into(),
            ValueType::Number => format!("{} is a number", self.placeholder),
            ValueType::Duration => format!("{} is a duration", self.placeholder),
            ValueType::Bool => format!("{} is true or false", self.placeholder),
            ValueType::Any => format!("{} takes any value", self.placeholder),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.length {
            f.write_str("len(")?;
        }
        f.write_str(self.placeholder.as_str())?;
        for segment in &self.path {
            match segment {
                PathSegment::Field(name) => write!(f, ".{name}")?,
                PathSegment::Index(i) => write!(f, "[{i}]")?,
            }
        }
        if self.length {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// An expected value, typed by the subject it is compared with.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Number(f64),
    Bool(bool),
    /// For subjects of any type; `quoted` text never compares as a number.
    Text {
        text: String,
        quoted: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Value(Literal),
    Any(Vec<Literal>),
    Pattern(String),
}

/// A parsed condition. `Display` gives back the text it was parsed from, without the white
/// space around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    text: String,
    subject: Subject,
    operator: Operator,
    expected: Expected,
}

/// A condition that does not parse: what is wrong, at which column, and what was expected.
///
/// `Display`: `unexpected ')' at column 17: expected a value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem} at column {column}: {expected}")]
pub struct ConditionError {
    problem: String,
    column: usize,
    byte_offset: usize,
    expected: String,
}

impl ConditionError {
    /// The column of the problem in the condition text: 1-based, counted in characters.
    pub fn position(&self) -> usize {
        self.column
    }

    /// The same position as a byte offset into the condition text (0-based).
    pub fn byte_offset(&self) -> usize {
        self.byte_offset
    }

    /// What was found (`unexpected ')'`, `end of condition`, `unknown placeholder [STATU]`).
    pub fn problem(&self) -> &str {
        &self.problem
    }

    /// What was expected instead.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

/// The outcome of one condition against one observation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionResult {
    /// The condition as written.
    pub condition: String,
    /// Whether it held.
    pub ok: bool,
    /// The observed value it was compared with, or why there was none.
    pub actual: String,
    /// Whether there was a value to compare (false: `actual` says why not).
    pub observed: bool,
}

impl Condition {
    /// Parses a condition.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        Parser::new(text).condition()
    }

    /// The placeholder the condition reads.
    pub fn placeholder(&self) -> Placeholder {
        self.subject.placeholder
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The text it was parsed from, without the white space around it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Checks the condition against what a probe observed.
    pub fn evaluate(&self, observation: &Observation) -> ConditionResult {
        let (ok, actual, observed) = match self.observe(observation) {
            Ok(actual) => {
                let shown = match (&actual, self.subject.value_type()) {
                    (Scalar::Number(ms), ValueType::Duration) if *ms < 0.0 => format!(
                        "expired {} ago",
                        HumanDuration(Duration::from_millis(-ms as u64))
                    ),
                    (Scalar::Number(ms), ValueType::Duration) => {
                        HumanDuration(Duration::from_millis(*ms as u64)).to_string()
                    }
                    _ => actual.to_string(),
                };
                (self.matches(&actual), shown, true)
            }
            Err(missing) => (false, missing, false),
        };
        ConditionResult {
            condition: self.text.clone(),
            ok,
            actual,
            observed,
        }
    }

    /// The subject's value in the observation, or why there is none.
    fn observe(&self, observation: &Observation) -> Result<Scalar, String> {
        let missing = || format!("nothing: no {} observed", self.subject.placeholder);
        let scalar = match self.subject.placeholder {
            Placeholder::Status => {
                Scalar::Number(f64::from(observation.status.ok_or_else(missing)?))
            }
            Placeholder::ExitCode => {
                Scalar::Number(f64::from(observation.exit_code.ok_or_else(missing)?))
            }
            Placeholder::ResponseTime => {
                Scalar::Number(observation.response_time.as_millis() as f64)
            }
            Placeholder::CertificateExpiration => Scalar::Number(
                observation
                    .certificate
                    .as_ref()
                    .ok_or_else(missing)?
                    .expires_in_ms as f64,
            ),
            Placeholder::Connected => Scalar::Bool(observation.connected.ok_or_else(missing)?),
            Placeholder::Ip => Scalar::Text(
                observation
                    .addresses
                    .first()
                    .ok_or_else(missing)?
                    .to_string(),
            ),
            Placeholder::Body => {
                let body = observation.body.as_deref().ok_or_else(missing)?;
                if self.subject.path.is_empty() {
                    if self.subject.length {
                        return Ok(Scalar::Number(body.chars().count() as f64));
                    }
                    Scalar::Text(body.to_owned())
                } else {
                    let json: serde_json::Value = serde_json::from_str(body)
                        .map_err(|e| format!("a body that is not JSON ({e})"))?;
                    let value = walk(&json, &self.subject.path)?;
                    if self.subject.length {
                        return match value {
                            serde_json::Value::Array(a) => Ok(Scalar::Number(a.len() as f64)),
                            serde_json::Value::Object(o) => Ok(Scalar::Number(o.len() as f64)),
                            serde_json::Value::String(s) => {
                                Ok(Scalar::Number(s.chars().count() as f64))
                            }
                            other => Err(format!("{other}, which has no length")),
                        };
                    }
                    Scalar::from_json(value)
                }
            }
        };
        Ok(scalar)
    }

    fn matches(&self, actual: &Scalar) -> bool {
        match &self.expected {
            Expected::Value(literal) => compare(actual, literal).satisfies(self.operator),
            Expected::Any(literals) => {
                let any_equal = literals
                    .iter()
                    .any(|l| compare(actual, l).satisfies(Operator::Eq));
                any_equal == (self.operator == Operator::Eq)
            }
            Expected::Pattern(pattern) => {
                glob_matches(pattern, &actual.to_string()) == (self.operator == Operator::Eq)
            }
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Condition::parse(text)
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

fn walk<'a>(
    mut value: &'a serde_json::Value,
    path: &[PathSegment],
) -> Result<&'a serde_json::Value, String> {
    let mut walked = String::from("[BODY]");
    for segment in path {
        let next = match segment {
            PathSegment::Field(name) => {
                walked.push('.');
                walked.push_str(name);
                value.get(name.as_str())
            }
            PathSegment::Index(i) => {
                walked.push_str(&format!("[{i}]"));
                value.get(*i)
            }
        };
        value = next.ok_or_else(|| format!("nothing: the body has no {walked}"))?;
    }
    Ok(value)
}

/// An observed value, reduced to what conditions compare.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Number(f64),
    Bool(bool),
    Text(String),
}

impl Scalar {
    fn from_json(value: &serde_json::Value) -> Scalar {
        match value {
            serde_json::Value::Number(n) => n
                .as_f64()
                .map_or_else(|| Scalar::Text(n.to_string()), Scalar::Number),
            serde_json::Value::Bool(b) => Scalar::Bool(*b),
            serde_json::Value::String(s) => Scalar::Text(s.clone()),
            other => Scalar::Text(other.to_string()),
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// How an observed value relates to an expected one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both are numbers (or booleans, or equal text): every operator applies.
    Ordered(std::cmp::Ordering),
    /// They differ, and have no order: text such as "UP" against "DOWN", or a word against a
    /// number. Only `!=` holds.
    Unequal,
}

impl Comparison {
    fn satisfies(self, operator: Operator) -> bool {
        match self {
            Comparison::Ordered(ordering) => operator.holds(ordering),
            Comparison::Unequal => operator == Operator::Ne,
        }
    }
}

/// `actual` compared with `expected`.
fn compare(actual: &Scalar, expected: &Literal) -> Comparison {
    use std::cmp::Ordering::Equal;
    let number = |text: &str| text.trim().parse::<f64>().ok();
    let ordered = |a: f64, e: f64| {
        a.partial_cmp(&e)
            .map_or(Comparison::Unequal, Comparison::Ordered)
    };
    match (actual, expected) {
        (Scalar::Number(a), Literal::Number(e)) => ordered(*a, *e),
        (Scalar::Text(a), Literal::Number(e)) => {
            number(a).map_or(Comparison::Unequal, |a| ordered(a, *e))
        }
        (Scalar::Bool(a), Literal::Bool(e)) => Comparison::Ordered(a.cmp(e)),
        (
            Scalar::Number(a),
            Literal::Text {
                text,
                quoted: false,
            },
        ) if number(text).is_some() => ordered(*a, number(text).unwrap_or_default()),
        (
            Scalar::Text(a),
            Literal::Text {
                text,
                quoted: false,
            },
        ) if number(a).is_some() && number(text).is_some() => ordered(
            number(a).unwrap_or_default(),
            number(text).unwrap_or_default(),
        ),
        (actual, Literal::Text { text, .. }) if actual.to_string() == *text => {
            Comparison::Ordered(Equal)
        }
        (Scalar::Text(a), Literal::Bool(e)) if a == if *e { "true" } else { "false" } => {
            Comparison::Ordered(Equal)
        }
        _ => Comparison::Unequal,
    }
}

/// Glob matching: `*` matches any run of characters (also none), `?` exactly one.
fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            backtrack = Some((p, t));
            p += 1;
        } else if let Some((star, matched)) = backtrack {
            p = star + 1;
            t = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

const OPERATORS: &str = "an operator (==, !=, <, <=, >, >=)";
const SUBJECTS: &str = "a placeholder such as [STATUS], or len(...)";

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            text,
            chars: text.char_indices().collect(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn rest_starts_with(&self, prefix: &str) -> bool {
        self.byte_at(self.pos)
            .is_some_and(|offset| self.text[offset..].starts_with(prefix))
    }

    fn byte_at(&self, pos: usize) -> Option<usize> {
        self.chars.get(pos).map(|&(offset, _)| offset)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn error_at(
        &self,
        pos: usize,
        problem: impl Into<String>,
        expected: impl Into<String>,
    ) -> ConditionError {
        ConditionError {
            problem: problem.into(),
            column: pos + 1,
            byte_offset: self.byte_at(pos).unwrap_or(self.text.len()),
            expected: expected.into(),
        }
    }

    /// "unexpected 'TOKEN'" for what stands at `pos`, or "end of condition".
    fn unexpected_at(&self, pos: usize, expected: impl Into<String>) -> ConditionError {
        let Some(&(_, first)) = self.chars.get(pos) else {
            return self.error_at(pos, "end of condition", expected);
        };
        let token: String = if first.is_whitespace() || "()[],\"".contains(first) {
            first.to_string()
        } else if "=!<>".contains(first) {
            self.chars[pos..]
                .iter()
                .map(|&(_, c)| c)
                .take_while(|c| "=!<>".contains(*c))
                .collect()
        } else {
            self.chars[pos..]
                .iter()
                .map(|&(_, c)| c)
                .take_while(|c| !c.is_whitespace() && !"()[],\"".contains(*c))
                .take(40)
                .collect()
        };
        self.error_at(pos, format!("unexpected '{token}'"), expected)
    }

    fn condition(mut self) -> Result<Condition, ConditionError> {
        self.skip_whitespace();
        if self.at_end() {
            return Err(self.error_at(0, "empty condition", format!("expected {SUBJECTS}")));
        }
        let subject = self.subject()?;
        self.skip_whitespace();
        let operator_pos = self.pos;
        let operator = self.operator()?;
        if operator.is_ordering() && subject.value_type() == ValueType::Bool {
            return Err(self.unexpected_at(
                operator_pos,
                format!("expected == or != ({})", subject.describe_type()),
            ));
        }
        self.skip_whitespace();
        let expected = self.expected(&subject, operator)?;
        self.skip_whitespace();
        if !self.at_end() {
            return Err(self.unexpected_at(self.pos, "expected the end of the condition"));
        }
        Ok(Condition {
            text: self.text.trim().to_owned(),
            subject,
            operator,
            expected,
        })
    }

    fn subject(&mut self) -> Result<Subject, ConditionError> {
        if self.rest_starts_with("len(") {
            self.pos += 4;
            self.skip_whitespace();
            let start = self.pos;
            if self.peek() != Some('[') {
                return Err(self.unexpected_at(self.pos, "expected a placeholder such as [BODY]"));
            }
            let (placeholder, path) = self.placeholder()?;
            if placeholder != Placeholder::Body {
                return Err(self.error_at(
                    start,
                    format!("{placeholder} has no length"),
                    "expected [BODY] or a JSON path in it, such as len([BODY].items)",
                ));
            }
            self.skip_whitespace();
            if self.peek() != Some(')') {
                return Err(self.unexpected_at(self.pos, "expected ')'"));
            }
            self.pos += 1;
            return Ok(Subject {
                placeholder,
                path,
                length: true,
            });
        }
        if self.peek() != Some('[') {
            return Err(self.unexpected_at(self.pos, format!("expected {SUBJECTS}")));
        }
        let (placeholder, path) = self.placeholder()?;
        Ok(Subject {
            placeholder,
            path,
            length: false,
        })
    }

    /// `[NAME]` and, for `[BODY]`, a JSON path.
    fn placeholder(&mut self) -> Result<(Placeholder, Vec<PathSegment>), ConditionError> {
        let start = self.pos;
        self.pos += 1; // '['
        let name: String = self.chars[self.pos..]
            .iter()
            .map(|&(_, c)| c)
            .take_while(|&c| c != ']' && !c.is_whitespace())
            .collect();
        self.pos += name.chars().count();
        if self.peek() != Some(']') {
            self.skip_whitespace();
            return Err(self.unexpected_at(self.pos, "expected ']' to close the placeholder"));
        }
        self.pos += 1;
        let placeholder = Placeholder::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = Placeholder::ALL.iter().map(|p| p.as_str()).collect();
            self.error_at(
                start,
                format!("unknown placeholder [{name}]"),
                format!("expected one of {}", known.join(", ")),
            )
        })?;
        let mut path = Vec::new();
        while let Some(c @ ('.' | '[')) = self.peek() {
            if placeholder != Placeholder::Body {
                return Err(self.unexpected_at(
                    self.pos,
                    format!("expected {OPERATORS}: only [BODY] has fields, not {placeholder}"),
                ));
            }
            self.pos += 1;
            if c == '.' {
                let field: String = self.chars[self.pos..]
                    .iter()
                    .map(|&(_, c)| c)
                    .take_while(|&c| c.is_alphanumeric() || c == '_' || c == '-')
                    .collect();
                if field.is_empty() {
                    return Err(self.unexpected_at(self.pos, "expected a field name after '.'"));
                }
                self.pos += field.chars().count();
                path.push(PathSegment::Field(field));
            } else {
                let digits: String = self.chars[self.pos..]
                    .iter()
                    .map(|&(_, c)| c)
                    .take_while(char::is_ascii_digit)
                    .collect();
                let index = digits.parse().map_err(|_| {
                    self.unexpected_at(self.pos, "expected an array index such as [0]")
                })?;
                self.pos += digits.len();
                if self.peek() != Some(']') {
                    return Err(self.unexpected_at(self.pos, "expected ']' after the array index"));
                }
                self.pos += 1;
                path.push(PathSegment::Index(index));
            }
        }
        Ok((placeholder, path))
    }

    fn operator(&mut self) -> Result<Operator, ConditionError> {
        for (text, operator) in [
            ("==", Operator::Eq),
            ("!=", Operator::Ne),
            ("<=", Operator::Le),
            (">=", Operator::Ge),
            ("<", Operator::Lt),
            (">", Operator::Gt),
        ] {
            if self.rest_starts_with(text) {
                self.pos += text.len();
                return Ok(operator);
            }
        }
        if self.rest_starts_with("=") {
            return Err(self.unexpected_at(
                self.pos,
                format!("expected {OPERATORS}; did you mean '=='?"),
            ));
        }
        Err(self.unexpected_at(self.pos, format!("expected {OPERATORS}")))
    }

    fn expected(
        &mut self,
        subject: &Subject,
        operator: Operator,
    ) -> Result<Expected, ConditionError> {
        for function in ["any", "pat"] {
            if !self.rest_starts_with(&format!("{function}(")) {
                continue;
            }
            if operator.is_ordering() {
                return Err(self.error_at(
                    self.pos,
                    format!("unexpected '{function}('"),
                    format!("expected a single value: {function}() goes with == or != only"),
                ));
            }
            self.pos += 4;
            if function == "pat" {
                self.skip_whitespace();
                let (text, _, _) = self.value()?;
                self.skip_whitespace();
                if self.peek() != Some(')') {
                    return Err(self.unexpected_at(self.pos, "expected ')' to close pat("));
                }
                self.pos += 1;
                return Ok(Expected::Pattern(text));
            }
            let mut values = Vec::new();
            loop {
                self.skip_whitespace();
                values.push(self.typed_value(subject)?);
                self.skip_whitespace();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        return Ok(Expected::Any(values));
                    }
                    _ => return Err(self.unexpected_at(self.pos, "expected ',' or ')'")),
                }
            }
        }
        Ok(Expected::Value(self.typed_value(subject)?))
    }

    /// A value, checked against the type of the subject.
    fn typed_value(&mut self, subject: &Subject) -> Result<Literal, ConditionError> {
        let start = self.pos;
        let (text, quoted, end) = self.value()?;
        let wrong = |parser: &Self, expected: &str| {
            let shown = &parser.text[parser.byte_at(start).unwrap_or(0)
                ..parser.byte_at(end).unwrap_or(parser.text.len())];
            parser.error_at(
                start,
                format!("unexpected '{shown}'"),
                format!("expected {expected} ({})", subject.describe_type()),
            )
        };
        let number = if quoted {
            None
        } else {
            text.parse::<f64>().ok()
        };
        match subject.value_type() {
            ValueType::Number => number
                .map(Literal::Number)
                .ok_or_else(|| wrong(self, "a number")),
            ValueType::Duration => number
                .or_else(|| {
                    (!quoted)
                        .then(|| parse_duration(&text).ok())
                        .flatten()
                        .map(|d| d.as_millis() as f64)
                })
                .map(Literal::Number)
                .ok_or_else(|| {
                    wrong(
                        self,
                        "a duration such as 500ms or 72h, or a number of milliseconds",
                    )
                }),
            ValueType::Bool => match (quoted, text.as_str()) {
                (false, "true") => Ok(Literal::Bool(true)),
                (false, "false") => Ok(Literal::Bool(false)),
                _ => Err(wrong(self, "true or false")),
            },
            ValueType::Any => Ok(Literal::Text { text, quoted }),
        }
    }

    /// A bare or quoted value: its text, whether it was quoted, and where it ends.
    fn value(&mut self) -> Result<(String, bool, usize), ConditionError> {
        let start = self.pos;
        if self.peek() == Some('"') {
            self.pos += 1;
            let mut text = String::new();
            loop {
                match self.peek() {
                    None => {
                        return Err(self.error_at(
                            start,
                            "unterminated string",
                            "expected a closing '\"'",
                        ));
                    }
                    Some('"') => {
                        self.pos += 1;
                        return Ok((text, true, self.pos));
                    }
                    Some('\\') if matches!(self.chars.get(self.pos + 1), Some((_, '"' | '\\'))) => {
                        text.push(self.chars[self.pos + 1].1);
                        self.pos += 2;
                    }
                    Some(c) => {
                        text.push(c);
                        self.pos += 1;
                    }
                }
            }
        }
        if self.peek() == Some('[') {
            let end = self.chars[start..]
                .iter()
                .position(|&(_, c)| c.is_whitespace())
                .map_or(self.chars.len(), |n| start + n);
            let shown = &self.text
                [self.byte_at(start).unwrap_or(0)..self.byte_at(end).unwrap_or(self.text.len())];
            return Err(self.error_at(
                start,
                format!("unexpected '{shown}'"),
                "expected a value: placeholders go on the left of the operator",
            ));
        }
        let text: String = self.chars[self.pos..]
            .iter()
            .map(|&(_, c)| c)
            .take_while(|&c| !c.is_whitespace() && !"(),\"".contains(c))
            .collect();
        if text.is_empty() {
            return Err(self.unexpected_at(self.pos, "expected a value"));
        }
        self.pos += text.chars().count();
        if self.peek() == Some('(') {
            return Err(self.error_at(
                start,
                format!("unknown function '{text}('"),
                "expected any(...), pat(...) or a value",
            ));
        }
        Ok((text, false, self.pos))
    }
}

#[cfg(test)]
mod tests;
