//! The signaling service: the axum application around the records store and
//! the SFU.
//!
//! # Model
//! [`app`] builds the whole HTTP surface from an [`AppState`]: the REST API
//! under `/api` (one module per resource in [`api`]), the read-only FHIR R4
//! export under `/fhir` ([`fhir`]), `/healthz`, and the embedded browser app. Who may do what is decided in one place, [`access`];
//! every error leaves as RFC 9457 problem+json through [`error::ApiError`].
//!
//! # Flow
//! [`run`] is the composition root's one call: it prepares the data
//! directory, opens the store (migrating it), makes sure an admin exists,
//! optionally seeds the demo province, and serves HTTP or HTTPS until the
//! shutdown future resolves, then drains requests and closes the store.
//!
//! # Out of scope here
//! SQL (in `telehealth-records`) and media (in `telehealth-sfu`).

pub mod access;
pub mod api;
pub mod auth;
mod bootstrap;
pub mod call;
mod call_ws;
pub mod cluster;
pub mod config;
pub mod error;
pub mod extract;
pub mod fhir;
mod first_bytes;
pub mod live;
pub mod metrics;
pub mod protocol;
mod same_origin;
pub mod state;
pub mod turn;
mod web;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use telehealth_records::{Store, StoreOptions};

pub use config::Config;
pub use state::AppState;

use crate::auth::{AuthKeys, LoginThrottle, ThrottlePolicy};
use crate::error::ApiError;

/// The whole HTTP application. Tests call this directly with their own state.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .nest("/fhir", fhir::router())
        .merge(web::router())
        // The gates run on matched routes, inside the metrics' timing, so
        // that what they refuse is counted under its route.
        .route_layer(middleware::from_fn_with_state(state.clone(), database_gate))
        .route_layer(middleware::from_fn(same_origin::writes))
        .route_layer(middleware::from_fn(metrics::track_matched))
        .fallback(|| async { ApiError::NotFound("route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(extract::JSON_LIMIT))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn(metrics::track_unmatched))
        .with_state(state)
}

/// While the database is known to be away ([`Store::unreachable`]), a
/// request that needs it gets its 503 `database_unavailable` at once, not
/// after the pool's 10 s wait for a connection: the page says "not saved,
/// trying again" straight away, and requests do not pile up (`/fhir` too,
/// answered as an OperationOutcome; not its metadata). The pages, the
/// call's socket (a call needs no database once joined) and the health
/// check go through.
async fn database_gate(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let fhir = (path == "/fhir" || path.starts_with("/fhir/")) && path != "/fhir/metadata";
    let needs_database =
        fhir || (path.starts_with("/api/") && path != "/api/ws" && path != "/api/openapi.json");
    if needs_database && state.store.unreachable() {
        let answer = axum::response::IntoResponse::into_response(ApiError::Unavailable);
        return if fhir {
            fhir::to_outcome(answer).await
        } else {
            answer
        };
    }
    next.run(req).await
}

async fn security_headers(req: Request<axum::body::Body>, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

/// Builds the application state on an open store.
pub fn state(
    store: Store,
    jwt_key: &[u8],
    config: &Config,
    throttle: ThrottlePolicy,
    calls: call::Calls,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> AppState {
    AppState {
        store: store.clone(),
        auth: Arc::new(AuthKeys::new(
            jwt_key,
            chrono::Duration::minutes(config.access_token_minutes),
            chrono::Duration::hours(config.session_hours),
        )),
        throttle: Arc::new(match store.backend() {
            telehealth_records::Backend::Postgres => LoginThrottle::shared(throttle, store.clone()),
            telehealth_records::Backend::Sqlite => LoginThrottle::new(throttle),
        }),
        trust_proxy: config.trust_proxy,
        secure_cookies: config.tls_cert.is_some() || config.trust_proxy,
        hub: live::Hub::default(),
        cluster: Arc::new(cluster::Cluster::new(
            config.node_id(),
            config.node_url(config.http_addr),
            calls.sfu.local_addr().to_string(),
            std::time::Duration::from_secs(config.node_dead_after_secs),
        )),
        calls,
        shutdown,
        sockets: Default::default(),
    }
}

/// Sets up logging (text or JSON lines), filtered by `RUST_LOG`
/// (default `info`).
pub fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Colours only for a person at a terminal: a log file or a journal
    // gets plain text (and NO_COLOR turns them off anywhere).
    use std::io::IsTerminal;
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Starts everything and serves until `shutdown` resolves.
/// The metrics listener (`--metrics-addr`): a port given on purpose must
/// be had; the default one is skipped with a warning when taken (another
/// server on the same machine has it), since the calls do not need it.
fn metrics_listener(config: &Config) -> anyhow::Result<Option<std::net::TcpListener>> {
    let (addr, chosen) = match config.metrics_addr.as_deref().map(str::trim) {
        Some("off") => return Ok(None),
        Some(a) => (
            a.parse::<SocketAddr>().with_context(|| {
                format!("--metrics-addr {a:?}: give an address and port such as 127.0.0.1:9464, or off")
            })?,
            true,
        ),
        None => (
            SocketAddr::from(([127, 0, 0, 1], config::DEFAULT_METRICS_PORT)),
            false,
        ),
    };
    match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            l.set_nonblocking(true)?;
            if !addr.ip().is_loopback() && config.metrics_token().is_none() {
                tracing::warn!(%addr, "metrics served beyond this machine without --metrics-token: keep the port closed to the internet");
            }
            Ok(Some(l))
        }
        Err(e) if chosen => Err(e).with_context(|| {
            format!("cannot serve metrics on {addr} (in use? choose another with --metrics-addr, or off)")
        }),
        Err(e) => {
            tracing::warn!(%addr, error = %e, "metrics not served: the default port is taken (set --metrics-addr)");
            Ok(None)
        }
    }
}

/// Resolves when the server starts shutting down (never, if nobody can
/// shut it down).
pub(crate) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await
    }
}

