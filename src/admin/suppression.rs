//! The suppression list (SESv2): PutSuppressedDestination, GetSuppressedDestination,
//! DeleteSuppressedDestination, ListSuppressedDestinations, PutAccountSuppressionAttributes,
//! PutConfigurationSetSuppressionOptions; and one extension, a batch put for imports.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::state::AdminState;
use crate::ledger::suppression::{ListQuery, Suppressed, normalize};
use crate::ledger::{Ledger, LedgerError};
use crate::settings::suppression::{SuppressedReasons, SuppressionReason};
use crate::spool::unix_now;

/// SES's largest page.
const MAX_PAGE: usize = 1000;
/// Entries in one batch put.
pub const MAX_BATCH: usize = 500;

fn ledger(state: &AdminState) -> Result<Ledger, ApiError> {
    state
        .ledger
        .clone()
        .ok_or_else(|| ApiError::Internal("this relay has no suppression list".into()))
}

fn iso(unix: u64) -> String {
    DateTime::<Utc>::from_timestamp(unix as i64, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Runs a ledger call on a blocking thread.
async fn blocking<T: Send + 'static>(
    ledger: Ledger,
    call: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(move || call(&ledger)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(LedgerError::Invalid(message))) => Err(ApiError::BadRequest(message)),
        Ok(Err(error)) => Err(ApiError::Internal(error.to_string())),
        Err(error) => Err(ApiError::Internal(error.to_string())),
    }
}

fn reason(text: &str) -> Result<SuppressionReason, ApiError> {
    text.parse().map_err(ApiError::BadRequest)
}

fn address(text: &str) -> Result<String, ApiError> {
    normalize(text).ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not an email address")))
}

pub async fn put(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let entry = Suppressed {
        address: address(&body.required("EmailAddress")?)?,
        reason: reason(&body.required("Reason")?)?,
        last_update: unix_now(),
        message_id: None,
        feedback_id: None,
    };
    blocking(ledger(state)?, move |l| l.suppress(&entry)).await?;
    Ok(json!({}))
}

/// Extension: `{"SuppressedDestinations": [{"EmailAddress", "Reason"}, ...]}` in one durable
/// commit (at most [`MAX_BATCH`]); answers how many were new.
pub async fn put_batch(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let Some(Value::Array(items)) = body.0.get("SuppressedDestinations") else {
        return Err(ApiError::BadRequest(
            "SuppressedDestinations must be a list".into(),
        ));
    };
    if items.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} entries per batch"
        )));
    }
    let now = unix_now();
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let field = |key: &str| {
            item.get(key)
                .and_then(Value::as_str)
                .ok_or_else(|| ApiError::BadRequest(format!("entry {index}: {key} is required")))
        };
        entries.push(Suppressed {
            address: address(field("EmailAddress")?)?,
            reason: reason(field("Reason")?)?,
            last_update: now,
            message_id: None,
            feedback_id: None,
        });
    }
    let added = blocking(ledger(state)?, move |l| l.suppress_all(&entries)).await?;
    Ok(json!({ "Added": added }))
}

pub async fn get(state: &AdminState, raw_address: &str) -> Result<Value, ApiError> {
    let wanted = address(raw_address)?;
    let lookup = wanted.clone();
    let found = blocking(ledger(state)?, move |l| l.suppressed(&lookup)).await?;
    let entry = found
        .ok_or_else(|| ApiError::NotFound(format!("{wanted} is not on the suppression list")))?;
    let mut attributes = json!({});
    if let Some(id) = &entry.message_id {
        attributes["MessageId"] = json!(id);
    }
    if let Some(id) = &entry.feedback_id {
        attributes["FeedbackId"] = json!(id);
    }
    Ok(json!({ "SuppressedDestination": {
        "EmailAddress": entry.address,
        "Reason": entry.reason.as_ses(),
        "LastUpdateTime": iso(entry.last_update),
        "Attributes": attributes,
    }}))
}

