//! Paging for every List operation, as SES does it: `PageSize` items at most, and an opaque
//! `NextToken` that resumes after the last item returned — by its key, not its position, so a
//! page is neither repeated nor skipped when items are added or removed in between. A token
//! this relay did not make is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;

const TOKEN_PREFIX: &str = "poolrelay-page:";

/// What one List request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    size: usize,
    /// Resume after this key.
    after: Option<String>,
}

impl PageRequest {
    /// From a request's `PageSize` and `NextToken` (from the query or the JSON body), with
    /// the operation's default and maximum page sizes.
    pub fn new(
        page_size: Option<&str>,
        next_token: Option<&str>,
        (default, max): (usize, usize),
    ) -> Result<Self, ApiError> {
        let size = match page_size {
            None | Some("") => default,
            Some(text) => match text.parse::<usize>() {
                Ok(size) if (1..=max).contains(&size) => size,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "PageSize must be between 1 and {max}, not {text:?}"
                    )));
                }
            },
        };
        let after = match next_token {
            None | Some("") => None,
            Some(token) => Some(decode(token)?),
        };
        Ok(Self { size, after })
    }

    /// The page of `items` (sorted by `key`, ascending) and the token for the next one.
    pub fn page<T>(&self, items: Vec<T>, key: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
        let mut page: Vec<T> = items
            .into_iter()
            .filter(|item| self.after.as_deref().is_none_or(|after| key(item) > after))
            .take(self.size + 1)
            .collect();
        let more = page.len() > self.size;
        page.truncate(self.size);
        let token = match (more, page.last()) {
            (true, Some(last)) => Some(encode(key(last))),
            _ => None,
        };
        (page, token)
    }
}

fn encode(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_PREFIX}{key}"))
}

fn decode(token: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::BadRequest(format!("NextToken {token:?} is not valid"));
    let bytes = URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    text.strip_prefix(TOKEN_PREFIX)
        .map(str::to_string)
        .ok_or_else(invalid)
}

/// Adds `NextToken` to a response when there is one.
pub fn with_token(mut response: serde_json::Value, token: Option<String>) -> serde_json::Value {
    if let Some(token) = token {
        response["NextToken"] = token.into();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| format!("item-{n:03}")).collect()
    }

    #[test]
    fn pages_resume_after_the_last_key_even_when_items_are_added() {
        let request = PageRequest::new(Some("4"), None, (10, 100)).expect("valid");
        let (first, token) = request.page(names(0..10), |s| s.as_str());
        assert_eq!(first, names(0..4));
        let token = token.expect("more to come");
        // An item sorted before the resume point appears while paging: nothing repeats.
        let mut now = names(0..10);
        now.push("item-000a".into());
        now.sort();
        let next = PageRequest::new(Some("4"), Some(&token), (10, 100)).expect("valid");
        let (second, token) = next.page(now, |s| s.as_str());
        assert_eq!(second, names(4..8));
        let last = PageRequest::new(Some("4"), token.as_deref(), (10, 100)).expect("valid");
        let (third, token) = last.page(names(0..10), |s| s.as_str());
        assert_eq!((third, token), (names(8..10), None));
    }

    #[test]
    fn bad_tokens_and_sizes_are_400() {
        for (size, token) in [
            (Some("0"), None),
            (Some("101"), None),
            (Some("x"), None),
            (None, Some("made-up")),
            (None, Some("bm90IG91cnM")),
        ] {
            let error = PageRequest::new(size, token, (10, 100)).expect_err("refused");
            assert_eq!(error.kind(), "BadRequestException", "{size:?} {token:?}");
        }
    }
}
