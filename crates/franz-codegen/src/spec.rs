//! The `protocol-specs/*.spec` format and its parser.
//!
//! One file per API, for example:
//!
//! ```text
//! api FindCoordinator key=10 versions=0-6 flexible=3+
//!
//! request FindCoordinatorRequest
//!   Key string versions=0-3
//!   KeyType int8 versions=1+ default=0
//!   CoordinatorKeys []string versions=4+
//!
//! response FindCoordinatorResponse
//!   Coordinators []Coordinator versions=4+
//!     Key string versions=4+
//!   common SomeStruct versions=0+
//!     Field int32 versions=0+
//! ```
//!
//! A field line is `Name type attr...`; two spaces of indentation per level
//! nest the fields of a struct (or array of structs). Attributes:
//! `versions=R` (required), `nullable=R`, `tag=N`, `tagged=R`,
//! `flexible=R|none` (per-field override), `default=V` (JSON-quoted when
//! empty or containing spaces), and the flag `ignorable`. A range `R` is
//! `N`, `N-M` or `N+`. Lines starting with `#` are comments.

use std::fmt;

/// An inclusive version range; `hi == None` means "and every later version".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// Lowest version.
    pub lo: i16,
    /// Highest version, if bounded.
    pub hi: Option<i16>,
}

impl VersionRange {
    /// Parses `N`, `N-M` or `N+`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.parse::<i16>()
                .map_err(|_| format!("bad version range {s:?}"))
        };
        if let Some(lo) = s.strip_suffix('+') {
            return Ok(Self {
                lo: num(lo)?,
                hi: None,
            });
        }
        if let Some((lo, hi)) = s.split_once('-') {
            return Ok(Self {
                lo: num(lo)?,
                hi: Some(num(hi)?),
            });
        }
        let v = num(s)?;
        Ok(Self { lo: v, hi: Some(v) })
    }

    /// Whether `v` is inside.
    pub fn contains(&self, v: i16) -> bool {
        v >= self.lo && self.hi.is_none_or(|hi| v <= hi)
    }

    /// A Rust boolean expression testing `var` against the range, given the
    /// message's own bounds (so trivially true tests fold away).
    pub fn rust_test(&self, var: &str, msg_lo: i16, msg_hi: i16) -> String {
        let lo = (self.lo > msg_lo).then(|| format!("{var} >= {}", self.lo));
        let hi = self
            .hi
            .filter(|hi| *hi < msg_hi)
            .map(|hi| format!("{var} <= {hi}"));
        match (lo, hi) {
            (None, None) => "true".into(),
            (Some(a), None) | (None, Some(a)) => a,
            (Some(a), Some(b)) => format!("({a} && {b})"),
        }
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.hi {
            None => write!(f, "{}+", self.lo),
            Some(hi) if hi == self.lo => write!(f, "{hi}"),
            Some(hi) => write!(f, "{}-{hi}", self.lo),
        }
    }
}

/// A field's wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// `bool`.
    Bool,
    /// `int8`.
    Int8,
    /// `int16`.
    Int16,
    /// `uint16`.
    Uint16,
    /// `int32`.
    Int32,
    /// `uint32`.
    Uint32,
    /// `int64`.
    Int64,
    /// `float64`.
    Float64,
    /// `uuid`.
    Uuid,
    /// `string`.
    String,
    /// `bytes`.
    Bytes,
    /// `records`.
    Records,
    /// A struct, by name.
    Struct(String),
    /// `[]T`.
    Array(Box<Self>),
}

impl FieldType {
    /// Parses a spec type name.
    pub fn parse(s: &str) -> Self {
        if let Some(inner) = s.strip_prefix("[]") {
            return Self::Array(Box::new(Self::parse(inner)));
        }
        match s {
            "bool" => Self::Bool,
            "int8" => Self::Int8,
            "int16" => Self::Int16,
            "uint16" => Self::Uint16,
            "int32" => Self::Int32,
            "uint32" => Self::Uint32,
            "int64" => Self::Int64,
            "float64" => Self::Float64,
            "uuid" => Self::Uuid,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "records" => Self::Records,
            other => Self::Struct(other.to_string()),
        }
    }

    /// The spec spelling.
    pub fn spec_name(&self) -> String {
        match self {
            Self::Bool => "bool".into(),
            Self::Int8 => "int8".into(),
            Self::Int16 => "int16".into(),
            Self::Uint16 => "uint16".into(),
            Self::Int32 => "int32".into(),
            Self::Uint32 => "uint32".into(),
            Self::Int64 => "int64".into(),
            Self::Float64 => "float64".into(),
            Self::Uuid => "uuid".into(),
            Self::String => "string".into(),
            Self::Bytes => "bytes".into(),
            Self::Records => "records".into(),
            Self::Struct(n) => n.clone(),
            Self::Array(t) => format!("[]{}", t.spec_name()),
        }
    }
}

