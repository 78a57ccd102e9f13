//! The document's keys, before any value is read: unknown keys (with the
//! key probably meant), the shape of `[[rules]]`, and where a key is set
//! (the line an error names).

use super::schema::{Config, Rule, TlsCertificate, key, rule_key, tls_cert_key};

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

/// A `rules` (or `tls_certificates`) value that is not a list of tables
/// of the right shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRules {
    /// `rules` or `tls_certificates`.
    pub key: &'static str,
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
/// against the schema: every problem, in the order of the file.
pub fn unknown_keys(doc: &toml::de::DeTable<'_>) -> Vec<KeyProblem> {
    let top = Config::keys();
    let mut found = Vec::new();
    for (k, v) in doc.iter() {
        let name: &str = k.get_ref();
        if !top.contains(&name) {
            found.push(KeyProblem::Unknown(UnknownKey {
                table: None,
                key: name.to_string(),
                at: k.span().start,
                suggestion: suggest(name, top),
                misplaced: false,
            }));
        } else if let Some(list) = TableList::of(name) {
            rules_keys(&list, k, v, top, &mut found);
        }
    }
    found
}

/// A key whose value is a list of tables (`[[key]]` entries).
struct TableList {
    key: &'static str,
    /// Its entries' keys.
    keys: &'static [&'static str],
    /// The keys each entry needs.
    needs: &'static [&'static str],
    /// What one entry is called, and looks like.
    entry: &'static str,
    shape: &'static str,
    needs_msg: &'static str,
}

impl TableList {
    fn of(name: &str) -> Option<TableList> {
        match name {
            key::rules => Some(TableList {
                key: key::rules,
                keys: Rule::keys(),
                needs: &[rule_key::pattern],
                entry: "rule",
                shape: "match = \"<glob>\" and headers = { ... }",
                needs_msg: "a rule needs match = \"<glob>\" (like \"/assets/**\" or \"*.css\")",
            }),
            key::tls_certificates => Some(TableList {
                key: key::tls_certificates,
                keys: TlsCertificate::keys(),
                needs: &[tls_cert_key::cert, tls_cert_key::key],
                entry: "certificate",
                shape: "cert = \"<file>\" and key = \"<file>\"",
                needs_msg: "an entry needs cert = \"<file>\" and key = \"<file>\"",
            }),
            _ => None,
        }
    }
}

/// The problems of a `rules` (or `tls_certificates`) value: its shape (the
/// first one found: past it the entries cannot be read), and each entry's
/// unknown keys.
fn rules_keys(
    list: &TableList,
    k: &toml::Spanned<toml::de::DeString<'_>>,
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    top: &[&'static str],
    found: &mut Vec<KeyProblem>,
) {
    use toml::de::DeValue;
    let (name, rule, shape) = (list.key, list.keys, list.shape);
    let bad = |at: usize, message: String| {
        KeyProblem::Rules(BadRules {
            key: name,
            at,
            message,
        })
    };
    let entries = match v.get_ref() {
        DeValue::Array(a) => a,
        DeValue::Table(_) => {
            return found.push(bad(
                k.span().start,
                format!(
                    "write each {} as a [[{name}]] entry (two brackets), not [{name}]",
                    list.entry
                ),
            ));
        }
        other => {
            return found.push(bad(
                v.span().start,
                format!(
                    "expected [[{name}]] entries with {shape}, got {}",
                    other.type_str()
                ),
            ));
        }
    };
    for e in entries.iter() {
        let DeValue::Table(t) = e.get_ref() else {
            return found.push(bad(
                e.span().start,
                format!(
                    "each {} is a table with {shape}, got {}",
                    list.entry,
                    e.get_ref().type_str()
                ),
            ));
        };
        for (rk, _) in t.iter() {
            let rkey: &str = rk.get_ref();
            if !rule.contains(&rkey) {
                found.push(KeyProblem::Unknown(UnknownKey {
                    table: Some(name),
                    key: rkey.to_string(),
                    at: rk.span().start,
                    suggestion: suggest(rkey, rule),
                    misplaced: top.contains(&rkey),
                }));
            }
        }
        let has = |n: &&str| t.iter().any(|(rk, _)| rk.get_ref() == *n);
        if !list.needs.iter().all(has) {
            found.push(bad(e.span().start, list.needs_msg.into()));
        }
    }
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
    let (_, rules) = doc.iter().find(|(k, _)| k.get_ref() == key::rules)?;
    let DeValue::Array(entries) = rules.get_ref() else {
        return None;
    };
    let DeValue::Table(t) = entries.get(rule)?.get_ref() else {
        return None;
    };
    let name = match header {
        Some(_) => rule_key::headers,
        None => rule_key::pattern,
    };
    let (k, v) = t.iter().find(|(k, _)| k.get_ref() == name)?;
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

/// The 1-based line where top-level `key` is assigned, if it is.
pub fn key_line(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let table = format!("[{key}]");
    let array = format!("[[{key}]]");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            if l.starts_with(&table) || l.starts_with(&array) {
                return true;
            }
            let l = l
                .strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")));
            l.is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
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
}
