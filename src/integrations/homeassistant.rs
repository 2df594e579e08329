//! Home Assistant: the Core REST API (`/api/...`, a long-lived access token) and, on
//! HA OS and Supervised installs, the Supervisor API (`http://supervisor/...`)
//! (`shared/reference/home-assistant-api.md`).
//!
//! Restarting an app (add-on) goes through Core's services, since Core's
//! `/api/hassio` proxy cannot restart add-ons: newer installations offer
//! `hassio.app_restart {"app": slug}`, older ones `hassio.addon_restart
//! {"addon": slug}`; which one is read from `GET /api/services`. Listing apps needs
//! the Supervisor API and is simply not offered without it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::HomeAssistantConfig;

/// Restarting an app can take tens of seconds; a service call blocks until it ends.
const TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaError {
    #[error(
        "Home Assistant refused the token (401): check homeassistant.token; reload and restart services need an administrator's token"
    )]
    Unauthorized,
    #[error("Home Assistant: {0} not found (404)")]
    NotFound(String),
    #[error(
        "Home Assistant rejected the request (400): {0} (an unknown service or invalid service data; see GET /api/services)"
    )]
    BadRequest(String),
    #[error("the Supervisor refused: {0}")]
    Supervisor(String),
    #[error("{0}")]
    NotOffered(String),
    #[error("Home Assistant answered HTTP {0}: {1}")]
    Http(u16, String),
    #[error("cannot reach Home Assistant: {0}")]
    Unreachable(String),
}

/// An entity's state, as `GET /api/states/<entity_id>` gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    pub entity_id: String,
    /// Always text: `"on"`, `"unavailable"`, `"87"`.
    pub state: String,
    #[serde(default)]
    pub attributes: serde_json::Map<String, Value>,
    #[serde(default)]
    pub last_changed: String,
}

/// An app (add-on) as the Supervisor lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    pub slug: String,
    pub name: String,
    /// `started`, `stopped`, or none.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Clone)]
pub struct HomeAssistant {
    base: String,
    token: String,
    supervisor: Option<(String, String)>,
    client: reqwest::Client,
}

impl HomeAssistant {
    /// `None` when `[homeassistant] url` is not set.
    pub fn from_config(c: &HomeAssistantConfig) -> anyhow::Result<Option<Self>> {
        if c.url.is_empty() {
            return Ok(None);
        }
        let supervisor = (!c.supervisor_url.is_empty()).then(|| {
            (
                c.supervisor_url.trim_end_matches('/').to_owned(),
                c.supervisor_token.expose().to_owned(),
            )
        });
        Ok(Some(Self {
            base: c.url.trim_end_matches('/').to_owned(),
            token: c.token.expose().to_owned(),
            supervisor,
            client: crate::http_client_without_redirects(TIMEOUT)?,
        }))
    }

    /// Whether apps can be listed (the Supervisor API is configured).
    pub fn lists_apps(&self) -> bool {
        self.supervisor.is_some()
    }

