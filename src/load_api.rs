//! `poolrelay load --api`: the load generator's other door. Each session keeps one HTTP/1.1
//! connection to the SESv2 API and sends SendEmail requests with the message as `Content.Raw`,
//! each signed with SigV4 as an SDK signs it.

use std::net::SocketAddr;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;

use crate::api::sigv4;

/// The key the requests are signed with.
#[derive(Debug, Clone)]
pub struct ApiCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// One keep-alive connection to the API.
pub struct ApiClient {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl ApiClient {
    pub async fn open(target: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(target).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "API connection ended");
            }
        });
        Ok(Self {
            sender,
            host: target.to_string(),
        })
    }

    /// Sends `message` to `recipient` with SendEmail: `Ok(true)` when a MessageId came back,
    /// `Ok(false)` when the API refused it.
    pub async fn send(
        &mut self,
        credentials: &ApiCredentials,
        message: &[u8],
        recipient: &str,
        configuration_set: Option<&str>,
    ) -> anyhow::Result<bool> {
        let domain = recipient.rsplit_once('@').map_or("", |(_, d)| d);
        let mut body = serde_json::json!({
            "FromEmailAddress": format!("load@{domain}"),
            "Destination": { "ToAddresses": [recipient] },
            "Content": { "Raw": { "Data": base64::engine::general_purpose::STANDARD.encode(message) } },
        });
        if let Some(set) = configuration_set {
            body["ConfigurationSetName"] = set.into();
        }
        let body = body.to_string().into_bytes();
        let path = "/v2/email/outbound-emails";
        let amz_date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("host".to_string(), self.host.clone()),
            ("x-amz-date".to_string(), amz_date),
        ];
        let to_sign = sigv4::Request {
            method: "POST",
            raw_path: path,
            raw_query: None,
            headers: &headers,
            body: &body,
        };
        let authorization = sigv4::sign(
            &to_sign,
            &credentials.access_key_id,
            &credentials.secret_access_key,
            &credentials.region,
        )?;
        let mut request = hyper::Request::post(path);
        for (name, value) in &headers {
            request = request.header(name, value);
        }
        let request = request
            .header("authorization", authorization)
            .body(Full::new(Bytes::from(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let answer = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            tracing::debug!(%status, answer = %String::from_utf8_lossy(&answer), "SendEmail refused");
        }
        Ok(status.is_success())
    }
}
