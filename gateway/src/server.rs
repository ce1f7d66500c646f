//! Start-up and shutdown: open the store, start the journal writer and the engine, serve
//! HTTP, recover (then report ready), and on SIGTERM/SIGINT drain requests and flush.

use crate::config::Config;
use crate::http::{self, AppState, HttpLimits, IdempotencyCache, Shared, WsSettings};
use crate::telemetry::export::Exporter;
use crate::ticket_code::TicketCodes;
use anyhow::Context;
use engine::Engine;
use engine::clock::TokioClock;
use engine::ports::JournalHandle;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use storage::{Db, DbOptions, JournalConfig, JournalWriter};

/// Longest the shutdown waits for memtables to be flushed to disk tables.
const STORE_CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit code when the journal fails: recovery from durable state is the only way back.
pub const EXIT_JOURNAL_FAILED: i32 = 70;

/// Runs the server until `shutdown` resolves: start the core (store, journal writer, engine),
/// build the HTTP application, serve, recover in the background (then report ready), and on
/// shutdown drain the connections and stop the core.
pub async fn run(
    config: Config,
    metrics: Exporter,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let settings = connection_settings(&config.http)?;
    let core = Core::start(&config).await?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let ready = Arc::new(AtomicBool::new(false));
    let (app, admin) = application(&config, &core, metrics, ready.clone(), shutdown_rx.clone())?;
    let listener = listen(config.http.bind, config.http.listen_backlog).context("binding")?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    // A plain line on stdout for scripts and tests that start the server on port 0.
    println!("listening on http://{addr}");
    let mut listeners = vec![(listener, app)];
    if let (Some(admin), Some(admin_addr)) = (admin, config.http.admin_addr()) {
        let listener =
            listen(admin_addr, config.http.listen_backlog).context("binding http.admin_bind")?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "admin listening");
        println!("admin listening on http://{addr}");
        listeners.push((listener, admin));
    }
    let recovery = spawn_recovery(core.engine.clone(), ready, started);
    let serve = tokio::spawn(crate::conn::serve(listeners, settings, shutdown_rx));

    shutdown.await;
    tracing::info!("shutting down: draining requests");
    let _ = shutdown_tx.send(true);
    // In-flight requests get the grace period to finish.
    let grace = Duration::from_millis(config.http.shutdown_grace_ms);
    if tokio::time::timeout(grace, serve).await.is_err() {
        tracing::warn!("requests still running after the grace period; stopping anyway");
    }
    recovery.abort();
    core.stop().await?;
    tracing::info!("stopped");
    Ok(())
}

/// What runs underneath the HTTP layer.
struct Core {
    db: Db,
    writer: JournalWriter,
    engine: Engine,
    codes: TicketCodes,
    /// Live listeners of the in-app inboxes.
    inbox_feeds: Arc<crate::inbox::InboxFeeds>,
    /// One-click unsubscribe tokens.
    unsubscribe: crate::unsubscribe::Unsubscribe,
    /// The message templates (also for managers' previews).
    templates: Arc<integrations::mail::templates::Templates>,
    auth: Arc<crate::auth::Auth>,
    /// PayPal's client, when enabled (its webhooks are verified through it).
    paypal: Option<Arc<integrations::paypal::PayPalClient>>,
}

