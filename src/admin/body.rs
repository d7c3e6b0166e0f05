//! A request body as the operation handlers read it: a JSON object with typed accessors that
//! turn a wrong type into a 400 naming the field.

use serde_json::Value;

use super::error::ApiError;

/// A parsed request body: a JSON object (empty when there was no body).
pub struct Body(pub serde_json::Map<String, Value>);

impl Body {
    /// A request body: empty (or white space) is an empty object; anything but a JSON object
    /// is a 400.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(Default::default()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "the request body must be a JSON object".into(),
            )),
            Err(error) => Err(ApiError::BadRequest(format!("invalid JSON: {error}"))),
        }
    }

    /// Refuses any member not in `implemented`, naming it: a member poolrelay does not act on
    /// is a 400, never silently dropped.
    pub fn only(&self, implemented: &[&str]) -> Result<(), ApiError> {
        match self.0.keys().find(|k| !implemented.contains(&k.as_str())) {
            Some(key) => Err(ApiError::BadRequest(format!(
                "{key} is not supported by poolrelay"
            ))),
            None => Ok(()),
        }
    }

    /// An optional string field; present but not a string is an error.
    pub fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(ApiError::BadRequest(format!("{key} must be a string"))),
        }
    }

    pub fn required(&self, key: &str) -> Result<String, ApiError> {
        self.string(key)?
            .ok_or_else(|| ApiError::BadRequest(format!("{key} is required")))
    }

    pub fn number(&self, key: &str) -> Result<Option<u64>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                ApiError::BadRequest(format!("{key} must be a non-negative integer"))
            }),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(ApiError::BadRequest(format!("{key} must be true or false"))),
        }
    }

    pub fn object(&self, key: &str) -> Result<Body, ApiError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Body(Default::default())),
            Some(Value::Object(map)) => Ok(Body(map.clone())),
            Some(_) => Err(ApiError::BadRequest(format!("{key} must be an object"))),
        }
    }
}
