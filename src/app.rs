//! Wiring: builds the services from a configuration, binds the listener, spawns the
//! background tasks, and shuts everything down in order.
//!
//! The startup seam (`build` binds, `local_addr` tells the port, `run_until_stopped`
//! serves) lets tests run the real application on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::{self, Agent, AgentParts, LlmHealth};
use crate::config::Config;
use crate::domain::ids::now_ms;
use crate::exec::monitor::{self, HostMonitor};
use crate::exec::runner::CommandRunner;
use crate::exec::ssh::SshExecutor;
use crate::intake::auth::Credentials;
use crate::intake::spool::Spool;
use crate::intake::{self, StorageStatus};
use crate::learn::library;
use crate::metrics::Metrics;
use crate::notify::{Notifications, Pacing};
use crate::pipeline::maintenance::Maintenance;
use crate::pipeline::plan::{NoPlanner, Planner};
use crate::pipeline::remediate::Remediator;
use crate::pipeline::{self, Pipeline, WorkerSettings};
use crate::runbooks::Runbooks;
use crate::store::{Backend, SqlStore, Store};
use crate::web::{self, AppState};

/// What the worker does with alert events.
pub enum Work {
    /// The remediation pipeline with the planner `[llm]` configures: the LLM agent,
    /// or none (pattern-only mode).
    FromConfig,
    /// The remediation pipeline, with this planner after patterns and hints.
    Remediate(Arc<dyn Planner>),
    /// Another pipeline (tests of the worker itself).
    Custom(Arc<dyn Pipeline>),
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    tasks: Vec<JoinHandle<()>>,
    /// Tasks started on the way (seeding, escalation reviews).
    background: TaskTracker,
    /// The notification outbox's writer and senders, and what stops them: after
    /// everything that may still notify has stopped.
    notifier: JoinHandle<()>,
    notify_stop: CancellationToken,
    writer: JoinHandle<()>,
    cancel: CancellationToken,
    grace: Duration,
}

