//! The drill harness: a real service breaks, real Prometheus fires, real Alertmanager
//! delivers, and Jarvis fixes it over real SSH (used by the drills and the MTTR bench).

use std::time::Duration;

use jarvis::config::{Config, Secret};
use serde_json::Value;

use super::alertmanager::{Alertmanager, free_port};
use super::prometheus::Prometheus;
use super::receiver::{self, Received};
use super::service::Service;
use super::sshd::Sshd;
use super::{Backend, PASSWORD, TestApp, TestEnv, USER, eventually};

pub const HOST: &str = "drillbox";

pub struct Drill {
    pub app: TestApp,
    pub config: Config,
    pub svc: Service,
    pub received: Received,
    pub am: Alertmanager,
    pub prom: Prometheus,
    pub _sshd: Sshd,
    pub _env: TestEnv,
}

/// An alert rule firing while the drill service is down, routed to the drill host.
pub fn down_rule(name: &str, annotations: &str) -> String {
    format!(
        "      - alert: {name}\n        expr: up{{job=\"svc\"}} == 0\n        labels:\n          severity: critical\n\
         \x20         remediation_host: {HOST}\n        annotations:\n          summary: drill service down\n{annotations}"
    )
}

/// The drill's usual rule: the service is down, and its hint starts it again.
pub fn restart_rule(svc: &Service) -> String {
    down_rule(
        "DrillServiceDown",
        &hint(&format!("{} start", svc.script().display())),
    )
}

pub fn hint(commands: &str) -> String {
    format!("          remediation_commands: \"{commands}\"\n")
}

/// How a drill runs.
pub struct Options {
    /// The planner `[llm]` configures (the LLM agent) instead of none.
    pub llm: bool,
    pub backend: Backend,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            llm: false,
            backend: Backend::Sqlite,
        }
    }
}

impl Drill {
    /// Starts the service, sshd, Prometheus (with `rules(&service)`), Jarvis (after
    /// `tweak`) and Alertmanager. `None` when a component is missing outside CI.
    pub async fn start(
        rules: impl FnOnce(&Service) -> String,
        tweak: impl FnOnce(&mut Config, &Service),
    ) -> Option<Self> {
        Self::start_with(rules, tweak, Options::default()).await
    }

    /// As `start`, with the planner and database `options` choose.
    pub async fn start_with(
        rules: impl FnOnce(&Service) -> String,
        tweak: impl FnOnce(&mut Config, &Service),
        options: Options,
    ) -> Option<Self> {
        let Options { llm, backend } = options;
        jarvis::install_crypto_provider();
        let sshd = Sshd::start()?;
        let svc = Service::start();
        let am_port = free_port();
        let (target, rules) = (svc.target(), rules(&svc));
        let prom = tokio::task::spawn_blocking(move || {
            Prometheus::start_alerting(&[target], &rules, Some(&format!("127.0.0.1:{am_port}")))
        })
        .await
        .unwrap()?;
        let (discord, received) = receiver::discord().await;
        let env = TestEnv::new(backend).await?;
        let mut c = env.config();
        c.hosts = vec![sshd.host(HOST)];
        c.prometheus.url = prom.url.clone();
        c.alertmanager.url = format!("http://127.0.0.1:{am_port}");
        c.verification.poll_interval_seconds = 1;
        c.verification.max_wait_seconds = 30;
        c.notify.discord.webhook_url = Secret::new(&discord);
        c.notify.min_interval_ms = 0;
        c.notify.summary_interval_seconds = 1;
        c.rules.settle_seconds = 0;
        c.server.external_url = "http://jarvis.test:8000".into();
        tweak(&mut c, &svc);
        let app = if llm {
            TestApp::start_work(c.clone(), jarvis::app::Work::FromConfig).await
        } else {
            TestApp::start_remediating(c.clone()).await
        };
        let webhook = app.url("/webhook");
        let am = tokio::task::spawn_blocking(move || {
            Alertmanager::start_on(am_port, &webhook, USER, PASSWORD)
        })
        .await
        .unwrap()?;
        Some(Self {
            app,
            config: c,
            svc,
            received,
            am,
            prom,
            _sshd: sshd,
            _env: env,
        })
    }

    /// Stops Jarvis the way a crash would leave things (work in flight is abandoned
    /// after a 1 s grace) and starts it again on the same database after `tweak`.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        self.app.stop_in_place().await;
        tweak(&mut self.config);
        self.app = TestApp::start_remediating(self.config.clone()).await;
        self
    }

    /// Whether Prometheus currently lists `alertname` as firing.
    pub async fn firing_in_prometheus(&self, alertname: &str) -> bool {
        let body: Value = reqwest::get(format!("{}/api/v1/alerts", self.prom.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == alertname && a["state"] == "firing")
    }

    /// Waits for the newest firing event of `alertname` to be in `state`.
    pub async fn event_in(&self, alertname: &str, state: &str, within: Duration) -> Value {
        eventually(&format!("{alertname} is {state}"), within, || async {
            self.app
                .alerts(&format!("&alertname={alertname}"))
                .await
                .into_iter()
                .find(|a| a["status"] == "firing" && a["state"] == state)
        })
        .await
    }

    /// Waits for the first successful remediation.
    pub async fn successful_fix(&self, within: Duration) -> Value {
        eventually("a successful fix", within, || async {
            self.remediations()
                .await
                .into_iter()
                .find(|r| r["success"] == true)
        })
        .await
    }

    pub async fn remediations(&self) -> Vec<Value> {
        let (_, body) = self.app.get("/remediations").await;
        body["remediations"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for the newest firing event of `alertname` to reach a final state.
    pub async fn final_event(&self, alertname: &str, within: Duration) -> Value {
        eventually(
            &format!("{alertname} reaches a final state"),
            within,
            || async {
                self.app
                    .alerts(&format!("&alertname={alertname}"))
                    .await
                    .into_iter()
                    .find(|a| a["status"] == "firing")
                    .filter(|a| {
                        [
                            "resolved",
                            "suppressed",
                            "escalated",
                            "failed",
                            "deduplicated",
                        ]
                        .contains(&a["state"].as_str().unwrap_or(""))
                    })
            },
        )
        .await
    }
}
