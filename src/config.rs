//! Typed configuration: built-in defaults, then the TOML file, then environment
//! variables (which win), then `*_file` secrets; followed by validation that reports
//! every problem at once, each in one line naming the key.
//!
//! The environment names of the original Python Jarvis (`DATABASE_URL`,
//! `WEBHOOK_AUTH_PASSWORD`, `SSH_<NAME>_HOST`, ...) are honoured so that an existing
//! `.env` keeps working. Secrets are wrapped in [`Secret`], whose `Debug`, `Display` and
//! `Serialize` never reveal the value, so neither logs nor `check-config` can leak them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A secret string. Only [`Secret::expose`] reveals it.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { REDACTED })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

/// A database URL, printed with its password replaced.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }
    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
    /// The URL with any password replaced, safe for logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some(REDACTED));
                u.to_string()
            }
            Ok(_) => self.0.clone(),
            // Unparseable: it may still hold a password, so print only the scheme.
            Err(_) => format!("{}://{REDACTED}", self.0.split(':').next().unwrap_or("")),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub webhook: WebhookConfig,
    pub api: ApiConfig,
    pub llm: LlmConfig,
    pub remediation: RemediationConfig,
    pub verification: VerificationConfig,
    pub prometheus: ServiceUrl,
    pub loki: ServiceUrl,
    pub alertmanager: ServiceUrl,
    pub hosts: Vec<HostConfig>,
    #[serde(rename = "self")]
    pub self_protection: SelfConfig,
    pub safety: SafetyConfig,
    pub notify: NotifyConfig,
    pub runbooks: RunbooksConfig,
    pub rules: RulesConfig,
    pub worker: WorkerConfig,
    pub monitor: MonitorConfig,
    pub cluster: ClusterConfig,
    pub homeassistant: HomeAssistantConfig,
    pub n8n: N8nConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Seconds between probes of an offline host.
    pub offline_probe_seconds: u64,
    /// Seconds between probes of an online host (outages are found before an alert needs it).
    pub online_probe_seconds: u64,
    /// Where keys learned by trust_on_first_use are recorded (default: beside the spool).
    pub tofu_known_hosts: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            offline_probe_seconds: 300,
            online_probe_seconds: 60,
            tofu_known_hosts: String::new(),
        }
    }
}

