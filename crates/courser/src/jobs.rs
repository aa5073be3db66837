//! `courser jobs list|stat|pause|resume|destroy`: the jobs plugin's RPC
//! (`jobs.v1`, protobuf) from the command line, as a table like `courser workers`.

use crate::ConfigArgs;
use anyhow::Context as _;
use courser_jobs::proto;
use prost::Message;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Action {
    /// Every pipeline with its driver, queue, state and counts.
    List,
    /// The same as list.
    Stat,
    /// Stop consuming the named pipelines (jobs keep being accepted).
    Pause,
    /// Start consuming the named pipelines again.
    Resume,
    /// Stop and remove the named pipelines.
    Destroy,
}

fn table(stats: &[proto::Stat]) -> String {
    let mut out = String::from("Jobs pipelines:\n");
    out.push_str(&format!(
        "{:<20}  {:<10}  {:<24}  {:<8}  {:>8}  {:>8}  {:>8}  {:>8}\n",
        "PIPELINE", "DRIVER", "QUEUE", "STATE", "PRIORITY", "ACTIVE", "DELAYED", "RESERVED"
    ));
    for s in stats {
        out.push_str(&format!(
            "{:<20}  {:<10}  {:<24}  {:<8}  {:>8}  {:>8}  {:>8}  {:>8}\n",
            s.pipeline,
            s.driver,
            s.queue,
            if s.ready { "active" } else { "paused" },
            s.priority,
            s.active,
            s.delayed,
            s.reserved
        ));
    }
    out
}

pub(crate) fn run(args: &ConfigArgs, action: Action, pipelines: Vec<String>) -> anyhow::Result<()> {
    let listen = crate::control::rpc_listen(args)?;
    crate::control::runtime()?.block_on(async move {
        let mut c = crate::control::client(&listen).await?;
        let proto_flag = courser_frame_flags::PROTO;
        match action {
            Action::List | Action::Stat => {
                let body = c.call("jobs.Stat", proto_flag, &[]).await?;
                let stats = proto::Stats::decode(body.as_ref())
                    .context("jobs.Stat answered something that is not a jobs.v1.Stats message")?;
                print!("{}", table(&stats.stats));
            }
            Action::Pause | Action::Resume | Action::Destroy => {
                if pipelines.is_empty() {
                    anyhow::bail!(
                        "name the pipelines, e.g. `courser jobs {} -c .rr.yaml emails`",
                        format!("{action:?}").to_lowercase()
                    );
                }
                let method = match action {
                    Action::Pause => "jobs.Pause",
                    Action::Resume => "jobs.Resume",
                    _ => "jobs.Destroy",
                };
                let msg = proto::Pipelines {
                    pipelines: pipelines.clone(),
                }
                .encode_to_vec();
                c.call(method, proto_flag, &msg).await?;
                println!("{method}: {}", pipelines.join(", "));
            }
        }
        Ok(())
    })
}

mod courser_frame_flags {
    /// The protobuf codec bit (spec §1.2).
    pub(super) const PROTO: u8 = 0x80;
}