impl Core {
    /// Opens the store, starts the journal writer and the engine, loads the signing keys and
    /// creates the bootstrap admin if configured.
    async fn start(config: &Config) -> anyhow::Result<Self> {
        let storage = &config.storage;
        let db = Db::open(
            &storage.data_dir,
            &DbOptions {
                cache_bytes: storage.cache_bytes,
                worker_threads: storage.worker_threads,
                journal_bytes_max: storage.journal_bytes_max,
            },
        )
        .with_context(|| format!("opening {}", storage.data_dir.display()))?;
        let codes = TicketCodes::load_or_create(&storage.data_dir.join("ticket-signing.key"))
            .context("ticket signing key")?
            .with_verified_cache(config.auth.verified_codes_cached_max);
        let auth = Arc::new(
            crate::auth::Auth::new(&config.auth, &storage.data_dir)
                .map_err(|e| anyhow::anyhow!("auth: {e}"))?,
        );
        let (journal, journal_rx) = JournalHandle::channel(storage.journal_queue_max);
        metrics::gauge!("regengine_journal_queue_max").set(storage.journal_queue_max as f64);
        let journal_config = JournalConfig {
            batch_events_max: storage.batch_events_max,
            batch_wait_max: Duration::from_micros(storage.batch_wait_max_us),
        };
        let writer = JournalWriter::spawn(
            db.clone(),
            journal_rx,
            journal_config,
            Box::new(|failure| {
                let reason = engine::failure::chain(&failure);
                tracing::error!(%reason, "journal failed: exiting so the next start recovers from durable state");
                std::process::exit(EXIT_JOURNAL_FAILED);
            }),
        )?;
        let (providers, paypal) = payment_providers(config)?;
        let inbox_feeds = Arc::new(crate::inbox::InboxFeeds::default());
        let unsubscribe = crate::unsubscribe::Unsubscribe::load_or_create(
            &storage.data_dir.join("unsubscribe.key"),
            &config.outbox.unsubscribe_url,
        )
        .context("unsubscribe key")?;
        // Loaded and checked: a template error stops the start.
        let dir = (!config.outbox.templates_dir.is_empty())
            .then(|| std::path::Path::new(&config.outbox.templates_dir));
        let templates = Arc::new(
            integrations::mail::templates::Templates::load(dir)
                .map_err(|e| anyhow::anyhow!("mail templates: {e}"))?,
        );
        let senders = senders(config, &db, &codes, &inbox_feeds, &unsubscribe, &templates)?;
        db.set_inbox_max(config.outbox.inbox_max);
        db.set_reminder_offsets(config.outbox.reminder_offsets_secs.clone());
        // The read model plans deliveries on the channels that have a sender.
        db.set_channels(engine::notify::Channels::of(
            senders.iter().map(|s| s.channel()),
        ));
        let engine = Engine::start(
            config.engine_config(),
            Arc::new(db.clone()),
            journal,
            Arc::new(TokioClock::new()),
            senders,
            providers,
        )
        .await
        .context("starting the engine")?;
        bootstrap_admin(&engine, &auth, &config.auth.bootstrap_admin_email).await?;
        Ok(Self {
            db,
            writer,
            engine,
            codes,
            inbox_feeds,
            unsubscribe,
            templates,
            auth,
            paypal,
        })
    }

    /// Stops the actors, lets the journal writer finish its queue, and flushes the store.
    /// Every acknowledged write is already durable: the flushes only shorten the next start
    /// and never hold up the exit for long.
    async fn stop(self) -> anyhow::Result<()> {
        let Core {
            db, writer, engine, ..
        } = self;
        engine.shutdown().await;
        drop(engine);
        // The writer stops once the last journal sender is dropped.
        let joined = tokio::task::spawn_blocking(move || writer.join());
        if tokio::time::timeout(Duration::from_secs(5), joined)
            .await
            .is_err()
        {
            tracing::warn!("journal writer still busy at shutdown");
        }
        let closing = db.clone();
        let closed = tokio::task::spawn_blocking(move || closing.close());
        match tokio::time::timeout(STORE_CLOSE_TIMEOUT, closed).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(
                error = %engine::failure::chain(&e),
                "flushing the store at shutdown failed"
            ),
            _ => tracing::warn!(
                "flushing the store at shutdown took too long; the next start replays more"
            ),
        }
        db.persist().context("persisting the store")
    }
}

