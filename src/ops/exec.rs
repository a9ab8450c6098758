//! `fleet exec`: a command in a service's running container, attached like `docker exec -i`
//! (with a TTY when stdin and stdout are terminals), its exit code passed on.

use super::{Site, Sites, require_service};
use crate::config::Config;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::ui::{self, Ui};
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use std::pin::Pin;
use tokio::io::{AsyncWrite, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub service: String,
    pub command: Vec<String>,
    /// `-T`: never allocate a TTY.
    pub no_tty: bool,
    /// `--index N`: which task of a swarm service (1-based).
    pub index: Option<u32>,
}

/// Runs the command and returns its exit code.
pub async fn exec(config: &Config, spec: &StageSpec, opts: &ExecOptions, ui: &Ui) -> Result<i32> {
    require_service(spec, &opts.service)?;
    if opts.command.is_empty() {
        return Err(Error::usage_help(
            "no command given",
            format!("e.g. fleet exec {} {} -- sh", spec.name, opts.service),
        ));
    }
    if opts.index == Some(0) {
        return Err(Error::usage("--index counts from 1"));
    }
    if opts.index.is_some_and(|i| i != 1) && !spec.is_swarm() {
        return Err(Error::usage(format!(
            "--index picks a task of a swarm service; service `{}` of stage `{}` has one container",
            opts.service, spec.name
        )));
    }
    let sites = Sites::connect(config, spec, ui).await?;
    let result = exec_on(&sites, spec, opts).await;
    sites.close().await;
    result
}

async fn exec_on(sites: &Sites, spec: &StageSpec, opts: &ExecOptions) -> Result<i32> {
    let (site, id) = match spec.is_swarm() {
        true => swarm_task(sites, spec, &opts.service, opts.index.unwrap_or(1)).await?,
        false => {
            let site = sites.of_service(&opts.service)?;
            (site, running_container(&site.engine, &site.spec, &opts.service, &site.label()).await?)
        }
    };
    let tty = !opts.no_tty && ui::interactive();
    attached_exec(&site.engine, &id, &opts.command, tty)
        .await
        .map_err(|e| Error::engine(format!("exec in service {} of stage {}", opts.service, spec.name), e))
}

/// The id of the service's container, which must be running.
pub(crate) async fn running_container(engine: &Engine, spec: &StageSpec, service: &str, place: &str) -> Result<String> {
    // Only the containers: the one list call an exec's round trip needs.
    let containers = engine.containers(&spec.project, Some(&spec.name)).await?;
    match containers.iter().find(|c| c.service == service) {
        Some(c) if c.state.is_running() => Ok(c.id.clone()),
        Some(c) => Err(Error::failed_help(
            format!("service {service} of stage {} is not running ({}) on {place}", spec.name, c.state.label()),
            format!("start it with `fleet up {}` (or `fleet run` a one-off container)", spec.name),
        )),
        None => Err(Error::failed_help(
            format!("service {service} of stage {} has no container on {place}", spec.name),
            format!("run `fleet up {}` first", spec.name),
        )),
    }
}

/// A swarm service's running task `index` (1-based, by slot), on whichever node runs it. Task
/// containers carry fleet's labels and are named `<swarm service>.<slot>.<task id>`.
async fn swarm_task<'a>(sites: &'a Sites, spec: &StageSpec, service: &str, index: u32) -> Result<(&'a Site, String)> {
    let mut tasks = Vec::new();
    for site in &sites.sites {
        for c in site.engine.containers(&spec.project, Some(&spec.name)).await? {
            if c.service == service && c.state.is_running() {
                tasks.push((task_slot(&c.name), site, c.id));
            }
        }
    }
    tasks.sort_by_key(|(slot, _, _)| *slot);
    let count = tasks.len();
    let picked = tasks.into_iter().nth(index as usize - 1);
    picked.map(|(_, site, id)| (site, id)).ok_or_else(|| match count {
        0 => Error::failed_help(
            format!("service {service} of stage {} has no running task", spec.name),
            format!("run `fleet up {}` first", spec.name),
        ),
        n => Error::usage(format!("--index {index}: service {service} of stage {} has {n} running task(s)", spec.name)),
    })
}

/// `app-dev-web.2.x1y2z3` → 2 (unknown slots sort last).
fn task_slot(name: &str) -> u64 {
    name.rsplit('.').nth(1).and_then(|s| s.parse().ok()).unwrap_or(u64::MAX)
}

/// Creates and starts the exec attached to this process's stdio; returns its exit code.
async fn attached_exec(
    engine: &Engine,
    container: &str,
    command: &[String],
    tty: bool,
) -> std::result::Result<i32, bollard::errors::Error> {
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        cmd: Some(command.to_vec()),
        ..Default::default()
    };
    let created = engine.docker.create_exec(container, config).await?;
    let start = StartExecOptions { detach: false, tty, output_capacity: None };
    let StartExecResults::Attached { output, input } = engine.docker.start_exec(&created.id, Some(start)).await? else {
        return Ok(0);
    };
    let _raw = if tty { ui::RawMode::enter().ok() } else { None };
    if tty && let Some((w, h)) = ui::terminal_size() {
        let size = bollard::query_parameters::ResizeExecOptionsBuilder::default().w(w.into()).h(h.into()).build();
        let _ = engine.docker.resize_exec(&created.id, size).await;
    }
    let feeding = tokio::spawn(forward_stdin(input));
    let pumped = pump_output(output).await;
    feeding.abort();
    pumped?;
    Ok(engine.exec_exit_code(&created.id).await? as i32)
}

/// Copies the output frames to stdout and stderr until the command ends.
pub(crate) async fn pump_output(
    mut output: Pin<
        Box<dyn futures_util::Stream<Item = std::result::Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
) -> std::result::Result<(), bollard::errors::Error> {
    while let Some(frame) = output.next().await {
        match frame? {
            LogOutput::StdErr { message } => ui::raw_stderr(&message),
            LogOutput::StdOut { message } | LogOutput::Console { message } => ui::raw_stdout(&message),
            LogOutput::StdIn { .. } => {}
        }
    }
    Ok(())
}

/// This process's stdin to the command; its end closes the command's stdin (`-i` semantics).
/// Read on a thread of its own: a blocked terminal read must never hold the runtime.
pub(crate) async fn forward_stdin(mut input: Pin<Box<dyn AsyncWrite + Send>>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if input.write_all(&chunk).await.is_err() {
            return;
        }
        let _ = input.flush().await;
    }
    let _ = input.shutdown().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn task_slots_come_from_swarm_container_names() {
        assert_eq!(super::task_slot("app-dev-web.2.k3j4h5"), 2);
        assert_eq!(super::task_slot("app-dev-web.10.k3j4h5"), 10);
        assert_eq!(super::task_slot("app-dev-web"), u64::MAX);
    }
}
