//! vmmd: loads its configuration, sets up logging, opens the service and serves.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use vmm_backends::{libvirt::LibvirtConfig, OpenConfig, StoreConfig};
use vmm_core::{NodeSpec, VirtType, Vmm, VmmConfig};
use vmm_server::{app, config::Settings, AppState, Throttle};

#[derive(Parser)]
#[command(name = "vmmd", version, about = "The vmm server: manage KVM VMs over an OpenAPI HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (configuration: --config FILE, then VMM_* variables).
    Serve {
        /// A TOML configuration file.
        #[arg(long, env = "VMM_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Check or show the configuration (the file, then VMM_* variables, then defaults).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
        /// A TOML configuration file.
        #[arg(long, env = "VMM_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Read the configuration and say what is wrong with it (exit code 1), or that it is fine.
    Check,
    /// Print the settings in effect as a config file, secrets redacted.
    Show,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // VMM_LOG_FORMAT=json: one JSON object per line, with the fields of the spans it is in
    // (a request's id, a task's id and kind).
    if std::env::var("VMM_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let result = match Cli::parse().command {
        Command::Serve { config } => serve(config).await,
        Command::Config { action, config } => {
            match (Settings::load(config.as_deref(), |k| std::env::var(k).ok()), action) {
                (Ok(_), ConfigAction::Check) => {
                    let from =
                        config.map_or("defaults and VMM_* variables".into(), |c| c.display().to_string());
                    println!("vmmd: the configuration is valid ({from})");
                    return std::process::ExitCode::SUCCESS;
                }
                (Ok(settings), ConfigAction::Show) => {
                    print!("{}", settings.to_redacted_toml());
                    return std::process::ExitCode::SUCCESS;
                }
                (Err(e), _) => {
                    eprintln!("vmmd: the configuration is not valid: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
        }
        Command::Openapi => {
            println!("{}", vmm_server::openapi().to_pretty_json().expect("the document serializes"));
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %vmm_core::error_chain(&e), "vmmd stopped");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Option<PathBuf>) -> Result<(), vmm_core::Error> {
    let settings = Settings::load(config.as_deref(), |k| std::env::var(k).ok())?;
    tracing::info!(settings = ?settings, "starting");
    std::fs::create_dir_all(&settings.data_dir).map_err(|e| vmm_core::Error::backend("data_dir", e))?;
    let (token, token_file) = settings.admin_token()?;
    if let Some(path) = token_file {
        tracing::info!(path = %path.display(), "admin token is in this file");
    }
    let open = OpenConfig {
        store: StoreConfig::parse(&settings.database_url)?,
        nodes: Vec::new(),
        libvirt: LibvirtConfig {
            storage_path: settings.storage_path.clone(),
            storage_pool: settings.storage_pool.clone(),
            deadlines: settings.libvirt,
            ..LibvirtConfig::default()
        },
        vmm: VmmConfig {
            node_uris: settings.node_uris.clone(),
            lease: settings.task_lease,
            image_limits: settings.image_limits,
            image_urls: settings.image_urls.clone(),
            session_ttl: settings.session_ttl,
            webhook_urls: settings.webhook_urls.clone(),
            webhook_max_failures: settings.webhook_max_failures,
            console_ttl: settings.console_ttl,
            console_sessions: settings.console_sessions,
            usage: vmm_core::usage::UsageRetention {
                interval: settings.usage_interval,
                ..vmm_core::usage::UsageRetention::default()
            },
            stats_cache: settings.stats_cache,
            shared_storage: settings.storage_shared,
            node_lease: settings.node_lease,
            fence_agents: settings.fence_agents.clone(),
            fence_timeout: settings.fence_timeout,
            ..VmmConfig::default()
        },
        image_dir: Some(settings.image_dir.clone()),
        ldap: settings.ldap.clone(),
    };
    let vmm = vmm_backends::open(&open).await?;
    if settings.local_node {
        register_local_node(&vmm, settings.local_node_virt_type).await;
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = stop_rx.clone();
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let workers = tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        async move { vmm.run_workers(stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        let retention = settings.event_retention;
        async move { vmm.run_pruning(retention, Duration::from_secs(3600), stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        let interval = settings.reconcile_interval;
        async move { vmm.run_reconciler(interval, stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        let interval = settings.ha_interval;
        async move { vmm.run_ha(interval, stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        async move { vmm.run_usage_collector(stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        async move { vmm.run_backup_scheduler(Duration::from_secs(10), stopped).await }
    });
    tokio::spawn({
        let vmm = vmm.clone();
        let stopped = stopped();
        let sender = std::sync::Arc::new(vmm_backends::HttpWebhookSender {
            smtp: settings.smtp.clone(),
            telegram: settings.telegram.clone(),
            ..vmm_backends::HttpWebhookSender::default()
        });
        async move { vmm.run_webhooks(sender, stopped).await }
    });
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| vmm_core::Error::backend(settings.listen.to_string(), e))?;
    let addr = listener.local_addr().map_err(|e| vmm_core::Error::backend("listen", e))?;
    tracing::info!(%addr, "listening on http://{addr} (API under /api/v1, docs at /docs)");
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping: no new requests; running tasks finish");
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let _ = stop_tx.send(true);
    });
    let admin = vmm.bootstrap_admin(&settings.admin_email).await?;
    tracing::info!(email = %admin.email, "the admin token acts as this admin");
    let state = AppState {
        throttle: std::sync::Arc::new(Throttle::new(settings.throttle)),
        limits: settings.limits,
        admin_email: settings.admin_email.clone(),
        admin: std::sync::Arc::new(tokio::sync::OnceCell::new_with(Some(admin.id))),
        stopping: stopping.clone(),
        metrics_token: settings.metrics_token.clone().map(std::sync::Arc::new),
        ..AppState::new(vmm, token)
    };
    // Under systemd (Type=notify) the unit is started once the API answers; elsewhere a no-op.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!(error = %e, "could not tell systemd vmmd is ready");
    }
    vmm_server::serve(listener, app(state), settings.serve, stopped())
        .await
        .map_err(|e| vmm_core::Error::backend("http", e))?;
    // Tasks still running after this are recovered from their leases by the next start.
    if tokio::time::timeout(Duration::from_secs(60), workers).await.is_err() {
        tracing::warn!(
            "tasks still running after 60 s; their leases will expire and the next start recovers them"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// On a first start (no nodes yet), registers the local libvirt as node `local` when it answers.
async fn register_local_node(vmm: &Vmm, virt_type: VirtType) {
    match vmm.list_nodes(&vmm_core::PageRequest::first(1)).await {
        Ok(nodes) if nodes.items.is_empty() => {}
        _ => return,
    }
    let spec = NodeSpec::new("local", "qemu:///system").with_virt_type(virt_type);
    match tokio::time::timeout(Duration::from_secs(15), vmm.create_node(spec)).await {
        Ok(Ok(node)) => {
            tracing::info!(node = %node.id, virt_type = %virt_type, "registered the local libvirt (qemu:///system) as node local")
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %vmm_core::error_chain(&e), "local libvirt did not answer; no node registered")
        }
        Err(_) => tracing::warn!("local libvirt did not answer in 15 s; no node registered"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
