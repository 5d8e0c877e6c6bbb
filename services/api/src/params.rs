//! Request parameters from the query string, an urlencoded form, a multipart
//! body or a JSON object — on GET and POST alike. When a key appears more than
//! once, the first value wins (query string first, then the body).

use axum::{
    extract::{FromRequest, Multipart, Request},
    http::header::CONTENT_TYPE,
};
use bytes::Bytes;
use douyin_kit::{Error, Result};

#[derive(Clone, Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// Why the body could not be read, kept so the route refuses with its own
    /// keys (see [`Params::parsed`]).
    unreadable: Option<Unreadable>,
}

/// A body that could not be read: over the size limit or malformed.
#[derive(Clone, Debug)]
enum Unreadable {
    TooLarge(String),
    Invalid(String),
}

impl From<Error> for Unreadable {
    fn from(error: Error) -> Self {
        match error {
            Error::TooLarge(message) => Self::TooLarge(message),
            other => Self::Invalid(other.public_message()),
        }
    }
}

impl Params {
    pub fn from_query(query: Option<&str>) -> Self {
        let mut params = Self::default();
        params.add_urlencoded(query.unwrap_or_default().as_bytes());
        params
    }

    fn add_urlencoded(&mut self, raw: &[u8]) {
        self.pairs.extend(url::form_urlencoded::parse(raw).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }

    pub fn push(&mut self, key: String, value: String) {
        self.pairs.push((key, value));
    }

    /// Refuses the request when its body could not be read. Every route
    /// calls this first, inside its `reply`, so the refusal carries the
    /// route's documented keys.
    pub fn parsed(&self) -> Result<()> {
        match &self.unreadable {
            None => Ok(()),
            Some(Unreadable::TooLarge(message)) => Err(Error::TooLarge(message.clone())),
            Some(Unreadable::Invalid(message)) => Err(Error::invalid(message.clone())),
        }
    }

    fn add_json(&mut self, body: &[u8]) -> Result<()> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let JsonObject(members) = serde_json::from_slice(body).map_err(|e| {
            if e.is_data() {
                Error::invalid("request body must be a JSON object")
            } else {
                Error::invalid("request body is not valid JSON")
            }
        })?;
        for (key, value) in members {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            self.pairs.push((key, text));
        }
        Ok(())
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// A required text parameter (present, may be empty: callers check length).
    pub fn text(&self, key: &str) -> Result<&str> {
        self.get(key).ok_or_else(|| Error::invalid(format!("{key} is required")))
    }

    /// An optional integer; present but not an integer is refused. An exactly
    /// integral number in decimal or exponent notation (`1e+06`,
    /// `1.234567e+06`, `7.0`) is that integer, as clients that format numbers
    /// as floats send them.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => integer(raw)
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("{key} must be an integer, got {:?}", truncate(raw)))),
        }
    }

    /// A required id (positive integer).
    pub fn id(&self, key: &str) -> Result<i64> {
        match self.opt_i64(key)? {
            None => Err(Error::invalid(format!("{key} is required"))),
            Some(id) if id > 0 => Ok(id),
            Some(id) => Err(Error::invalid(format!("{key} must be a positive integer, got {id}"))),
        }
    }

    /// An optional id; absent, empty or 0 is None.
    pub fn opt_id(&self, key: &str) -> Result<Option<i64>> {
        match self.opt_i64(key)? {
            None | Some(0) => Ok(None),
            Some(id) if id > 0 => Ok(Some(id)),
            Some(id) => Err(Error::invalid(format!("{key} must be a positive integer, got {id}"))),
        }
    }

    /// `action_type`, which must be one of `allowed`.
    pub fn action(&self, allowed: &[i64]) -> Result<i64> {
        let action = self.opt_i64("action_type")?.ok_or_else(|| Error::invalid("action_type is required"))?;
        if allowed.contains(&action) {
            Ok(action)
        } else {
            let list: Vec<String> = allowed.iter().map(i64::to_string).collect();
            Err(Error::invalid(format!("action_type must be {}, got {action}", list.join(" or "))))
        }
    }
}

