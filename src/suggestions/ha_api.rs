//! Home Assistant's config API for automations: `validate_config`, `automation/config` and
//! `call_service` over the WebSocket ([`HaHandle::request`]); `GET`/`POST`/`DELETE
//! /api/config/automation/config/<id>` over REST (the Supervisor's Core proxy with
//! `SUPERVISOR_TOKEN` as an add-on, else `ha.url` with `ha.token`, which must be an
//! administrator's: HA answers 401 to anyone else).

use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{HaEndpoint, Secret};
use crate::ha::{CommandError, HaHandle};

/// The Supervisor's description of this add-on (its slug).
const SUPERVISOR_SELF_INFO: &str = "http://supervisor/addons/self/info";

/// How long one call to Home Assistant may take.
pub(crate) const HA_TIMEOUT: Duration = Duration::from_secs(10);

/// A call to Home Assistant that failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum HaApiError {
    /// Home Assistant refused the automation; `field` is the part it named.
    #[error("Home Assistant refused the automation: {message}")]
    Refused {
        /// `triggers`, `conditions`, `actions`, or the path HA gave (`actions[0].target`).
        field: Option<String>,
        /// HA's message.
        message: String,
    },
    /// The token may not use the config API.
    #[error("{0}")]
    Auth(String),
    /// Home Assistant could not be reached or failed.
    #[error("{0}")]
    Unavailable(String),
}

impl From<CommandError> for HaApiError {
    fn from(e: CommandError) -> Self {
        HaApiError::Unavailable(e.to_string())
    }
}

/// What a `DELETE` of an automation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// Removed.
    Removed,
    /// It was not there.
    Missing,
    /// The Supervisor's proxy has no `DELETE` (405).
    NotSupported,
}

/// Home Assistant's automation config API; cheap to clone.
#[derive(Clone)]
pub(crate) struct HaConfig {
    ws: HaHandle,
    http: reqwest::Client,
    rest_url: String,
    token: Secret,
    supervisor: bool,
}

impl std::fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaConfig")
            .field("rest_url", &self.rest_url)
            .finish_non_exhaustive()
    }
}

