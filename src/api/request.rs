//! A request's JSON as the SESv2 operations read it: members by name, with the member's full
//! path in every error (`Content.Simple.Body.Text.Data is required`), and a 400 naming any member
//! poolrelay does not implement instead of ignoring it.

use serde_json::Value;

use crate::admin::error::ApiError;

pub fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// One member of a request (the whole body at the root), borrowed from the parsed JSON;
/// possibly absent.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    path: String,
    value: Option<&'a Value>,
}

impl<'a> Member<'a> {
    pub fn root(body: &'a Value) -> Self {
        Self {
            path: String::new(),
            value: Some(body),
        }
    }

    fn child_path(&self, name: &str) -> String {
        match self.path.is_empty() {
            true => name.to_string(),
            false => format!("{}.{name}", self.path),
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.value?.get(name).filter(|value| !value.is_null())
    }

    /// The member's JSON as given.
    pub fn raw_value(&self) -> Option<Value> {
        self.value.cloned()
    }

    /// The same member, reported under `path` in errors.
    pub fn renamed(self, path: &str) -> Self {
        Self {
            path: path.to_string(),
            value: self.value,
        }
    }

    pub fn is_absent(&self) -> bool {
        self.value.is_none()
    }

    /// Refuses any member not in `implemented`, naming it.
    pub fn only(&self, implemented: &[&str]) -> Result<(), ApiError> {
        let Some(Value::Object(map)) = self.value else {
            return Ok(());
        };
        match map.keys().find(|key| !implemented.contains(&key.as_str())) {
            Some(key) => Err(bad(format!(
                "{} is not supported by poolrelay",
                self.child_path(key)
            ))),
            None => Ok(()),
        }
    }

    /// A structure member (absent stays absent).
    pub fn object(&self, name: &str) -> Result<Member<'a>, ApiError> {
        let path = self.child_path(name);
        match self.get(name) {
            None => Ok(Member { path, value: None }),
            Some(value @ Value::Object(_)) => Ok(Member {
                path,
                value: Some(value),
            }),
            Some(_) => Err(bad(format!("{path} must be an object"))),
        }
    }

    pub fn string(&self, name: &str) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(bad(format!("{} must be a string", self.child_path(name)))),
        }
    }

    /// A required string, borrowed (for large members such as a raw message).
    pub fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        match self.get(name) {
            None => Err(bad(format!("{} is required", self.child_path(name)))),
            Some(Value::String(text)) => Ok(text),
            Some(_) => Err(bad(format!("{} must be a string", self.child_path(name)))),
        }
    }

    pub fn required_string(&self, name: &str) -> Result<String, ApiError> {
        self.string(name)?
            .ok_or_else(|| bad(format!("{} is required", self.child_path(name))))
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(bad(format!(
                "{} must be true or false",
                self.child_path(name)
            ))),
        }
    }

    /// A list member, each entry a member of its own (absent: empty).
    pub fn array(&self, name: &str) -> Result<Vec<Member<'a>>, ApiError> {
        let path = self.child_path(name);
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(index, value)| Member {
                    path: format!("{path}[{index}]"),
                    value: Some(value),
                })
                .collect()),
            Some(_) => Err(bad(format!("{path} must be a list"))),
        }
    }

    /// A list of strings (absent: empty).
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        let path = self.child_path(name);
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text.clone()),
                    _ => Err(bad(format!("{path} must be a list of strings"))),
                })
                .collect(),
            Some(_) => Err(bad(format!("{path} must be a list of strings"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(json: &str) -> Value {
        serde_json::from_str(json).expect("JSON")
    }

    #[test]
    fn errors_name_the_member_path() {
        let json = parsed(r#"{"Content": {"Simple": {"Body": {"Text": {"Charset": "UTF-8"}}}}}"#);
        let body = Member::root(&json);
        let text = body
            .object("Content")
            .and_then(|c| c.object("Simple"))
            .and_then(|s| s.object("Body"))
            .and_then(|b| b.object("Text"))
            .expect("objects");
        let error = text.required_string("Data").expect_err("missing");
        assert_eq!(
            error,
            bad("Content.Simple.Body.Text.Data is required".into())
        );
        let error = body.only(&["Destination"]).expect_err("Content is unknown");
        assert_eq!(error, bad("Content is not supported by poolrelay".into()));
        let list = parsed(r#"{"To": ["a@b.c", 3]}"#);
        assert!(Member::root(&list).strings("To").is_err());
        let not_object = parsed(r#"{"X": 1}"#);
        assert!(Member::root(&not_object).object("X").is_err());
    }
}