impl Config {
    /// The file trust-on-first-use keys are recorded in.
    pub fn tofu_known_hosts(&self) -> PathBuf {
        if !self.monitor.tofu_known_hosts.is_empty() {
            return PathBuf::from(&self.monitor.tofu_known_hosts);
        }
        Path::new(&self.database.spool_dir)
            .parent()
            .unwrap_or(Path::new("."))
            .join("known_hosts")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP API listens on. Beyond loopback a webhook password is required.
    pub listen: String,
    /// How people reach Jarvis; used to build links in notifications.
    pub external_url: String,
    /// Seconds to let in-flight requests finish on SIGTERM before exiting anyway.
    pub shutdown_grace_seconds: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            external_url: String::new(),
            shutdown_grace_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` (embedded default) or `postgres://user:pw@host/db`.
    pub url: DatabaseUrl,
    /// File holding the URL (it may carry a password).
    pub url_file: String,
    /// Where webhook payloads are kept, fsync'd, while the database is unreachable.
    pub spool_dir: String,
    /// Largest number of pooled connections (PostgreSQL).
    pub max_connections: u32,
    /// Seconds to wait for a connection before treating the database as down.
    pub connect_timeout_seconds: u64,
    /// Days of history kept in the log tables.
    pub retention_days: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DatabaseUrl::new("sqlite://jarvis-data/jarvis.db"),
            url_file: String::new(),
            spool_dir: "jarvis-data/spool".into(),
            max_connections: 10,
            connect_timeout_seconds: 3,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub username: String,
    /// HTTP Basic password for the webhook and the API. Required beyond loopback.
    pub password: Secret,
    pub password_file: String,
    /// Largest accepted request body; larger bodies get 413.
    pub max_body_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            username: "alertmanager".into(),
            password: Secret::default(),
            password_file: String::new(),
            max_body_bytes: 10 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Accepted as `Authorization: Bearer <token>` in addition to Basic auth.
    pub token: Secret,
    pub token_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// anthropic | openai | none
    pub provider: String,
    pub model: String,
    pub api_key: Secret,
    pub api_key_file: String,
    pub base_url: String,
    pub max_iterations: u32,
    pub daily_budget_usd: f64,
    /// Wall-clock limit for one alert's agent run; then one last tool-less call.
    pub max_seconds_per_alert: u64,
    /// Per HTTP request to the provider.
    pub timeout_seconds: u64,
    /// Retries of 408/409/429/5xx/529 and connection errors, honouring `retry-after`.
    pub max_retries: u32,
    /// The longest `retry-after` Jarvis waits; longer ones count as an outage.
    pub max_retry_wait_seconds: u64,
    /// Output tokens per call.
    pub max_tokens: u32,
    /// Characters of one tool result the model sees (the rest is cut, with a note).
    pub tool_output_chars: usize,
    /// USD per million tokens, by model name (prefix match). Models not listed cost 0
    /// (local models); see [`default_prices`] for the shipped Anthropic prices.
    pub prices: std::collections::BTreeMap<String, Price>,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Default: 0.1 × input (Anthropic's cache read price).
    pub cache_read: Option<f64>,
    /// Default: 1.25 × input (Anthropic's 5-minute cache write price).
    pub cache_write: Option<f64>,
}

/// Anthropic list prices (USD per million tokens) for the model families Jarvis is
/// likely to be pointed at; `[llm.prices]` entries replace or add to these.
pub fn default_prices() -> std::collections::BTreeMap<String, Price> {
    let p = |input: f64, output: f64| Price {
        input,
        output,
        cache_read: None,
        cache_write: None,
    };
    [
        ("claude-haiku-4", p(1.0, 5.0)),
        ("claude-3-5-haiku", p(0.8, 4.0)),
        ("claude-sonnet-4", p(3.0, 15.0)),
        ("claude-3-7-sonnet", p(3.0, 15.0)),
        ("claude-opus-4", p(15.0, 75.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            provider: "none".into(),
            model: "claude-haiku-4-5".into(),
            api_key: Secret::default(),
            api_key_file: String::new(),
            base_url: String::new(),
            max_iterations: 10,
            daily_budget_usd: 5.0,
            max_seconds_per_alert: 180,
            timeout_seconds: 60,
            max_retries: 3,
            max_retry_wait_seconds: 30,
            max_tokens: 1024,
            tool_output_chars: 2000,
            prices: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationConfig {
    pub max_attempts_per_alert: u32,
    pub attempt_window_hours: u32,
    pub fingerprint_cooldown_seconds: u64,
    pub escalation_cooldown_hours: u32,
    pub command_timeout_seconds: u64,
    pub pattern_min_confidence: f64,
    pub execute_alert_hints: bool,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        Self {
            max_attempts_per_alert: 3,
            attempt_window_hours: 2,
            fingerprint_cooldown_seconds: 300,
            escalation_cooldown_hours: 4,
            command_timeout_seconds: 300,
            pattern_min_confidence: 0.75,
            execute_alert_hints: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationConfig {
    pub enabled: bool,
    pub max_wait_seconds: u64,
    pub poll_interval_seconds: u64,
}

impl Default for VerificationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_wait_seconds: 120,
            poll_interval_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceUrl {
    /// Base URL; empty means not configured.
    pub url: String,
}

/// Home Assistant: the Core REST API (a long-lived access token) and, on HA OS and
/// Supervised installs, the Supervisor API (to list apps/add-ons).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAssistantConfig {
    /// `http://ha.lan:8123`; empty: not configured.
    pub url: String,
    pub token: Secret,
    pub token_file: String,
    /// `http://supervisor` (reachable from inside HA only); empty: apps are not listed.
    pub supervisor_url: String,
    pub supervisor_token: Secret,
    pub supervisor_token_file: String,
    /// Services (`domain.service`) any source may call unattended through the
    /// `homeassistant.call_service` action; others need approval.
    pub allow_services: Vec<String>,
    /// Apps (slugs) the operator's and learned fixes may restart unattended; empty:
    /// any app. Others need approval.
    pub allow_apps: Vec<String>,
}

/// n8n: workflows started through their production webhooks, followed through the
/// public API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct N8nConfig {
    /// `http://n8n.lan:5678`; empty: not configured.
    pub url: String,
    /// The public API key (Settings → n8n API), to follow executions.
    pub api_key: Secret,
    pub api_key_file: String,
    pub workflows: Vec<N8nWorkflow>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct N8nWorkflow {
    /// The name plans and the agent use.
    pub name: String,
    /// The Webhook node's path (production URL `<url>/webhook/<path>`).
    pub webhook_path: String,
    /// HTTP method of the Webhook node (default POST).
    pub method: String,
    /// The workflow's id, to find its execution when the webhook does not answer
    /// with `$execution.id`.
    pub workflow_id: String,
    /// Header auth of the Webhook node, e.g. `X-Webhook-Token`.
    pub auth_header: String,
    pub auth_value: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// The name alerts, patterns and the LLM use.
    pub name: String,
    /// Hostname or IP; `local` runs commands on Jarvis's own machine without SSH.
    pub address: String,
    pub port: u32,
    pub user: String,
    pub key_file: String,
    pub key_passphrase_file: String,
    /// Pinned host key, `ssh-ed25519 AAAA...`.
    pub host_key: String,
    /// A known_hosts file to verify the host key against.
    pub known_hosts: String,
    /// Record the first key seen (explicit opt-in; never the default).
    pub trust_on_first_use: bool,
    /// Prometheus `instance` globs that belong to this host.
    pub match_instances: Vec<String>,
    pub aliases: Vec<String>,
    /// Concurrent commands on this host.
    pub max_concurrent_commands: u32,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            address: String::new(),
            port: 22,
            user: "root".into(),
            key_file: String::new(),
            key_passphrase_file: String::new(),
            host_key: String::new(),
            known_hosts: String::new(),
            trust_on_first_use: false,
            match_instances: Vec::new(),
            aliases: Vec::new(),
            max_concurrent_commands: 4,
        }
    }
}

impl HostConfig {
    pub fn is_local(&self) -> bool {
        self.address == "local"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfConfig {
    /// Commands against these containers are blocked; use /self-restart.
    pub protected_containers: Vec<String>,
    /// systemd units Jarvis depends on (its database): restarting, reloading or
    /// stopping one needs approval from every source but `operator` (globs allowed).
    pub depends_on_units: Vec<String>,
}

impl Default for SelfConfig {
    fn default() -> Self {
        Self {
            protected_containers: vec!["jarvis".into(), "postgres-jarvis".into()],
            depends_on_units: vec![
                "postgresql".into(),
                "postgresql@*".into(),
                "postgresql.service".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyConfig {
    /// approval | allow | block
    pub llm_unknown_commands: String,
    pub rate_limit_per_minute: u32,
    /// Seconds an approval waits for a decision before it expires (and never runs).
    pub approval_ttl_seconds: u64,
    pub rules: Vec<SafetyRuleConfig>,
    /// Globs of further secret files (beyond the built-in list) no command may read
    /// unattended: `*` within a path segment, `**` across.
    pub secret_paths: Vec<String>,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        Self {
            llm_unknown_commands: "approval".into(),
            rate_limit_per_minute: 60,
            approval_ttl_seconds: 3600,
            rules: Vec::new(),
            secret_paths: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SafetyRuleConfig {
    /// diagnostic | allowed | approval_required | blocked
    pub verdict: String,
    /// Program name.
    pub command: String,
    /// Argument globs, matched in order.
    pub args: Vec<String>,
    /// Hosts the rule applies to; empty means all.
    pub hosts: Vec<String>,
    /// Options the rule accepts (`"-n"`, `"--lines="` takes a value, `"-o=/dev/null"`
    /// only that value); any other option and the rule does not match. Absent: any
    /// option passes (`check-config` warns for rules granting diagnostic or allowed).
    pub options: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    pub discord: DiscordConfig,
    pub ntfy: ServiceUrl,
    pub slack: SlackConfig,
    pub webhook: ServiceUrl,
    /// Messages that may go out at once before pacing starts.
    pub burst: u32,
    /// After the burst, at most one message per this many milliseconds; whatever
    /// queues up meanwhile is sent as one digest.
    pub min_interval_ms: u64,
    /// Suppressed alerts are summarised per root cause this often.
    pub summary_interval_seconds: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            discord: DiscordConfig::default(),
            ntfy: ServiceUrl::default(),
            slack: SlackConfig::default(),
            webhook: ServiceUrl::default(),
            burst: 3,
            min_interval_ms: 20_000,
            summary_interval_seconds: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// The webhook URL carries its token, so it is a secret.
    pub webhook_url: Secret,
    pub webhook_url_file: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    pub webhook_url: Secret,
    pub webhook_url_file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunbooksConfig {
    pub dir: String,
}

impl Default for RunbooksConfig {
    fn default() -> Self {
        Self {
            dir: "runbooks".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub hints: Vec<HintRule>,
    /// While a root fires, these alerts are suppressed. Giving any replaces the
    /// defaults (the original Jarvis's cascades).
    pub cascade: Vec<CascadeRule>,
    /// Service → the services it depends on. An alert about a service waits while an
    /// alert about one of its dependencies is being remediated.
    pub dependencies: BTreeMap<String, Vec<String>>,
    /// Alerts that a cascade or dependency could explain wait this long after arriving
    /// before triage, so a root cause delivered in another webhook is seen first.
    pub settle_seconds: u64,
    /// Related alerts join a root's incident within this many seconds of it firing.
    pub correlation_window_seconds: u64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        let cascade = |root: &str, suppresses: &[&str]| CascadeRule {
            root: root.into(),
            suppresses: suppresses.iter().map(|s| (*s).into()).collect(),
        };
        let deps = |pairs: &[(&str, &[&str])]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), v.iter().map(|s| (*s).into()).collect()))
                .collect()
        };
        Self {
            hints: Vec::new(),
            cascade: vec![
                cascade(
                    "WireGuardVPNDown",
                    &["OutpostDown", "PostgreSQLDown", "SystemDown"],
                ),
                cascade(
                    "OutpostDown",
                    &["ContainerUnhealthy", "ContainerDown", "ServiceUnreachable"],
                ),
            ],
            dependencies: deps(&[
                ("grafana", &["prometheus", "loki"]),
                ("zigbee2mqtt", &["mqtt"]),
                ("frigate", &["mqtt"]),
                ("homeassistant", &["mqtt", "postgres"]),
                ("n8n", &["postgres"]),
                ("alertmanager", &["prometheus"]),
            ]),
            settle_seconds: 5,
            correlation_window_seconds: 120,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HintRule {
    /// Label name → glob.
    #[serde(rename = "match")]
    pub matchers: BTreeMap<String, String>,
    pub host: String,
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CascadeRule {
    pub root: String,
    pub suppresses: Vec<String>,
}

/// Several replicas on one PostgreSQL database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Names this replica in what it claims (`alert_events.claimed_by`). Empty: the
    /// host name and process id.
    pub replica_id: String,
}

impl ClusterConfig {
    /// The configured id, or `<host name>-<pid>`.
    pub fn replica_id(&self) -> String {
        if !self.replica_id.trim().is_empty() {
            return self.replica_id.trim().to_owned();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "jarvis".into());
        format!("{host}-{}", std::process::id())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Alert events handled at once.
    pub concurrency: u32,
    /// Seconds a claim on an event lasts before another worker may take it over.
    pub claim_lease_seconds: u64,
    /// Seconds between store polls when there is no new work.
    pub poll_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            claim_lease_seconds: 300,
            poll_interval_ms: 1000,
        }
    }
}

/// A configuration plus what the loader noticed but did not reject.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Where the file came from, if any.
    pub source: Option<PathBuf>,
    /// Non-fatal findings (unknown `JARVIS_*` variables, ...), one line each.
    pub warnings: Vec<String>,
}

/// Every problem found, one line each, naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Which file to read: the explicit path, else `$JARVIS_CONFIG`, else `./jarvis.toml`
/// if it exists, else none (built-in defaults).
pub fn config_path(explicit: Option<&Path>, env: &Env) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    if let Some(p) = env.get("JARVIS_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let default = PathBuf::from("jarvis.toml");
    default.exists().then_some(default)
}

/// A snapshot of the environment, so loading is a pure function of its inputs in tests.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

/// Loads and validates. `listen_override` is the `--listen` flag, which wins over all.
pub fn load(
    explicit: Option<&Path>,
    env: &Env,
    listen_override: Option<&str>,
) -> Result<LoadedConfig, ConfigErrors> {
    let source = config_path(explicit, env);
    let mut config = match &source {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigErrors(vec![format!(
                    "config file {}: cannot be read ({e}); pass --config FILE or set JARVIS_CONFIG",
                    path.display()
                )])
            })?;
            parse_toml(&text)
                .map_err(|e| ConfigErrors(vec![format!("config file {}: {e}", path.display())]))?
        }
        None => Config::default(),
    };
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    apply_env(&mut config, env, &mut errors, &mut warnings);
    if let Some(listen) = listen_override {
        config.server.listen = listen.to_owned();
    }
    resolve_secret_files(&mut config, &mut errors);
    errors.extend(validate(&config));
    if errors.is_empty() {
        match crate::safety::Policy::for_config(&config) {
            Ok(policy) => warnings.extend(policy.warnings),
            Err(e) => errors.push(format!("safety: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(LoadedConfig {
            config,
            source,
            warnings,
        })
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Parses TOML text into a [`Config`]; unknown keys are errors (typos are the commonest
/// configuration bug) and the message names the key and line.
pub fn parse_toml(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().to_owned();
        match e.span() {
            Some(span) => {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("line {line}: {msg}")
            }
            None => msg,
        }
    })
}

type EnvSetter = fn(&mut Config, &str) -> Result<(), String>;

fn parse_num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("{v:?} is not a number"))
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

/// Environment variable → configuration key. Names from the original Jarvis first.
const ENV_KEYS: &[(&str, &str, EnvSetter)] = &[
    ("JARVIS_LISTEN", "server.listen", |c, v| {
        c.server.listen = v.into();
        Ok(())
    }),
    ("JARVIS_EXTERNAL_URL", "server.external_url", |c, v| {
        c.server.external_url = v.into();
        Ok(())
    }),
    ("DATABASE_URL", "database.url", |c, v| {
        c.database.url = DatabaseUrl::new(v);
        c.database.url_file.clear();
        Ok(())
    }),
    ("DATABASE_URL_FILE", "database.url_file", |c, v| {
        c.database.url_file = v.into();
        Ok(())
    }),
    ("JARVIS_SPOOL_DIR", "database.spool_dir", |c, v| {
        c.database.spool_dir = v.into();
        Ok(())
    }),
    ("WEBHOOK_AUTH_USERNAME", "webhook.username", |c, v| {
        c.webhook.username = v.into();
        Ok(())
    }),
    ("WEBHOOK_AUTH_PASSWORD", "webhook.password", |c, v| {
        c.webhook.password = Secret::new(v);
        c.webhook.password_file.clear();
        Ok(())
    }),
    (
        "WEBHOOK_AUTH_PASSWORD_FILE",
        "webhook.password_file",
        |c, v| {
            c.webhook.password_file = v.into();
            c.webhook.password = Secret::default();
            Ok(())
        },
    ),
    ("JARVIS_MAX_BODY_BYTES", "webhook.max_body_bytes", |c, v| {
        c.webhook.max_body_bytes = parse_num(v)?;
        Ok(())
    }),
    ("JARVIS_API_TOKEN", "api.token", |c, v| {
        c.api.token = Secret::new(v);
        c.api.token_file.clear();
        Ok(())
    }),
    ("JARVIS_API_TOKEN_FILE", "api.token_file", |c, v| {
        c.api.token_file = v.into();
        c.api.token = Secret::default();
        Ok(())
    }),
    ("JARVIS_LLM_PROVIDER", "llm.provider", |c, v| {
        c.llm.provider = v.into();
        Ok(())
    }),
    ("JARVIS_LLM_MODEL", "llm.model", |c, v| {
        c.llm.model = v.into();
        Ok(())
    }),
    ("JARVIS_LLM_BASE_URL", "llm.base_url", |c, v| {
        c.llm.base_url = v.into();
        Ok(())
    }),
    (
        "MAX_ATTEMPTS_PER_ALERT",
        "remediation.max_attempts_per_alert",
        |c, v| {
            c.remediation.max_attempts_per_alert = parse_num(v)?;
            Ok(())
        },
    ),
    (
        "ATTEMPT_WINDOW_HOURS",
        "remediation.attempt_window_hours",
        |c, v| {
            c.remediation.attempt_window_hours = parse_num(v)?;
            Ok(())
        },
    ),
    (
        "COMMAND_EXECUTION_TIMEOUT",
        "remediation.command_timeout_seconds",
        |c, v| {
            c.remediation.command_timeout_seconds = parse_num(v)?;
            Ok(())
        },
    ),
    ("VERIFICATION_ENABLED", "verification.enabled", |c, v| {
        c.verification.enabled = parse_bool(v)?;
        Ok(())
    }),
    (
        "VERIFICATION_MAX_WAIT_SECONDS",
        "verification.max_wait_seconds",
        |c, v| {
            c.verification.max_wait_seconds = parse_num(v)?;
            Ok(())
        },
    ),
    (
        "VERIFICATION_POLL_INTERVAL",
        "verification.poll_interval_seconds",
        |c, v| {
            c.verification.poll_interval_seconds = parse_num(v)?;
            Ok(())
        },
    ),
    ("PROMETHEUS_URL", "prometheus.url", |c, v| {
        c.prometheus.url = v.into();
        Ok(())
    }),
    ("LOKI_URL", "loki.url", |c, v| {
        c.loki.url = v.into();
        Ok(())
    }),
    // The original Jarvis's names.
    ("HA_URL", "homeassistant.url", |c, v| {
        c.homeassistant.url = v.into();
        Ok(())
    }),
    ("HA_TOKEN", "homeassistant.token", |c, v| {
        c.homeassistant.token = Secret::new(v);
        c.homeassistant.token_file.clear();
        Ok(())
    }),
    (
        "HA_SUPERVISOR_URL",
        "homeassistant.supervisor_url",
        |c, v| {
            c.homeassistant.supervisor_url = v.into();
            Ok(())
        },
    ),
    ("ALERTMANAGER_URL", "alertmanager.url", |c, v| {
        c.alertmanager.url = v.into();
        Ok(())
    }),
    (
        "DISCORD_WEBHOOK_URL",
        "notify.discord.webhook_url",
        |c, v| {
            c.notify.discord.webhook_url = Secret::new(v);
            c.notify.discord.webhook_url_file.clear();
            Ok(())
        },
    ),
    ("NTFY_URL", "notify.ntfy.url", |c, v| {
        c.notify.ntfy.url = v.into();
        Ok(())
    }),
    ("SLACK_WEBHOOK_URL", "notify.slack.webhook_url", |c, v| {
        c.notify.slack.webhook_url = Secret::new(v);
        c.notify.slack.webhook_url_file.clear();
        Ok(())
    }),
    ("RUNBOOK_DIR", "runbooks.dir", |c, v| {
        c.runbooks.dir = v.into();
        Ok(())
    }),
];

/// `JARVIS_*` variables that are read elsewhere (CLI, tests), so not typos.
const OTHER_KNOWN_JARVIS_VARS: &[&str] = &["JARVIS_CONFIG", "JARVIS_LOG_FORMAT"];

fn apply_env(config: &mut Config, env: &Env, errors: &mut Vec<String>, warnings: &mut Vec<String>) {
    for (name, key, set) in ENV_KEYS {
        if let Some(v) = env.get(name)
            && let Err(e) = set(config, v)
        {
            errors.push(format!("{key} (from env {name}): {e}"));
        }
    }
    // The API key's variable depends on the provider, as in the vendors' own SDKs.
    let key_var = match config.llm.provider.as_str() {
        "openai" => "OPENAI_API_KEY",
        _ => "ANTHROPIC_API_KEY",
    };
    if let Some(v) = env.get(key_var).filter(|v| !v.is_empty()) {
        config.llm.api_key = Secret::new(v);
        config.llm.api_key_file.clear();
    } else if let Some(v) = env
        .get(&format!("{key_var}_FILE"))
        .filter(|v| !v.is_empty())
    {
        config.llm.api_key_file = v.into();
        config.llm.api_key = Secret::default();
    }
    apply_ssh_env(config, env, errors);

    for (name, _) in env.0.iter().filter(|(k, _)| k.starts_with("JARVIS_")) {
        let known = ENV_KEYS.iter().any(|(n, _, _)| n == name)
            || OTHER_KNOWN_JARVIS_VARS.contains(&name.as_str())
            || name.starts_with("JARVIS_TEST_");
        if !known {
            warnings.push(format!(
                "environment variable {name} is not a Jarvis setting (a typo?); it is ignored"
            ));
        }
    }
}

/// `SSH_<NAME>_HOST|USER|PORT|KEY_FILE|HOST_KEY|KNOWN_HOSTS` fill or override the host
/// named `<name>` (lower-case), creating it if the file did not define it.
fn apply_ssh_env(config: &mut Config, env: &Env, errors: &mut Vec<String>) {
    const FIELDS: [&str; 6] = [
        "_KNOWN_HOSTS",
        "_HOST_KEY",
        "_KEY_FILE",
        "_HOST",
        "_USER",
        "_PORT",
    ];
    for (var, value) in &env.0 {
        let Some(rest) = var.strip_prefix("SSH_") else {
            continue;
        };
        // Longest suffix first, so SSH_X_HOST_KEY is not read as host "x_host" + _KEY.
        let Some((name, field)) = FIELDS
            .iter()
            .find_map(|f| rest.strip_suffix(f).map(|n| (n, *f)))
        else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let name = name.to_ascii_lowercase();
        let idx = match config.hosts.iter().position(|h| h.name == name) {
            Some(i) => i,
            None => {
                config.hosts.push(HostConfig {
                    name: name.clone(),
                    ..HostConfig::default()
                });
                config.hosts.len() - 1
            }
        };
        let host = &mut config.hosts[idx];
        match field {
            "_HOST" => host.address = value.clone(),
            "_USER" => host.user = value.clone(),
            "_KEY_FILE" => host.key_file = value.clone(),
            "_HOST_KEY" => host.host_key = value.clone(),
            "_KNOWN_HOSTS" => host.known_hosts = value.clone(),
            "_PORT" => match parse_num(value) {
                Ok(p) => host.port = p,
                Err(e) => errors.push(format!("hosts[{idx}].port (from env {var}): {e}")),
            },
            _ => unreachable!("FIELDS lists every suffix"),
        }
    }
}

/// Reads `*_file` secrets. Setting both the value and its file is an error: which one
/// wins would be a surprise.
fn resolve_secret_files(config: &mut Config, errors: &mut Vec<String>) {
    fn read(key: &str, file: &str, errors: &mut Vec<String>) -> Option<String> {
        match std::fs::read_to_string(file) {
            Ok(s) => Some(s.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) => {
                errors.push(format!("{key}_file: cannot read {file:?} ({e})"));
                None
            }
        }
    }
    let secrets: [(&str, &mut Secret, &mut String); 8] = [
        (
            "n8n.api_key",
            &mut config.n8n.api_key,
            &mut config.n8n.api_key_file,
        ),
        (
            "homeassistant.token",
            &mut config.homeassistant.token,
            &mut config.homeassistant.token_file,
        ),
        (
            "homeassistant.supervisor_token",
            &mut config.homeassistant.supervisor_token,
            &mut config.homeassistant.supervisor_token_file,
        ),
        (
            "webhook.password",
            &mut config.webhook.password,
            &mut config.webhook.password_file,
        ),
        (
            "api.token",
            &mut config.api.token,
            &mut config.api.token_file,
        ),
        (
            "llm.api_key",
            &mut config.llm.api_key,
            &mut config.llm.api_key_file,
        ),
        (
            "notify.discord.webhook_url",
            &mut config.notify.discord.webhook_url,
            &mut config.notify.discord.webhook_url_file,
        ),
        (
            "notify.slack.webhook_url",
            &mut config.notify.slack.webhook_url,
            &mut config.notify.slack.webhook_url_file,
        ),
    ];
    for (key, value, file) in secrets {
        if file.is_empty() {
            continue;
        }
        if !value.is_empty() {
            errors.push(format!("{key}: set either {key} or {key}_file, not both"));
            continue;
        }
        if let Some(s) = read(key, file, errors) {
            *value = Secret::new(s);
        }
    }
    if !config.database.url_file.is_empty()
        && let Some(s) = read("database.url", &config.database.url_file, errors)
    {
        config.database.url = DatabaseUrl::new(s);
    }
}

fn check_url(key: &str, url: &str, errors: &mut Vec<String>) {
    if url.is_empty() {
        return;
    }
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
        Ok(_) => errors.push(format!("{key}: {url:?} is not an http(s) URL")),
        Err(e) => errors.push(format!("{key}: {url:?} is not a URL ({e})")),
    }
}

/// Semantic checks; returns every problem found.
pub fn validate(c: &Config) -> Vec<String> {
    let mut errors = Vec::new();
    let e = &mut errors;

    let listen: Option<SocketAddr> = match c.server.listen.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            e.push(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:8000",
                c.server.listen
            ));
            None
        }
    };
    check_url("server.external_url", &c.server.external_url, e);

    let db = &c.database.url;
    if !db.is_sqlite() && !db.is_postgres() {
        e.push(format!(
            "database.url: {} is neither sqlite://PATH nor postgres://USER:PASSWORD@HOST/DB",
            db.redacted()
        ));
    }
    if c.database.spool_dir.is_empty() {
        e.push(
            "database.spool_dir: must not be empty (it keeps alerts while the database is down)"
                .into(),
        );
    }
    if c.database.max_connections == 0 {
        e.push("database.max_connections: must be at least 1".into());
    }
    if c.database.connect_timeout_seconds == 0 {
        e.push("database.connect_timeout_seconds: must be at least 1".into());
    }

    if c.webhook.max_body_bytes == 0 {
        e.push("webhook.max_body_bytes: must be at least 1".into());
    }
    if c.webhook.username.is_empty() {
        e.push("webhook.username: must not be empty".into());
    }
    if let Some(addr) = listen
        && !addr.ip().is_loopback()
        && c.webhook.password.is_empty()
    {
        e.push(format!(
            "webhook.password: required when listening on {addr} (beyond loopback); set \
                 WEBHOOK_AUTH_PASSWORD (e.g. WEBHOOK_AUTH_PASSWORD=$(openssl rand -hex 24)) or \
                 [webhook] password_file, or listen on 127.0.0.1"
        ));
    }

    match c.llm.provider.as_str() {
        "none" => {}
        "anthropic" if c.llm.api_key.is_empty() => e.push(
            "llm.api_key: required for provider \"anthropic\"; set ANTHROPIC_API_KEY or [llm] api_key_file".into(),
        ),
        "openai" if c.llm.api_key.is_empty() && c.llm.base_url.is_empty() => e.push(
            "llm.base_url: provider \"openai\" needs OPENAI_API_KEY, or base_url for a local server (e.g. http://ollama.lan:11434/v1)".into(),
        ),
        "anthropic" | "openai" => {}
        other => e.push(format!(
            "llm.provider: {other:?} is not one of anthropic, openai, none"
        )),
    }
    check_url("llm.base_url", &c.llm.base_url, e);
    if c.llm.max_iterations == 0 {
        e.push("llm.max_iterations: must be at least 1".into());
    }
    for (name, v) in [
        ("llm.max_seconds_per_alert", c.llm.max_seconds_per_alert),
        ("llm.timeout_seconds", c.llm.timeout_seconds),
        ("llm.max_tokens", u64::from(c.llm.max_tokens)),
        ("llm.tool_output_chars", c.llm.tool_output_chars as u64),
    ] {
        if v == 0 {
            e.push(format!("{name}: must be at least 1"));
        }
    }
    for (model, p) in &c.llm.prices {
        let all = [Some(p.input), Some(p.output), p.cache_read, p.cache_write];
        if all.iter().flatten().any(|x| x.is_nan() || *x < 0.0) {
            e.push(format!(
                "llm.prices.{model}: prices are USD per million tokens and cannot be negative"
            ));
        }
    }
    if c.llm.daily_budget_usd.is_nan() || c.llm.daily_budget_usd < 0.0 {
        e.push(format!(
            "llm.daily_budget_usd: {} is not a non-negative amount",
            c.llm.daily_budget_usd
        ));
    }

    let r = &c.remediation;
    if r.max_attempts_per_alert == 0 {
        e.push("remediation.max_attempts_per_alert: must be at least 1".into());
    }
    if r.attempt_window_hours == 0 {
        e.push("remediation.attempt_window_hours: must be at least 1".into());
    }
    if r.command_timeout_seconds == 0 {
        e.push("remediation.command_timeout_seconds: must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&r.pattern_min_confidence) {
        e.push(format!(
            "remediation.pattern_min_confidence: {} is not between 0 and 1",
            r.pattern_min_confidence
        ));
    }

    let v = &c.verification;
    if v.poll_interval_seconds == 0 {
        e.push("verification.poll_interval_seconds: must be at least 1".into());
    }
    if v.max_wait_seconds < v.poll_interval_seconds {
        e.push(format!(
            "verification.max_wait_seconds: {} is shorter than poll_interval_seconds ({})",
            v.max_wait_seconds, v.poll_interval_seconds
        ));
    }

    check_url("prometheus.url", &c.prometheus.url, e);
    check_url("loki.url", &c.loki.url, e);
    check_url("homeassistant.url", &c.homeassistant.url, e);
    check_url(
        "homeassistant.supervisor_url",
        &c.homeassistant.supervisor_url,
        e,
    );
    check_url("n8n.url", &c.n8n.url, e);
    for (i, w) in c.n8n.workflows.iter().enumerate() {
        if w.name.trim().is_empty() || w.webhook_path.trim().is_empty() {
            e.push(format!(
                "n8n.workflows[{i}]: name and webhook_path are required (the path of the workflow's Webhook node)"
            ));
        }
        if !matches!(
            w.method.as_str(),
            "" | "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
        ) {
            e.push(format!(
                "n8n.workflows[{i}].method: {:?} is not GET, POST, PUT, PATCH or DELETE",
                w.method
            ));
        }
    }
    if !c.n8n.workflows.is_empty() && c.n8n.url.is_empty() {
        e.push("n8n.url: workflows are configured but not where n8n is".into());
    }
    if !c.homeassistant.url.is_empty() && c.homeassistant.token.is_empty() {
        e.push("homeassistant.token: a long-lived access token is needed with homeassistant.url (HA profile → Security), or set homeassistant.token_file / HA_TOKEN".into());
    }
    if !c.homeassistant.supervisor_url.is_empty() && c.homeassistant.supervisor_token.is_empty() {
        e.push("homeassistant.supervisor_token: the Supervisor API needs its token (SUPERVISOR_TOKEN inside HA), or set homeassistant.supervisor_token_file".into());
    }
    check_url("alertmanager.url", &c.alertmanager.url, e);
    check_url(
        "notify.discord.webhook_url",
        c.notify.discord.webhook_url.expose(),
        e,
    );
    check_url("notify.ntfy.url", &c.notify.ntfy.url, e);
    check_url(
        "notify.slack.webhook_url",
        c.notify.slack.webhook_url.expose(),
        e,
    );
    check_url("notify.webhook.url", &c.notify.webhook.url, e);

    validate_hosts(&c.hosts, e);

    match c.safety.llm_unknown_commands.as_str() {
        "approval" | "allow" | "block" => {}
        other => e.push(format!(
            "safety.llm_unknown_commands: {other:?} is not one of approval, allow, block"
        )),
    }
    if c.safety.approval_ttl_seconds == 0 {
        e.push("safety.approval_ttl_seconds: must be at least 1".into());
    }
    if c.safety.rate_limit_per_minute == 0 {
        e.push("safety.rate_limit_per_minute: must be at least 1".into());
    }
    let host_names: BTreeSet<&str> = c.hosts.iter().map(|h| h.name.as_str()).collect();
    for (i, rule) in c.safety.rules.iter().enumerate() {
        if !matches!(
            rule.verdict.as_str(),
            "diagnostic" | "allowed" | "approval_required" | "blocked"
        ) {
            e.push(format!(
                "safety.rules[{i}].verdict: {:?} is not one of diagnostic, allowed, approval_required, blocked",
                rule.verdict
            ));
        }
        if rule.command.trim().is_empty() || rule.command.contains(char::is_whitespace) {
            e.push(format!(
                "safety.rules[{i}].command: {:?} must be one program name (put arguments in args)",
                rule.command
            ));
        }
        for h in &rule.hosts {
            if !host_names.contains(h.as_str()) {
                e.push(format!(
                    "safety.rules[{i}].hosts: {h:?} is not a configured host"
                ));
            }
        }
    }

    for (i, hint) in c.rules.hints.iter().enumerate() {
        if hint.matchers.is_empty() {
            e.push(format!(
                "rules.hints[{i}].match: must name at least one label"
            ));
        }
        if hint.commands.is_empty() {
            e.push(format!(
                "rules.hints[{i}].commands: must list at least one command"
            ));
        }
        // A typed action must read as one now, placeholders standing for one word.
        for (j, step) in hint.commands.iter().enumerate() {
            if crate::exec::action::Action::is_step(step) {
                let sample = crate::pipeline::hints::with_sample_words(step);
                if let Err(why) = crate::exec::action::Action::parse(&sample) {
                    e.push(format!("rules.hints[{i}].commands[{j}]: {why}"));
                }
            }
        }
    }
    for (i, cascade) in c.rules.cascade.iter().enumerate() {
        if cascade.root.is_empty() {
            e.push(format!("rules.cascade[{i}].root: must name the root alert"));
        }
    }

    if c.worker.concurrency == 0 {
        e.push("worker.concurrency: must be at least 1".into());
    }
    if c.worker.claim_lease_seconds == 0 {
        e.push("worker.claim_lease_seconds: must be at least 1".into());
    }
    if c.monitor.online_probe_seconds == 0 {
        e.push("monitor.online_probe_seconds: must be at least 1".into());
    }
    if c.monitor.offline_probe_seconds == 0 {
        e.push("monitor.offline_probe_seconds: must be at least 1".into());
    }
    if c.worker.poll_interval_ms == 0 {
        e.push("worker.poll_interval_ms: must be at least 1".into());
    }
    errors
}

fn validate_hosts(hosts: &[HostConfig], e: &mut Vec<String>) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        let key = format!("hosts[{i}]");
        if h.name.trim().is_empty() {
            e.push(format!("{key}.name: must not be empty"));
        }
        for n in std::iter::once(&h.name).chain(&h.aliases) {
            if n.is_empty() {
                continue;
            }
            if n.starts_with('@') {
                e.push(format!(
                    "{key}: host name {n:?} must not start with @ (it marks typed actions)"
                ));
            }
            if let Some(first) = seen.insert(n, i)
                && first != i
            {
                e.push(format!(
                    "{key}: name or alias {n:?} is already used by hosts[{first}]"
                ));
            }
        }
        if h.address.trim().is_empty() {
            e.push(format!(
                "{key}.address: must not be empty (a hostname, an IP, or \"local\" for this machine)"
            ));
        }
        if h.is_local() {
            continue;
        }
        if h.port == 0 || h.port > 65535 {
            e.push(format!("{key}.port: {} is not a port", h.port));
        }
        if h.user.is_empty() {
            e.push(format!("{key}.user: must not be empty"));
        }
        if h.host_key.is_empty() && h.known_hosts.is_empty() && !h.trust_on_first_use {
            e.push(format!(
                "{key}.host_key: {:?} needs a pinned host_key (e.g. the output of `ssh-keyscan -t ed25519 {}`) \
                 or a known_hosts file; or set trust_on_first_use = true to record the first key seen",
                h.name, h.address
            ));
        }
        if !h.host_key.is_empty() && !h.known_hosts.is_empty() {
            e.push(format!("{key}: set host_key or known_hosts, not both"));
        }
        if !h.host_key.is_empty() {
            let mut parts = h.host_key.split_whitespace();
            let algo = parts.next().unwrap_or("");
            let blob = parts.next().unwrap_or("");
            if !(algo.starts_with("ssh-") || algo.starts_with("ecdsa-")) || blob.len() < 16 {
                e.push(format!(
                    "{key}.host_key: expected \"ssh-ed25519 AAAA...\" (algorithm and base64 key)"
                ));
            }
        }
        if h.max_concurrent_commands == 0 {
            e.push(format!("{key}.max_concurrent_commands: must be at least 1"));
        }
    }
}

/// The resolved settings as TOML, with every secret redacted.
pub fn render_redacted(config: &Config) -> String {
    toml::to_string(config).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml_text: &str, env: &[(&str, &str)]) -> Result<LoadedConfig, ConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jarvis.toml");
        std::fs::write(&path, toml_text).unwrap();
        load(Some(&path), &Env::from_pairs(env.iter().copied()), None)
    }

    fn errors_of(toml_text: &str, env: &[(&str, &str)]) -> Vec<String> {
        load_str(toml_text, env).expect_err("should fail").0
    }

    #[test]
    fn no_configuration_at_all_gives_the_documented_defaults() {
        let c = load(None, &Env::default(), None).unwrap().config;
        assert_eq!(c.server.listen, "127.0.0.1:8000");
        assert_eq!(c.database.url.expose(), "sqlite://jarvis-data/jarvis.db");
        assert_eq!(c.llm.provider, "none");
        assert!(c.hosts.is_empty());
        assert_eq!(c.webhook.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.remediation.max_attempts_per_alert, 3);
    }

    #[test]
    fn the_interface_example_parses() {
        let text = r#"
[server]
listen = "127.0.0.1:8000"
external_url = "http://jarvis.lan:8000"
[database]
url = "sqlite://jarvis-data/jarvis.db"
[webhook]
username = "alertmanager"
password = "change-me"
[llm]
provider = "anthropic"
model = "claude-haiku-4-5"
api_key = "sk-test"
max_iterations = 10
daily_budget_usd = 5.0
[remediation]
max_attempts_per_alert = 3
attempt_window_hours = 2
fingerprint_cooldown_seconds = 300
escalation_cooldown_hours = 4
command_timeout_seconds = 300
pattern_min_confidence = 0.75
execute_alert_hints = true
[verification]
enabled = true
max_wait_seconds = 120
poll_interval_seconds = 10
[prometheus]
url = "http://192.168.0.11:9090"
[loki]
url = "http://192.168.0.11:3100"
[alertmanager]
url = "http://192.168.0.11:9093"
[[hosts]]
name = "nexus"
address = "192.168.0.11"
port = 22
user = "jordan"
key_file = "/app/ssh_key"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
match_instances = ["192.168.0.11:*", "nexus:*"]
aliases = ["nexus.lan"]
[self]
protected_containers = ["jarvis", "postgres-jarvis"]
[safety]
llm_unknown_commands = "approval"
rate_limit_per_minute = 60
[[safety.rules]]
verdict = "allowed"
command = "upsc"
hosts = ["nexus"]
[notify.discord]
webhook_url = "https://discord.com/api/webhooks/1/abc"
[notify.ntfy]
url = "https://ntfy.sh/my-topic"
[runbooks]
dir = "runbooks"
[[rules.hints]]
match = { alertname = "BackupStale", system = "outpost" }
host = "outpost"
commands = ["/opt/burrow/backups/backup_vps_notify.sh"]
[[rules.cascade]]
root = "WireGuardVPNDown"
suppresses = ["OutpostDown", "PostgreSQLDown", "N8NDown", "SystemDown"]
[rules.dependencies]
grafana = ["prometheus", "loki"]
"#;
        let c = load_str(text, &[]).unwrap().config;
        assert_eq!(c.hosts[0].aliases, vec!["nexus.lan"]);
        assert_eq!(c.rules.hints[0].matchers["system"], "outpost");
        assert_eq!(c.rules.dependencies["grafana"], vec!["prometheus", "loki"]);
        assert_eq!(c.webhook.password.expose(), "change-me");
    }

    #[test]
    fn environment_wins_over_the_file_with_the_original_names() {
        let c = load_str(
            "[remediation]\nmax_attempts_per_alert = 5\n[webhook]\npassword = \"file-pw\"\n",
            &[
                ("MAX_ATTEMPTS_PER_ALERT", "7"),
                ("WEBHOOK_AUTH_PASSWORD", "env-pw"),
                ("DATABASE_URL", "postgres://u:p@localhost/j"),
                ("VERIFICATION_ENABLED", "false"),
                ("COMMAND_EXECUTION_TIMEOUT", "42"),
                ("PROMETHEUS_URL", "http://prom:9090"),
            ],
        )
        .unwrap()
        .config;
        assert_eq!(c.remediation.max_attempts_per_alert, 7);
        assert_eq!(c.webhook.password.expose(), "env-pw");
        assert!(c.database.url.is_postgres());
        assert!(!c.verification.enabled);
        assert_eq!(c.remediation.command_timeout_seconds, 42);
        assert_eq!(c.prometheus.url, "http://prom:9090");
    }

    #[test]
    fn ssh_env_fills_and_creates_hosts() {
        let c = load_str(
            "[[hosts]]\nname = \"nexus\"\naddress = \"10.0.0.1\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA\"\n",
            &[
                ("SSH_NEXUS_HOST", "10.0.0.2"),
                ("SSH_NEXUS_USER", "ops"),
                ("SSH_NEXUS_PORT", "2222"),
                ("SSH_OUTPOST_HOST", "vps.example"),
                ("SSH_OUTPOST_HOST_KEY", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5BBBB"),
            ],
        )
        .unwrap()
        .config;
        let nexus = &c.hosts[0];
        assert_eq!(
            (nexus.address.as_str(), nexus.user.as_str(), nexus.port),
            ("10.0.0.2", "ops", 2222)
        );
        let outpost = c.hosts.iter().find(|h| h.name == "outpost").unwrap();
        assert_eq!(outpost.address, "vps.example");
        assert!(outpost.host_key.ends_with("BBBB"));
    }

    #[test]
    fn secret_files_are_read_and_conflicts_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let pw = pw.to_str().unwrap();
        let c = load_str("", &[("WEBHOOK_AUTH_PASSWORD_FILE", pw)])
            .unwrap()
            .config;
        assert_eq!(c.webhook.password.expose(), "s3cret");

        let errs = errors_of(
            &format!("[webhook]\npassword = \"a\"\npassword_file = \"{pw}\"\n"),
            &[],
        );
        assert_eq!(
            errs,
            vec![
                "webhook.password: set either webhook.password or webhook.password_file, not both"
            ]
        );

        let errs = errors_of("[api]\ntoken_file = \"/nonexistent/token\"\n", &[]);
        assert!(
            errs[0].starts_with("api.token_file: cannot read \"/nonexistent/token\""),
            "{errs:?}"
        );
    }

    #[test]
    fn every_problem_is_reported_in_one_line_naming_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "[server]\nlisten = \"nowhere\"",
                &[],
                "server.listen: \"nowhere\" is not an address",
            ),
            (
                "[server]\nlisten = \"0.0.0.0:8000\"",
                &[],
                "webhook.password: required when listening on 0.0.0.0:8000",
            ),
            (
                "[database]\nurl = \"mysql://x\"",
                &[],
                "database.url: mysql://x is neither",
            ),
            (
                "[llm]\nmax_seconds_per_alert = 0",
                &[],
                "llm.max_seconds_per_alert: must be at least 1",
            ),
            (
                "[llm.prices.\"my-model\"]\ninput = -1.0\noutput = 2.0",
                &[],
                "llm.prices.my-model: prices are USD per million tokens and cannot be negative",
            ),
            (
                "[llm]\nprovider = \"gemini\"",
                &[],
                "llm.provider: \"gemini\" is not one of",
            ),
            (
                "[llm]\nprovider = \"anthropic\"",
                &[],
                "llm.api_key: required for provider \"anthropic\"",
            ),
            (
                "[llm]\nprovider = \"openai\"",
                &[],
                "llm.base_url: provider \"openai\" needs",
            ),
            (
                "[remediation]\npattern_min_confidence = 1.5",
                &[],
                "remediation.pattern_min_confidence: 1.5 is not between 0 and 1",
            ),
            (
                "[remediation]\nmax_attempts_per_alert = 0",
                &[],
                "remediation.max_attempts_per_alert: must be at least 1",
            ),
            (
                "[verification]\nmax_wait_seconds = 5\npoll_interval_seconds = 10",
                &[],
                "verification.max_wait_seconds: 5 is shorter",
            ),
            ("[prometheus]\nurl = \"prom:9090\"", &[], "prometheus.url:"),
            (
                "[homeassistant]\nurl = \"http://ha.lan:8123\"",
                &[],
                "homeassistant.token: a long-lived access token is needed",
            ),
            (
                "[homeassistant]\nurl = \"ha.lan:8123\"\ntoken = \"t\"",
                &[],
                "homeassistant.url:",
            ),
            (
                "[n8n]\nurl = \"http://n8n.lan:5678\"\n[[n8n.workflows]]\nname = \"restart\"",
                &[],
                "n8n.workflows[0]: name and webhook_path are required",
            ),
            (
                "[[n8n.workflows]]\nname = \"r\"\nwebhook_path = \"r\"",
                &[],
                "n8n.url: workflows are configured",
            ),
            (
                "[[rules.hints]]\nmatch = { alertname = \"X\" }\ncommands = [\"@homeassistant.restart_app slug={{ app }}\"]",
                &[],
                "rules.hints[0].commands[0]: homeassistant.restart_app needs app=",
            ),
            (
                "[safety]\nllm_unknown_commands = \"maybe\"",
                &[],
                "safety.llm_unknown_commands: \"maybe\"",
            ),
            (
                "[[safety.rules]]\nverdict = \"ok\"\ncommand = \"upsc\"",
                &[],
                "safety.rules[0].verdict: \"ok\"",
            ),
            (
                "[[safety.rules]]\nverdict = \"allowed\"\ncommand = \"rm -rf\"",
                &[],
                "safety.rules[0].command:",
            ),
            (
                "[[hosts]]\nname = \"a\"\naddress = \"h\"\nport = 70000\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\"",
                &[],
                "hosts[0].port: 70000 is not a port",
            ),
            (
                "[[hosts]]\nname = \"a\"\naddress = \"h\"",
                &[],
                "hosts[0].host_key: \"a\" needs a pinned host_key",
            ),
            (
                "[[hosts]]\nname = \"a\"\naddress = \"\"\ntrust_on_first_use = true",
                &[],
                "hosts[0].address: must not be empty",
            ),
            (
                "[[hosts]]\nname = \"a\"\naddress = \"local\"\n[[hosts]]\nname = \"a\"\naddress = \"local\"",
                &[],
                "hosts[1]: name or alias \"a\" is already used by hosts[0]",
            ),
            (
                "[[rules.hints]]\nhost = \"x\"\ncommands = [\"true\"]",
                &[],
                "rules.hints[0].match: must name at least one label",
            ),
            (
                "",
                &[("MAX_ATTEMPTS_PER_ALERT", "lots")],
                "remediation.max_attempts_per_alert (from env MAX_ATTEMPTS_PER_ALERT): \"lots\" is not a number",
            ),
            (
                "",
                &[("VERIFICATION_ENABLED", "perhaps")],
                "verification.enabled (from env VERIFICATION_ENABLED): \"perhaps\" is not true or false",
            ),
            ("[server]\nlisten = 8000", &[], "line 2: invalid type"),
            (
                "[server]\nlisen = \"x\"",
                &[],
                "line 2: unknown field `lisen`",
            ),
            ("[nonsense]\n", &[], "unknown field `nonsense`"),
        ];
        for (text, env, expected) in cases {
            let errs = errors_of(text, env);
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "config {text:?}: wanted {expected:?} in {errs:?}"
            );
            for e in &errs {
                assert!(!e.contains('\n'), "multi-line error {e:?}");
            }
        }
        // Several problems at once are all reported.
        let errs = errors_of(
            "[server]\nlisten = \"x\"\n[llm]\nprovider = \"y\"\n[webhook]\nmax_body_bytes = 0",
            &[],
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
    }