/// The channels' senders: e-mail through the configured transport, the in-app inbox and (if
/// enabled) SMS, with the templates loaded and checked (a template error stops the start).
fn senders(
    config: &Config,
    db: &Db,
    codes: &TicketCodes,
    inbox_feeds: &Arc<crate::inbox::InboxFeeds>,
    unsubscribe: &crate::unsubscribe::Unsubscribe,
    templates: &Arc<integrations::mail::templates::Templates>,
) -> anyhow::Result<Vec<Arc<dyn engine::notify::Sender>>> {
    use integrations::mail;
    let store: Arc<dyn engine::ports::Store> = Arc::new(db.clone());
    let outbox = &config.outbox;
    let templates = templates.clone();
    let in_app = crate::inbox::InAppSender::new(
        templates.clone(),
        store.clone(),
        Arc::new(db.clone()),
        inbox_feeds.clone(),
        crate::inbox::InAppSettings {
            base_url: outbox.link_base_url.clone(),
            domain: outbox.message_id_domain.clone(),
        },
    );
    let mut senders: Vec<Arc<dyn engine::notify::Sender>> = vec![Arc::new(in_app)];
    if config.webhooks.enabled {
        senders.push(Arc::new(webhook_sender(config, db)?));
    }
    if outbox.twilio.enabled {
        senders.push(Arc::new(sms_sender(config, &templates, &store)?));
    }
    let settings = mail::mime::Settings {
        from: mail::mime::mailbox(&outbox.from).map_err(|e| anyhow::anyhow!("outbox.from: {e}"))?,
        domain: outbox.message_id_domain.clone(),
    };
    let mailer = mail::Mailer::new(
        templates,
        mail_transport(config)?,
        settings,
        &outbox.link_base_url,
    );
    senders.push(Arc::new(crate::notify::MailSender::new(
        mailer,
        store,
        codes.clone(),
        unsubscribe.clone(),
    )));
    // Every send runs on the low-priority send thread.
    let runtime = crate::notify::send_runtime().context("starting the send thread")?;
    Ok(senders
        .into_iter()
        .map(|sender| {
            Arc::new(crate::notify::OnSendThread::new(sender, runtime.clone()))
                as Arc<dyn engine::notify::Sender>
        })
        .collect())
}

/// E-mail's transport, as `outbox.delivery` says.
fn mail_transport(config: &Config) -> anyhow::Result<integrations::mail::Transport> {
    use integrations::mail;
    let outbox = &config.outbox;
    Ok(match outbox.delivery {
        crate::config::Delivery::File => mail::Transport::Spool(mail::spool::Spool::new(
            &config.storage.data_dir.join(&outbox.file),
            outbox.file_bytes_max,
        )),
        crate::config::Delivery::Log => mail::Transport::Log,
        crate::config::Delivery::Sendgrid => {
            let sendgrid = &outbox.sendgrid;
            mail::Transport::SendGrid(
                mail::sendgrid::SendGrid::new(&mail::sendgrid::SendGridSettings {
                    api_base: sendgrid.api_base.clone(),
                    api_key: sendgrid.api_key.clone(),
                    timeout: Duration::from_millis(sendgrid.request_timeout_ms),
                })
                .map_err(|e| anyhow::anyhow!("SendGrid: {e}"))?,
            )
        }
        crate::config::Delivery::Smtp => {
            let smtp = &outbox.smtp;
            let settings = mail::smtp::SmtpSettings {
                host: smtp.host.clone(),
                port: smtp.port,
                security: smtp.security,
                credentials: (!smtp.username.is_empty())
                    .then(|| (smtp.username.clone(), smtp.password.clone())),
                timeout: Duration::from_millis(smtp.timeout_ms),
                pool_max: smtp.pool_max,
            };
            mail::Transport::Smtp(
                mail::smtp::Smtp::new(&settings).map_err(|e| anyhow::anyhow!("SMTP: {e}"))?,
            )
        }
    })
}

/// The webhook channel's sender, with its own retry schedule.
fn webhook_sender(config: &Config, db: &Db) -> anyhow::Result<crate::hooks::WebhookSender> {
    let hooks = &config.webhooks;
    let client = integrations::hooks::HookClient::new(
        Duration::from_millis(hooks.request_timeout_ms),
        hooks.concurrency,
        hooks.allow_private_targets,
    )
    .map_err(|e| anyhow::anyhow!("webhooks: {e}"))?;
    let retention = config.engine_config().notify.retention;
    Ok(crate::hooks::WebhookSender::new(
        db.clone(),
        client,
        hooks.worker_config(retention),
    ))
}

