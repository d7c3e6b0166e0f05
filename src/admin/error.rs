//! API errors in SESv2's shape: `{"__type": "NotFoundException", "message": "..."}` with SES's
//! HTTP status codes.

use hyper::StatusCode;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    AlreadyExists(String),
    AccessDenied(String),
    /// The config file changed by hand since the relay last read or wrote it.
    Conflict(String),
    TooLarge(String),
    /// A `NextToken` this relay did not give.
    InvalidNextToken(String),
    /// No operation has this method and path.
    UnknownOperation(String),
    /// The HTTP API refused the request's signature or key (403 with SES's error type).
    Unauthorized {
        kind: &'static str,
        message: String,
    },
    Internal(String),
    /// Any other SES error type with its status (MessageRejected, SendingPausedException,
    /// TooManyRequestsException, ...).
    Ses {
        status: StatusCode,
        kind: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::AlreadyExists(_) | Self::InvalidNextToken(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::NotFound(_) | Self::UnknownOperation(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized { .. } => StatusCode::FORBIDDEN,
            Self::AccessDenied(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Ses { status, .. } => *status,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::TooLarge(_) => "BadRequestException",
            Self::NotFound(_) => "NotFoundException",
            Self::AlreadyExists(_) => "AlreadyExistsException",
            Self::AccessDenied(_) => "AccessDeniedException",
            Self::Conflict(_) => "ConflictException",
            Self::InvalidNextToken(_) => "InvalidNextTokenException",
            Self::UnknownOperation(_) => "UnknownOperationException",
            Self::Unauthorized { kind, .. } | Self::Ses { kind, .. } => kind,
            Self::Internal(_) => "InternalFailureException",
        }
    }

    fn message(&self) -> &str {
        match self {
            Self::BadRequest(m)
            | Self::NotFound(m)
            | Self::AlreadyExists(m)
            | Self::AccessDenied(m)
            | Self::Conflict(m)
            | Self::TooLarge(m)
            | Self::InvalidNextToken(m)
            | Self::UnknownOperation(m)
            | Self::Internal(m) => m,
            Self::Unauthorized { message, .. } | Self::Ses { message, .. } => message,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        json!({ "__type": self.kind(), "message": self.message() })
    }
}

impl From<crate::config::edit::EditError> for ApiError {
    fn from(error: crate::config::edit::EditError) -> Self {
        use crate::config::edit::EditError;
        match error {
            EditError::NotFound(message) => Self::NotFound(message),
            EditError::Invalid(errors) => Self::BadRequest(errors.to_string().trim().to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<crate::queue::QueueError> for ApiError {
    fn from(error: crate::queue::QueueError) -> Self {
        use crate::queue::QueueError;
        match error {
            QueueError::NotFound(_) => Self::NotFound(error.to_string()),
            QueueError::Held(_) => Self::BadRequest(error.to_string()),
            QueueError::Spool(_) | QueueError::Stopped => Self::Internal(error.to_string()),
        }
    }
}
