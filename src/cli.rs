//! The command line (INTERFACE §1). Parsing and dispatch only; the work is in the
//! library modules.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Env};

#[derive(Debug, Parser)]
#[command(
    name = "jarvis",
    version,
    about = "Self-hosted autonomous alert remediation for Prometheus Alertmanager"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "JARVIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PatternsAction {
    /// One line per pattern: id, alert, confidence, successes/failures, origin.
    List {
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Write every pattern as a pattern file (INTERFACE §5), to stdout or --out.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add the patterns of a pattern file. All or nothing: one bad pattern (unreadable,
    /// or a command the safety gate blocks) and nothing is imported.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: HTTP API, intake and background work. Applies migrations first.
    Serve {
        /// Configuration file (default: $JARVIS_CONFIG, then ./jarvis.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address, overriding [server] listen.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Load and validate the configuration; print it with secrets redacted.
    CheckConfig {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the safety verdict Jarvis would give COMMAND on a host from a source.
    CheckCommand {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Host the command would run on (a configured name or alias).
        #[arg(long)]
        host: Option<String>,
        /// Who proposes it: operator, learned, llm (the strictest) or manual.
        #[arg(long, default_value = "llm")]
        source: String,
        /// Print one JSON object: {"verdict", "reason", "rule"} (+ "explanation").
        #[arg(long)]
        json: bool,
        /// Also print how the gate read the command: each program with its options
        /// and arguments, each rule considered and why it did or did not match.
        #[arg(long)]
        explain: bool,
        /// The command, after `--`. One argument is taken as shell text as is; several
        /// are quoted so they mean the same words.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The pattern library: list, export (TOML, with learned confidence) or import.
    Patterns {
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: PatternsAction,
    },
    /// Post a well-formed Alertmanager v4 payload, for trying an installation.
    SendTestAlert(crate::testalert::SendTestAlert),
    /// Version, git commit and enabled features.
    Version,
}

/// Runs the CLI and returns the process exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(
    path: Option<&std::path::Path>,
    listen: Option<&str>,
) -> Result<config::LoadedConfig, ExitCode> {
    match config::load(path, &Env::from_process(), listen) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            Ok(loaded)
        }
        Err(errors) => {
            eprintln!("configuration is not valid:");
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            Err(ExitCode::from(2))
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config, listen } => {
            let loaded = match load_config(config.as_deref(), listen.as_deref()) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            if let Some(src) = &loaded.source {
                tracing::info!(file = %src.display(), "Configuration loaded.");
            } else {
                tracing::info!("No configuration file: using built-in defaults.");
            }
            // Listen for signals before anything else, so a SIGTERM that arrives while
            // starting up still means a graceful stop rather than the default kill.
            let shutdown = shutdown_signal()?;
            let app = crate::app::Application::build(loaded.config).await?;
            app.run_until_stopped(shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            let loaded = match load_config(config.as_deref(), None) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            match &loaded.source {
                Some(p) => println!(
                    "# configuration from {} and the environment; secrets redacted",
                    p.display()
                ),
                None => println!("# built-in defaults and the environment; secrets redacted"),
            }
            print!("{}", config::render_redacted(&loaded.config));
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate { config } => {
            let loaded = match load_config(config.as_deref(), None) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let store = crate::store::SqlStore::open(&loaded.config.database)?;
            use crate::store::Store;
            store
                .migrate()
                .await
                .map_err(|e| anyhow::anyhow!("{e} (database {})", loaded.config.database.url))?;
            println!("migrations applied to {}", loaded.config.database.url);
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Patterns { config, action } => {
            let loaded = match load_config(config.as_deref(), None) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            patterns_command(&loaded.config, action).await
        }
        Command::CheckCommand {
            config,
            host,
            source,
            json,
            explain,
            command,
        } => {
            let loaded = match load_config(config.as_deref(), None) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            check_command(
                &loaded.config,
                host.as_deref(),
                &source,
                Output { json, explain },
                &command,
            )
        }
        Command::SendTestAlert(args) => args.run().await,
        Command::Version => {
            let v = crate::version_info();
            println!(
                "jarvis {} (commit {})",
                v["version"].as_str().unwrap_or(""),
                v["commit"].as_str().unwrap_or("")
            );
            println!(
                "features: {}",
                v["features"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .filter_map(|f| f.as_str())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How `check-command` prints.
struct Output {
    json: bool,
    explain: bool,
}

fn check_command(
    config: &config::Config,
    host: Option<&str>,
    source: &str,
    out: Output,
    command: &[String],
) -> anyhow::Result<ExitCode> {
    use crate::safety::{self, Context, Policy, Source};
    let source = match Source::parse(source) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: --source: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let host_name = match host {
        None => None,
        Some(h) => match config
            .hosts
            .iter()
            .find(|c| c.name == h || c.aliases.iter().any(|a| a == h))
        {
            Some(c) => Some(c.name.clone()),
            None => {
                let known: Vec<&str> = config.hosts.iter().map(|c| c.name.as_str()).collect();
                eprintln!(
                    "error: --host: unknown host {h:?}; configured hosts: {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
                return Ok(ExitCode::from(2));
            }
        },
    };
    let policy = Policy::for_config(config).map_err(anyhow::Error::msg)?;
    let text = safety::quote_argv(command);
    let ctx = Context::new(host_name.as_deref(), source);
    let (j, explanation) = if out.explain {
        safety::explain(&text, &ctx, &policy)
    } else {
        (safety::judge(&text, &ctx, &policy), Vec::new())
    };
    if out.json {
        let mut v = serde_json::to_value(&j)?;
        if out.explain {
            v["explanation"] = serde_json::json!(explanation);
        }
        println!("{v}");
    } else {
        if out.explain {
            println!("command: {text}\nsource: {}\n", source.as_str());
            for line in &explanation {
                println!("  {line}");
            }
            println!();
        }
        println!(
            "verdict: {}\nrule: {}\nreason: {}",
            j.verdict, j.rule, j.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers SIGINT and SIGTERM handlers now; the returned future completes on either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn patterns_command(
    config: &config::Config,
    action: PatternsAction,
) -> anyhow::Result<ExitCode> {
    use crate::learn::{library, patterns};
    use crate::store::{RemediationStore, Store};
    let store = crate::store::SqlStore::open(&config.database)?;
    store
        .ready()
        .await
        .map_err(|e| anyhow::anyhow!("{e} (database {})", config.database.url))?;
    library::seed(&store, crate::domain::ids::now_ms()).await?;
    let code = match action {
        PatternsAction::List { json } => {
            let rows = store.list_patterns().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<24} {:<28} {:>10} {:>9} {:>8}  origin",
                    "id", "alert", "confidence", "successes", "failures"
                );
                for r in &rows {
                    println!(
                        "{:<24} {:<28} {:>10.3} {:>9} {:>8}  {}",
                        r.id,
                        r.alert_name,
                        library::row_confidence(r),
                        r.success_count,
                        r.failure_count,
                        r.origin
                    );
                }
            }
            ExitCode::SUCCESS
        }
        PatternsAction::Export { out } => {
            let rows = store.list_patterns().await?;
            let defs = rows
                .iter()
                .map(library::def_from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!(e))?;
            let text = toml::to_string(&patterns::PatternFile { patterns: defs })?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("exported {} patterns to {}", rows.len(), path.display());
                }
                None => print!("{text}"),
            }
            ExitCode::SUCCESS
        }
        PatternsAction::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let name = file.display().to_string();
            let defs = match patterns::parse(&name, &text) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("error: {e}\nnothing imported");
                    return Ok(ExitCode::from(2));
                }
            };
            let policy = crate::safety::Policy::for_config(config)
                .map_err(|e| anyhow::anyhow!("safety policy: {e}"))?;
            let problems: Vec<String> = defs
                .iter()
                .flat_map(|d| patterns::gate_problems(d, &policy))
                .collect();
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("error: {name}: {p}");
                }
                eprintln!("nothing imported");
                return Ok(ExitCode::from(2));
            }
            let now = crate::domain::ids::now_ms();
            for d in &defs {
                let row = library::row_from_def(
                    library::file_pattern_id("imported", d),
                    "imported",
                    d,
                    now,
                );
                store.upsert_pattern(&row).await?;
            }
            println!("imported {} patterns from {name}", defs.len());
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}
