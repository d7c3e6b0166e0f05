//! TagResource, UntagResource, ListTagsForResource for dedicated IP pools and configuration
//! sets, kept in the config file (`tags = { team = "growth" }` on the `[[pool]]` or
//! `[[configuration_set]]`).

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::state::AdminState;
use crate::config::edit::ConfigDocument;
use crate::registry::Registry;
use crate::settings::account::Tags;

/// SES allows 50 tags per resource.
const MAX_TAGS: usize = 50;

/// What an ARN names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resource {
    Pool(String),
    ConfigurationSet(String),
}

/// `arn:aws:ses:<region>:<account>:dedicated-ip-pool/<name>` or `...:configuration-set/<name>`.
fn resource(arn: &str) -> Result<Resource, ApiError> {
    let invalid = || {
        ApiError::BadRequest(format!(
            "ResourceArn {arn:?} names no pool or configuration set"
        ))
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [_, _, service, _, _, path] = parts.as_slice() else {
        return Err(invalid());
    };
    if *service != "ses" {
        return Err(invalid());
    }
    match path.split_once('/') {
        Some(("dedicated-ip-pool", name)) => Ok(Resource::Pool(name.to_string())),
        Some(("configuration-set", name)) => Ok(Resource::ConfigurationSet(name.to_string())),
        _ => Err(invalid()),
    }
}

fn current(registry: &Registry, resource: &Resource) -> Result<Tags, ApiError> {
    match resource {
        Resource::Pool(name) if registry.has_named_pool(name) => {
            Ok(registry.pool_tags(name).to_vec())
        }
        Resource::ConfigurationSet(name) => registry
            .configuration_set(name)
            .map(|set| set.tags.clone())
            .ok_or_else(|| ApiError::NotFound(format!("Configuration set {name} does not exist"))),
        Resource::Pool(name) => Err(ApiError::NotFound(format!("Pool {name} does not exist"))),
    }
}

/// Tags as the config file holds them.
pub fn toml_value(tags: &Tags) -> toml_edit::Value {
    let mut table = toml_edit::InlineTable::new();
    for (key, value) in tags {
        table.insert(key, value.as_str().into());
    }
    toml_edit::Value::InlineTable(table)
}

fn write(document: &mut ConfigDocument, resource: &Resource, tags: &Tags) -> Result<(), ApiError> {
    let value = (!tags.is_empty()).then(|| toml_value(tags));
    match resource {
        Resource::Pool(name) => document.set_pool_key(name, "tags", value)?,
        Resource::ConfigurationSet(name) => {
            document.set_configuration_set_key(name, "tags", value)?
        }
    }
    Ok(())
}

/// A request's `Tags` list: `{Key, Value}` entries, keys 1-128 and values 0-256 characters.
pub fn from_body(body: &Body) -> Result<Tags, ApiError> {
    let Some(list) = body.0.get("Tags") else {
        return Ok(Vec::new());
    };
    let bad =
        || ApiError::BadRequest("Tags must be a list of {\"Key\": ..., \"Value\": ...}".into());
    let list = list.as_array().ok_or_else(bad)?;
    let mut tags = Tags::new();
    for tag in list {
        let key = tag.get("Key").and_then(Value::as_str).ok_or_else(bad)?;
        let value = tag.get("Value").and_then(Value::as_str).unwrap_or_default();
        let printable = |t: &str| !t.chars().any(char::is_control);
        if !(1..=128).contains(&key.chars().count())
            || value.chars().count() > 256
            || !printable(key)
            || !printable(value)
        {
            return Err(ApiError::BadRequest(format!(
                "tag {key:?}: keys are 1-128 characters, values up to 256, without control characters"
            )));
        }
        merge(&mut tags, vec![(key.to_string(), value.to_string())]);
    }
    if tags.len() > MAX_TAGS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_TAGS} tags per resource"
        )));
    }
    Ok(tags)
}

fn merge(tags: &mut Tags, new: Tags) {
    for (key, value) in new {
        match tags.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => tags.push((key, value)),
        }
    }
}

pub async fn tag(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    body.only(&["ResourceArn", "Tags"])?;
    let resource = resource(&body.required("ResourceArn")?)?;
    let new = from_body(&body)?;
    state
        .change(move |document, registry| {
            let mut tags = current(registry, &resource)?;
            merge(&mut tags, new);
            if tags.len() > MAX_TAGS {
                return Err(ApiError::BadRequest(format!(
                    "at most {MAX_TAGS} tags per resource"
                )));
            }
            write(document, &resource, &tags)
        })
        .await?;
    Ok(json!({}))
}

pub async fn untag(state: &AdminState, query: &[(String, String)]) -> Result<Value, ApiError> {
    let arn = query
        .iter()
        .find(|(k, _)| k == "ResourceArn")
        .map(|(_, v)| v.clone())
        .ok_or_else(|| ApiError::BadRequest("ResourceArn is required".into()))?;
    let resource = resource(&arn)?;
    let keys: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "TagKeys")
        .map(|(_, v)| v.clone())
        .collect();
    if keys.is_empty() {
        return Err(ApiError::BadRequest("TagKeys is required".into()));
    }
    state
        .change(move |document, registry| {
            let mut tags = current(registry, &resource)?;
            tags.retain(|(key, _)| !keys.contains(key));
            write(document, &resource, &tags)
        })
        .await?;
    Ok(json!({}))
}

pub fn list(state: &AdminState, query: &[(String, String)]) -> Result<Value, ApiError> {
    let arn = query
        .iter()
        .find(|(k, _)| k == "ResourceArn")
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| ApiError::BadRequest("ResourceArn is required".into()))?;
    let tags = current(&state.registry.load(), &resource(arn)?)?;
    Ok(json!({ "Tags": described(&tags) }))
}

/// SES's `[{Key, Value}]`.
pub fn described(tags: &Tags) -> Vec<Value> {
    tags.iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_name_pools_and_sets() {
        assert_eq!(
            resource("arn:aws:ses:us-east-1:123456789012:dedicated-ip-pool/bulk"),
            Ok(Resource::Pool("bulk".into()))
        );
        assert_eq!(
            resource("arn:aws:ses:eu-west-1:1:configuration-set/promo"),
            Ok(Resource::ConfigurationSet("promo".into()))
        );
        for bad in [
            "",
            "arn:aws:s3:::bucket/x",
            "arn:aws:ses:r:1:identity/x",
            "promo",
        ] {
            assert!(resource(bad).is_err(), "{bad}");
        }
    }
}
