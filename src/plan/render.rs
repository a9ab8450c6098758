//! Terraform-style plan lines: the same text before (`--dry-run`) and during a run.

use super::{Action, ChangeKind, InfraAction, Leftover, Plan};
use serde::Serialize;

/// What a dry run says of a container an interrupted replacement left (a warning).
pub fn render_leftover(l: &Leftover) -> String {
    format!(
        "service {}: {} was left by an interrupted replacement; `up` removes it ({} serves)",
        l.service, l.container, l.keeps
    )
}

/// `+` add, `~` change, `-/+` replace, `-` destroy.
pub fn render_action(action: &Action) -> String {
    match action {
        Action::CreateNetwork { name } => format!("+ network {name}"),
        Action::CreateVolume { name } => format!("+ volume {name}"),
        Action::CreateContainer { service } => format!("+ container {service}"),
        Action::RecreateContainer { service, reason } => {
            format!("-/+ container {service}: {reason}")
        }
        Action::StartContainer { service } => format!("~ container {service}: start"),
        Action::StopContainer { service } => format!("~ container {service}: stop"),
        Action::RemoveContainer { service, orphan: true } => format!("- container {service} (orphan)"),
        Action::RemoveContainer { service, orphan: false } => format!("- container {service}"),
        Action::RemoveNetwork { name } => format!("- network {name}"),
        Action::RemoveVolume { name } => format!("- volume {name}"),
        Action::CreateProxy { image } => format!("+ proxy ({image})"),
        Action::RecreateProxy { reason } => format!("-/+ proxy: {reason}"),
        Action::StartProxy => "~ proxy: start".into(),
        Action::StopProxy => "~ proxy: stop".into(),
        Action::RemoveProxy => "- proxy".into(),
        Action::ConfigureProxy { routes } if routes.is_empty() => "~ proxy routes: none".into(),
        Action::ConfigureProxy { routes } => format!("~ proxy routes: {}", routes.join(", ")),
    }
}

/// The same symbols for servers and records.
pub fn render_infra(action: &InfraAction) -> String {
    match action {
        InfraAction::CreateServer { server, provider, core, memory_gb, disk_gb, os } => {
            format!("+ server {server} ({provider}, {core} cores, {memory_gb} GB, {disk_gb} GB ssd, {os})")
        }
        InfraAction::PowerOn { server } => format!("~ server {server}: power on"),
        InfraAction::PowerOff { server } => format!("~ server {server}: power off"),
        InfraAction::DeleteServer { server, provider, disks } => {
            format!("- server {server} ({provider}) with {disks} disk(s)")
        }
        InfraAction::CreateRecord { name, kind, content } => format!("+ dns {name} {kind} → {content}"),
        InfraAction::UpdateRecord { name, kind, content, from } => {
            format!("~ dns {name} {kind} → {content} (was {from})")
        }
        InfraAction::DeleteRecord { name, kind } => format!("- dns {name} {kind}"),
        InfraAction::SetAutoSuspend { server, setting: Some(setting) } => {
            format!("~ server {server}: auto-suspend when idle {setting}")
        }
        InfraAction::SetAutoSuspend { server, setting: None } => format!("~ server {server}: auto-suspend removed"),
        InfraAction::CopyImage { server, image, bytes, pull_first } => {
            let size = crate::ui::human_bytes(*bytes);
            match pull_first {
                true => format!("+ image {image} on {server}: pulled there, else copied from this machine ({size})"),
                false => format!("+ image {image} on {server}: copied from this machine ({size})"),
            }
        }
        InfraAction::FormSwarm { manager } => format!("+ swarm on {manager} (its first manager)"),
        InfraAction::JoinSwarm { server, role } => format!("+ node {server}: joins the swarm as {role}"),
        InfraAction::SetNode { server, change } => format!("~ node {server}: {change}"),
        InfraAction::CreateService { service, replicas } => {
            format!("+ service {service} ({replicas} {})", plural(*replicas as u64, "replica"))
        }
        InfraAction::UpdateService { service, reason, order, replicas } => {
            format!(
                "~ service {service}: {reason} (rolling, {order}, {replicas} {})",
                plural(*replicas as u64, "replica")
            )
        }
        InfraAction::ScaleService { service, from, to } => {
            format!("~ service {service}: scale {from} → {to} {}", plural(*to as u64, "replica"))
        }
        InfraAction::RemoveService { service, orphan: true } => format!("- service {service} (orphan)"),
        InfraAction::RemoveService { service, orphan: false } => format!("- service {service}"),
        InfraAction::LeaveSwarm { server } => format!("- node {server}: leaves the swarm"),
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 { word.to_string() } else { format!("{word}s") }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}

impl PlanSummary {
    pub fn of(plan: &Plan) -> Self {
        let mut s = Self::default();
        plan.actions.iter().map(Action::kind).chain(plan.infra.iter().map(InfraAction::kind)).for_each(|k| s.count(k));
        s
    }

    pub fn count(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Add => self.add += 1,
            ChangeKind::Change => self.change += 1,
            ChangeKind::Replace => self.replace += 1,
            ChangeKind::Destroy => self.destroy += 1,
        }
    }
}

impl std::fmt::Display for PlanSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
            self.add, self.change, self.replace, self.destroy
        )
    }
}