/// The SMS channel's sender, through Twilio.
fn sms_sender(
    config: &Config,
    templates: &Arc<integrations::mail::templates::Templates>,
    store: &Arc<dyn engine::ports::Store>,
) -> anyhow::Result<crate::sms::SmsSender> {
    let outbox = &config.outbox;
    let twilio = &outbox.twilio;
    let client = integrations::twilio::Twilio::new(&integrations::twilio::TwilioSettings {
        api_base: twilio.api_base.clone(),
        account_sid: twilio.account_sid.clone(),
        auth_token: twilio.auth_token.clone(),
        from: twilio.from.clone(),
        status_callback: twilio.status_callback_url.clone(),
        timeout: Duration::from_millis(twilio.request_timeout_ms),
    })
    .map_err(|e| anyhow::anyhow!("Twilio: {e}"))?;
    Ok(crate::sms::SmsSender::new(
        client,
        templates.clone(),
        store.clone(),
        &outbox.link_base_url,
        &outbox.message_id_domain,
    ))
}

/// The payment providers enabled in the configuration, with their outbound clients (and
/// PayPal's, typed, for verifying its webhooks).
fn payment_providers(
    config: &Config,
) -> anyhow::Result<(
    engine::payment::PaymentProviders,
    Option<Arc<integrations::paypal::PayPalClient>>,
)> {
    let mut providers = engine::payment::PaymentProviders::default();
    let stripe = &config.payments.stripe;
    if stripe.enabled {
        let client = integrations::stripe::StripeClient::new(
            &stripe.api_base,
            &stripe.secret_key,
            Duration::from_millis(stripe.request_timeout_ms),
        )
        .map_err(|e| anyhow::anyhow!("payments.stripe: {e}"))?;
        providers = providers.with(engine::payment::Provider::Stripe, Arc::new(client));
    }
    // Always there: whether a bank transfer is offered depends on the event's settings or the
    // server's (`[payments.bank_transfer]`), which the payment route checks.
    providers = providers.with(
        engine::payment::Provider::BankTransfer,
        Arc::new(integrations::bank::BankTransfer),
    );
    let paypal = &config.payments.paypal;
    let paypal = if paypal.enabled {
        let client =
            integrations::paypal::PayPalClient::new(integrations::paypal::PayPalSettings {
                api_base: paypal.api_base.clone(),
                client_id: paypal.client_id.clone(),
                client_secret: paypal.client_secret.clone(),
                webhook_id: paypal.webhook_id.clone(),
                return_url: paypal.return_url.clone(),
                cancel_url: paypal.cancel_url.clone(),
                timeout: Duration::from_millis(paypal.request_timeout_ms),
            })
            .map_err(|e| anyhow::anyhow!("payments.paypal: {e}"))?;
        let client = Arc::new(client);
        providers = providers.with(engine::payment::Provider::Paypal, client.clone());
        Some(client)
    } else {
        None
    };
    Ok((providers, paypal))
}

/// How each enabled provider's webhooks are verified.
fn webhook_settings(
    config: &Config,
    paypal: Option<Arc<integrations::paypal::PayPalClient>>,
) -> http::payments::WebhookSettings {
    let stripe = &config.payments.stripe;
    let sendgrid = &config.outbox.sendgrid;
    let twilio = &config.outbox.twilio;
    http::payments::WebhookSettings {
        paypal,
        twilio: (twilio.enabled && !twilio.status_callback_url.is_empty()).then(|| {
            http::payments::TwilioCallbacks {
                auth_token: twilio.auth_token.clone(),
                url: twilio.status_callback_url.clone(),
            }
        }),
        // Checked when the configuration was loaded.
        sendgrid: integrations::mail::sendgrid::EventVerifier::new(
            &sendgrid.webhook_public_key,
            sendgrid.webhook_tolerance_secs,
        )
        .ok()
        .filter(|_| !sendgrid.webhook_public_key.is_empty()),
        stripe: stripe.enabled.then(|| http::payments::StripeWebhook {
            secrets: stripe
                .webhook_secrets
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            tolerance_secs: stripe.webhook_tolerance_secs,
        }),
    }
}