impl Application {
    /// Builds with the remediation pipeline and no LLM planner.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, Work::FromConfig).await
    }

    pub async fn build_with(config: Config, work: Work) -> anyhow::Result<Self> {
        log_unconfigured(&config);
        let store: Arc<dyn Store> = Arc::new(SqlStore::open(&config.database)?);
        tracing::info!(database = %config.database.url, "Opening the database.");
        let db_ready = match store.ready().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "Database unreachable at start; running degraded, spooling alerts to disk and reconnecting.");
                false
            }
        };
        if db_ready && store.backend() == Backend::Sqlite {
            // One process owns a SQLite file, so claims left by a previous run are stale.
            let n = store.release_all_claims().await?;
            if n > 0 {
                tracing::info!(
                    events = n,
                    "Resuming alert events a previous run had claimed."
                );
            }
        }
        let spool_dir = Path::new(&config.database.spool_dir);
        let spool = Spool::open(spool_dir).with_context(|| {
            format!(
                "cannot open the spool in {} (database.spool_dir)",
                spool_dir.display()
            )
        })?;
        if spool.pending_events() > 0 {
            tracing::info!(
                events = spool.pending_events(),
                "Spooled alerts from an earlier run will be replayed."
            );
        }

        let cancel = CancellationToken::new();
        let metrics = Arc::new(Metrics::new());
        let storage = Arc::new(StorageStatus::default());
        let (intake, writer, watch) = intake::start(
            store.clone(),
            spool,
            storage.clone(),
            metrics.clone(),
            db_ready,
            cancel.clone(),
        );

        let executor = Arc::new(
            SshExecutor::new(&config.hosts, config.tofu_known_hosts())
                .map_err(|e| anyhow::anyhow!("{e} (check [[hosts]] with `jarvis check-config`)"))?,
        );
        let host_names: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
        let monitor = Arc::new(HostMonitor::new(
            &host_names,
            metrics.clone(),
            store.clone(),
        ));
        for h in config.hosts.iter().filter(|h| h.is_local()) {
            monitor.observe(&h.name, Ok(())).await;
        }
        let probes = tokio::spawn(monitor::run_probes(
            monitor.clone(),
            executor.clone(),
            cancel.clone(),
            Duration::from_secs(config.monitor.online_probe_seconds),
            Duration::from_secs(config.monitor.offline_probe_seconds),
        ));

        let runner = Arc::new(
            CommandRunner::new(&config, executor.clone(), store.clone(), monitor.clone())
                .map_err(|e| anyhow::anyhow!("safety policy: {e}"))?
                .with_metrics(metrics.clone())
                .with_wake(storage.clone()),
        );
        let expiry = tokio::spawn(expire_approvals(runner.clone(), cancel.clone()));

        let sinks = Notifications::sinks_from_config(&config.notify)?;
        let replica_id = config.cluster.replica_id();
        let notify_stop = CancellationToken::new();
        let (notify, notifier) = Notifications::start(
            store.clone(),
            sinks,
            Pacing::from_config(&config.notify),
            &config.server.external_url,
            metrics.clone(),
            replica_id.clone(),
            // Stopped last, after the worker and everything else that notifies.
            notify_stop.clone(),
        );
        monitor.set_notifications(notify.clone());
        let maintenance = Arc::new(Maintenance::new(&config, store.clone(), notify.clone())?);
        let maintenance_expiry = tokio::spawn(
            maintenance
                .clone()
                .run_expiry(Duration::from_secs(5), cancel.clone()),
        );
        let retention = tokio::spawn(run_retention(
            store.clone(),
            config.database.retention_days,
            cancel.clone(),
        ));
        let runbooks = Runbooks::open(&config.runbooks.dir);
        let runbook_watch = tokio::spawn(
            runbooks
                .clone()
                .watch(Duration::from_secs(2), cancel.clone()),
        );
        let llm_health = LlmHealth::default();
        let config = Arc::new(config);
        // Tasks spawned along the way (seeding, escalation reviews): joined at shutdown.
        let background = TaskTracker::new();
        let pipeline: Arc<dyn Pipeline> = if let Work::Custom(p) = work {
            p
        } else {
            let planner: Arc<dyn Planner> = match work {
                Work::Remediate(p) => p,
                _ => match agent::provider_from_config(&config.llm)? {
                    Some(provider) => {
                        tracing::info!(
                            provider = provider.name(),
                            model = provider.model(),
                            "LLM agent enabled."
                        );
                        Arc::new(Agent::new(
                            &config,
                            AgentParts {
                                provider,
                                runner: runner.clone(),
                                store: store.clone(),
                                metrics: metrics.clone(),
                                notify: notify.clone(),
                                runbooks: runbooks.clone(),
                                health: llm_health.clone(),
                            },
                        )?)
                    }
                    None => Arc::new(NoPlanner),
                },
            };
            if db_ready {
                let n = library::seed(&*store, now_ms()).await?;
                tracing::debug!(patterns = n, "Pattern library seeded.");
            } else {
                background.spawn(seed_when_ready(store.clone(), cancel.clone()));
            }
            Arc::new(
                Remediator::new(
                    config.clone(),
                    store.clone(),
                    runner.clone(),
                    monitor.clone(),
                    maintenance.clone(),
                    notify.clone(),
                    metrics.clone(),
                    planner,
                )?
                .with_background(background.clone()),
            )
        };

        let worker = tokio::spawn(pipeline::run_worker(
            store.clone(),
            pipeline,
            storage.clone(),
            WorkerSettings {
                replica_id,
                concurrency: config.worker.concurrency,
                lease: Duration::from_secs(config.worker.claim_lease_seconds),
                poll_interval: Duration::from_millis(config.worker.poll_interval_ms),
                shutdown_grace: Duration::from_secs(config.server.shutdown_grace_seconds),
            },
            cancel.clone(),
        ));

        let listener = TcpListener::bind(&config.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (server.listen / --listen)",
                    config.server.listen
                )
            })?;
        let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
        let state = AppState {
            credentials: Arc::new(Credentials::from_config(&config)),
            config,
            maintenance,
            notify,
            store,
            intake,
            storage,
            metrics,
            hosts: monitor,
            runner,
            runbooks,
            llm: llm_health,
        };
        Ok(Self {
            listener,
            state,
            tasks: vec![
                watch,
                worker,
                probes,
                expiry,
                maintenance_expiry,
                retention,
                runbook_watch,
            ],
            background,
            notifier,
            notify_stop,
            writer,
            cancel,
            grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish (up to the grace period), writes everything accepted, and returns.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            tasks,
            background,
            notifier,
            notify_stop,
            writer,
            cancel,
            grace,
        } = self;
        tracing::info!(address = %listener.local_addr()?, "Jarvis is listening.");
        let store = state.store.clone();
        let app = web::router(state);
        let stop = cancel.clone();
        let signalled = CancellationToken::new();
        let signalled_setter = signalled.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("Shutting down: no new requests; finishing what was accepted.");
            signalled_setter.cancel();
            stop.cancel();
        });
        let server =
            axum::serve(listener, app).with_graceful_shutdown(cancel.clone().cancelled_owned());
        tokio::select! {
            r = server => r.context("the HTTP server failed")?,
            _ = async { signalled.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace = ?grace, "Requests still open after the grace period; closing them.");
            }
        }
        cancel.cancel();
        // The writer answers everything already queued, then ends.
        let _ = writer.await;
        for t in tasks {
            let _ = t.await;
        }
        background.close();
        if tokio::time::timeout(grace, background.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = background.len(),
                "Background work (escalation reviews) still running after the grace period; abandoning it."
            );
        }
        // Everything that notifies has stopped: the outbox writes what was queued and
        // each sender has a last try.
        notify_stop.cancel();
        let _ = notifier.await;
        store.close().await;
        tracing::info!("Stopped.");
        Ok(())
    }
}

