//! `Range` and the validators of media responses, as RFC 9110 defines them
//! (sections 13 and 14).

use std::time::SystemTime;

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// No range, or one to ignore: the whole representation, 200.
    Whole,
    /// One satisfiable range, `first..=last`: 206.
    Part { first: u64, last: u64 },
    /// One range that lies wholly past the end: 416.
    Unsatisfiable,
}

/// One `range-spec` of a `bytes` range set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    From { first: u64, last: Option<u64> },
    Suffix(u64),
}

/// Evaluates `header` against a representation of `len` bytes. An unknown
/// unit or a syntactically invalid range set is ignored (the whole file);
/// several ranges get the whole file too (never 416), which RFC 9110 allows
/// in place of `multipart/byteranges`.
pub fn wanted(header: Option<&str>, len: u64) -> Wanted {
    let Some(header) = header else {
        return Wanted::Whole;
    };
    let Some((unit, set)) = header.split_once('=') else {
        return Wanted::Whole;
    };
    if !unit.eq_ignore_ascii_case("bytes") {
        return Wanted::Whole;
    }
    // A list may carry empty elements (`a, , b`); whitespace around elements is optional.
    let elements: Vec<&str> = set.split(',').map(|e| e.trim_matches([' ', '\t'])).filter(|e| !e.is_empty()).collect();
    let Some(specs) = elements.iter().map(|e| spec(e)).collect::<Option<Vec<Spec>>>() else {
        return Wanted::Whole;
    };
    match specs.as_slice() {
        [one] => satisfy(*one, len),
        _ => Wanted::Whole,
    }
}

fn spec(element: &str) -> Option<Spec> {
    let (first, last) = element.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(digits(last)?));
    }
    let first = digits(first)?;
    let last = if last.is_empty() { None } else { Some(digits(last)?) };
    if last.is_some_and(|last| last < first) {
        return None; // invalid, so the header is ignored
    }
    Some(Spec::From { first, last })
}

/// `1*DIGIT`; values past u64 saturate (they are past any end anyway).
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

fn satisfy(spec: Spec, len: u64) -> Wanted {
    match spec {
        Spec::From { first, .. } if first >= len => Wanted::Unsatisfiable,
        Spec::From { first, last } => Wanted::Part { first, last: last.map_or(len - 1, |l| l.min(len - 1)) },
        Spec::Suffix(0) => Wanted::Unsatisfiable,
        Spec::Suffix(_) if len == 0 => Wanted::Unsatisfiable,
        Spec::Suffix(n) => Wanted::Part { first: len.saturating_sub(n), last: len - 1 },
    }
}

/// `If-None-Match` against the current tag (weak comparison, `*` matches any).
pub fn none_match(header: &str, etag: Option<&str>) -> bool {
    let Some(etag) = etag else {
        return false;
    };
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let current = strip(etag);
    header.split(',').map(str::trim).any(|tag| tag == "*" || strip(tag) == current)
}

/// Whether the representation is unchanged since `If-Modified-Since`.
pub fn not_modified_since(header: &str, modified: Option<SystemTime>) -> bool {
    match (httpdate::parse_http_date(header.trim()), modified) {
        (Ok(since), Some(modified)) => whole_seconds(modified) <= since,
        _ => false,
    }
}

/// `If-Range`: the range applies only to the representation it names, by a
/// strong entity tag or by exactly its `Last-Modified` date.
pub fn if_range_holds(header: &str, etag: Option<&str>, modified: Option<SystemTime>) -> bool {
    let header = header.trim();
    if header.starts_with("W/") {
        return false;
    }
    if header.starts_with('"') {
        return etag.is_some_and(|etag| !etag.starts_with("W/") && etag == header);
    }
    match (httpdate::parse_http_date(header), modified) {
        (Ok(date), Some(modified)) => whole_seconds(modified) == date,
        _ => false,
    }
}

/// HTTP dates have one-second resolution.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: u64 = 1000;

    fn w(header: &str) -> Wanted {
        wanted(Some(header), LEN)
    }

    fn part(first: u64, last: u64) -> Wanted {
        Wanted::Part { first, last }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(wanted(None, LEN), Wanted::Whole);
        assert_eq!(w("bytes=0-99"), part(0, 99));
        assert_eq!(w("bytes=100-"), part(100, 999));
        assert_eq!(w("bytes=-50"), part(950, 999));
        assert_eq!(w("bytes=10-10"), part(10, 10));
        assert_eq!(w("bytes=990-5000"), part(990, 999));
        assert_eq!(w("Bytes=0-0"), part(0, 0));
        assert_eq!(w("bytes= 5-6 "), part(5, 6));
        assert_eq!(w("bytes=0-99,"), part(0, 99));
        assert_eq!(w("bytes=0-99999999999999999999999"), part(0, 999));
    }

    #[test]
    fn a_suffix_longer_than_the_file_is_the_whole_file_as_a_part() {
        assert_eq!(w("bytes=-1000"), part(0, 999));
        assert_eq!(w("bytes=-5000"), part(0, 999));
        assert_eq!(w("bytes=-99999999999999999999999"), part(0, 999));
    }

    #[test]
    fn past_the_end_is_unsatisfiable() {
        assert_eq!(w("bytes=1000-"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=1010-1020"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(w("bytes=99999999999999999999999-"), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=0-"), 0), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-5"), 0), Wanted::Unsatisfiable);
    }

    #[test]
    fn unknown_units_and_bad_syntax_are_ignored() {
        for header in [
            "items=0-5",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=abc",
            "bytes=5-3",
            "bytes=--5",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x10-",
            "bytes=1.5-2",
            "bytes=-",
            "bytes=0-99;x",
            "bytes = 0-99",
            "bytes=0-99,abc",
            "",
        ] {
            assert_eq!(w(header), Wanted::Whole, "{header:?}");
        }
    }

    #[test]
    fn several_ranges_get_the_whole_file_never_416() {
        for header in ["bytes=0-1,5-6", "bytes=0-99, 200-", "bytes=5000-6000,7000-8000", "bytes=-0,-0", "bytes=0-,0-"] {
            assert_eq!(w(header), Wanted::Whole, "{header:?}");
        }
    }

    #[test]
    fn validators() {
        let tag = Some("\"abc\"");
        assert!(none_match("\"abc\"", tag));
        assert!(none_match("W/\"abc\"", tag));
        assert!(none_match("\"x\", \"abc\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"abcd\"", tag));
        assert!(!none_match("*", None));

        let modified = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_500);
        let date = httpdate::fmt_http_date(modified);
        assert!(not_modified_since(&date, Some(modified)));
        assert!(!not_modified_since("Thu, 01 Jan 2015 00:00:00 GMT", Some(modified)));
        assert!(!not_modified_since("yesterday", Some(modified)));

        assert!(if_range_holds("\"abc\"", tag, Some(modified)));
        assert!(!if_range_holds("W/\"abc\"", tag, Some(modified)));
        assert!(!if_range_holds("\"old\"", tag, Some(modified)));
        assert!(if_range_holds(&date, tag, Some(modified)));
        assert!(!if_range_holds("Thu, 01 Jan 2015 00:00:00 GMT", tag, Some(modified)));
    }
}
