//! Dedicated IP pools: ListDedicatedIpPools, CreateDedicatedIpPool, GetDedicatedIpPool,
//! DeleteDedicatedIpPool.

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::paging::{PageRequest, with_token};
use super::state::AdminState;
use crate::registry::{DEFAULT_POOL, SHARED_POOL, is_valid_pool_name};

pub fn list(state: &AdminState, page: &PageRequest) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    let mut pools: Vec<&str> = registry.pool_names().collect();
    pools.push(DEFAULT_POOL);
    pools.push(SHARED_POOL);
    pools.sort();
    let (pools, token) = page.page(pools, |p| p);
    Ok(with_token(json!({ "DedicatedIpPools": pools }), token))
}

fn reserved(name: &str) -> bool {
    name == DEFAULT_POOL || name == SHARED_POOL
}

pub async fn create(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let name = body.required("PoolName")?;
    body.only(&["PoolName", "ScalingMode", "Tags"])?;
    let tags = super::tags::from_body(&body)?;
    match body.string("ScalingMode")?.as_deref() {
        None | Some("STANDARD") => {}
        Some("MANAGED") => {
            return Err(ApiError::BadRequest(
                "ScalingMode MANAGED is not supported; use STANDARD".into(),
            ));
        }
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "ScalingMode must be STANDARD, not {other}"
            )));
        }
    }
    if reserved(&name) || !is_valid_pool_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "Pool name {name:?} is invalid or reserved: use 1-64 characters from a-z, 0-9, '_' and '-'"
        )));
    }
    state
        .change(move |document, registry| {
            if registry.has_named_pool(&name) {
                return Err(ApiError::AlreadyExists(format!(
                    "Pool {name} already exists"
                )));
            }
            document.add_pool(&name)?;
            if !tags.is_empty() {
                document.set_pool_key(&name, "tags", Some(super::tags::toml_value(&tags)))?;
            }
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

pub fn get(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    if reserved(name) {
        return Err(ApiError::BadRequest(
            "Pool name describes either a shared or default dedicated ip pool".into(),
        ));
    }
    if !state.registry.load().has_named_pool(name) {
        return Err(ApiError::NotFound(format!("Pool {name} does not exist")));
    }
    Ok(json!({ "DedicatedIpPool": { "PoolName": name, "ScalingMode": "STANDARD" } }))
}

pub async fn delete(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    if reserved(name) {
        return Err(ApiError::BadRequest(
            "Pool name describes either a shared or default dedicated ip pool".into(),
        ));
    }
    let name = name.to_string();
    state
        .change(move |document, registry| {
            if !registry.has_named_pool(&name) {
                return Err(ApiError::NotFound(format!("Pool {name} does not exist")));
            }
            if registry
                .ips()
                .iter()
                .any(|ip| ip.pool.as_deref() == Some(name.as_str()))
            {
                return Err(ApiError::BadRequest(format!(
                    "Pool {name} still holds dedicated IPs; move them first"
                )));
            }
            if let Some(set) = registry
                .configuration_sets()
                .find(|s| s.sending_pool.as_deref() == Some(name.as_str()))
            {
                return Err(ApiError::BadRequest(format!(
                    "Pool {name} is the sending pool of configuration set {}",
                    set.name
                )));
            }
            Ok(document.remove_pool(&name)?)
        })
        .await?;
    Ok(json!({}))
}