/// How long a client has to send a request's headers (see `serve`).
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Minutes after a booked start before an unstarted consultation is a no-show.
const NO_SHOW_GRACE_MINUTES: i64 = 15;

/// Writes the audit chain's head, signed, to the server's log at start and
/// every hour: an anchor outside the database (`telehealth audit verify
/// --anchor id:hash` checks the chain still holds it).
/// Ports as an operator writes them in a firewall rule: `50000-50001`,
/// `50000`, or `none`; free ports (not consecutive) are listed.
fn port_span(ports: impl Iterator<Item = u16>) -> String {
    let ports: Vec<u16> = ports.collect();
    match (ports.first(), ports.last()) {
        (None, _) | (_, None) => "none".to_owned(),
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(&a), Some(&b)) if ports.windows(2).all(|w| w[1] == w[0].wrapping_add(1)) => format!("{a}-{b}"),
        _ => ports.iter().map(u16::to_string).collect::<Vec<_>>().join(","),
    }
}

async fn anchor_loop(state: AppState) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        match state.store.audit_chain_head().await {
            Ok(Some((id, hash))) => {
                let signature = state.auth.sign_anchor(id, &hash);
                tracing::info!(anchor = %format!("{id}:{hash}"), %signature, "audit chain head");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the audit chain head"),
        }
    }
}

/// Marks overdue bookings as no-shows, once a minute, on one node of a
/// cluster at a time.
async fn no_show_loop(state: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    let stop = stopped(state.shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stop => return,
        }
        // One node of a cluster runs it (a lease it renews each time).
        match state
            .store
            .take_lease("no_shows", &state.cluster.id, std::time::Duration::from_secs(90))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "no-show check skipped: cannot take its lease");
                continue;
            }
        }
        match state
            .store
            .mark_no_shows(
                chrono::Utc::now(),
                chrono::Duration::minutes(NO_SHOW_GRACE_MINUTES),
            )
            .await
        {
            Ok(list) => {
                for c in list {
                    tracing::info!(consultation = %c.id, "no-show");
                    state.hub.publish(&c);
                }
            }
            Err(e) => tracing::error!(error = %e, "no-show check failed"),
        }
    }
}

pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    // Refuse bad TURN settings before anything is bound or written.
    let ice_servers = config.ice_servers()?;
    if ice_servers.turn_urls() > 0 {
        tracing::info!(
            urls = ice_servers.turn_urls(),
            credential_ttl_secs = ice_servers.ttl().as_secs(),
            "TURN credentials handed to call pages"
        );
    }
    // Claim the ports and read the certificate first: a server that cannot
    // listen must fail before it creates accounts or prints passwords.
    let listener = std::net::TcpListener::bind(config.http_addr).with_context(|| {
        format!(
            "cannot listen on {} (in use? choose another with --http-addr)",
            config.http_addr
        )
    })?;
    listener.set_nonblocking(true)?;
    let metrics_listener = metrics_listener(&config)?;
    let sfu_config = config.sfu_config();
    let sfu = telehealth_sfu::Sfu::start(sfu_config.clone())
        .await
        .with_context(|| {
            format!(
                "cannot open the media ports from UDP {} on, one per engine \
                 (in use? choose others with --media-udp-port, or fewer with --media-engines)",
                sfu_config.udp_bind
            )
        })?;
    let engines = sfu.engines();
    tracing::info!(
        media = %sfu.local_addr(),
        engines = engines.len(),
        udp_ports = %port_span(engines.iter().map(|e| e.udp.port())),
        tcp_ports = %port_span(engines.iter().filter_map(|e| e.tcp.map(|a| a.port()))),
        "media server ready"
    );
    if sfu.local_addr().ip().is_loopback() && !config.http_addr.ip().is_loopback() {
        tracing::warn!(
            "media is announced on a loopback address: set --public-ip so that other machines can reach it"
        );
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(
                axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .context("reading the TLS certificate and key")?,
            )
        }
        _ => None,
    };

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let jwt_key = bootstrap::jwt_key(config.jwt_key.as_deref(), &config.data_dir)?;
    let store = Store::open(&StoreOptions::new(config.database_url()))
        .await
        .context("opening the database")?;
    tracing::info!(backend = ?store.backend(), "database ready");
    let admin_password = std::env::var("TELEHEALTH_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    bootstrap::first_admin(&store, admin_password).await?;
    if config.demo {
        bootstrap::demo(&store).await?;
    }

    let calls = call::Calls::new(
        sfu.clone(),
        ice_servers,
        std::time::Duration::from_secs(config.seat_hold_secs),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let state = state(
        store.clone(),
        &jwt_key,
        &config,
        ThrottlePolicy::default(),
        calls.clone(),
        stop_rx.clone(),
    );
    let mut state = state;
    state.cluster = Arc::new(cluster::Cluster::new(
        config.node_id(),
        config.node_url(listener.local_addr()?),
        format!(
            "{} (UDP {})",
            sfu.local_addr().ip(),
            port_span(engines.iter().map(|e| e.udp.port()))
        ),
        std::time::Duration::from_secs(config.node_dead_after_secs),
    ));
    if state.cluster.url.starts_with("https:") {
        anyhow::bail!(
            "--node-url must be plain http:// on the nodes' internal network (the nodes forward call sockets to \
             each other without TLS); terminate TLS for browsers at a reverse proxy in front of the nodes"
        );
    }
    if store.backend() == telehealth_records::Backend::Postgres {
        if config.node_url.is_none() {
            tracing::warn!(
                url = %state.cluster.url,
                "no --node-url: other nodes will forward call sockets (with the login token) to this address; \
                 set --node-url to this node's address on a private network"
            );
        }
        if config.tls_cert.is_some() {
            tracing::warn!(
                "this node serves HTTPS itself, so other nodes cannot forward call sockets to it: with several \
                 nodes, terminate TLS at a reverse proxy and serve plain HTTP on the internal network"
            );
        }
    }
    state.cluster.register(&store).await.with_context(|| {
        format!(
            "registering node {} (another server runs with this --node-id?)",
            state.cluster.id
        )
    })?;
    tracing::info!(node = %state.cluster.id, url = %state.cluster.url, "node registered");
    tokio::spawn(cluster::heartbeat_loop(state.clone()));
    tokio::spawn(cluster::close_calls_ended_elsewhere(state.clone()));
    state
        .hub
        .join_cluster(store.clone(), config.database_url(), state.cluster.id.clone());
    let dispatch = tokio::spawn(call::dispatch(calls, store.clone(), state.hub.clone()));
    // Rooms do not survive a restart: consultations that were live are
    // interrupted, and the pages that show them are told.
    for c in store
        .interrupt_live_consultations(&state.cluster.id, state.cluster.dead_after)
        .await?
    {
        tracing::warn!(consultation = %c.id, "consultation interrupted by a server restart");
        state.hub.publish(&c);
    }
    tokio::spawn(no_show_loop(state.clone()));
    tokio::spawn(anchor_loop(state.clone()));
    if store.backend() == telehealth_records::Backend::Postgres {
        tokio::spawn(store.clone().watch_reachability());
    }
    if let Some(l) = metrics_listener {
        let addr = l.local_addr()?;
        println!("  telehealth metrics on http://{addr}/metrics");
        tracing::info!(%addr, token = config.metrics_token().is_some(), "metrics served");
        tokio::spawn(metrics::serve(
            tokio::net::TcpListener::from_std(l)?,
            state.clone(),
            config.metrics_token().map(str::to_owned),
        ));
    }
    let node = state.cluster.clone();
    let app = app(state.clone());
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    // A drain (SIGUSR1) ends in a shutdown too.
    let drained = Arc::new(tokio::sync::Notify::new());
    #[cfg(unix)]
    {
        let (state, drained) = (state.clone(), drained.clone());
        let deadline = std::time::Duration::from_secs(config.drain_deadline_secs);
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
            Ok(mut usr1) => {
                tokio::spawn(async move {
                    if usr1.recv().await.is_some() {
                        cluster::drain(state, deadline).await;
                        drained.notify_one();
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGUSR1: draining is not available"),
        }
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown => {}
            _ = drained.notified() => {}
        }
        let _ = stop_tx.send(true);
    });
    let addr = listener.local_addr()?;

    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        stopped(stop_rx).await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    let mut server = axum_server::from_tcp(listener).handle(handle);
    // A client gets HEADER_READ_TIMEOUT to send a request's headers (and to
    // start the next one on a kept-alive connection): 30 connections sending
    // headers a byte at a time otherwise held their sockets for good.
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(64 * 1024);
    match tls {
        Some(tls) => {
            println!("  telehealth listening on https://{addr}");
            tracing::info!(%addr, "listening (TLS)");
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls);
            server
                .acceptor(first_bytes::FirstBytes {
                    inner: tls,
                    within: HEADER_READ_TIMEOUT,
                })
                .serve(make)
                .await?;
        }
        None => {
            println!("  telehealth listening on http://{addr}");
            tracing::info!(%addr, "listening");
            let plain = axum_server::accept::DefaultAcceptor::new();
            server
                .acceptor(first_bytes::FirstBytes {
                    inner: plain,
                    within: HEADER_READ_TIMEOUT,
                })
                .serve(make)
                .await?;
        }
    }
    sfu.shutdown().await;
    // The SFU's last events (participants leaving at shutdown) become session
    // events: let the dispatcher write them before the pool closes. It ends
    // with the SFU's event stream.
    if tokio::time::timeout(std::time::Duration::from_secs(10), dispatch)
        .await
        .is_err()
    {
        tracing::warn!("session events still being written at shutdown; some may be missing");
    }
    // The calls placed here can be placed elsewhere at once.
    node.release_all(&store).await;
    node.leave(&store).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
