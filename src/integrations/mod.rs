//! Clients for the systems Jarvis reads from: Prometheus, Alertmanager and Loki now;
//! Home Assistant and n8n as later work needs them.

pub mod alertmanager;
pub mod loki;
pub mod prometheus;