/// One field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field name (UpperCamelCase).
    pub name: String,
    /// Wire type.
    pub ty: FieldType,
    /// Versions that carry the field.
    pub versions: VersionRange,
    /// Versions in which it may be null.
    pub nullable: Option<VersionRange>,
    /// Tag number, for tagged fields.
    pub tag: Option<u32>,
    /// Versions in which it is tagged.
    pub tagged: Option<VersionRange>,
    /// Per-field flexible-version override (`Some(None)` = never flexible).
    pub flexible: Option<Option<VersionRange>>,
    /// Default value as written in the spec.
    pub default: Option<String>,
    /// Whether a non-default value may be dropped silently where the version
    /// lacks the field.
    pub ignorable: bool,
    /// Fields of an inline struct type.
    pub fields: Vec<Self>,
}

/// A named struct shared by several fields of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommonStruct {
    /// Struct name.
    pub name: String,
    /// Versions it exists in.
    pub versions: VersionRange,
    /// Its fields.
    pub fields: Vec<FieldSpec>,
}

/// One message (a request or a response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSpec {
    /// e.g. `FindCoordinatorRequest`.
    pub name: String,
    /// Top-level fields.
    pub fields: Vec<FieldSpec>,
    /// Common structs.
    pub common: Vec<CommonStruct>,
}

/// One API: its request and response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSpec {
    /// e.g. `FindCoordinator`.
    pub name: String,
    /// API key.
    pub key: i16,
    /// Versions franz speaks (the 4.0 floor to the highest stable).
    pub versions: VersionRange,
    /// First flexible version, if any.
    pub flexible: Option<VersionRange>,
    /// The request.
    pub request: MessageSpec,
    /// The response.
    pub response: MessageSpec,
}

impl ApiSpec {
    /// Lowest version.
    pub fn min_version(&self) -> i16 {
        self.versions.lo
    }

    /// Highest version.
    pub fn max_version(&self) -> i16 {
        self.versions.hi.unwrap_or(self.versions.lo)
    }
}

fn parse_opt_range(s: &str) -> Result<Option<VersionRange>, String> {
    if s == "none" {
        Ok(None)
    } else {
        VersionRange::parse(s).map(Some)
    }
}

/// Splits a line into tokens, honouring JSON-style double quotes.
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut in_quote = false;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quote = !in_quote;
                quoted = true;
            }
            '\\' if in_quote => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quote => {
                if !cur.is_empty() || quoted {
                    out.push(std::mem::take(&mut cur));
                    quoted = false;
                }
            }
            c => cur.push(c),
        }
    }
    if in_quote {
        return Err(format!("unterminated quote in {line:?}"));
    }
    if !cur.is_empty() || quoted {
        out.push(cur);
    }
    Ok(out)
}

fn parse_field(toks: &[String], lineno: usize) -> Result<FieldSpec, String> {
    let err = |m: String| format!("line {lineno}: {m}");
    if toks.len() < 3 {
        return Err(err("a field needs a name, a type and versions=".into()));
    }
    let mut f = FieldSpec {
        name: toks[0].clone(),
        ty: FieldType::parse(&toks[1]),
        versions: VersionRange { lo: 0, hi: None },
        nullable: None,
        tag: None,
        tagged: None,
        flexible: None,
        default: None,
        ignorable: false,
        fields: Vec::new(),
    };
    let mut saw_versions = false;
    for t in &toks[2..] {
        let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
        match k {
            "versions" => {
                f.versions = VersionRange::parse(v).map_err(err)?;
                saw_versions = true;
            }
            "nullable" => f.nullable = Some(VersionRange::parse(v).map_err(err)?),
            "tag" => f.tag = Some(v.parse().map_err(|_| err(format!("bad tag {v}")))?),
            "tagged" => f.tagged = Some(VersionRange::parse(v).map_err(err)?),
            "flexible" => f.flexible = Some(parse_opt_range(v).map_err(err)?),
            "default" => f.default = Some(v.to_string()),
            "ignorable" => f.ignorable = true,
            other => return Err(err(format!("unknown attribute {other}"))),
        }
    }
    if !saw_versions {
        return Err(err(format!("field {} has no versions=", f.name)));
    }
    Ok(f)
}

