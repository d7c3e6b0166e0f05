//! `Content.Template`: a stored template (`TemplateName`) or one given inline
//! (`TemplateContent`), filled with `TemplateData` and built as `Content.Simple` would be.

use serde_json::{Value, json};

use super::mime::{self, Addressing};
use super::request::{Member, bad};
use crate::admin::error::ApiError;
use crate::admin::state::AdminState;
use crate::admin::templates::{self, TemplateContent};

/// The template a `Template` member names (`TemplateName`) or holds (`TemplateContent`).
pub fn template_content(
    state: &AdminState,
    template: &Member<'_>,
) -> Result<TemplateContent, ApiError> {
    let inline = template.object("TemplateContent")?;
    match (template.string("TemplateName")?, inline.is_absent()) {
        (Some(name), true) => templates::content(state, &name),
        (None, false) => {
            inline.only(&["Subject", "Text", "Html"])?;
            Ok(TemplateContent {
                subject: inline.string("Subject")?,
                text: inline.string("Text")?,
                html: inline.string("Html")?,
            })
        }
        _ => Err(bad(
            "Template needs exactly one of TemplateName or TemplateContent".into(),
        )),
    }
}

/// The rendered template as a `Content.Simple` member, so one builder makes both.
pub fn as_simple(rendered: TemplateContent, headers: &[Member<'_>]) -> Value {
    let part = |text: Option<String>| text.map(|t| json!({ "Data": t }));
    let mut body = serde_json::Map::new();
    if let Some(text) = part(rendered.text) {
        body.insert("Text".into(), text);
    }
    if let Some(html) = part(rendered.html) {
        body.insert("Html".into(), html);
    }
    let headers: Vec<Value> = headers.iter().filter_map(Member::raw_value).collect();
    let mut simple = serde_json::Map::new();
    simple.insert(
        "Subject".into(),
        json!({ "Data": rendered.subject.unwrap_or_default() }),
    );
    simple.insert("Body".into(), Value::Object(body));
    if !headers.is_empty() {
        simple.insert("Headers".into(), Value::Array(headers));
    }
    Value::Object(simple)
}

/// `Content.Template` of SendEmail.
pub fn render_for_send(
    state: &AdminState,
    template: &Member<'_>,
    addressing: &Addressing<'_>,
) -> Result<Vec<u8>, ApiError> {
    template.only(&["TemplateName", "TemplateContent", "TemplateData", "Headers"])?;
    let content = template_content(state, template)?;
    let data = templates::parse_data(
        &template
            .string("TemplateData")?
            .unwrap_or_else(|| "{}".into()),
    )?;
    let rendered = templates::render(&content, &data)?;
    let simple = as_simple(rendered, &template.array("Headers")?);
    mime::simple(
        &Member::root(&simple).renamed("Content.Template"),
        addressing,
    )
}
