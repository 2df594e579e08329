//! Clients for the systems Jarvis reads from: Prometheus and Alertmanager now; Loki,
//! Home Assistant and n8n as later work needs them.

pub mod alertmanager;
pub mod prometheus;
