//! Email templates: CreateEmailTemplate, GetEmailTemplate, UpdateEmailTemplate,
//! DeleteEmailTemplate, ListEmailTemplates, TestRenderEmailTemplate, and the `{{name}}`
//! substitution SendEmail and SendBulkEmail use.
//!
//! Each template is one JSON file in `<spool>/templates/`, written atomically (they are content
//! senders depend on, not configuration, so they are not in the TOML file).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::paging::{PageRequest, with_token};
use super::state::AdminState;
use crate::config::edit::write_atomically;

/// Subject, text and HTML with `{{name}}` placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TemplateContent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Stored {
    template_name: String,
    template_content: TemplateContent,
    created_timestamp: i64,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn path(dir: &Path, name: &str) -> Result<PathBuf, ApiError> {
    if !valid_name(name) {
        return Err(ApiError::BadRequest(format!(
            "template name {name:?} is invalid: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    Ok(dir.join(format!("{name}.json")))
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("Template {name} does not exist."))
}

fn read(dir: &Path, name: &str) -> Result<Stored, ApiError> {
    let text = match std::fs::read(path(dir, name)?) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(not_found(name)),
        Err(error) => {
            return Err(ApiError::Internal(format!(
                "cannot read template {name}: {error}"
            )));
        }
    };
    serde_json::from_slice(&text)
        .map_err(|error| ApiError::Internal(format!("template {name} is unreadable: {error}")))
}

/// The content of template `name` (for sending).
pub fn content(state: &AdminState, name: &str) -> Result<TemplateContent, ApiError> {
    Ok(read(&state.templates_dir, name)?.template_content)
}

fn content_from(body: &Body) -> Result<TemplateContent, ApiError> {
    let content = body.object("TemplateContent")?;
    let unknown = content
        .0
        .keys()
        .find(|k| !["Subject", "Text", "Html"].contains(&k.as_str()));
    if let Some(key) = unknown {
        return Err(ApiError::BadRequest(format!(
            "TemplateContent.{key} is not supported by poolrelay"
        )));
    }
    let parsed = TemplateContent {
        subject: content.string("Subject")?,
        text: content.string("Text")?,
        html: content.string("Html")?,
    };
    if parsed.text.is_none() && parsed.html.is_none() {
        return Err(ApiError::BadRequest(
            "TemplateContent needs Text or Html".into(),
        ));
    }
    Ok(parsed)
}

/// A template change refused because the fleet's Redis is away.
fn fleet_unavailable(error: crate::fleet::store::StoreError) -> ApiError {
    ApiError::Ses {
        status: hyper::StatusCode::SERVICE_UNAVAILABLE,
        kind: "ServiceUnavailableException",
        message: format!("templates cannot be changed now: {error}"),
    }
}

/// Writes a template's file (in a fleet: the fleet's copy first).
async fn write(state: &AdminState, stored: Stored) -> Result<(), ApiError> {
    let dir = state.templates_dir.clone();
    let file = path(&dir, &stored.template_name)?;
    let bytes =
        serde_json::to_vec_pretty(&stored).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(fleet) = &state.fleet {
        crate::fleet::templates::publish(fleet, &stored.template_name, Some(&bytes))
            .await
            .map_err(fleet_unavailable)?;
    }
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir)?;
        write_atomically(&file, &bytes)
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .map_err(|e| ApiError::Internal(format!("cannot write the template: {e}")))
}

pub async fn create(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let name = body.required("TemplateName")?;
    let content = content_from(&body)?;
    let _writing = state.template_writes.lock().await;
    if path(&state.templates_dir, &name)?.exists() {
        return Err(ApiError::AlreadyExists(format!(
            "Template {name} already exists."
        )));
    }
    let stored = Stored {
        template_name: name,
        template_content: content,
        created_timestamp: chrono::Utc::now().timestamp(),
    };
    write(state, stored).await?;
    Ok(json!({}))
}

pub async fn update(state: &AdminState, name: &str, body: Body) -> Result<Value, ApiError> {
    let content = content_from(&body)?;
    let _writing = state.template_writes.lock().await;
    let mut stored = read(&state.templates_dir, name)?;
    stored.template_content = content;
    write(state, stored).await?;
    Ok(json!({}))
}

pub fn get(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let stored = read(&state.templates_dir, name)?;
    Ok(json!({
        "TemplateName": stored.template_name,
        "TemplateContent": stored.template_content,
    }))
}

pub async fn delete(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let file = path(&state.templates_dir, name)?;
    let _writing = state.template_writes.lock().await;
    if !file.exists() {
        return Err(not_found(name));
    }
    if let Some(fleet) = &state.fleet {
        crate::fleet::templates::publish(fleet, name, None)
            .await
            .map_err(fleet_unavailable)?;
    }
    match std::fs::remove_file(file) {
        Ok(()) => Ok(json!({})),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Err(not_found(name)),
        Err(error) => Err(ApiError::Internal(format!(
            "cannot delete template {name}: {error}"
        ))),
    }
}

/// ListEmailTemplates: PageSize 1-100, default 10 (SES's model).
pub fn list(state: &AdminState, page: &PageRequest) -> Result<Value, ApiError> {
    let mut names: Vec<String> = match std::fs::read_dir(&state.templates_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_str()?
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .filter(|name| valid_name(name))
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => {
            return Err(ApiError::Internal(format!(
                "cannot list templates: {error}"
            )));
        }
    };
    names.sort();
    let (names, token) = page.page(names, String::as_str);
    let metadata: Vec<Value> = names
        .iter()
        .filter_map(|name| read(&state.templates_dir, name).ok())
        .map(|stored| {
            json!({ "TemplateName": stored.template_name, "CreatedTimestamp": stored.created_timestamp })
        })
        .collect();
    Ok(with_token(json!({ "TemplatesMetadata": metadata }), token))
}

/// TestRenderEmailTemplate: the message as SendEmail would build it, as text.
pub fn test_render(state: &AdminState, name: &str, body: Body) -> Result<Value, ApiError> {
    let data = body.required("TemplateData")?;
    let content = content(state, name)?;
    let rendered = render(&content, &parse_data(&data)?)?;
    let mut text = format!("Subject: {}\r\n\r\n", rendered.subject.unwrap_or_default());
    for part in [rendered.text, rendered.html].into_iter().flatten() {
        text.push_str(&part);
        text.push_str("\r\n");
    }
    Ok(json!({ "RenderedTemplate": text }))
}

/// `TemplateData`: a JSON object (SES limits it to 30 KB).
pub fn parse_data(data: &str) -> Result<Value, ApiError> {
    if data.len() > 30 * 1024 {
        return Err(ApiError::BadRequest("TemplateData is over 30 KB".into()));
    }
    match serde_json::from_str::<Value>(data) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(ApiError::BadRequest(
            "TemplateData must be a JSON object".into(),
        )),
    }
}