/// `raw` as an integer when it is one exactly: plain digits, or a decimal
/// mantissa with an optional exponent whose value has no fractional part.
/// Computed on the digits, never through a float, so no rounding can turn a
/// near-integer into an id.
pub fn integer(raw: &str) -> Option<i64> {
    if let Ok(n) = raw.parse::<i64>() {
        return Some(n);
    }
    let (negative, unsigned) = match raw.as_bytes().first()? {
        b'-' => (true, &raw[1..]),
        b'+' => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i32>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    // The value is digits × 10^shift.
    let shift = i64::from(exponent) - fraction.len() as i64;
    let text = if shift >= 0 {
        if digits.is_empty() {
            "0".to_owned()
        } else if shift > 19 {
            return None;
        } else {
            format!("{digits}{}", "0".repeat(shift as usize))
        }
    } else {
        let cut = usize::try_from(-shift).ok()?;
        if cut >= digits.len() {
            // Below 1: only an all-zero value is an integer.
            return digits.is_empty().then_some(0);
        }
        let (kept, dropped) = digits.split_at(digits.len() - cut);
        if !dropped.bytes().all(|b| b == b'0') {
            return None;
        }
        kept.to_owned()
    };
    let magnitude = text.parse::<i64>().ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

/// A JSON object's members in the order sent, duplicates kept (so the first
/// value of a key wins, as in query strings and forms).
struct JsonObject(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<JsonObject, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(JsonObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// Multipart parts a parameter body may carry.
const MAX_PARTS: usize = 64;

fn truncate(raw: &str) -> String {
    raw.chars().take(32).collect()
}

/// A multipart text field exactly as sent (`Field::text` would drop a
/// leading byte-order mark); not UTF-8 is refused.
pub async fn field_text(field: axum::extract::multipart::Field<'_>) -> Result<String> {
    let name = field.name().unwrap_or_default().to_owned();
    let bytes = field.bytes().await.map_err(|e| body_error(e.status(), "multipart body"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Error::invalid(format!("{} must be UTF-8 text", truncate(&name))))
}

/// Maps a body-reading failure to the contract's errors (413 over the limit).
pub fn body_error(status: http::StatusCode, what: &str) -> Error {
    if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        Error::TooLarge("request body is larger than the limit".into())
    } else {
        Error::invalid(format!("could not read the {what}"))
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = std::convert::Infallible;

    /// Never rejects: a body that cannot be read is kept as the reason the
    /// route refuses (`parsed`), so the refusal has the route's keys.
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut params = Params::from_query(req.uri().query());
        if let Err(error) = params.add_body(req, state).await {
            params.unreadable = Some(error.into());
        }
        Ok(params)
    }
}

impl Params {
    async fn add_body<S: Send + Sync>(&mut self, req: Request, state: &S) -> Result<()> {
        let content_type =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart =
                Multipart::from_request(req, state).await.map_err(|_| Error::invalid("multipart body is malformed"))?;
            for part in 1.. {
                let field = match multipart.next_field().await {
                    Ok(Some(field)) => field,
                    Ok(None) => break,
                    Err(e) => return Err(body_error(e.status(), "multipart body")),
                };
                if part > MAX_PARTS {
                    return Err(Error::invalid(format!("a request takes at most {MAX_PARTS} multipart parts")));
                }
                let Some(name) = field.name().map(str::to_owned) else {
                    continue;
                };
                if field.file_name().is_some() {
                    // Files are only read by the publish route.
                    continue;
                }
                let value = field_text(field).await?;
                self.push(name, value);
            }
            return Ok(());
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| body_error(e.status(), "request body"))?;
        if body.is_empty() {
            return Ok(());
        }
        if content_type.starts_with("application/json") {
            self.add_json(&body)?;
        } else if content_type.starts_with("application/x-www-form-urlencoded") || content_type.is_empty() {
            if body.first() == Some(&b'{') {
                self.add_json(&body)?;
            } else {
                self.add_urlencoded(&body);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_json_scalars_become_text() {
        let mut p = Params::from_query(Some("user_id=5&user_id=6&token=abc"));
        p.add_json(br#"{"user_id": 7, "video_id": 9, "flag": true, "title": "hi"}"#).unwrap();
        assert_eq!(p.id("user_id").unwrap(), 5);
        assert_eq!(p.id("video_id").unwrap(), 9);
        assert_eq!(p.get("flag"), Some("true"));
        assert_eq!(p.text("title").unwrap(), "hi");
    }

    #[test]
    fn numbers_are_checked_with_the_parameter_named() {
        let p = Params::from_query(Some("a=x1&b=-3&c=&d=0&action_type=3"));
        assert!(p.id("a").unwrap_err().public_message().contains('a'));
        assert!(p.id("b").unwrap_err().public_message().contains("positive"));
        assert!(p.id("c").unwrap_err().public_message().contains("required"));
        assert_eq!(p.opt_id("d").unwrap(), None);
        assert!(p.id("missing").unwrap_err().public_message().contains("missing is required"));
        assert!(p.action(&[1, 2]).unwrap_err().public_message().contains("action_type"));
        assert!(p.add_json_err());
    }

    #[test]
    fn the_first_of_duplicated_json_keys_wins() {
        let mut p = Params::default();
        p.add_json(br#"{"video_id": 1, "video_id": 2, "token": "a", "token": "b"}"#).unwrap();
        assert_eq!(p.id("video_id").unwrap(), 1);
        assert_eq!(p.get("token"), Some("a"));
        let mut array = Params::default();
        assert!(array.add_json(b"[1,2]").unwrap_err().public_message().contains("JSON object"));
        assert!(array.add_json(b"{oops").unwrap_err().public_message().contains("not valid JSON"));
    }

    #[test]
    fn ids_in_float_notation_are_accepted_only_when_integral() {
        for (raw, id) in [
            ("1e+06", 1_000_000),
            ("1.234567e+06", 1_234_567),
            ("1E6", 1_000_000),
            ("7.0", 7),
            ("7.", 7),
            ("120e-1", 12),
            ("0.0e5", 0),
            ("-2e1", -20),
            ("9.223372036854775807e18", i64::MAX),
        ] {
            assert_eq!(integer(raw), Some(id), "{raw}");
        }
        for raw in ["1.5", "1.2345678e+06", "12e-1", "1e+19", "1e400", "e5", ".", "1e", "0x10", "1_000", "inf", "NaN"] {
            assert_eq!(integer(raw), None, "{raw}");
        }
        let p = Params::from_query(Some("user_id=1e%2B06&video_id=1.234567e%2B06&to_user_id=2.5e%2B00"));
        assert_eq!(p.id("user_id").unwrap(), 1_000_000);
        assert_eq!(p.id("video_id").unwrap(), 1_234_567);
        assert!(p.id("to_user_id").unwrap_err().public_message().contains("integer"));
    }

    impl Params {
        fn add_json_err(&self) -> bool {
            let mut p = self.clone();
            p.add_json(b"[1,2]").is_err() && p.add_json(b"{oops").is_err()
        }
    }
}
