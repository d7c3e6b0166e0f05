//! Email identities: CreateEmailIdentity, ListEmailIdentities, GetEmailIdentity,
//! DeleteEmailIdentity, PutEmailIdentityDkimAttributes, PutEmailIdentityDkimSigningAttributes
//! (key rotation) and PutEmailIdentityConfigurationSetAttributes.
//!
//! Private keys given here are written to `[dkim] key_dir` (0600) and named in the config file
//! by path: they never enter the TOML file, the log or an answer.

use serde_json::{Value, json};

use super::body::Body;
use super::error::ApiError;
use super::paging::{PageRequest, with_token};
use super::state::AdminState;
use crate::config::DkimSettings;
use crate::identity::key::{DkimKey, KeyAlgorithm};
use crate::identity::{Identity, key_dir, parse_identity_name};
use crate::registry::Registry;

/// SES's `DkimAttributes`, plus `DnsRecords`: what to publish.
fn dkim_attributes(state: &AdminState, identity: &Identity) -> Value {
    let Some(dkim) = &identity.dkim else {
        return json!({
            "SigningEnabled": false,
            "Status": "NOT_STARTED",
            "Tokens": [],
            "DnsRecords": [],
        });
    };
    json!({
        "SigningEnabled": identity.signing_enabled,
        "Status": state.dkim_status.status(&identity.name, &dkim.selector).as_ses(),
        "Tokens": [dkim.selector],
        "SigningAttributesOrigin": dkim.origin.as_ses(),
        "CurrentSigningKeyLength": dkim.key.ses_key_length(),
        "NextSigningKeyLength": state.dkim.algorithm.as_ses(),
        "LastKeyGenerationTimestamp": dkim.created,
        "DnsRecords": [{
            "Name": identity.dns_record_name(),
            "Type": "TXT",
            "Value": dkim.key.dns_record_value(),
        }],
    })
}

fn identity_type(identity: &Identity) -> &'static str {
    if identity.is_domain() {
        "DOMAIN"
    } else {
        "EMAIL_ADDRESS"
    }
}

fn describe(state: &AdminState, identity: &Identity) -> Value {
    let attributes = dkim_attributes(state, identity);
    let status = attributes["Status"].clone();
    json!({
        "IdentityType": identity_type(identity),
        "VerifiedForSendingStatus": true,
        "VerificationStatus": if identity.dkim.is_some() { status } else { json!("SUCCESS") },
        "FeedbackForwardingStatus": false,
        "ConfigurationSetName": identity.configuration_set,
        "DkimAttributes": attributes,
        "Tags": [],
    })
}

/// The identity `name`, or SES's NotFoundException.
fn existing<'a>(registry: &'a Registry, name: &str) -> Result<&'a Identity, ApiError> {
    registry
        .identities()
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("Email identity {name} does not exist")))
}

fn checked_name(text: &str) -> Result<String, ApiError> {
    parse_identity_name(text).map_err(ApiError::BadRequest)
}

pub fn list(state: &AdminState, page: &PageRequest) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    let identities: Vec<Value> = registry
        .identities()
        .iter()
        .map(|identity| {
            let full = describe(state, identity);
            json!({
                "IdentityType": full["IdentityType"],
                "IdentityName": identity.name,
                "SendingEnabled": true,
                "VerificationStatus": full["VerificationStatus"],
            })
        })
        .collect();
    let (identities, token) = page.page(identities, |i| i["IdentityName"].as_str().unwrap_or(""));
    Ok(with_token(json!({ "EmailIdentities": identities }), token))
}

pub fn get(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let registry = state.registry.load();
    Ok(describe(state, existing(&registry, name)?))
}

/// A key given through the API: `DomainSigningSelector` and `DomainSigningPrivateKey` together.
struct GivenKey {
    selector: String,
    pem: String,
}

