//! `certfleet responder`: an HTTP-01 responder for another node, answering from the control
//! plane's Redis mirror. It only reads keys under the prefix, holds the live tokens in memory
//! (so requests never reach Redis), and gives every other request the constant 404.

use std::time::Duration;

use certfleet_solvers::LiveTokens;
use certfleet_solvers::mirror::{self, RedisReader, RedisSettings};
use clap::Args;
use tokio::sync::watch;

use crate::CliError;
use crate::server::shutdown_signal;

#[derive(Debug, Args)]
#[command(
    after_help = "The control plane writes the mirror when its http-01 solver has \
`redis = { url = \"redis://HOST:6379\" }` (docs/configuration.md). Run one responder per node \
behind the load balancer that receives port 80 for your names:\n  certfleet responder --redis \
redis://10.0.0.5:6379 --listen 0.0.0.0:80\nPrefix and URL must match the control plane's."
)]
pub struct ResponderArgs {
    /// Redis URL of the control plane's mirror, `redis://[:PASSWORD@]HOST:PORT[/DB]`.
    #[arg(
        long,
        env = "CERTFLEET_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    redis: String,
    /// Address to answer HTTP-01 requests on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Key prefix of the mirror.
    #[arg(long, value_name = "PREFIX", default_value = mirror::DEFAULT_PREFIX)]
    prefix: String,
    /// Milliseconds between full reloads from Redis (changes also arrive at once through the
    /// mirror's channel; reloads catch keys removed without a message, such as a FLUSHALL).
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    resync_ms: u64,
}

pub async fn run(args: ResponderArgs) -> Result<(), CliError> {
    crate::init_logs();
    mirror::check_prefix("--prefix", &args.prefix)
        .map_err(|e| CliError::with_code(2, e.to_string()))?;
    if args.resync_ms == 0 {
        return Err(CliError::with_code(2, "--resync-ms must be at least 1"));
    }
    let listen: std::net::SocketAddr = args.listen.parse().map_err(|_| {
        CliError::with_code(
            2,
            format!(
                "--listen {:?} is not an address:port such as 0.0.0.0:80",
                args.listen
            ),
        )
    })?;
    let settings = RedisSettings {
        url: args.redis.clone(),
        prefix: args.prefix.clone(),
        ttl: Duration::from_secs(1),
    };
    let reader = RedisReader::new(settings, Duration::from_millis(args.resync_ms));
    let live = LiveTokens::new();
    let loaded = reader
        .load(&live)
        .await
        .map_err(|e| CliError::failure(format!("{} ({})", e, mirror::redact(&args.redis))))?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| CliError::failure(format!("binding --listen {listen}: {e}")))?;
    tracing::info!(%listen, redis = %mirror::redact(&args.redis), prefix = %args.prefix, live = loaded, "certfleet responder is running");
    let (stop, stopped) = watch::channel(false);
    let follow = tokio::spawn(reader.run(live.clone(), stopped.clone()));
    let router = certfleet_solvers::responder::router(live);
    let mut serve_stop = stopped.clone();
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        let _ = serve_stop.wait_for(|s| *s).await;
    });
    let served = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    let _ = stop.send(true);
    let _ = follow.await;
    match served.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::failure(format!("responder: {e}"))),
        Err(e) => Err(CliError::failure(format!("responder task: {e}"))),
    }
}
