//! Dedicated IPs: GetDedicatedIps, GetDedicatedIp, PutDedicatedIpInPool, and the self-hosted
//! additions: adding an address (only one assigned to this host) and removing one.

use std::net::IpAddr;

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::paging::{PageRequest, with_token};
use super::state::AdminState;
use crate::outbound::connect::source_available;
use crate::outbound::health::Health;
use crate::outbound::warmup::{WarmupState, today};
use crate::registry::{DEFAULT_POOL, DedicatedIp, Registry, SHARED_POOL};

/// SES's DedicatedIp, plus poolrelay's `Weight`, `EhloHostname` and `Suspension`.
fn describe(state: &AdminState, registry: &Registry, ip: &DedicatedIp) -> Value {
    let health: &Health = &state.health;
    let warmup = WarmupState::of(registry.warmup(), ip.warmup_started, today());
    // Another fleet node's IP: its health as that node last announced it.
    let remote = match (&state.fleet, registry.is_local(ip)) {
        (Some(fleet), false) => fleet.remote_health(ip.address),
        _ => None,
    };
    let report = match remote {
        Some(announced) => serde_json::from_value(announced).unwrap_or_default(),
        None => health.report(ip.address),
    };
    // The broadest suspension wins: operator (everything), unbindable (everything), sites.
    let status = if ip.suspended {
        "OPERATOR"
    } else if report.unbindable.is_some() {
        "UNBINDABLE"
    } else if !report.sites.is_empty() {
        "SITES"
    } else {
        "NONE"
    };
    json!({
        "Ip": ip.address.to_string(),
        "WarmupStatus": if matches!(warmup, WarmupState::Warm) { "DONE" } else { "IN_PROGRESS" },
        "WarmupPercentage": percentage(ip, warmup),
        "PoolName": ip.pool.as_deref().unwrap_or(DEFAULT_POOL),
        "Weight": ip.weight,
        "EhloHostname": ip.ehlo_hostname,
        "ReverseDns": health.reverse_dns.get(ip.address),
        "Suspension": {
            "Status": status,
            "Operator": ip.suspended,
            "Unbindable": report.unbindable.map(|(reason, since)| json!({
                "Reason": reason,
                "Since": since,
            })),
            "Sites": report.sites,
        },
    })
}

/// SES `WarmupPercentage`: the value last set while the schedule is still on the day that value
/// put it on, else what the schedule's day says.
fn percentage(ip: &DedicatedIp, warmup: WarmupState) -> u64 {
    match (ip.warmup_percentage, warmup) {
        (Some(set), WarmupState::Warming { day, days, .. })
            if set as usize * days / 100 + 1 == day =>
        {
            set as u64
        }
        _ => warmup.percentage(),
    }
}

/// The dedicated IP `address`, or SES's NotFoundException.
fn existing(registry: &Registry, address: IpAddr) -> Result<&DedicatedIp, ApiError> {
    registry
        .ips()
        .iter()
        .find(|known| known.address == address)
        .ok_or_else(|| ApiError::NotFound(format!("Dedicated IP {address} does not exist")))
}

/// An IP from a request, as the registry keeps it (an IPv4-mapped IPv6 spelling is its IPv4
/// address).
fn parse_ip(text: &str) -> Result<IpAddr, ApiError> {
    text.parse::<IpAddr>()
        .map(|address| address.to_canonical())
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not an IP address")))
}

pub fn list(
    state: &AdminState,
    pool: Option<String>,
    page: &PageRequest,
) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    if let Some(pool) = &pool
        && !registry.pool_exists(pool)
    {
        return Err(ApiError::NotFound(format!("Pool {pool} does not exist")));
    }
    let mut ips: Vec<&DedicatedIp> = registry
        .ips()
        .iter()
        .filter(|ip| {
            pool.as_deref()
                .is_none_or(|p| ip.pool.as_deref().unwrap_or(DEFAULT_POOL) == p)
        })
        .collect();
    // Paged in a stable order: by the address's text.
    let keys: Vec<String> = ips.iter().map(|ip| ip.address.to_string()).collect();
    let mut keyed: Vec<(&str, &DedicatedIp)> =
        keys.iter().map(String::as_str).zip(ips.drain(..)).collect();
    keyed.sort_by(|a, b| a.0.cmp(b.0));
    let (keyed, token) = page.page(keyed, |(key, _)| key);
    let ips: Vec<Value> = keyed
        .into_iter()
        .map(|(_, ip)| describe(state, &registry, ip))
        .collect();
    Ok(with_token(json!({ "DedicatedIps": ips }), token))
}

pub fn get(state: &AdminState, ip: &str) -> Result<Value, ApiError> {
    let address = parse_ip(ip)?;
    let registry = state.registry.load();
    let found = existing(&registry, address)?;
    Ok(json!({ "DedicatedIp": describe(state, &registry, found) }))
}