fn given_key(attributes: &Body) -> Result<Option<GivenKey>, ApiError> {
    let selector = attributes.string("DomainSigningSelector")?;
    let key = attributes.string("DomainSigningPrivateKey")?;
    match (selector, key) {
        (None, None) => Ok(None),
        (Some(selector), Some(key)) => {
            let valid = !selector.is_empty()
                && selector.len() <= 63
                && selector
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
            if !valid {
                return Err(ApiError::BadRequest(format!(
                    "DomainSigningSelector {selector:?} is not a DNS label"
                )));
            }
            let (_, pem) = DkimKey::from_base64_der(&key).map_err(|error| {
                ApiError::BadRequest(format!("DomainSigningPrivateKey: {error}"))
            })?;
            Ok(Some(GivenKey {
                selector: selector.to_ascii_lowercase(),
                pem,
            }))
        }
        _ => Err(ApiError::BadRequest(
            "DomainSigningSelector and DomainSigningPrivateKey go together".into(),
        )),
    }
}

/// `NextSigningKeyLength` (`RSA_1024_BIT`, `RSA_2048_BIT`, or poolrelay's `ED25519`).
fn key_length(attributes: &Body) -> Result<Option<KeyAlgorithm>, ApiError> {
    Ok(
        match attributes.string("NextSigningKeyLength")?.as_deref() {
            None => None,
            Some("RSA_2048_BIT") => Some(KeyAlgorithm::Rsa2048),
            Some("RSA_1024_BIT") => Some(KeyAlgorithm::Rsa1024),
            Some("ED25519") => Some(KeyAlgorithm::Ed25519),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "NextSigningKeyLength must be RSA_1024_BIT or RSA_2048_BIT, not {other}"
                )));
            }
        },
    )
}

/// Writes a given key to the key folder; returns the path to put in `dkim_key`.
fn write_given_key(dkim: &DkimSettings, name: &str, key: &GivenKey) -> Result<String, ApiError> {
    let file = format!("{name}.{}.pem", key.selector);
    key_dir::write_private(&dkim.key_dir, &file, key.pem.as_bytes())
        .map_err(|error| ApiError::Internal(format!("cannot write the key: {error}")))?;
    Ok(format!(
        "{}/{file}",
        dkim.key_dir_as_written.trim_end_matches('/')
    ))
}

fn generate_key(dkim: &DkimSettings, name: &str, algorithm: KeyAlgorithm) -> Result<(), ApiError> {
    key_dir::generate(&dkim.key_dir, name, algorithm)
        .map(|_| ())
        .map_err(ApiError::Internal)
}

pub async fn create(state: &AdminState, body: Body) -> Result<Value, ApiError> {
    let name = checked_name(&body.required("EmailIdentity")?)?;
    let attributes = body.object("DkimSigningAttributes")?;
    let given = given_key(&attributes)?;
    let length = key_length(&attributes)?;
    let set = body.string("ConfigurationSetName")?;
    let dkim = state.dkim.clone();
    let created = name.clone();
    state
        .change(move |document, registry| {
            if registry.identities().get(&name).is_some() {
                return Err(ApiError::AlreadyExists(format!(
                    "Email identity {name} already exists"
                )));
            }
            if let Some(set) = &set
                && registry.configuration_set(set).is_none()
            {
                return Err(ApiError::NotFound(format!(
                    "Configuration set {set} does not exist"
                )));
            }
            let mut fields = vec![("configuration_set", set.as_deref().map(Into::into))];
            match &given {
                Some(key) => {
                    let path = write_given_key(&dkim, &name, key)?;
                    fields.push(("dkim_selector", Some(key.selector.as_str().into())));
                    fields.push(("dkim_key", Some(path.into())));
                }
                None if !name.contains('@') => {
                    // A fresh key, even if an old one of a deleted identity is lying there.
                    generate_key(&dkim, &name, length.unwrap_or(dkim.algorithm))?;
                }
                None => {}
            }
            Ok(document.add_identity(&name, &fields)?)
        })
        .await?;
    let registry = state.registry.load();
    let identity = existing(&registry, &created)?;
    Ok(json!({
        "IdentityType": identity_type(identity),
        "VerifiedForSendingStatus": true,
        "DkimAttributes": dkim_attributes(state, identity),
    }))
}

