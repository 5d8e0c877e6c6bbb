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

    fn add_json(&mut self, body: &[u8]) -> Result<()> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| Error::invalid("request body is not valid JSON"))?;
        let serde_json::Value::Object(map) = value else {
            return Err(Error::invalid("request body must be a JSON object"));
        };
        for (key, value) in map {
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

    /// An optional integer; present but not an integer is refused.
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key).map(str::trim) {
            None | Some("") => Ok(None),
            Some(raw) => raw
                .parse::<i64>()
                .map(Some)
                .map_err(|_| Error::invalid(format!("{key} must be an integer, got {:?}", truncate(raw)))),
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
    type Rejection = crate::reply::Refusal;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut params = Params::from_query(req.uri().query());
        let content_type =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase();
        if content_type.starts_with("multipart/form-data") {
            let mut multipart =
                Multipart::from_request(req, state).await.map_err(|_| Error::invalid("multipart body is malformed"))?;
            for part in 1.. {
                let field = match multipart.next_field().await {
                    Ok(Some(field)) => field,
                    Ok(None) => break,
                    Err(e) => return Err(body_error(e.status(), "multipart body").into()),
                };
                if part > MAX_PARTS {
                    return Err(Error::invalid(format!("a request takes at most {MAX_PARTS} multipart parts")).into());
                }
                let Some(name) = field.name().map(str::to_owned) else {
                    continue;
                };
                if field.file_name().is_some() {
                    // Files are only read by the publish route.
                    continue;
                }
                let value = field_text(field).await?;
                params.push(name, value);
            }
            return Ok(params);
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| body_error(e.status(), "request body"))?;
        if body.is_empty() {
            return Ok(params);
        }
        if content_type.starts_with("application/json") {
            params.add_json(&body)?;
        } else if content_type.starts_with("application/x-www-form-urlencoded") || content_type.is_empty() {
            if body.first() == Some(&b'{') {
                params.add_json(&body)?;
            } else {
                params.add_urlencoded(&body);
            }
        }
        Ok(params)
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

    impl Params {
        fn add_json_err(&self) -> bool {
            let mut p = self.clone();
            p.add_json(b"[1,2]").is_err() && p.add_json(b"{oops").is_err()
        }
    }
}
