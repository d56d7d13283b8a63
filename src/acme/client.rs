//! Talking to the ACME server, through `instant-acme`: the account (made
//! once, kept in `--state-dir`), and one order per host name answered by
//! HTTP-01. instant-acme retries a rejected nonce itself; its HTTP client
//! is wrapped here only to read the `Retry-After` of a refusal (a rate
//! limit), which it does not hand back.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType, HttpClient,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};

use crate::apply::write_private;
use crate::settings::AcmeSettings;

/// Why an order failed, and when the server said to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// The server's `Retry-After` on a refusal (429 rate limit, 503).
    pub retry_after: Option<SystemTime>,
}

/// A new certificate: the chain (leaf first) and its private key, PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

/// Where an order's HTTP-01 answers are put for the CA to fetch.
#[allow(async_fn_in_trait)]
pub trait Challenges {
    /// Serve `key_authorization` at `/.well-known/acme-challenge/TOKEN`.
    async fn publish(&mut self, token: &str, key_authorization: &str) -> Result<(), String>;
    /// Stop serving it (the order is over).
    async fn withdraw(&mut self, token: &str);
}

/// How long an order may take once its challenges are ready: the CA's
/// validation of each, then issuance.
const ORDER_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Client {
    settings: AcmeSettings,
    http: RetryAfterHttp,
    account_file: PathBuf,
    account: Option<Account>,
}

impl Client {
    /// Reads `--acme-ca-file`; nothing is asked of the server yet.
    pub fn new(settings: &AcmeSettings, account_file: PathBuf) -> Result<Self, String> {
        Ok(Self {
            http: RetryAfterHttp::new(settings.ca_file.as_deref())?,
            settings: settings.clone(),
            account_file,
            account: None,
        })
    }

