//! The queue: list, and per message retry, hold, release and delete.

use serde_json::{Value, json};

use super::error::ApiError;
use super::state::AdminState;

pub async fn list(state: &AdminState) -> Result<Value, ApiError> {
    let entries = state.queue.list().await?;
    Ok(json!({ "Messages": entries }))
}

pub async fn delete(state: &AdminState, id: &str) -> Result<Value, ApiError> {
    state.queue.delete(id).await?;
    Ok(json!({}))
}

pub async fn act(state: &AdminState, id: &str, action: &str) -> Result<Value, ApiError> {
    match action {
        "retry" => state.queue.retry_now(id).await?,
        "hold" => state.queue.hold(id).await?,
        "release" => state.queue.release(id).await?,
        other => {
            return Err(ApiError::NotFound(format!(
                "no queue action {other}: use retry, hold or release"
            )));
        }
    }
    Ok(json!({}))
}