/// `content` with its placeholders filled from `data`.
pub fn render(content: &TemplateContent, data: &Value) -> Result<TemplateContent, ApiError> {
    let fill = |text: &Option<String>, html: bool| {
        text.as_deref()
            .map(|t| substitute(t, data, html))
            .transpose()
            .map_err(ApiError::BadRequest)
    };
    Ok(TemplateContent {
        subject: fill(&content.subject, false)?,
        text: fill(&content.text, false)?,
        html: fill(&content.html, true)?,
    })
}

/// Replaces `{{name}}` and `{{a.b}}` (HTML-escaped in HTML) and `{{{name}}}` (never escaped)
/// with values from `data`. A placeholder without a value is an error, as SES's rendering
/// failure is.
pub fn substitute(text: &str, data: &Value, html: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let (raw, open, close) = match after.starts_with("{{{") {
            true => (true, 3, "}}}"),
            false => (false, 2, "}}"),
        };
        let Some(end) = after[open..].find(close) else {
            return Err(format!("an unclosed {{{{ in {:?}", truncate(after)));
        };
        let name = after[open..open + end].trim();
        let value =
            lookup(data, name).ok_or_else(|| format!("TemplateData has no value for {name:?}"))?;
        if html && !raw {
            escape_html(&value, &mut out);
        } else {
            out.push_str(&value);
        }
        rest = &after[open + end + close.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(text: &str) -> String {
    text.chars().take(40).collect()
}

fn lookup(data: &Value, name: &str) -> Option<String> {
    let mut value = data;
    for part in name.split('.') {
        value = value.get(part)?;
    }
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn escape_html(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_escaped_in_html() {
        let data = json!({"name": "Ann <b>", "order": {"id": 42}});
        assert_eq!(
            substitute("Hi {{name}}, order {{ order.id }}", &data, false).as_deref(),
            Ok("Hi Ann <b>, order 42")
        );
        assert_eq!(
            substitute("<p>{{name}}</p>{{{name}}}", &data, true).as_deref(),
            Ok("<p>Ann &lt;b&gt;</p>Ann <b>")
        );
        assert!(substitute("{{missing}}", &data, false).is_err());
        assert!(substitute("{{name", &data, false).is_err());
        assert!(substitute("{{order}}", &data, false).is_err());
    }

    #[test]
    fn template_names_cannot_leave_the_directory() {
        for name in ["../etc", "a/b", "", "a.json", &"x".repeat(65)] {
            assert!(path(Path::new("/t"), name).is_err(), "{name:?}");
        }
    }
}