    /// The account: from its file, else registered now and saved (0600).
    async fn account(&mut self) -> Result<Account, Failure> {
        if let Some(account) = &self.account {
            return Ok(account.clone());
        }
        let builder = || Account::builder_with_http(Box::new(self.http.clone()));
        let account = match std::fs::read(&self.account_file) {
            Ok(bytes) => {
                let credentials: AccountCredentials = serde_json::from_slice(&bytes).map_err(|e| {
                    self.failure(format!(
                        "the account file {} does not parse ({e}); remove it to register a new account",
                        self.account_file.display()
                    ))
                })?;
                builder()
                    .from_credentials(credentials)
                    .await
                    .map_err(|e| self.failure(format!("cannot reach the ACME server: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let contact = format!("mailto:{}", self.settings.email);
                let new = NewAccount {
                    contact: &[&contact],
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) = builder()
                    .create(&new, self.settings.directory.clone(), None)
                    .await
                    .map_err(|e| self.failure(format!("cannot register an account: {e}")))?;
                let json = serde_json::to_vec(&credentials).map_err(|e| self.failure(e.to_string()))?;
                write_private(&self.account_file, &json).map_err(|e| {
                    self.failure(format!(
                        "cannot save the account in {}: {e}",
                        self.account_file.display()
                    ))
                })?;
                tracing::info!(directory = %self.settings.directory, id = account.id(), "ACME account registered");
                account
            }
            Err(e) => return Err(self.failure(format!("cannot read {}: {e}", self.account_file.display()))),
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for `name`, answering its HTTP-01 challenge
    /// through `challenges`; every answer is withdrawn before it returns.
    pub async fn issue(&mut self, name: &str, challenges: &mut impl Challenges) -> Result<Issued, Failure> {
        self.http.take_retry_after();
        let account = self.account().await?;
        let mut published = Vec::new();
        let result = self.order(&account, name, challenges, &mut published).await;
        for token in &published {
            challenges.withdraw(token).await;
        }
        result
    }

    async fn order(
        &self,
        account: &Account,
        name: &str,
        challenges: &mut impl Challenges,
        published: &mut Vec<String>,
    ) -> Result<Issued, Failure> {
        let api = |what: &str, e: instant_acme::Error| self.failure(format!("{what}: {e}"));
        let identifiers = [Identifier::Dns(name.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(|e| api("the server refused the order", e))?;
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|e| api("cannot read the authorization", e))?;
            match authorization.status {
                AuthorizationStatus::Pending => {}
                // Validated earlier (the CA reuses a recent authorization).
                AuthorizationStatus::Valid => continue,
                status => return Err(self.failure(format!("the authorization is {status:?}"))),
            }
            let mut challenge = authorization
                .challenge(ChallengeType::Http01)
                .ok_or_else(|| self.failure("the server offers no http-01 challenge".into()))?;
            let answer = challenge.key_authorization();
            challenges
                .publish(&challenge.token, answer.as_str())
                .await
                .map_err(|e| self.failure(format!("cannot publish the challenge answer: {e}")))?;
            published.push(challenge.token.clone());
            challenge
                .set_ready()
                .await
                .map_err(|e| api("the server refused the challenge", e))?;
        }
        let policy = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(ORDER_TIMEOUT);
        let status = order
            .poll_ready(&policy)
            .await
            .map_err(|e| api("the order failed (for a validation: the CA's words)", e))?;
        if status != OrderStatus::Ready {
            return Err(self.failure(self.why_invalid(&mut order).await));
        }
        let key = order
            .finalize()
            .await
            .map_err(|e| api("finalizing the order failed", e))?;
        let chain = order
            .poll_certificate(&policy)
            .await
            .map_err(|e| api("the certificate was not issued", e))?;
        Ok(Issued { chain, key })
    }

    /// The CA's own words on why validation failed.
    async fn why_invalid(&self, order: &mut instant_acme::Order) -> String {
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authorization)) = authorizations.next().await {
            let Ok(state) = authorization.refresh().await else {
                continue;
            };
            if let Some(problem) = state.challenges.iter().find_map(|c| c.error.as_ref()) {
                return format!("the CA could not validate the challenge: {problem}");
            }
        }
        "the order is invalid (the CA gave no reason)".into()
    }

    fn failure(&self, message: String) -> Failure {
        Failure {
            message,
            retry_after: self.http.take_retry_after(),
        }
    }
}

/// instant-acme's HTTP client (hyper with rustls), noting the last
/// `Retry-After` of a 429 or 503 answer.
#[derive(Clone)]
struct RetryAfterHttp {
    inner: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl RetryAfterHttp {
    /// Trusts `ca_file`'s certificates, else the system's.
    fn new(ca_file: Option<&Path>) -> Result<Self, String> {
        let builder = match ca_file {
            Some(path) => {
                use rustls::pki_types::pem::PemObject;
                use rustls::pki_types::CertificateDer;
                let mut roots = rustls::RootCertStore::empty();
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--acme-ca-file {}: {e}", path.display()))?;
                for certificate in certificates {
                    let certificate = certificate.map_err(|e| format!("--acme-ca-file {}: {e}", path.display()))?;
                    roots
                        .add(certificate)
                        .map_err(|e| format!("--acme-ca-file {}: {e}", path.display()))?;
                }
                if roots.is_empty() {
                    return Err(format!("--acme-ca-file {}: holds no certificate", path.display()));
                }
                HttpsConnectorBuilder::new().with_tls_config(
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth(),
                )
            }
            None => HttpsConnectorBuilder::new()
                .try_with_platform_verifier()
                .map_err(|e| format!("cannot read the system's trust store: {e}"))?,
        };
        let connector = builder.https_only().enable_http1().enable_http2().build();
        Ok(Self {
            inner: HyperClient::builder(TokioExecutor::new()).build(connector),
            retry_after: Arc::default(),
        })
    }

    fn take_retry_after(&self) -> Option<SystemTime> {
        self.retry_after.lock().ok()?.take()
    }
}

impl HttpClient for RetryAfterHttp {
    fn request(
        &self,
        request: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = HttpClient::request(&self.inner, request);
        let slot = self.retry_after.clone();
        Box::pin(async move {
            let response = response.await?;
            let status = response.parts.status.as_u16();
            if status == 429 || status == 503 {
                let after = response.parts.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok());
                if let (Some(after), Ok(mut slot)) = (after.and_then(parse_retry_after), slot.lock()) {
                    *slot = Some(after);
                }
            }
            Ok(response)
        })
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<SystemTime> {
    let value = value.trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(SystemTime::now() + Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let soon = parse_retry_after("120").unwrap();
        let wait = soon.duration_since(SystemTime::now()).unwrap();
        assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120));
        let date = parse_retry_after("Fri, 31 Dec 2049 23:59:59 GMT").unwrap();
        assert_eq!(httpdate::fmt_http_date(date), "Fri, 31 Dec 2049 23:59:59 GMT");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "nothing").unwrap();
        let error = RetryAfterHttp::new(Some(&file)).err().unwrap();
        assert!(error.contains("--acme-ca-file"), "{error}");
    }
}
