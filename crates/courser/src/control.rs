//! `courser workers`, `courser reset` and `courser stop`: clients of the running
//! server's RPC endpoint (`rpc.listen` from the same config file).

use crate::ConfigArgs;
use anyhow::{bail, Context as _};
use courser_config::LoadOptions;
use courser_rpc::informer::WorkerList;
use courser_rpc::RpcClient;
use std::time::Duration;

pub(crate) fn rpc_listen(args: &ConfigArgs) -> anyhow::Result<String> {
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

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

pub(crate) async fn client(listen: &str) -> anyhow::Result<RpcClient> {
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
        live(&mut c, &plugins).await
    })
}

/// Rows for the live view: one per worker, with its plugin.
async fn rows(c: &mut RpcClient, plugins: &[String]) -> anyhow::Result<Vec<[String; 7]>> {
    let names: Vec<String> = if plugins.is_empty() {
        c.call_json("informer.List", &()).await?
    } else {
        plugins.to_vec()
    };
    let mut out = Vec::new();
    for p in &names {
        let list: WorkerList = c.call_json("informer.Workers", p).await?;
        for w in list.workers {
            out.push([
                p.clone(),
                w.pid.to_string(),
                w.status_str.clone(),
                w.num_execs.to_string(),
                human_bytes(w.memory_usage),
                format!("{:.2}", w.cpu_percent),
                age(w.created),
            ]);
        }
    }
    Ok(out)
}

/// `courser workers -i`: a table that refreshes every second (q, Esc or Ctrl+C quits).
async fn live(c: &mut RpcClient, plugins: &[String]) -> anyhow::Result<()> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
    use ratatui::layout::Constraint;
    use ratatui::style::{Modifier, Style};
    use ratatui::widgets::{Block, Row, Table};
    let mut terminal = ratatui::try_init().context("cannot open the terminal for the live view")?;
    let result: anyhow::Result<()> = async {
        loop {
            let data = rows(c, plugins).await?;
            terminal.draw(|f| {
                let header =
                    Row::new(["PLUGIN", "PID", "STATUS", "EXECS", "MEMORY", "CPU%", "AGE"])
                        .style(Style::default().add_modifier(Modifier::BOLD));
                let widths = [
                    Constraint::Length(8),
                    Constraint::Length(9),
                    Constraint::Length(10),
                    Constraint::Length(9),
                    Constraint::Length(11),
                    Constraint::Length(7),
                    Constraint::Length(9),
                ];
                let table = Table::new(data.iter().map(|r| Row::new(r.clone())), widths)
                    .header(header)
                    .block(Block::bordered().title(" courser workers — q to quit "));
                f.render_widget(table, f.area());
            })?;
            // Wait up to a second for a key, then refresh.
            let deadline = std::time::Instant::now() + Duration::from_secs(1);
            while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                if event::poll(left)? {
                    if let Event::Key(k) = event::read()? {
                        let ctrl_c = k.code == KeyCode::Char('c')
                            && k.modifiers.contains(KeyModifiers::CONTROL);
                        if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                            return Ok(());
                        }
                    }
                } else {
                    break;
                }
            }
        }
    }
    .await;
    ratatui::restore();
    result
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
