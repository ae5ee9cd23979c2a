//! The local gateway as a process, for load tests against any running service:
//! `cargo run --release -p items-local-gateway --example local_gateway -- CONFIG BACKEND_URL [PORT] [WORKERS]`
//! (e.g. `openapi/gateway/dev-europe-west1.yaml http://127.0.0.1:8081 8080 1`). Logs go to stdout
//! unless `LOCAL_GATEWAY_LOG=off`. Ctrl-C stops it.

use std::net::{Ipv4Addr, SocketAddr};

/// mimalloc rather than glibc's allocator, as the service: glibc's malloc and free were 14% of the
/// gateway's CPU samples under `cargo xtask bench --through-gateway` (`perf record`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use items_local_gateway::{GatewayConfig, LocalGateway, LogSink};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: local_gateway CONFIG BACKEND_URL [PORT] [WORKERS]";
    let config = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let backend = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let port: u16 = args.next().map_or(Ok(8080), |p| p.parse())?;
    let workers: usize = args.next().map_or(Ok(1), |w| w.parse())?;
    let mut cfg = GatewayConfig::new(config, backend);
    cfg.listen = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    cfg.workers = workers;
    if std::env::var("LOCAL_GATEWAY_LOG").is_ok_and(|v| v == "off") {
        cfg.log = LogSink::Off;
    }
    let gateway = LocalGateway::start(cfg).await?;
    eprintln!("gateway: {}", gateway.url());
    tokio::signal::ctrl_c().await?;
    gateway.stop().await;
    Ok(())
}
