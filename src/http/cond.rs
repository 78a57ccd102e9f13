//! Conditional requests (RFC 9110 §13): pure functions of the request's
//! header fields and the representation's validators. Nothing here opens a
//! file or reads the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::parse::Request;

/// What a representation can be compared by.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// A strong entity tag, quotes included: `"1a2b-3c"`.
    pub etag: &'a str,
    /// Last modification, at the one-second precision HTTP dates have
    /// (`http_date`); None when there is no date to say (an mtime before
    /// 1970): then there is no `Last-Modified` and the date preconditions
    /// do not apply (RFC 9110 §13.1.3, §13.1.4: "MUST ignore ... if the
    /// resource does not have a modification date available").
    pub last_modified: Option<SystemTime>,
}

/// The verdict of the preconditions, evaluated in RFC 9110 §13.2.2 order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on: answer the request as if it had no preconditions.
    Proceed,
    /// 304: the client's copy is current (GET and HEAD only).
    NotModified,
    /// 412: a precondition the client set does not hold.
    Failed,
}

/// Truncate to whole seconds, the precision of `Last-Modified`.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The Last-Modified of a modification time: whole seconds, or None
/// before 1970, which an HTTP-date cannot say (and which would otherwise
/// all read as `Thu, 01 Jan 1970 00:00:00 GMT`, one date for many files).
pub fn http_date(mtime: SystemTime) -> Option<SystemTime> {
    mtime.duration_since(UNIX_EPOCH).ok()?;
    Some(whole_seconds(mtime))
}

/// Whole seconds since 1970, rounded down (negative before): the
/// precision of HTTP dates and of the tools that copy an mtime.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

