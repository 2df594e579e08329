//! Clients for the systems Jarvis reads from: Prometheus now; Loki, Alertmanager,
//! Home Assistant and n8n as later work needs them.

pub mod prometheus;
