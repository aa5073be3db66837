//! `courser workers`, `courser reset` and `courser stop`: clients of the running
//! server's RPC endpoint (`rpc.listen` from the same config file).

use crate::ConfigArgs;
use anyhow::{bail, Context as _};
use courser_config::LoadOptions;
use courser_rpc::informer::WorkerList;
use courser_rpc::RpcClient;
use std::time::Duration;

fn rpc_listen(args: &ConfigArgs) -> anyhow::Result<String> {
    let loaded = courser_config::load(&LoadOptions {
        path: args.config.clone(),
        overrides: args.overrides.clone(),
        dotenv: args.dotenv.clone(),
        env: None,
    })?;
    match loaded.config.rpc {
        Some(rpc) => Ok(rpc.listen),
        None => bail!(
            "{} has no rpc section, so there is no way to reach the server; add `rpc: {{listen: tcp://127.0.0.1:6001}}` and restart it",
            args.config.display()
        ),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn client(listen: &str) -> anyhow::Result<RpcClient> {
    Ok(RpcClient::connect(listen, Duration::from_secs(5)).await?)
}

fn human_bytes(n: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    format!("{:.1} MB", n as f64 / MB)
}

fn age(created_nanos: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let secs = ((now - created_nanos).max(0) / 1_000_000_000) as u64;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, s % 3600 / 60),
    }
}

fn table(plugin: &str, list: &WorkerList) -> String {
    let mut out = format!("Workers of [{plugin}]:\n");
    out.push_str(&format!(
        "{:>8}  {:<9}  {:>8}  {:>10}  {:>6}  {:>8}\n",
        "PID", "STATUS", "EXECS", "MEMORY", "CPU%", "CREATED"
    ));
    for w in &list.workers {
        out.push_str(&format!(
            "{:>8}  {:<9}  {:>8}  {:>10}  {:>6.2}  {:>8}\n",
            w.pid,
            w.status_str,
            w.num_execs,
            human_bytes(w.memory_usage),
            w.cpu_percent,
            age(w.created)
        ));
    }
    out
}

async fn snapshot(c: &mut RpcClient, plugins: &[String]) -> anyhow::Result<String> {
    let names: Vec<String> = if plugins.is_empty() {
        c.call_json("informer.List", &()).await?
    } else {
        plugins.to_vec()
    };
    let mut out = String::new();
    for p in &names {
        let list: WorkerList = c.call_json("informer.Workers", p).await?;
        out.push_str(&table(p, &list));
        out.push('\n');
    }
    Ok(out)
}

pub(crate) fn workers(
    args: &ConfigArgs,
    plugins: Vec<String>,
    interactive: bool,
) -> anyhow::Result<()> {
    let listen = rpc_listen(args)?;
    runtime()?.block_on(async move {
        let mut c = client(&listen).await?;
        if !interactive {
            print!("{}", snapshot(&mut c, &plugins).await?);
            return Ok(());
        }
        loop {
            let text = snapshot(&mut c, &plugins).await?;
            // Clear the screen and redraw; Ctrl+C ends it.
            println!("\x1b[2J\x1b[H{text}(refreshing every second; Ctrl+C to quit)");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

pub(crate) fn reset(args: &ConfigArgs, plugins: Vec<String>) -> anyhow::Result<()> {
    let listen = rpc_listen(args)?;
    runtime()?.block_on(async move {
        let mut c = client(&listen).await?;
        let names: Vec<String> = if plugins.is_empty() {
            c.call_json("resetter.List", &()).await?
        } else {
            plugins
        };
        for p in &names {
            let ok: bool = c.call_json("resetter.Reset", p).await?;
            if !ok {
                bail!("the server did not reset {p}");
            }
            println!("{p}: workers replaced");
        }
        Ok(())
    })
}

pub(crate) fn stop(args: &ConfigArgs) -> anyhow::Result<()> {
    let listen = rpc_listen(args)?;
    runtime()?.block_on(async move {
        let mut c = client(&listen).await?;
        let _: bool = c.call_json("courser.Stop", &()).await?;
        println!("the server is stopping");
        Ok(())
    })
}