    async fn core(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, HaError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| HaError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = || {
            serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| crate::notify::sinks::truncate(text.trim(), 200))
        };
        match status.as_u16() {
            200 | 201 => serde_json::from_str(&text).map_err(|e| {
                HaError::Http(status.as_u16(), format!("not JSON ({e}): {}", message()))
            }),
            401 | 403 => Err(HaError::Unauthorized),
            404 => Err(HaError::NotFound(format!("{path} ({})", message()))),
            400 => Err(HaError::BadRequest(message())),
            code => Err(HaError::Http(code, message())),
        }
    }

    /// `GET /api/`: the API answers and the token is accepted.
    pub async fn health(&self) -> Result<(), HaError> {
        let v = self.core(reqwest::Method::GET, "/api/", None).await?;
        match v["message"].as_str() {
            Some(_) => Ok(()),
            None => Err(HaError::Http(200, format!("unexpected answer: {v}"))),
        }
    }

    /// `GET /api/states/<entity_id>`.
    pub async fn state(&self, entity_id: &str) -> Result<EntityState, HaError> {
        // domain.object_id, lower-case letters, digits and `_` only: nothing else may
        // reach the URL path (`\` and `..` would leave /api/states).
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !entity_id
            .split_once('.')
            .is_some_and(|(d, o)| word(d) && word(o))
        {
            return Err(HaError::BadRequest(format!(
                "{entity_id:?} is not an entity id (domain.object_id)"
            )));
        }
        let v = self
            .core(
                reqwest::Method::GET,
                &format!("/api/states/{entity_id}"),
                None,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| HaError::Http(200, format!("unexpected state: {e}")))
    }

    /// Domain → its services (`GET /api/services`).
    pub async fn services(&self) -> Result<Vec<(String, Vec<String>)>, HaError> {
        let v = self
            .core(reqwest::Method::GET, "/api/services", None)
            .await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| {
                        let domain = d["domain"].as_str()?.to_owned();
                        let services = d["services"]
                            .as_object()
                            .map(|s| s.keys().cloned().collect())
                            .unwrap_or_default();
                        Some((domain, services))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `POST /api/services/<domain>/<service>` with `data`; with `return_response`,
    /// the service's response (`service_response`), else the changed states.
    pub async fn call_service(
        &self,
        domain: &str,
        service: &str,
        data: &Value,
        return_response: bool,
    ) -> Result<Value, HaError> {
        let word = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !word(domain) || !word(service) {
            return Err(HaError::BadRequest(format!(
                "{domain}.{service} is not a service name"
            )));
        }
        let path = format!(
            "/api/services/{domain}/{service}{}",
            if return_response {
                "?return_response"
            } else {
                ""
            }
        );
        let v = self
            .core(reqwest::Method::POST, &path, Some(data))
            .await
            .map_err(|e| match e {
                HaError::NotFound(_) => HaError::NotFound(format!("service {domain}.{service}")),
                other => other,
            })?;
        Ok(if return_response {
            v["service_response"].clone()
        } else {
            v
        })
    }

    /// Restarts an app (add-on) through whichever service this installation offers;
    /// returns the service used.
    pub async fn restart_app(&self, slug: &str) -> Result<String, HaError> {
        if slug.is_empty()
            || !slug
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(HaError::BadRequest(format!("{slug:?} is not an app slug")));
        }
        let services = self.services().await?;
        let hassio = services
            .iter()
            .find(|(d, _)| d == "hassio")
            .map(|(_, s)| s.as_slice())
            .unwrap_or_default();
        let (service, data) = if hassio.iter().any(|s| s == "app_restart") {
            ("app_restart", json!({"app": slug}))
        } else if hassio.iter().any(|s| s == "addon_restart") {
            ("addon_restart", json!({"addon": slug}))
        } else {
            return Err(HaError::NotOffered(
                "this Home Assistant offers neither hassio.app_restart nor hassio.addon_restart (apps need HA OS or a Supervised install)".into(),
            ));
        };
        self.call_service("hassio", service, &data, false).await?;
        Ok(format!("hassio.{service}"))
    }

    /// The installed apps, from the Supervisor API (`GET /addons`).
    pub async fn apps(&self) -> Result<Vec<App>, HaError> {
        let Some((base, token)) = &self.supervisor else {
            return Err(HaError::NotOffered(
                "listing apps needs the Supervisor API: set homeassistant.supervisor_url and supervisor_token".into(),
            ));
        };
        let resp = self
            .client
            .get(format!("{base}/addons"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| HaError::Unreachable(e.without_url().to_string()))?;
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status == 401 || status == 403 {
            return Err(HaError::Supervisor(format!(
                "HTTP {status}: the token lacks the manager role (hassio_role) or is wrong"
            )));
        }
        if v["result"] != "ok" {
            return Err(HaError::Supervisor(
                v["message"]
                    .as_str()
                    .map_or_else(|| format!("HTTP {status}"), str::to_owned),
            ));
        }
        serde_json::from_value(v["data"]["addons"].clone())
            .map_err(|e| HaError::Supervisor(format!("unexpected list of apps: {e}")))
    }
}
