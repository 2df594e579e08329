//! Jarvis: receives Alertmanager webhooks, works out what is wrong, fixes what is safe
//! to fix, verifies the fix in Prometheus, learns, and tells people.
//!
//! The binary (`main.rs`) only calls [`cli::run`]; everything lives here so tests can
//! drive the real application.

pub mod agent;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod exec;
pub mod intake;
pub mod integrations;
pub mod learn;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod runbooks;
pub mod safety;
pub mod store;
pub mod testalert;
pub mod web;

/// Name, version, commit and features, for `jarvis version` and `GET /version`.
pub fn version_info() -> serde_json::Value {
    serde_json::json!({
        "name": "jarvis",
        "version": env!("CARGO_PKG_VERSION"),
        "commit": env!("JARVIS_GIT_COMMIT"),
        "features": ["sqlite", "postgres"],
    })
}

/// The one way Jarvis builds HTTP clients: rustls with ring, a timeout on every call.
pub fn http_client(timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    client_builder(timeout).build().map_err(Into::into)
}

/// As `http_client`, never following a redirect: for clients that send a token or
/// secret header, which must not go where the service did not answer from.
pub fn http_client_without_redirects(
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::Client> {
    client_builder(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(Into::into)
}

fn client_builder(timeout: std::time::Duration) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_rustls()
}

/// rustls needs a process-wide crypto provider; we use ring (aws-lc costs ~50 s of build).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