/// Expires undecided approvals (they never run) every 30 seconds.
async fn expire_approvals(runner: Arc<CommandRunner>, shutdown: CancellationToken) {
    loop {
        if let Err(e) = runner.expire_overdue().await {
            tracing::debug!(error = %e, "Cannot expire approvals yet.");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    }
}

/// Seeds the pattern library once the database is back (it was down at start).
async fn seed_when_ready(store: Arc<dyn Store>, shutdown: CancellationToken) {
    loop {
        if store.ready().await.is_ok() && library::seed(&*store, now_ms()).await.is_ok() {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Deletes history past `[database] retention_days`, hourly.
async fn run_retention(store: Arc<dyn Store>, days: u32, shutdown: CancellationToken) {
    if days == 0 {
        return;
    }
    loop {
        let before = now_ms() - i64::from(days) * 86_400_000;
        match store.purge(before).await {
            Ok(p) => tracing::debug!(purged = ?p, "Retention job ran."),
            Err(e) => tracing::debug!(error = %e, "Cannot run the retention job yet."),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

/// One line for each thing not configured yet, so a first start explains itself.
fn log_unconfigured(c: &Config) {
    if c.webhook.password.is_empty() && c.api.token.is_empty() {
        tracing::warn!(
            "Webhook and API authentication not configured: open to local callers only (set WEBHOOK_AUTH_PASSWORD)."
        );
    }
    if c.llm.provider == "none" {
        tracing::info!("No LLM configured: pattern mode only (set [llm] provider).");
    }
    if c.hosts.is_empty() {
        tracing::info!(
            "No hosts configured: nothing can be remediated over SSH yet (add [[hosts]])."
        );
    }
    if c.prometheus.url.is_empty() {
        tracing::info!("Prometheus not configured: fixes cannot be verified (set PROMETHEUS_URL).");
    }
    let notify = &c.notify;
    if notify.discord.webhook_url.is_empty()
        && notify.ntfy.url.is_empty()
        && notify.slack.webhook_url.is_empty()
        && notify.webhook.url.is_empty()
    {
        tracing::info!(
            "No notifications configured: nobody will be told about escalations (set [notify.*])."
        );
    }
}
