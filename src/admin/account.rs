//! The account: GetAccount (sending state, quota and what was sent in the last 24 hours) and
//! PutAccountSendingAttributes (pause or resume all sending), kept in `[account]`.

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::state::AdminState;

pub async fn get(state: &AdminState) -> Result<Value, ApiError> {
    let sent = state.quota.sent_last_24_hours_anywhere().await;
    let registry = state.registry.load();
    let account = registry.account();
    Ok(json!({
        "DedicatedIpAutoWarmupEnabled": registry.warmup().enabled,
        "EnforcementStatus": "HEALTHY",
        "ProductionAccessEnabled": true,
        "SendingEnabled": account.sending_enabled,
        // 0 means unlimited, as in `[account]`.
        "SendQuota": {
            "Max24HourSend": account.max_24_hour_send as f64,
            "MaxSendRate": account.max_send_rate as f64,
            "SentLast24Hours": sent as f64,
        },
        "SuppressionAttributes": {
            "SuppressedReasons": registry.account_suppression().names(),
        },
    }))
}

/// `PUT /v2/email/account/sending {"SendingEnabled": bool}`: paused, new mail is refused
/// (SMTP 554 5.7.1, API SendingPausedException) and queued mail waits.
pub async fn put_sending(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    body.only(&["SendingEnabled"])?;
    let enabled = body.boolean("SendingEnabled")?.unwrap_or(false);
    state
        .change(move |document, _| {
            document.set_section_key("account", "sending_enabled", enabled.into())?;
            Ok(())
        })
        .await?;
    match enabled {
        true => tracing::info!("account sending resumed"),
        false => tracing::warn!("account sending paused: new mail is refused, queued mail waits"),
    }
    Ok(json!({}))
}