pub async fn move_to_pool(state: &AdminState, ip: &str, body: Body) -> Result<Value, ApiError> {
    let address = parse_ip(ip)?;
    let destination = body.required("DestinationPoolName")?;
    if destination == SHARED_POOL {
        return Err(ApiError::BadRequest(
            "a dedicated IP cannot be moved into ses-shared-pool".into(),
        ));
    }
    state
        .change(move |document, registry| {
            existing(registry, address)?;
            if !registry.pool_exists(&destination) {
                return Err(ApiError::NotFound(format!(
                    "Pool {destination} does not exist"
                )));
            }
            let pool = (destination != DEFAULT_POOL).then_some(destination.as_str());
            Ok(document.set_ip_pool(address, pool)?)
        })
        .await?;
    Ok(json!({}))
}

pub async fn add(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let address = parse_ip(&body.required("Ip")?)?;
    let pool = body.string("PoolName")?;
    let ehlo = body.string("EhloHostname")?;
    let weight = body
        .number("Weight")?
        .map(|w| u32::try_from(w).map_err(|_| ApiError::BadRequest("Weight is too large".into())))
        .transpose()?;
    if let Err(error) = source_available(address) {
        return Err(ApiError::BadRequest(format!(
            "{address} cannot be used on this host: {error}"
        )));
    }
    state
        .change(move |document, registry| {
            if registry.ips().iter().any(|known| known.address == address)
                || registry.shared_pool().contains(&address)
            {
                return Err(ApiError::AlreadyExists(format!(
                    "Dedicated IP {address} already exists"
                )));
            }
            if let Some(pool) = &pool
                && (!registry.pool_exists(pool) || pool == SHARED_POOL)
            {
                return Err(ApiError::NotFound(format!("Pool {pool} does not exist")));
            }
            let pool = pool.as_deref().filter(|p| *p != DEFAULT_POOL);
            document.add_ip(address, pool, ehlo.as_deref(), weight)?;
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

/// Removes an address. Connections already open from it finish their transactions; no new ones
/// are made.
pub async fn remove(state: &AdminState, ip: &str) -> Result<Value, ApiError> {
    let address = parse_ip(ip)?;
    state
        .change(move |document, registry| {
            existing(registry, address)?;
            Ok(document.remove_ip(address)?)
        })
        .await?;
    Ok(json!({}))
}

/// PutDedicatedIpWarmupAttributes: puts the IP at the point of the schedule that matches the
/// percentage (100: warm; the IP's `warmup_started` is rewritten accordingly).
pub async fn put_warmup(state: &AdminState, ip: &str, body: Body) -> Result<Value, ApiError> {
    let address = parse_ip(ip)?;
    let percentage = body
        .number("WarmupPercentage")?
        .ok_or_else(|| ApiError::BadRequest("WarmupPercentage is required".into()))?;
    if percentage > 100 {
        return Err(ApiError::BadRequest(
            "WarmupPercentage must be between 0 and 100".into(),
        ));
    }
    state
        .change(move |document, registry| {
            existing(registry, address)?;
            let days = registry.warmup().schedule.len() as u64;
            let started = (percentage < 100).then(|| {
                let day_index = percentage * days / 100;
                (today() - chrono::Days::new(day_index))
                    .format("%Y-%m-%d")
                    .to_string()
            });
            let exact = (percentage < 100).then(|| (percentage as i64).into());
            document.set_ip_key(address, "warmup_percentage", exact)?;
            Ok(document.set_ip_key(
                address,
                "warmup_started",
                started.map(|d| d.as_str().into()),
            )?)
        })
        .await?;
    Ok(json!({}))
}

/// PutAccountDedicatedIpWarmupAttributes: turns automatic warm-up on or off for every IP.
pub async fn put_account_warmup(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    body.only(&["AutoWarmupEnabled"])?;
    // Optional in SES's model: without it nothing changes.
    let Some(enabled) = body.boolean("AutoWarmupEnabled")? else {
        return Ok(json!({}));
    };
    state
        .change(move |document, _| {
            document.set_warmup_enabled(enabled)?;
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

/// `PUT /v2/email/dedicated-ips/{IP}/suspension {"Suspended": bool}` (poolrelay extension):
/// takes the IP out of rotation for every destination, or puts it back. The setting is saved
/// in the config (`[[ip]] suspended = true`). Resuming also lifts the IP's site suspensions.
pub async fn put_suspension(state: &AdminState, ip: &str, body: Body) -> Result<Value, ApiError> {
    let address = parse_ip(ip)?;
    let suspended = match body.0.get("Suspended") {
        Some(Value::Bool(suspended)) => *suspended,
        _ => {
            return Err(ApiError::BadRequest(
                "Suspended (true or false) is required".into(),
            ));
        }
    };
    state
        .change(move |document, registry| {
            existing(registry, address)?;
            Ok(document.set_ip_key(address, "suspended", suspended.then(|| true.into()))?)
        })
        .await?;
    if suspended {
        tracing::warn!(source_ip = %address, "dedicated IP suspended by an operator");
    } else {
        state.health.clear_sites(address);
        tracing::info!(source_ip = %address, "dedicated IP resumed by an operator");
    }
    Ok(json!({}))
}