/// RFC 9110 §13.2.2 steps 1 to 4, for a representation that exists.
/// `safe` is true for GET and HEAD (304 instead of 412 on a match).
pub fn evaluate(req: &Request<'_>, v: &Validators<'_>, safe: bool) -> Precondition {
    let lm = v.last_modified.map(whole_seconds);
    // 1. If-Match; else 2. If-Unmodified-Since.
    if let Some(list) = field_list(req, "if-match") {
        if !tags_match(&list, v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(lm) = lm
        && let Some(date) = date_field(req, "if-unmodified-since")
        && lm > date
    {
        return Precondition::Failed;
    }
    // 3. If-None-Match; else 4. If-Modified-Since (GET and HEAD only).
    if let Some(list) = field_list(req, "if-none-match") {
        if tags_match(&list, v.etag, Compare::Weak) {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe
        && let Some(lm) = lm
        && let Some(date) = date_field(req, "if-modified-since")
        && lm <= date
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

/// RFC 9110 §13.1.5: may a Range be honoured, given the request's If-Range?
/// True without If-Range. An entity tag must match strongly. A date must be
/// exactly the Last-Modified, and that must be a strong validator: at
/// least one second earlier than `date`, the response's `Date` (§8.8.2.2:
/// a file changed twice within the second of its Last-Modified has two
/// versions with one date, so a date of that second could splice them into
/// one download). Without a Last-Modified, no date holds. Anything else (a
/// weak tag, a list, garbage, two If-Range lines: together they are
/// neither one entity-tag nor one date) means "send the whole
/// representation".
pub fn if_range_holds(req: &Request<'_>, v: &Validators<'_>, date: SystemTime) -> bool {
    let mut values = req.headers_all("if-range");
    let Some(value) = values.next() else {
        return true;
    };
    if values.next().is_some() {
        return false;
    }
    if value.first() == Some(&b'"') {
        return value == v.etag.as_bytes();
    }
    if value.starts_with(b"W/") {
        return false;
    }
    let Some(lm) = v.last_modified.map(whole_seconds) else {
        return false;
    };
    let strong = unix_seconds(lm) < unix_seconds(date);
    strong
        && std::str::from_utf8(value)
            .ok()
            .and_then(|s| httpdate::parse_http_date(s).ok())
            .is_some_and(|d| d == lm)
}

/// The one value of a date field, if the request has it and it is a valid
/// HTTP-date; an invalid date, or more than one, is ignored (§13.1.3-4).
fn date_field(req: &Request<'_>, name: &str) -> Option<SystemTime> {
    let mut values = req.headers_all(name);
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()
}

/// A parsed `If-Match` / `If-None-Match` value: `*`, or entity tags.
#[derive(Debug, PartialEq, Eq)]
enum TagList<'a> {
    Any,
    /// (weak, opaque-tag with its quotes); `None` after a malformed member.
    Tags(Vec<(bool, &'a [u8])>),
}

/// Every line of a list field, parsed as one list. A malformed list matches
/// nothing (If-Match then fails, If-None-Match does not apply).
fn field_list<'a>(req: &Request<'a>, name: &str) -> Option<TagList<'a>> {
    let mut tags = Vec::new();
    let mut present = false;
    for value in req.headers_all(name) {
        present = true;
        if value == b"*" {
            return Some(TagList::Any);
        }
        if !parse_tags(value, &mut tags) {
            return Some(TagList::Tags(Vec::new()));
        }
    }
    present.then_some(TagList::Tags(tags))
}

/// `#entity-tag`: `W/"x", "y"`, with optional whitespace and empty members.
fn parse_tags<'a>(mut s: &'a [u8], out: &mut Vec<(bool, &'a [u8])>) -> bool {
    loop {
        while let [b' ' | b'\t' | b',', rest @ ..] = s {
            s = rest;
        }
        if s.is_empty() {
            return true;
        }
        let weak = s.starts_with(b"W/");
        if weak {
            s = &s[2..];
        }
        if s.first() != Some(&b'"') {
            return false;
        }
        let Some(close) = s[1..].iter().position(|&b| b == b'"') else {
            return false;
        };
        let (tag, rest) = s.split_at(close + 2);
        // etagc: %x21 / %x23-7E / obs-text
        if tag[1..tag.len() - 1].iter().any(|&b| b < 0x21 || b == 0x7f) {
            return false;
        }
        out.push((weak, tag));
        s = rest;
        if !matches!(s.first(), None | Some(b' ' | b'\t' | b',')) {
            return false;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Strong,
    Weak,
}

/// Does `list` name the representation whose strong tag is `etag`?
fn tags_match(list: &TagList<'_>, etag: &str, how: Compare) -> bool {
    match list {
        TagList::Any => true,
        TagList::Tags(tags) => tags
            .iter()
            .any(|&(weak, tag)| tag == etag.as_bytes() && (how == Compare::Weak || !weak)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"5f-1a\"";

    fn lm() -> SystemTime {
        // Sun, 06 Nov 1994 08:49:37 GMT, plus nanoseconds the date cannot say.
        UNIX_EPOCH + Duration::new(784111777, 500_000_000)
    }

    fn with_request<R>(fields: &str, f: impl FnOnce(&Request<'_>) -> R) -> R {
        crate::http::parse::with_request(&format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n"), f)
    }

    fn eval(fields: &str, safe: bool) -> Precondition {
        let v = Validators {
            etag: TAG,
            last_modified: Some(lm()),
        };
        with_request(fields, |r| evaluate(r, &v, safe))
    }

    use Precondition::*;
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";

    #[test]
    fn none_proceeds() {
        assert_eq!(eval("", true), Proceed);
    }

    #[test]
    fn if_match() {
        assert_eq!(eval("If-Match: \"5f-1a\"\r\n", true), Proceed);
        assert_eq!(eval("If-Match: \"x\", \"5f-1a\"\r\n", true), Proceed);
        assert_eq!(
            eval("If-Match: \"x\"\r\nIf-Match: \"5f-1a\"\r\n", true),
            Proceed
        );
        assert_eq!(eval("If-Match: *\r\n", true), Proceed);
        assert_eq!(eval("If-Match: \"x\"\r\n", true), Failed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(eval("If-Match: W/\"5f-1a\"\r\n", true), Failed);
        assert_eq!(eval("If-Match: 5f-1a\r\n", true), Failed);
        // If-Match wins over If-Unmodified-Since, which is then not looked at.
        assert_eq!(
            eval(
                &format!("If-Match: *\r\nIf-Unmodified-Since: {BEFORE}\r\n"),
                true
            ),
            Proceed
        );
    }

    #[test]
    fn if_unmodified_since() {
        assert_eq!(
            eval(&format!("If-Unmodified-Since: {DATE}\r\n"), true),
            Proceed
        );
        assert_eq!(
            eval(&format!("If-Unmodified-Since: {BEFORE}\r\n"), true),
            Failed
        );
        assert_eq!(eval("If-Unmodified-Since: yesterday\r\n", true), Proceed);
    }

    #[test]
    fn if_none_match() {
        assert_eq!(eval("If-None-Match: \"5f-1a\"\r\n", true), NotModified);
        // Weak comparison: W/ matches.
        assert_eq!(eval("If-None-Match: W/\"5f-1a\"\r\n", true), NotModified);
        assert_eq!(
            eval("If-None-Match: \"a\" ,W/\"5f-1a\"\r\n", true),
            NotModified
        );
        assert_eq!(
            eval("If-None-Match: \"a\"\r\nIf-None-Match: \"5f-1a\"\r\n", true),
            NotModified
        );
        assert_eq!(eval("If-None-Match: *\r\n", true), NotModified);
        assert_eq!(eval("If-None-Match: \"a\", \"b\"\r\n", true), Proceed);
        assert_eq!(eval("If-None-Match: \"5f-1a\"\r\n", false), Failed);
        // Malformed: does not apply.
        assert_eq!(eval("If-None-Match: 5f-1a\r\n", true), Proceed);
        assert_eq!(eval("If-None-Match: \"5f-1a\r\n", true), Proceed);
        // If-None-Match wins over If-Modified-Since, which is then not looked at.
        assert_eq!(
            eval(
                &format!("If-None-Match: \"a\"\r\nIf-Modified-Since: {DATE}\r\n"),
                true
            ),
            Proceed
        );
    }

    #[test]
    fn if_modified_since() {
        assert_eq!(
            eval(&format!("If-Modified-Since: {DATE}\r\n"), true),
            NotModified
        );
        assert_eq!(
            eval(&format!("If-Modified-Since: {BEFORE}\r\n"), true),
            Proceed
        );
        assert_eq!(
            eval("If-Modified-Since: Mon, 07 Nov 1994 08:49:37 GMT\r\n", true),
            NotModified
        );
        // Other HTTP-date forms.
        assert_eq!(
            eval(
                "If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n",
                true
            ),
            NotModified
        );
        assert_eq!(
            eval("If-Modified-Since: Sun Nov  6 08:49:37 1994\r\n", true),
            NotModified
        );
        // Ignored: invalid, two of them, or not GET/HEAD.
        assert_eq!(eval("If-Modified-Since: soon\r\n", true), Proceed);
        assert_eq!(
            eval(
                &format!("If-Modified-Since: {DATE}\r\nIf-Modified-Since: {DATE}\r\n"),
                true
            ),
            Proceed
        );
        assert_eq!(
            eval(&format!("If-Modified-Since: {DATE}\r\n"), false),
            Proceed
        );
    }

    #[test]
    fn failure_before_not_modified() {
        assert_eq!(
            eval("If-Match: \"x\"\r\nIf-None-Match: \"5f-1a\"\r\n", true),
            Failed
        );
    }

    #[test]
    fn if_range() {
        let v = Validators {
            etag: TAG,
            last_modified: Some(lm()),
        };
        // The response's Date: a day later, so the date is strong.
        let later = lm() + Duration::from_secs(86_400);
        let holds = |f: &str| with_request(f, |r| if_range_holds(r, &v, later));
        assert!(holds(""));
        assert!(holds("If-Range: \"5f-1a\"\r\n"));
        assert!(!holds("If-Range: \"x\"\r\n"));
        assert!(!holds("If-Range: W/\"5f-1a\"\r\n"));
        assert!(holds(&format!("If-Range: {DATE}\r\n")));
        assert!(!holds(&format!("If-Range: {BEFORE}\r\n")));
        assert!(!holds("If-Range: Mon, 07 Nov 1994 08:49:37 GMT\r\n"));
        assert!(!holds("If-Range: garbage\r\n"));
        assert!(!holds("If-Range: \"5f-1a\"\r\nIf-Range: \"5f-1a\"\r\n"));
        assert!(!holds(&format!(
            "If-Range: {DATE}\r\nIf-Range: \"5f-1a\"\r\n"
        )));
    }

    /// §13.1.5 with §8.8.2.2: a Last-Modified in the same second as the
    /// response's Date is weak, and If-Range needs a strong validator; one
    /// second earlier it is strong. An entity tag is strong either way.
    #[test]
    fn if_range_date_must_be_a_second_before_the_response() {
        let v = Validators {
            etag: TAG,
            last_modified: Some(lm()),
        };
        let at = |date: SystemTime, f: &str| with_request(f, |r| if_range_holds(r, &v, date));
        let second = whole_seconds(lm());
        let same = format!("If-Range: {DATE}\r\n");
        // The Date of the same second (its start, or any later instant in it).
        assert!(!at(second, &same));
        assert!(!at(lm(), &same));
        assert!(!at(second + Duration::from_nanos(999_999_999), &same));
        assert!(at(second + Duration::from_secs(1), &same));
        // A Date before the Last-Modified (a clock gone back): weak too.
        assert!(!at(second - Duration::from_secs(5), &same));
        // Entity tags do not care.
        assert!(at(second, "If-Range: \"5f-1a\"\r\n"));
    }

    /// No Last-Modified (an mtime before 1970): the date preconditions do
    /// not apply, and no If-Range date holds; entity tags still work.
    #[test]
    fn without_a_date_only_tags_apply() {
        let v = Validators {
            etag: TAG,
            last_modified: None,
        };
        let eval = |f: &str| with_request(f, |r| evaluate(r, &v, true));
        let epoch = "Thu, 01 Jan 1970 00:00:00 GMT";
        for d in [epoch, DATE, BEFORE] {
            assert_eq!(eval(&format!("If-Modified-Since: {d}\r\n")), Proceed, "{d}");
            assert_eq!(
                eval(&format!("If-Unmodified-Since: {d}\r\n")),
                Proceed,
                "{d}"
            );
            let now = lm() + Duration::from_secs(86_400);
            let holds = with_request(&format!("If-Range: {d}\r\n"), |r| {
                if_range_holds(r, &v, now)
            });
            assert!(!holds, "If-Range: {d}");
        }
        assert_eq!(eval("If-None-Match: \"5f-1a\"\r\n"), NotModified);
        assert_eq!(eval("If-Match: \"x\"\r\n"), Failed);
        assert_eq!(http_date(UNIX_EPOCH - Duration::from_nanos(1)), None);
        assert_eq!(http_date(UNIX_EPOCH), Some(UNIX_EPOCH));
        assert_eq!(http_date(lm()), Some(whole_seconds(lm())));
    }

    #[test]
    fn unix_seconds_round_down() {
        let s = |secs: i64, nanos: u32| {
            let d = Duration::new(secs.unsigned_abs(), 0);
            let t = if secs < 0 {
                UNIX_EPOCH - d
            } else {
                UNIX_EPOCH + d
            };
            unix_seconds(t + Duration::from_nanos(nanos.into()))
        };
        assert_eq!(s(0, 0), 0);
        assert_eq!(s(1, 999_999_999), 1);
        assert_eq!(s(-1, 0), -1);
        assert_eq!(s(-1, 1), -1);
        assert_eq!(s(-2, 500_000_000), -2);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_nanos(1)), -1);
    }
}
