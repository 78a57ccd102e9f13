//! Reading config values with errors in the config's own words.
//!
//! Every key is read by the reader its entry in the schema names (the
//! functions below, through [`Read`]): each takes whatever TOML value is
//! there ([`Any`]) and either converts it or says what the key accepts and
//! what it got, `workers: expected "auto" or a number from 1 to 1024, got
//! true`, instead of serde's `invalid type: boolean, expected usize`. toml
//! puts the value's span on the error, so the message gets its line.
//!
//! The [`schema!`] macro, which turns a table of keys into the struct, its
//! defaults and its `Deserialize`, is here too.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::values::{Dur, Encoding, EngineChoice, IndexNames, Symlinks, Workers};
use crate::log::{Level, LogFormat, LogTarget};

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

pub(super) fn string(what: &str, v: &Any) -> Result<String, String> {
    match v {
        Any::Str(s) => Ok(s.clone()),
        _ => expected(what, v),
    }
}

pub(super) fn nonempty(what: &str, v: &Any) -> Result<String, String> {
    match v {
        Any::Str(s) if !s.is_empty() => Ok(s.clone()),
        _ => expected(what, v),
    }
}

pub(super) fn count(what: &str, v: &Any) -> Result<u64, String> {
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

pub(super) fn listen(v: &Any) -> Result<Vec<SocketAddr>, String> {
    match v {
        Any::Array(items) => items.iter().map(address).collect(),
        _ => expected(
            "a list of addresses like [\"127.0.0.1:8080\", \"[::]:80\"]",
            v,
        ),
    }
}

pub(super) fn index(v: &Any) -> Result<IndexNames, String> {
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

pub(super) fn engine(v: &Any) -> Result<EngineChoice, String> {
    match v {
        Any::Str(s) if s == "auto" => Ok(EngineChoice::Auto),
        Any::Str(s) if s == "epoll" => Ok(EngineChoice::Epoll),
        Any::Str(s) if s == "io_uring" => Ok(EngineChoice::IoUring),
        _ => expected("\"auto\", \"epoll\" or \"io_uring\"", v),
    }
}

pub(super) fn workers(v: &Any) -> Result<Workers, String> {
    match v {
        Any::Int(n) if (1..=1024).contains(n) => Ok(Workers::Count(*n as usize)),
        Any::Str(s) if s == "auto" => Ok(Workers::Auto),
        _ => expected("\"auto\" or a number from 1 to 1024", v),
    }
}

pub(super) fn boolean(v: &Any) -> Result<bool, String> {
    match v {
        Any::Bool(b) => Ok(*b),
        _ => expected("true or false", v),
    }
}

/// A log target given as text (`--error-log`, `--access-log`): a file
/// path, "stderr" or "off", with the config's message.
pub fn parse_log_target(s: &str) -> Result<LogTarget, String> {
    log_target(&Any::Str(s.to_string()))
}

pub(super) fn log_target(v: &Any) -> Result<LogTarget, String> {
    match nonempty("a file path, \"stderr\" or \"off\"", v)?.as_str() {
        "off" => Ok(LogTarget::Off),
        "stderr" => Ok(LogTarget::Stderr),
        p => Ok(LogTarget::File(PathBuf::from(p))),
    }
}

pub(super) fn log_level(v: &Any) -> Result<Level, String> {
    let s = string("\"error\", \"warn\", \"info\" or \"debug\"", v)?;
    Level::parse(&s).ok_or_else(|| format!("{s:?} is not one of error, warn, info, debug"))
}

pub(super) fn duration(v: &Any) -> Result<Dur, String> {
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

pub(super) fn usize_of(what: &str, v: &Any) -> Result<usize, String> {
    usize::try_from(count(what, v)?).or_else(|_| expected(what, v))
}

pub(super) fn u32_of(what: &str, v: &Any) -> Result<u32, String> {
    u32::try_from(count(what, v)?).or_else(|_| expected(what, v))
}

/// A table of strings by key: `{ 404 = "404.html" }`, `{ wasm = "application/wasm" }`.
pub(super) fn string_table(
    what: &str,
    item: &str,
    v: &Any,
) -> Result<BTreeMap<String, String>, String> {
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

pub(super) fn precompressed(v: &Any) -> Result<Vec<Encoding>, String> {
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

/// `compression`: as `precompressed`, and a coding listed once.
pub(super) fn codings(v: &Any) -> Result<Vec<Encoding>, String> {
    let list = precompressed(v)?;
    for (i, e) in list.iter().enumerate() {
        if list[..i].contains(e) {
            return Err(format!("{:?} is listed twice", e.token()));
        }
    }
    Ok(list)
}

/// A list of strings: `["text/*", "application/json"]`.
pub(super) fn string_list(what: &str, v: &Any) -> Result<Vec<String>, String> {
    let Any::Array(items) = v else {
        return expected(what, v);
    };
    items.iter().map(|x| nonempty(what, x)).collect()
}

/// `compression_level = { br = 5, zstd = 6, gzip = 6 }`: each within its
/// coding's range.
pub(super) fn compression_level(v: &Any) -> Result<BTreeMap<String, u32>, String> {
    const WHAT: &str = "a table of levels by coding, like { br = 5, zstd = 6, gzip = 6 }";
    let Any::Table(items) = v else {
        return expected(WHAT, v);
    };
    items
        .iter()
        .map(|(k, x)| {
            let max = match k.as_str() {
                "br" => 11,
                "zstd" => 19,
                "gzip" => 9,
                _ => return Err(format!("{}: not one of br, zstd, gzip", show_key(k))),
            };
            let min = u64::from(k == "zstd");
            match x {
                Any::Int(n) if (i128::from(min)..=max).contains(n) => Ok((k.clone(), *n as u32)),
                _ => Err(format!(
                    "{}: expected a level from {min} to {max}, got {x}",
                    show_key(k)
                )),
            }
        })
        .collect()
}

pub(super) fn log_format(v: &Any) -> Result<LogFormat, String> {
    match v {
        Any::Str(s) if s == "combined" => Ok(LogFormat::Combined),
        Any::Str(s) if s == "json" => Ok(LogFormat::Json),
        _ => expected("\"combined\" or \"json\"", v),
    }
}

pub(super) fn symlinks(v: &Any) -> Result<Symlinks, String> {
    match v {
        Any::Str(s) if s == "within_root" => Ok(Symlinks::WithinRoot),
        Any::Str(s) if s == "deny" => Ok(Symlinks::Deny),
        _ => expected("\"within_root\" or \"deny\"", v),
    }
}

/// Reads one key's value: whatever TOML value is there ([`Any`]),
/// converted by `conv`. A failure names the key (`KEY: message`, or
/// `TABLE: KEY: message` for a key of a `[[rules]]` entry), and toml puts
/// the value's span on it, so the message gets its line.
pub struct Read<T> {
    /// The table the key is in, "" at the top.
    pub table: &'static str,
    pub key: &'static str,
    pub conv: fn(&Any) -> Result<T, String>,
}

impl<'de, T> DeserializeSeed<'de> for Read<T> {
    type Value = T;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        let v = Any::deserialize(d)?;
        (self.conv)(&v).map_err(|m| {
            de::Error::custom(match self.table {
                "" => format!("{}: {m}", self.key),
                t => format!("{t}: {}: {m}", self.key),
            })
        })
    }
}

/// A table of keys in which each key is written once: its doc, its name,
/// its type, its default and its reader. From it come the struct (a field
/// per key), its `Default`, its `Deserialize` (every key optional, each
/// read by its reader), `keys()` (every key, for the unknown-key check),
/// and a module of constants naming each key (`key::listen == "listen"`)
/// through which the rest of the config names keys, so that a key's name
/// is spelled in its table entry alone and a misspelt use does not compile.
///
/// ```text
/// schema! {
///     /// The struct's doc.
///     #[derive(Debug, Clone)]
///     pub struct Name {
///         /// The key's doc.
///         field: Type = default => reader,
///         field as "match": Type = default => reader,  // a key that is a Rust keyword
///     }
///     keys: pub mod name_key, in table key::rules;     // `in table` for a nested table
/// }
/// ```
///
/// A reader is a function `fn(&Any) -> Result<Type, String>` (its name, or
/// a closure in parentheses) or `serde`: the type's own `Deserialize`, for a
/// nested table made by `schema!` (its errors name its own keys).
///
/// Unknown keys are not this macro's business: they are found on the
/// document before it runs (`keys::unknown_keys`), with their line.
macro_rules! schema {
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:literal) => { $key };
    (@table) => { "" };
    (@table $table:expr) => { $table };
    (@read $map:ident, $table:ident, $key:expr, $ty:ty, serde) => {
        $map.next_value::<$ty>()?
    };
    (@read $map:ident, $table:ident, $key:expr, $ty:ty, ($($conv:tt)*)) => {
        $crate::config::de::schema!(@read $map, $table, $key, $ty, { $($conv)* })
    };
    (@read $map:ident, $table:ident, $key:expr, $ty:ty, $conv:expr) => {
        $map.next_value_seed($crate::config::de::Read::<$ty> {
            table: $table,
            key: $key,
            conv: $conv,
        })?
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident $(as $key:literal)? : $ty:ty = $default:expr => $read:tt,
            )*
        }
        keys: $kvis:vis mod $keys:ident $(, in table $table:expr)?;
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        #[doc = concat!(
            "The name of each key of [`", stringify!($name), "`], as the file writes it."
        )]
        #[allow(non_upper_case_globals)]
        $kvis mod $keys {
            $(
                $(#[doc = $doc])*
                pub const $field: &str = $crate::config::de::schema!(@key $field $($key)?);
            )*
        }

        impl $name {
            /// Every key, in the table's order.
            pub fn keys() -> &'static [&'static str] {
                &[$( $keys::$field ),*]
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a table")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$name, A::Error> {
                        const TABLE: &str = $crate::config::de::schema!(@table $($table)?);
                        let mut out = $name::default();
                        while let Some(k) = map.next_key::<String>()? {
                            match k.as_str() {
                                $( $keys::$field => {
                                    out.$field = $crate::config::de::schema!(
                                        @read map, TABLE, $keys::$field, $ty, $read
                                    );
                                } )*
                                // Found with its line before serde runs.
                                _ => {
                                    let known = $name::keys();
                                    return Err(serde::de::Error::unknown_field(&k, known));
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_struct(stringify!($name), $name::keys(), V)
            }
        }
    };
}
pub(super) use schema;

#[cfg(test)]
mod tests {
    use super::*;

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