/// Parses one `.spec` file.
pub fn parse(text: &str) -> Result<ApiSpec, String> {
    // (indent, tokens, line number) of every meaningful line.
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if indent % 2 != 0 {
            return Err(format!(
                "line {}: indentation must be a multiple of two",
                i + 1
            ));
        }
        lines.push((indent / 2, tokens(trimmed)?, i + 1));
    }
    let mut iter = lines.into_iter().peekable();
    let (_, head, _) = iter.next().ok_or("empty spec")?;
    if head.first().map(String::as_str) != Some("api") || head.len() < 2 {
        return Err("the first line must be `api Name key=N versions=R flexible=R`".into());
    }
    let mut api = ApiSpec {
        name: head[1].clone(),
        key: -1,
        versions: VersionRange { lo: 0, hi: Some(0) },
        flexible: None,
        request: MessageSpec {
            name: String::new(),
            fields: Vec::new(),
            common: Vec::new(),
        },
        response: MessageSpec {
            name: String::new(),
            fields: Vec::new(),
            common: Vec::new(),
        },
    };
    for t in &head[2..] {
        let (k, v) = t.split_once('=').ok_or(format!("bad api attribute {t}"))?;
        match k {
            "key" => api.key = v.parse().map_err(|_| format!("bad key {v}"))?,
            "versions" => api.versions = VersionRange::parse(v)?,
            "flexible" => api.flexible = parse_opt_range(v)?,
            other => return Err(format!("unknown api attribute {other}")),
        }
    }
    let mut seen = [false, false];
    while let Some((indent, toks, lineno)) = iter.next() {
        if indent != 0 || toks.len() != 2 {
            return Err(format!(
                "line {lineno}: expected `request Name` or `response Name`"
            ));
        }
        let slot = match toks[0].as_str() {
            "request" => 0,
            "response" => 1,
            other => return Err(format!("line {lineno}: unexpected {other}")),
        };
        seen[slot] = true;
        let mut msg = MessageSpec {
            name: toks[1].clone(),
            fields: Vec::new(),
            common: Vec::new(),
        };
        while let Some((indent, toks, lineno)) = iter.next_if(|(i, _, _)| *i >= 1) {
            if indent != 1 {
                return Err(format!("line {lineno}: unexpected indentation"));
            }
            if toks[0] == "common" {
                if toks.len() != 3 {
                    return Err(format!("line {lineno}: `common Name versions=R`"));
                }
                let versions = VersionRange::parse(toks[2].strip_prefix("versions=").unwrap_or(""))
                    .map_err(|e| format!("line {lineno}: {e}"))?;
                let fields = parse_children(&mut iter, 2)?;
                msg.common.push(CommonStruct {
                    name: toks[1].clone(),
                    versions,
                    fields,
                });
            } else {
                let mut f = parse_field(&toks, lineno)?;
                f.fields = parse_children(&mut iter, 2)?;
                msg.fields.push(f);
            }
        }
        if slot == 0 {
            api.request = msg;
        } else {
            api.response = msg;
        }
    }
    if !(seen[0] && seen[1]) {
        return Err(format!("{}: needs both a request and a response", api.name));
    }
    Ok(api)
}

type Lines = std::iter::Peekable<std::vec::IntoIter<(usize, Vec<String>, usize)>>;

fn parse_children(iter: &mut Lines, depth: usize) -> Result<Vec<FieldSpec>, String> {
    let mut out = Vec::new();
    while let Some((indent, toks, lineno)) = iter.next_if(|(i, _, _)| *i >= depth) {
        if indent != depth {
            return Err(format!("line {lineno}: unexpected indentation"));
        }
        let mut f = parse_field(&toks, lineno)?;
        f.fields = parse_children(iter, depth + 1)?;
        out.push(f);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_spec() {
        let spec = parse(
            "# c\napi X key=7 versions=1-3 flexible=2+\n\nrequest XRequest\n  A int32 versions=0+ default=-1\n  B []S versions=1+ nullable=3+\n    C string versions=1+ default=\"\" ignorable\n  common T versions=0+\n    D uuid versions=0+\nresponse XResponse\n  E int16 versions=0+ tag=0 tagged=2+\n",
        )
        .unwrap();
        assert_eq!(spec.key, 7);
        assert_eq!(spec.max_version(), 3);
        assert_eq!(spec.request.fields.len(), 2);
        assert_eq!(
            spec.request.fields[1].fields[0].default.as_deref(),
            Some("")
        );
        assert_eq!(spec.request.common[0].fields[0].ty, FieldType::Uuid);
        assert_eq!(spec.response.fields[0].tag, Some(0));
    }

    #[test]
    fn ranges() {
        let r = VersionRange::parse("3+").unwrap();
        assert!(r.contains(3) && r.contains(100) && !r.contains(2));
        assert_eq!(VersionRange::parse("1-4").unwrap().to_string(), "1-4");
        assert_eq!(r.rust_test("v", 0, 9), "v >= 3");
        assert_eq!(r.rust_test("v", 3, 9), "true");
    }
}