/// The HTTP application (shared state and limits from the configuration), and the admin
/// listener's when `http.admin_bind` is set.
fn application(
    config: &Config,
    core: &Core,
    metrics: Exporter,
    ready: Arc<AtomicBool>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(axum::Router, Option<axum::Router>)> {
    let websocket = &config.websocket;
    let state = AppState::new(Shared {
        engine: core.engine.clone(),
        codes: core.codes.clone(),
        auth: core.auth.clone(),
        proxies: crate::client_ip::TrustedProxies::parse(
            &config.http.trusted_proxies,
            config.http.forwarded_header,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?,
        limiter: Arc::new(
            crate::ratelimit::Limiter::new(config.rate_limit.clone())
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        db: core.db.clone(),
        inbox_feeds: core.inbox_feeds.clone(),
        unsubscribe: core.unsubscribe.clone(),
        broadcasts_per_day: config.outbox.broadcasts_per_day,
        previews: crate::http::previews::Previews {
            templates: core.templates.clone(),
            base_url: config.outbox.link_base_url.clone(),
            domain: config.outbox.message_id_domain.clone(),
        },
        ready,
        metrics,
        idempotency: Arc::new(IdempotencyCache::new(
            config.idempotency.entries_max,
            config.idempotency.bytes_max,
            Duration::from_secs(config.idempotency.ttl_secs),
        )),
        ws: WsSettings {
            subscriptions_max: websocket.subscriptions_max,
            send_buffer_max: websocket.send_buffer_max,
            push_interval: Duration::from_millis(1000 / u64::from(websocket.pushes_per_sec_max)),
            lag_timeout: Duration::from_millis(websocket.lag_timeout_ms),
        },
        shutdown,
        resets_in_flight: Arc::new(tokio::sync::Semaphore::new(http::RESETS_IN_FLIGHT_MAX)),
        body_read_timeout: Duration::from_millis(config.http.body_read_timeout_ms),
        body_bytes_max: config.http.body_bytes_max,
        statement_bytes_max: config.payments.bank_transfer.statement_bytes_max,
        retry_after_secs: config.http.retry_after_secs,
        webhooks: webhook_settings(config, core.paypal.clone()),
        webhook_rejections: Default::default(),
        hooks: crate::http::webhooks::HookSettings {
            enabled: config.webhooks.enabled,
            allow_private: config.webhooks.allow_private_targets,
        },
    });
    let limits = HttpLimits {
        concurrency_max: config.http.concurrency_max,
        request_timeout: Duration::from_millis(config.http.request_timeout_ms),
        cors_allowed_origins: config.http.cors_allowed_origins.clone(),
        hsts: config.http.hsts,
        compress_above_bytes: config.http.compress_above_bytes,
        metrics_on_api: config.http.admin_addr().is_none(),
    };
    let admin = (!limits.metrics_on_api).then(|| http::admin_app(state.clone()));
    Ok((http::app(state, &limits)?, admin))
}

/// Recovers the engine in the background; `ready` turns true when done.
fn spawn_recovery(
    engine: Engine,
    ready: Arc<AtomicBool>,
    started: Instant,
) -> tokio::task::JoinHandle<()> {
    metrics::gauge!("regengine_ready").set(0.0);
    tokio::spawn(async move {
        match engine.recover().await {
            Ok(events) => {
                ready.store(true, Ordering::Release);
                metrics::gauge!("regengine_ready").set(1.0);
                metrics::gauge!("regengine_recovery_seconds").set(started.elapsed().as_secs_f64());
                tracing::info!(
                    events,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "recovered; ready"
                );
            }
            Err(e) => tracing::error!(error = %e, "recovery failed; not ready"),
        }
    })
}

/// The connection layer's settings; the connection bound is fitted to the open-file limit
/// (raised if it can be), and start-up stops if too few connections would fit.
fn connection_settings(http: &crate::config::HttpConfig) -> anyhow::Result<crate::conn::Settings> {
    let connections_max = crate::conn::fit_descriptor_limit(http.connections_max);
    if connections_max < crate::conn::CONNECTIONS_MIN {
        anyhow::bail!(
            "the open-file limit leaves room for {connections_max} connections (at least {} are \
             needed besides {} descriptors for the store and the rest): raise `ulimit -n`",
            crate::conn::CONNECTIONS_MIN,
            crate::conn::FDS_RESERVED
        );
    }
    if connections_max < http.connections_max {
        tracing::warn!(
            configured = http.connections_max,
            effective = connections_max,
            "the open-file limit cannot hold http.connections_max: fewer connections admitted (raise `ulimit -n`)"
        );
    }
    Ok(crate::conn::Settings {
        bounds: crate::conn::Bounds {
            connections_max,
            connections_per_ip_max: http.connections_per_ip_max,
        },
        deadlines: crate::conn::Deadlines {
            keep_alive: Duration::from_millis(http.keep_alive_timeout_ms),
            header: Duration::from_millis(http.header_read_timeout_ms),
            write: Duration::from_millis(http.write_timeout_ms),
        },
        header_bytes_max: http.header_bytes_max,
        retry_after_secs: http.retry_after_secs,
    })
}

/// Environment variable holding the first admin's password (never a config file); or
/// `…_FILE` naming a file that holds it (a container secret; its final line break dropped).
pub const BOOTSTRAP_PASSWORD_ENV: &str = "REGENGINE_BOOTSTRAP_ADMIN_PASSWORD";

/// The bootstrap password from the environment or the file the environment names.
fn bootstrap_password() -> anyhow::Result<Option<String>> {
    if let Ok(password) = std::env::var(BOOTSTRAP_PASSWORD_ENV) {
        return Ok(Some(password));
    }
    let Ok(path) = std::env::var(format!("{BOOTSTRAP_PASSWORD_ENV}_FILE")) else {
        return Ok(None);
    };
    let password = crate::config::load::read_secret(std::path::Path::new(&path))
        .with_context(|| format!("{BOOTSTRAP_PASSWORD_ENV}_FILE: reading {path}"))?;
    Ok(Some(password))
}

/// Creates the first admin account if configured and missing. An existing account with that
/// e-mail is left alone (it is never promoted: someone else may have signed up with it).
async fn bootstrap_admin(
    engine: &Engine,
    auth: &crate::auth::Auth,
    email: &str,
) -> anyhow::Result<()> {
    if email.is_empty() {
        return Ok(());
    }
    let Some(password) = bootstrap_password()? else {
        tracing::warn!(
            email,
            "auth.bootstrap_admin_email is set but neither {BOOTSTRAP_PASSWORD_ENV} nor \
             {BOOTSTRAP_PASSWORD_ENV}_FILE is: no admin created"
        );
        return Ok(());
    };
    if let Some(user) = engine
        .user_by_email(email)
        .context("looking up the bootstrap admin")?
    {
        if !user.has_role(engine::accounts::Role::Admin) {
            tracing::error!(
                email,
                "bootstrap admin e-mail belongs to a non-admin account; not promoting it"
            );
        }
        return Ok(());
    }
    if password.chars().count() < crate::auth::PASSWORD_LEN_MIN {
        anyhow::bail!(
            "{BOOTSTRAP_PASSWORD_ENV} must have at least {} characters",
            crate::auth::PASSWORD_LEN_MIN
        );
    }
    let hash = auth
        .hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("hashing the bootstrap password: {e:?}"))?;
    let new = engine::accounts::NewUser::new(
        email,
        "Administrator",
        hash,
        vec![engine::accounts::Role::Admin],
    )
    .map_err(|e| anyhow::anyhow!("auth.bootstrap_admin_email: {e:?}"))?;
    // The operator chose this address: it needs no verification link.
    let user = engine
        .signup(new, None)
        .await
        .context("creating the bootstrap admin")?;
    tracing::info!(user = %user.id, email, "bootstrap admin created");
    Ok(())
}

/// A listening socket on `addr` with the accept queue `backlog` deep (tokio's `bind` uses 1024).
fn listen(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std's and tokio's bind: a restarted server may bind while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