/// `message … @ data['actions'][0]['target']` → `actions[0].target`.
pub(crate) fn field_of(message: &str) -> Option<String> {
    let at = message.rfind("@ data")?;
    let mut out = String::new();
    for part in message[at + "@ data".len()..].split('[').skip(1) {
        let inner = part.split(']').next()?.trim();
        match inner.trim_matches('\'') {
            idx if idx.chars().all(|c| c.is_ascii_digit()) && !idx.is_empty() => {
                out.push_str(&format!("[{idx}]"));
            }
            key => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

fn unavailable(what: &str, e: &reqwest::Error) -> HaApiError {
    HaApiError::Unavailable(format!("{what}: {}", e.without_url_ref()))
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(url.as_str(), "<url>");
        }
        s
    }
}

impl HaConfig {
    /// Through `ws` and the REST API of `endpoint`.
    pub(crate) fn new(ws: HaHandle, endpoint: &HaEndpoint) -> Self {
        // `main` installs it; tests and embedders may not have
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(HA_TIMEOUT)
            .connect_timeout(HA_TIMEOUT)
            .user_agent(concat!("homeiq/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        HaConfig {
            ws,
            http,
            rest_url: endpoint.rest_url.trim_end_matches('/').to_owned(),
            token: endpoint.token.clone(),
            supervisor: endpoint.supervisor,
        }
    }

    fn url(&self, id: &str) -> String {
        format!("{}/config/automation/config/{id}", self.rest_url)
    }

    fn auth_error(&self, status: reqwest::StatusCode) -> HaApiError {
        HaApiError::Auth(if self.supervisor {
            format!(
                "the Supervisor refused the automation config API ({status}); the add-on needs homeassistant_api"
            )
        } else {
            format!(
                "Home Assistant refused the automation config API ({status}): ha.token must be a long-lived token of an administrator"
            )
        })
    }

    /// WebSocket `validate_config` of the triggers, conditions and actions: the parts HA refused
    /// as [`HaApiError::Refused`] (the first), else `Ok`.
    pub(crate) async fn validate(&self, automation: &Value) -> Result<(), HaApiError> {
        let mut command = json!({"type": "validate_config"});
        for part in ["triggers", "conditions", "actions"] {
            if let Some(v) = automation.get(part) {
                command[part] = v.clone();
            }
        }
        let raw = self.ws.request(command, HA_TIMEOUT).await?;
        let answer: Value = serde_json::from_str(raw.get())
            .map_err(|e| HaApiError::Unavailable(format!("validate_config answer: {e}")))?;
        for part in ["triggers", "conditions", "actions"] {
            let verdict = &answer[part];
            if verdict["valid"] == Value::Bool(false) {
                let message = verdict["error"].as_str().unwrap_or("invalid").to_owned();
                let field = field_of(&message)
                    .map(|inner| {
                        if inner.starts_with('[') {
                            format!("{part}{inner}")
                        } else {
                            format!("{part}.{inner}")
                        }
                    })
                    .unwrap_or_else(|| part.to_owned());
                return Err(HaApiError::Refused {
                    field: Some(field),
                    message,
                });
            }
        }
        Ok(())
    }

    /// WebSocket `automation/config` of an automation entity (YAML ones included).
    pub(crate) async fn automation_config(&self, entity_id: &str) -> Result<Value, HaApiError> {
        let raw = self
            .ws
            .request(
                json!({"type": "automation/config", "entity_id": entity_id}),
                HA_TIMEOUT,
            )
            .await?;
        let v: Value = serde_json::from_str(raw.get())
            .map_err(|e| HaApiError::Unavailable(format!("automation/config answer: {e}")))?;
        Ok(v.get("config").cloned().unwrap_or(Value::Null))
    }

    /// WebSocket `call_service`.
    pub(crate) async fn call_service(
        &self,
        domain: &str,
        service: &str,
        data: Value,
    ) -> Result<(), HaApiError> {
        self.ws
            .request(
                json!({"type": "call_service", "domain": domain, "service": service, "service_data": data}),
                HA_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// The panel's page in Home Assistant (`/hassio/ingress/<slug>`), from the Supervisor's
    /// `GET /addons/self/info`; `None` outside the Supervisor or when it does not answer.
    pub(crate) async fn panel_path(&self) -> Option<String> {
        if !self.supervisor {
            return None;
        }
        let info: Value = self
            .http
            .get(SUPERVISOR_SELF_INFO)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let slug = info["data"]["slug"].as_str()?;
        (info["data"]["ingress"] == Value::Bool(true)).then(|| format!("/hassio/ingress/{slug}"))
    }

    /// `GET` the automation `id`: `None` when HA has none (or it is not a UI automation).
    pub(crate) async fn get(&self, id: &str) -> Result<Option<Value>, HaApiError> {
        let r = self
            .http
            .get(self.url(id))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| unavailable("reading the automation", &e))?;
        match r.status().as_u16() {
            200 => r
                .json()
                .await
                .map(Some)
                .map_err(|e| unavailable("reading the automation", &e)),
            400 | 404 => Ok(None),
            401 | 403 => Err(self.auth_error(r.status())),
            s => Err(HaApiError::Unavailable(format!(
                "Home Assistant answered {s} reading the automation"
            ))),
        }
    }

    /// `POST` the automation `id` (HA validates, writes `automations.yaml` and reloads; it
    /// answers before the reload is done).
    pub(crate) async fn post(&self, id: &str, automation: &Value) -> Result<(), HaApiError> {
        let r = self
            .http
            .post(self.url(id))
            .bearer_auth(self.token.expose())
            .json(automation)
            .send()
            .await
            .map_err(|e| unavailable("writing the automation", &e))?;
        let status = r.status();
        if status.is_success() {
            return Ok(());
        }
        let text = r.text().await.unwrap_or_default();
        match status.as_u16() {
            400 => {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or(text);
                Err(HaApiError::Refused {
                    field: field_of(&message),
                    message,
                })
            }
            401 | 403 => Err(self.auth_error(status)),
            s => Err(HaApiError::Unavailable(format!(
                "Home Assistant answered {s} writing the automation: {}",
                text.chars().take(300).collect::<String>()
            ))),
        }
    }

    /// `DELETE` the automation `id`.
    pub(crate) async fn delete(&self, id: &str) -> Result<Deleted, HaApiError> {
        let r = self
            .http
            .delete(self.url(id))
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| unavailable("deleting the automation", &e))?;
        match r.status().as_u16() {
            200..=299 => Ok(Deleted::Removed),
            // HA answers 400 "Resource not found" for an id it does not have
            400 | 404 => Ok(Deleted::Missing),
            405 => Ok(Deleted::NotSupported),
            401 | 403 => Err(self.auth_error(r.status())),
            s => Err(HaApiError::Unavailable(format!(
                "Home Assistant answered {s} deleting the automation"
            ))),
        }
    }
}