pub async fn delete(state: &AdminState, raw_address: &str) -> Result<Value, ApiError> {
    let wanted = address(raw_address)?;
    let removing = wanted.clone();
    if !blocking(ledger(state)?, move |l| l.unsuppress(&removing)).await? {
        return Err(ApiError::NotFound(format!(
            "{wanted} is not on the suppression list"
        )));
    }
    Ok(json!({}))
}

/// `Reasons` (repeatable), `StartDate`/`EndDate` (ISO 8601 or Unix seconds), `PageSize`,
/// `NextToken`.
pub async fn list(state: &AdminState, query: &[(String, String)]) -> Result<Value, ApiError> {
    let mut wanted = ListQuery {
        page_size: MAX_PAGE,
        ..ListQuery::default()
    };
    for (key, value) in query {
        match key.as_str() {
            "Reasons" | "Reason" => {
                for part in value.split(',') {
                    wanted.reasons.push(reason(part.trim())?);
                }
            }
            "StartDate" => wanted.start = Some(date(value)?),
            "EndDate" => wanted.end = Some(date(value)?),
            "PageSize" => {
                let size: usize = value.parse().map_err(|_| {
                    ApiError::BadRequest(format!("PageSize {value:?} is not a number"))
                })?;
                if !(1..=MAX_PAGE).contains(&size) {
                    return Err(ApiError::BadRequest(format!("PageSize is 1 to {MAX_PAGE}")));
                }
                wanted.page_size = size;
            }
            "NextToken" => wanted.next_token = Some(value.clone()),
            _ => {}
        }
    }
    let page = match blocking_list(ledger(state)?, wanted).await {
        Err(ApiError::BadRequest(message)) => return Err(ApiError::InvalidNextToken(message)),
        other => other?,
    };
    let summaries: Vec<Value> = page
        .entries
        .iter()
        .map(|e| json!({"EmailAddress": e.address, "Reason": e.reason.as_ses(), "LastUpdateTime": iso(e.last_update)}))
        .collect();
    let mut answer = json!({ "SuppressedDestinationSummaries": summaries });
    if let Some(token) = page.next_token {
        answer["NextToken"] = json!(token);
    }
    Ok(answer)
}

async fn blocking_list(
    ledger: Ledger,
    query: ListQuery,
) -> Result<crate::ledger::suppression::Page, ApiError> {
    blocking(ledger, move |l| l.list(&query)).await
}

fn date(text: &str) -> Result<u64, ApiError> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Ok(seconds.max(0.0) as u64);
    }
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.timestamp().max(0) as u64)
        .map_err(|_| {
            ApiError::BadRequest(format!("{text:?} is not a date (ISO 8601 or Unix seconds)"))
        })
}

fn reasons_of(body: &Body) -> Result<(SuppressedReasons, toml_edit::Array), ApiError> {
    let Some(Value::Array(items)) = body.0.get("SuppressedReasons") else {
        return Err(ApiError::BadRequest(
            "SuppressedReasons must be a list".into(),
        ));
    };
    let mut parsed = Vec::new();
    for item in items {
        let text = item
            .as_str()
            .ok_or_else(|| ApiError::BadRequest("SuppressedReasons holds strings".into()))?;
        parsed.push(reason(text)?);
    }
    let set = SuppressedReasons::from_reasons(parsed);
    let array: toml_edit::Array = set.names().into_iter().collect();
    Ok((set, array))
}

pub async fn put_account(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let (_, array) = reasons_of(&body)?;
    state
        .change(move |document, _| {
            Ok(document.set_section_key("suppression", "reasons", array.into())?)
        })
        .await?;
    Ok(json!({}))
}

pub async fn put_configuration_set(
    state: &AdminState,
    name: &str,
    body: Body,
) -> Result<Value, ApiError> {
    let (_, array) = reasons_of(&body)?;
    let name = name.to_string();
    state
        .change(move |document, registry| {
            if registry.configuration_set(&name).is_none() {
                return Err(ApiError::NotFound(format!(
                    "Configuration set {name} does not exist"
                )));
            }
            Ok(document.set_configuration_set_key(
                &name,
                "suppressed_reasons",
                Some(array.into()),
            )?)
        })
        .await?;
    Ok(json!({}))
}
