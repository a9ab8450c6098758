//! Terraform-style plan lines: the same text before (`--dry-run`) and during a run.

use super::{Action, Plan};
use serde::Serialize;

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
    }
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
        for a in &plan.actions {
            match a {
                Action::CreateNetwork { .. } | Action::CreateVolume { .. } | Action::CreateContainer { .. } => {
                    s.add += 1
                }
                Action::StartContainer { .. } | Action::StopContainer { .. } => s.change += 1,
                Action::RecreateContainer { .. } => s.replace += 1,
                Action::RemoveContainer { .. } | Action::RemoveNetwork { .. } | Action::RemoveVolume { .. } => {
                    s.destroy += 1
                }
            }
        }
        for line in &plan.infra {
            match line.split(' ').next() {
                Some("+") => s.add += 1,
                Some("-/+") => s.replace += 1,
                Some("-") => s.destroy += 1,
                _ => s.change += 1,
            }
        }
        s
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