    #[test]
    fn listen_override_applies_before_validation() {
        let errs = load(None, &Env::default(), Some("0.0.0.0:8000"))
            .unwrap_err()
            .0;
        assert!(
            errs[0].starts_with("webhook.password: required"),
            "{errs:?}"
        );
        let ok = load(
            None,
            &Env::from_pairs([("WEBHOOK_AUTH_PASSWORD", "x")]),
            Some("0.0.0.0:8000"),
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn unknown_jarvis_variables_are_warned_about() {
        let loaded = load(
            None,
            &Env::from_pairs([("JARVIS_LISTN", "x"), ("JARVIS_LISTEN", "127.0.0.1:1")]),
            None,
        )
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
        assert!(loaded.warnings[0].contains("JARVIS_LISTN"));
    }

    #[test]
    fn rendering_redacts_every_secret() {
        let c = load_str(
            "[webhook]\npassword = \"pw-SECRET-1\"\n[api]\ntoken = \"tok-SECRET-2\"\n[llm]\nprovider = \"anthropic\"\napi_key = \"sk-SECRET-3\"\n\
             [database]\nurl = \"postgres://jarvis:db-SECRET-4@db/jarvis\"\n[notify.discord]\nwebhook_url = \"https://discord.com/api/webhooks/1/hook-SECRET-5\"\n",
            &[],
        )
        .unwrap()
        .config;
        let rendered = render_redacted(&c);
        let debug = format!("{c:?}");
        for out in [&rendered, &debug] {
            assert!(!out.contains("SECRET"), "secret leaked: {out}");
        }
        assert!(
            rendered.contains("postgres://jarvis:%3Credacted%3E@db/jarvis")
                || rendered.contains("<redacted>")
        );
        // The rendering is itself valid TOML of the same shape.
        parse_toml(&rendered).unwrap();
    }
}
