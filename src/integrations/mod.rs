//! Clients for the systems Jarvis reads from and acts through: Prometheus,
//! Alertmanager, Loki and Home Assistant; n8n as later work needs it.

pub mod alertmanager;
pub mod homeassistant;
pub mod loki;
pub mod n8n;
pub mod prometheus;
