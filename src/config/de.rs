//! Reading config values with errors in the config's own words.
//!
//! Every key of `Config` is read through one of the `de_*` functions below
//! (`#[serde(deserialize_with)]`): each takes whatever TOML value is there
//! ([`Any`]) and either converts it or says what the key accepts and what it
//! got, `workers: expected "auto" or a number from 1 to 1024, got true`,
//! instead of serde's `invalid type: boolean, expected usize`. toml puts the
//! value's span on the error, so the message gets its line.
//!
//! Unknown keys are found before serde runs, on the parsed document with its
//! spans ([`unknown_keys`]), so that the error can name the line and suggest
//! the key that was probably meant.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{Dur, Encoding, EngineChoice, IndexNames, LogFormat, LogTarget, Symlinks, Workers};

/// A TOML value as the checks see it. Unlike `toml::Value` it holds
/// integers beyond `i64` (toml hands those over as `u64`), so that a huge
/// number is reported by the range check that names the key.
#[derive(Debug, Clone, PartialEq)]
pub enum Any {
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Datetime(String),
    Array(Vec<Any>),
    Table(Vec<(String, Any)>),
}

/// How toml hands a datetime to `deserialize_any`: a map with this one key.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Any, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOML value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Any, E> {
                Ok(Any::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Any, E> {
                Ok(Any::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Any, E> {
                Ok(Any::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Any, E> {
                Ok(Any::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Any, E> {
                Ok(Any::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Any, E> {
                Ok(Any::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Any::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Any, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<String>()? {
                    if k == TOML_DATETIME_KEY {
                        let s: String = a.next_value()?;
                        return Ok(Any::Datetime(s));
                    }
                    v.push((k, a.next_value()?));
                }
                Ok(Any::Table(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Shown the way it would be written in the file (short values whole,
/// long lists and tables cut).
impl fmt::Display for Any {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Any::Bool(b) => write!(f, "{b}"),
            Any::Int(n) => write!(f, "{n}"),
            Any::Float(x) => write!(f, "{x:?}"),
            Any::Str(s) => write!(f, "{s:?}"),
            Any::Datetime(s) => write!(f, "{s}"),
            Any::Array(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().take(4).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                if v.len() > 4 {
                    f.write_str(", ...")?;
                }
                f.write_str("]")
            }
            Any::Table(v) if v.is_empty() => f.write_str("{}"),
            Any::Table(v) => {
                f.write_str("{ ")?;
                for (i, (k, x)) in v.iter().take(4).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} = {x}", show_key(k))?;
                }
                if v.len() > 4 {
                    f.write_str(", ...")?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// A key as TOML writes it: bare when it can be, quoted otherwise.
fn show_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        format!("{k:?}")
    }
}

/// `expected WHAT, got VALUE`: the message of a value of the wrong kind.
fn expected<T>(what: &str, got: &Any) -> Result<T, String> {
    Err(format!("expected {what}, got {got}"))
}

fn string(what: &str, v: &Any) -> Result<String, String> {
    match v {
        Any::Str(s) => Ok(s.clone()),
        _ => expected(what, v),
    }
}

fn nonempty(what: &str, v: &Any) -> Result<String, String> {
    match v {
        Any::Str(s) if !s.is_empty() => Ok(s.clone()),
        _ => expected(what, v),
    }
}

fn count(what: &str, v: &Any) -> Result<u64, String> {
    match v {
        Any::Int(n) => u64::try_from(*n).or_else(|_| expected(what, v)),
        _ => expected(what, v),
    }
}

const ADDRESS_LIKE: &str = "an address like \"127.0.0.1:8080\" or \"[::]:80\"";

/// One listen address: `"127.0.0.1:8080"`, `"[::]:80"`.
/// An address given as text (`--listen`), with the config's message.
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    address(&Any::Str(s.to_string()))
}

fn address(v: &Any) -> Result<SocketAddr, String> {
    match v {
        Any::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{v} is not {ADDRESS_LIKE}")),
        _ => Err(format!("{v} is not {ADDRESS_LIKE}")),
    }
}

fn listen(v: &Any) -> Result<Vec<SocketAddr>, String> {
    match v {
        Any::Array(items) => items.iter().map(address).collect(),
        _ => expected(
            "a list of addresses like [\"127.0.0.1:8080\", \"[::]:80\"]",
            v,
        ),
    }
}

fn index(v: &Any) -> Result<IndexNames, String> {
    const WHAT: &str = "a file name or a list of file names, like [\"index.html\", \"index.htm\"]";
    match v {
        Any::Str(s) => Ok(IndexNames(vec![s.clone()])),
        Any::Array(items) => items
            .iter()
            .map(|x| match x {
                Any::Str(s) => Ok(s.clone()),
                _ => expected(WHAT, v),
            })
            .collect::<Result<_, _>>()
            .map(IndexNames),
        _ => expected(WHAT, v),
    }
}

fn engine(v: &Any) -> Result<EngineChoice, String> {
    match v {
        Any::Str(s) if s == "auto" => Ok(EngineChoice::Auto),
        Any::Str(s) if s == "epoll" => Ok(EngineChoice::Epoll),
        Any::Str(s) if s == "io_uring" => Ok(EngineChoice::IoUring),
        _ => expected("\"auto\", \"epoll\" or \"io_uring\"", v),
    }
}

fn workers(v: &Any) -> Result<Workers, String> {
    match v {
        Any::Int(n) if (1..=1024).contains(n) => Ok(Workers::Count(*n as usize)),
        Any::Str(s) if s == "auto" => Ok(Workers::Auto),
        _ => expected("\"auto\" or a number from 1 to 1024", v),
    }
}

fn boolean(v: &Any) -> Result<bool, String> {
    match v {
        Any::Bool(b) => Ok(*b),
        _ => expected("true or false", v),
    }
}

fn log_target(v: &Any) -> Result<LogTarget, String> {
    match nonempty("a file path, \"stderr\" or \"off\"", v)?.as_str() {
        "off" => Ok(LogTarget::Off),
        "stderr" => Ok(LogTarget::Stderr),
        p => Ok(LogTarget::File(PathBuf::from(p))),
    }
}

fn log_level(v: &Any) -> Result<String, String> {
    // The value itself is checked by `validate` (Invalid::LogLevel).
    string("\"error\", \"warn\", \"info\" or \"debug\"", v)
}

fn duration(v: &Any) -> Result<Dur, String> {
    const WHAT: &str = "a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds";
    match v {
        Any::Int(n) => u64::try_from(*n)
            .map(|n| Dur(Duration::from_secs(n)))
            .or_else(|_| expected(WHAT, v)),
        Any::Str(s) => super::parse_duration(s)
            .map(Dur)
            .map_or_else(|| expected(WHAT, v), Ok),
        _ => expected(WHAT, v),
    }
}

fn usize_of(what: &str, v: &Any) -> Result<usize, String> {
    usize::try_from(count(what, v)?).or_else(|_| expected(what, v))
}

/// A table of strings by key: `{ 404 = "404.html" }`, `{ wasm = "application/wasm" }`.
fn string_table(what: &str, item: &str, v: &Any) -> Result<BTreeMap<String, String>, String> {
    match v {
        Any::Table(items) => items
            .iter()
            .map(|(k, x)| match x {
                Any::Str(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("{}: expected {item}, got {x}", show_key(k))),
            })
            .collect(),
        _ => expected(what, v),
    }
}

fn precompressed(v: &Any) -> Result<Vec<Encoding>, String> {
    const WHAT: &str = "a list of \"br\", \"zstd\" and \"gzip\" (or [] for none)";
    let Any::Array(items) = v else {
        return expected(WHAT, v);
    };
    items
        .iter()
        .map(|x| match x {
            Any::Str(s) if s == "br" => Ok(Encoding::Br),
            Any::Str(s) if s == "zstd" => Ok(Encoding::Zstd),
            Any::Str(s) if s == "gzip" => Ok(Encoding::Gzip),
            _ => Err(format!("{x} is not one of \"br\", \"zstd\", \"gzip\"")),
        })
        .collect()
}

fn log_format(v: &Any) -> Result<LogFormat, String> {
    match v {
        Any::Str(s) if s == "combined" => Ok(LogFormat::Combined),
        Any::Str(s) if s == "json" => Ok(LogFormat::Json),
        _ => expected("\"combined\" or \"json\"", v),
    }
}

fn symlinks(v: &Any) -> Result<Symlinks, String> {
    match v {
        Any::Str(s) if s == "within_root" => Ok(Symlinks::WithinRoot),
        Any::Str(s) if s == "deny" => Ok(Symlinks::Deny),
        _ => expected("\"within_root\" or \"deny\"", v),
    }
}

/// `fn NAME(d) -> Result<T, D::Error>` for `#[serde(deserialize_with)]`:
/// reads an [`Any`] and converts it with `CONV`, prefixing a failure with
/// the key (`KEY: message`).
macro_rules! readers {
    ($($name:ident($key:literal) -> $t:ty = $conv:expr;)*) => {$(
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<$t, D::Error> {
            let v = Any::deserialize(d)?;
            let conv: fn(&Any) -> Result<$t, String> = $conv;
            conv(&v).map_err(|m| de::Error::custom(format!("{}: {m}", $key)))
        }
    )*};
}

readers! {
    de_listen("listen") -> Vec<SocketAddr> = listen;
    de_root("root") -> PathBuf = |v| nonempty("a directory path", v).map(PathBuf::from);
    de_index("index") -> IndexNames = index;
    de_engine("engine") -> EngineChoice = engine;
    de_workers("workers") -> Workers = workers;
    de_daemon("daemon") -> bool = boolean;
    de_pidfile("pidfile") -> Option<PathBuf> = |v| nonempty("a file path", v).map(|s| Some(s.into()));
    de_user("user") -> Option<String> = |v| nonempty("a user name", v).map(Some);
    de_group("group") -> Option<String> = |v| nonempty("a group name", v).map(Some);
    de_access_log("access_log") -> LogTarget = log_target;
    de_access_log_format("access_log_format") -> LogFormat = log_format;
    de_metrics_listen("metrics_listen") -> Vec<SocketAddr> = listen;
    de_error_log("error_log") -> LogTarget = log_target;
    de_log_level("log_level") -> String = log_level;
    de_keepalive_timeout("keepalive_timeout") -> Dur = duration;
    de_header_timeout("header_timeout") -> Dur = duration;
    de_send_timeout("send_timeout") -> Dur = duration;
    de_shutdown_timeout("shutdown_timeout") -> Dur = duration;
    de_shutdown_delay("shutdown_delay") -> Dur = duration;
    de_max_header_size("max_header_size") -> usize = |v| usize_of("a number of bytes", v);
    de_max_target_size("max_target_size") -> usize = |v| usize_of("a number of bytes", v);
    de_max_body_size("max_body_size") -> u64 = |v| count("a number of bytes", v);
    de_max_connections("max_connections") -> usize = |v| usize_of("a number of connections", v);
    de_serve_dotfiles("serve_dotfiles") -> bool = boolean;
    de_error_page_404("error_page_404") -> Option<String> = |v| string("a page path under the root", v).map(Some);
    de_error_pages("error_pages") -> BTreeMap<String, String> = |v| string_table(
        "a table of pages by status, like { 404 = \"404.html\", 500 = \"50x.html\" }",
        "a page path under the root",
        v,
    );
    de_autoindex("autoindex") -> bool = boolean;
    de_fallback("fallback") -> String = |v| string("a page path under the root, or \"\" for none", v);
    de_default_type("default_type") -> String = |v| string("a media type like \"application/octet-stream\"", v);
    de_mime_types("mime_types") -> BTreeMap<String, String> = |v| string_table(
        "a table of media types by extension, like { wasm = \"application/wasm\" }",
        "a media type like \"application/wasm\"",
        v,
    );
    de_precompressed("precompressed") -> Vec<Encoding> = precompressed;
    de_max_ranges("max_ranges") -> usize = |v| usize_of("a number of ranges from 0 to 1024", v);
    de_cache_size("cache_size") -> u64 = |v| count("a number of bytes (0 turns the cache off)", v);
    de_cache_max_file("cache_max_file") -> u64 = |v| count("a number of bytes", v);
    de_cache_revalidate("cache_revalidate") -> Dur = duration;
    de_symlinks("symlinks") -> Symlinks = symlinks;
    de_rule_match("rules: match") -> String = |v| nonempty("a glob like \"/assets/**\" or \"*.css\"", v);
    de_rule_headers("rules: headers") -> BTreeMap<String, String> = |v| string_table(
        "a table of header fields, like { \"Cache-Control\" = \"max-age=3600\" }",
        "a header value (a string)",
        v,
    );
}

// ---------------------------------------------------------------------------
// Unknown keys and the shape of [[rules]]
// ---------------------------------------------------------------------------

/// The field names of a struct that derives `Deserialize`, as its derive
/// knows them (so a key added to `Config` is known here at once).
pub fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A key the schema does not have, where it is, and the key probably meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The table it is in (`Some("rules")` for a key of a `[[rules]]` entry).
    pub table: Option<&'static str>,
    pub key: String,
    /// Byte offset of the key in the text.
    pub at: usize,
    pub suggestion: Option<&'static str>,
    /// A top-level key written after a `[[rules]]` header, where TOML makes
    /// it a key of the rule.
    pub misplaced: bool,
}

/// A `rules` value that is not a list of `{ match, headers }` tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRules {
    pub at: usize,
    pub message: String,
}

/// Problems with the document's keys, before any value is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    Unknown(UnknownKey),
    Rules(BadRules),
}

/// Check every top-level key (and every key of each `[[rules]]` entry)
/// against the schema. `top` and `rule` are the known keys.
pub fn unknown_keys(
    doc: &toml::de::DeTable<'_>,
    top: &'static [&'static str],
    rule: &'static [&'static str],
) -> Result<(), KeyProblem> {
    use toml::de::DeValue;
    for (k, v) in doc.iter() {
        let key: &str = k.get_ref();
        if !top.contains(&key) {
            return Err(KeyProblem::Unknown(UnknownKey {
                table: None,
                key: key.to_string(),
                at: k.span().start,
                suggestion: suggest(key, top),
                misplaced: false,
            }));
        }
        if key != "rules" {
            continue;
        }
        let bad = |at: usize, message: String| Err(KeyProblem::Rules(BadRules { at, message }));
        let entries = match v.get_ref() {
            DeValue::Array(a) => a,
            DeValue::Table(_) => {
                return bad(
                    k.span().start,
                    "write each rule as a [[rules]] entry (two brackets), not [rules]".into(),
                );
            }
            other => {
                return bad(
                    v.span().start,
                    format!(
                        "expected [[rules]] entries with match = \"<glob>\" and headers = {{ ... }}, got {}",
                        other.type_str()
                    ),
                );
            }
        };
        for e in entries.iter() {
            let DeValue::Table(t) = e.get_ref() else {
                return bad(
                    e.span().start,
                    format!(
                        "each rule is a table with match = \"<glob>\" and headers = {{ ... }}, got {}",
                        e.get_ref().type_str()
                    ),
                );
            };
            for (rk, _) in t.iter() {
                let rkey: &str = rk.get_ref();
                if !rule.contains(&rkey) {
                    return Err(KeyProblem::Unknown(UnknownKey {
                        table: Some("rules"),
                        key: rkey.to_string(),
                        at: rk.span().start,
                        suggestion: suggest(rkey, rule),
                        misplaced: top.contains(&rkey),
                    }));
                }
            }
            if !t.iter().any(|(rk, _)| rk.get_ref() == "match") {
                return bad(
                    e.span().start,
                    "a rule needs match = \"<glob>\" (like \"/assets/**\" or \"*.css\")".into(),
                );
            }
        }
    }
    Ok(())
}

/// Byte offset of a key of the `rule`-th `[[rules]]` entry (from 0): its
/// `match` when `header` is None, else that field name in its `headers`
/// (or `headers` itself when the name is not found as written).
pub fn rule_key_at(
    doc: &toml::de::DeTable<'_>,
    rule: usize,
    header: Option<&str>,
) -> Option<usize> {
    use toml::de::DeValue;
    let (_, rules) = doc.iter().find(|(k, _)| k.get_ref() == "rules")?;
    let DeValue::Array(entries) = rules.get_ref() else {
        return None;
    };
    let DeValue::Table(t) = entries.get(rule)?.get_ref() else {
        return None;
    };
    let key = if header.is_some() { "headers" } else { "match" };
    let (k, v) = t.iter().find(|(k, _)| k.get_ref() == key)?;
    let field = match (header, v.get_ref()) {
        (Some(name), DeValue::Table(h)) => h.iter().find(|(f, _)| f.get_ref() == name),
        _ => None,
    };
    Some(field.map_or(k.span().start, |(f, _)| f.span().start))
}

/// The known key closest to `key`, if it is close: a small edit distance
/// (a typo, a case slip), or `key` is the start of it (`keepalive`).
pub fn suggest(key: &str, known: &[&'static str]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase().replace('-', "_");
    // One edit for a short key, two or three for longer ones.
    let n = key.chars().count();
    let limit = if n <= 3 { 1 } else { (n / 3).clamp(2, 3) };
    let best = known
        .iter()
        .map(|k| (edit_distance(&lower, k), *k))
        .min_by_key(|(d, _)| *d)?;
    if best.0 <= limit {
        return Some(best.1);
    }
    if lower.len() >= 4 {
        let mut starts = known.iter().filter(|k| k.starts_with(lower.as_str()));
        if let (Some(k), None) = (starts.next(), starts.next()) {
            return Some(k);
        }
    }
    None
}

/// Edit distance by characters, a swap of two neighbours counting as one
/// edit (optimal string alignment): `lisne` is two edits from `listen`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_when_close() {
        let known = [
            "listen",
            "root",
            "keepalive_timeout",
            "header_timeout",
            "workers",
        ];
        assert_eq!(suggest("lisen", &known), Some("listen"));
        // The issue's own typo: a swap and a missing letter.
        assert_eq!(suggest("lisne", &known), Some("listen"));
        assert_eq!(suggest("rot", &known), Some("root"));
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(suggest("Listen", &known), Some("listen"));
        assert_eq!(suggest("worker", &known), Some("workers"));
        assert_eq!(suggest("keepalive", &known), Some("keepalive_timeout"));
        assert_eq!(
            suggest("keepalive-timeout", &known),
            Some("keepalive_timeout")
        );
        assert_eq!(suggest("bogus_key", &known), None);
        assert_eq!(suggest("x", &known), None);
        assert_eq!(suggest("timeout", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn values_are_shown_as_written() {
        let t = |s: &str| -> Any {
            #[derive(serde::Deserialize)]
            struct W {
                v: Any,
            }
            toml::from_str::<W>(&format!("v = {s}")).unwrap().v
        };
        for s in [
            "true",
            "3",
            "-1",
            "1.5",
            "\"x\"",
            "[1, \"a\"]",
            "{ a = 1, \"b c\" = \"d\" }",
            "{}",
            "1979-05-27T07:32:00Z",
            "18446744073709551615",
        ] {
            assert_eq!(t(s).to_string(), s);
        }
        assert_eq!(t("[1, 2, 3, 4, 5]").to_string(), "[1, 2, 3, 4, ...]");
    }
}
