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

/// Where a new pool's mail comes from: an existing configuration set switched to it, or a new
/// set made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    ExistingSet(String),
    NewSet(String),
}

/// What the console's Create a New IP Pool wizard asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPool {
    pub name: String,
    /// Dedicated IPs that move into the pool (from wherever they are).
    pub ips: Vec<std::net::IpAddr>,
    pub assignment: Assignment,
}

/// Which part of a [`NewPool`] a refusal is about (the wizard shows it on that step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewPoolPart {
    Name,
    Ips,
    Assignment,
}

/// Checks the pool name alone: valid, not reserved, not taken.
pub fn check_new_pool_name(registry: &crate::registry::Registry, name: &str) -> Result<(), String> {
    if reserved(name) || !is_valid_pool_name(name) {
        return Err(format!(
            "{name:?} is not a pool name: use 1-64 characters from a-z, 0-9, '_' and '-'"
        ));
    }
    if registry.has_named_pool(name) {
        return Err(format!("A pool named {name} already exists"));
    }
    Ok(())
}

/// Creates the pool, moves the IPs into it and assigns it to a set, as one change: the config
/// file is written once, and either all of it applies or none of it does.
pub async fn create_and_assign(
    state: &AdminState,
    plan: NewPool,
) -> Result<(), (NewPoolPart, ApiError)> {
    let refused = std::sync::Arc::new(std::sync::Mutex::new(NewPoolPart::Name));
    let part = refused.clone();
    let blame = move |which: NewPoolPart, error: ApiError| {
        if let Ok(mut slot) = part.lock() {
            *slot = which;
        }
        error
    };
    let result = state
        .change(move |document, registry| {
            check_new_pool_name(registry, &plan.name)
                .map_err(|e| blame(NewPoolPart::Name, ApiError::BadRequest(e)))?;
            document.add_pool(&plan.name)?;
            for ip in &plan.ips {
                if !registry.ips().iter().any(|known| known.address == *ip) {
                    let error = ApiError::NotFound(format!("Dedicated IP {ip} does not exist"));
                    return Err(blame(NewPoolPart::Ips, error));
                }
                document.set_ip_pool(*ip, Some(&plan.name))?;
            }
            let set = match &plan.assignment {
                Assignment::ExistingSet(set) => {
                    if registry.configuration_set(set).is_none() {
                        let error =
                            ApiError::NotFound(format!("Configuration set {set} does not exist"));
                        return Err(blame(NewPoolPart::Assignment, error));
                    }
                    set
                }
                Assignment::NewSet(set) => {
                    if registry.configuration_set(set).is_some()
                        || !crate::registry::is_valid_configuration_set_name(set)
                    {
                        let error = ApiError::BadRequest(format!(
                            "{set:?} is taken or not a configuration set name (1-64 of A-Z, a-z, 0-9, '_', '-')"
                        ));
                        return Err(blame(NewPoolPart::Assignment, error));
                    }
                    document.add_configuration_set(set)?;
                    set
                }
            };
            let pool = toml_edit::Value::from(plan.name.as_str());
            Ok(document.set_configuration_set_key(set, "sending_pool", Some(pool))?)
        })
        .await;
    result.map_err(|error| {
        let part = refused.lock().map(|p| *p).unwrap_or(NewPoolPart::Name);
        (part, error)
    })
}
