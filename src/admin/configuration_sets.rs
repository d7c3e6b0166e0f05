//! Configuration sets: CreateConfigurationSet, GetConfigurationSet, ListConfigurationSets,
//! DeleteConfigurationSet, PutConfigurationSetDeliveryOptions.

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::paging::{PageRequest, with_token};
use super::state::AdminState;
use crate::config::edit::ConfigDocument;
use crate::registry::{
    ConfigurationSet, DEFAULT_POOL, Registry, TlsPolicy, is_valid_configuration_set_name,
};

fn describe(set: &ConfigurationSet) -> Value {
    let mut described = json!({
        "ConfigurationSetName": set.name,
        "DeliveryOptions": {
            "SendingPoolName": set.sending_pool.as_deref().unwrap_or(DEFAULT_POOL),
            "TlsPolicy": set.tls_policy.unwrap_or(TlsPolicy::Optional).as_str(),
        }
    });
    if let Some(seconds) = set.max_delivery_seconds {
        described["DeliveryOptions"]["MaxDeliverySeconds"] = seconds.into();
    }
    if let Some(reasons) = set.suppressed_reasons {
        described["SuppressionOptions"] = json!({ "SuppressedReasons": reasons.names() });
    }
    described["SendingOptions"] = json!({ "SendingEnabled": !set.sending_paused });
    described["Tags"] = super::tags::described(&set.tags).into();
    described
}

/// The checked `DeliveryOptions` of a request.
struct Options {
    pool: Option<String>,
    tls: Option<String>,
    max_delivery_seconds: Option<u64>,
}

fn options(body: &Body) -> Result<Options, ApiError> {
    body.only(&["SendingPoolName", "TlsPolicy", "MaxDeliverySeconds"])?;
    let tls = body.string("TlsPolicy")?;
    if let Some(policy) = &tls
        && policy.parse::<TlsPolicy>().is_err()
    {
        return Err(ApiError::BadRequest(format!(
            "TlsPolicy must be REQUIRE or OPTIONAL, not {policy}"
        )));
    }
    let max_delivery_seconds = body.number("MaxDeliverySeconds")?;
    if let Some(seconds) = max_delivery_seconds
        && !(300..=50400).contains(&seconds)
    {
        return Err(ApiError::BadRequest(format!(
            "MaxDeliverySeconds must be between 300 and 50400, not {seconds}"
        )));
    }
    Ok(Options {
        pool: body.string("SendingPoolName")?,
        tls,
        max_delivery_seconds,
    })
}

fn apply(
    document: &mut ConfigDocument,
    registry: &Registry,
    name: &str,
    options: &Options,
) -> Result<(), ApiError> {
    if let Some(pool) = &options.pool {
        if !registry.pool_exists(pool) {
            return Err(ApiError::NotFound(format!(
                "SendingPool {pool} doesn't exist"
            )));
        }
        let value = (pool != DEFAULT_POOL).then(|| pool.as_str().into());
        document.set_configuration_set_key(name, "sending_pool", value)?;
    }
    if let Some(tls) = &options.tls {
        document.set_configuration_set_key(name, "tls_policy", Some(tls.as_str().into()))?;
    }
    if let Some(seconds) = options.max_delivery_seconds {
        document.set_configuration_set_key(
            name,
            "max_delivery_seconds",
            Some((seconds as i64).into()),
        )?;
    }
    Ok(())
}

pub fn list(state: &AdminState, page: &PageRequest) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    let names: Vec<&str> = registry
        .configuration_sets()
        .map(|s| s.name.as_str())
        .collect();
    let (names, token) = page.page(names, |n| n);
    Ok(with_token(json!({ "ConfigurationSets": names }), token))
}

/// The configuration set `name`, or SES's NotFoundException.
fn existing<'a>(registry: &'a Registry, name: &str) -> Result<&'a ConfigurationSet, ApiError> {
    registry
        .configuration_set(name)
        .ok_or_else(|| ApiError::NotFound(format!("Configuration set {name} does not exist")))
}

pub fn get(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    Ok(describe(existing(&registry, name)?))
}

pub async fn create(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let name = body.required("ConfigurationSetName")?;
    if !is_valid_configuration_set_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "Configuration set name {name:?} is invalid: use 1-64 characters from A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    body.only(&[
        "ConfigurationSetName",
        "DeliveryOptions",
        "SendingOptions",
        "Tags",
    ])?;
    let options = options(&body.object("DeliveryOptions")?)?;
    let sending = sending_enabled(&body.object("SendingOptions")?)?;
    let tags = super::tags::from_body(&body)?;
    state
        .change(move |document, registry| {
            if registry.configuration_set(&name).is_some() {
                return Err(ApiError::AlreadyExists(format!(
                    "Configuration set {name} already exists"
                )));
            }
            document.add_configuration_set(&name)?;
            if !tags.is_empty() {
                let value = super::tags::toml_value(&tags);
                document.set_configuration_set_key(&name, "tags", Some(value))?;
            }
            if sending == Some(false) {
                document.set_configuration_set_key(&name, "sending_enabled", Some(false.into()))?;
            }
            apply(document, registry, &name, &options)
        })
        .await?;
    Ok(json!({}))
}

pub async fn put_delivery_options(
    state: &AdminState,
    name: &str,
    body: Body,
) -> Result<Value, ApiError> {
    let options = options(&body)?;
    let name = name.to_string();
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            apply(document, registry, &name, &options)
        })
        .await?;
    Ok(json!({}))
}

/// `SendingOptions {SendingEnabled}` (absent: `None`).
fn sending_enabled(options: &Body) -> Result<Option<bool>, ApiError> {
    options.only(&["SendingEnabled"])?;
    options.boolean("SendingEnabled")
}

/// PutConfigurationSetSendingOptions: paused, the set's new mail is refused and its queued
/// mail waits; resumed, it goes again.
pub async fn put_sending(state: &AdminState, name: &str, body: Body) -> Result<Value, ApiError> {
    let enabled = sending_enabled(&body)?.unwrap_or(false);
    let name = name.to_string();
    let changed = name.clone();
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            let value = (!enabled).then(|| false.into());
            Ok(document.set_configuration_set_key(&name, "sending_enabled", value)?)
        })
        .await?;
    tracing::info!(configuration_set = %changed, sending_enabled = enabled, "configuration set sending changed");
    Ok(json!({}))
}

pub async fn delete(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let name = name.to_string();
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            Ok(document.remove_configuration_set(&name)?)
        })
        .await?;
    Ok(json!({}))
}