pub async fn delete(state: &AdminState, name: &str) -> Result<Value, ApiError> {
    let name = checked_name(name)?;
    let removed = name.clone();
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            Ok(document.remove_identity(&name)?)
        })
        .await?;
    key_dir::remove_generated(&state.dkim.key_dir, &removed);
    Ok(json!({}))
}

/// PutEmailIdentityDkimAttributes: `SigningEnabled`.
pub async fn put_dkim(state: &AdminState, name: &str, body: Body) -> Result<Value, ApiError> {
    let name = checked_name(name)?;
    let enabled = body.boolean("SigningEnabled")?.unwrap_or(false);
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            Ok(document.set_identity_key(&name, "dkim_signing", Some(enabled.into()))?)
        })
        .await?;
    Ok(json!({}))
}

/// PutEmailIdentityDkimSigningAttributes: a new key (given: `EXTERNAL`; generated:
/// `AWS_SES`) under a new selector. The answer has the record to publish.
pub async fn put_dkim_signing(
    state: &AdminState,
    name: &str,
    body: Body,
) -> Result<Value, ApiError> {
    let name = checked_name(name)?;
    let attributes = body.object("SigningAttributes")?;
    let origin = body.required("SigningAttributesOrigin")?;
    let given = given_key(&attributes)?;
    let length = key_length(&attributes)?;
    let external = match origin.as_str() {
        "EXTERNAL" => true,
        "AWS_SES" => false,
        other => {
            return Err(ApiError::BadRequest(format!(
                "SigningAttributesOrigin must be AWS_SES or EXTERNAL, not {other}"
            )));
        }
    };
    if external && given.is_none() {
        return Err(ApiError::BadRequest(
            "EXTERNAL needs SigningAttributes with DomainSigningSelector and DomainSigningPrivateKey".into(),
        ));
    }
    let dkim = state.dkim.clone();
    let rotated = name.clone();
    state
        .change(move |document, registry| {
            let identity = existing(registry, &name)?;
            if !identity.is_domain() {
                return Err(ApiError::BadRequest(format!(
                    "{name} is an email address identity: DKIM keys belong to domains"
                )));
            }
            match &given {
                Some(key) if external => {
                    let path = write_given_key(&dkim, &name, key)?;
                    document.set_identity_key(
                        &name,
                        "dkim_selector",
                        Some(key.selector.as_str().into()),
                    )?;
                    document.set_identity_key(&name, "dkim_key", Some(path.into()))?;
                }
                _ => {
                    generate_key(&dkim, &name, length.unwrap_or(dkim.algorithm))?;
                    document.set_identity_key(&name, "dkim_selector", None)?;
                    document.set_identity_key(&name, "dkim_key", None)?;
                }
            }
            Ok(())
        })
        .await?;
    let registry = state.registry.load();
    let identity = existing(&registry, &rotated)?;
    let attributes = dkim_attributes(state, identity);
    Ok(json!({
        "DkimStatus": attributes["Status"],
        "DkimTokens": attributes["Tokens"],
        "DnsRecords": attributes["DnsRecords"],
    }))
}

/// PutEmailIdentityConfigurationSetAttributes: the identity's default configuration set
/// (none given: no default).
pub async fn put_configuration_set(
    state: &AdminState,
    name: &str,
    body: Body,
) -> Result<Value, ApiError> {
    let name = checked_name(name)?;
    let set = body.string("ConfigurationSetName")?;
    state
        .change(move |document, registry| {
            existing(registry, &name)?;
            if let Some(set) = &set
                && registry.configuration_set(set).is_none()
            {
                return Err(ApiError::NotFound(format!(
                    "Configuration set {set} does not exist"
                )));
            }
            Ok(document.set_identity_key(
                &name,
                "configuration_set",
                set.as_deref().map(Into::into),
            )?)
        })
        .await?;
    Ok(json!({}))
}
