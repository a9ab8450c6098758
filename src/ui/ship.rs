//! Build progress and the releases table.

use super::{Format, Ui, table};
use crate::build::{BuildEvent, BuildEvents};
use crate::report::ReleasesReport;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

impl Ui {
    /// One live line per building service on a terminal (its current step); plain lines
    /// otherwise; every line of the builder's output with `-v`.
    pub fn build_events(&self) -> BuildEvents {
        let ui = *self;
        let tty = std::io::stderr().is_terminal() && !ui.quiet;
        let bars: Arc<Mutex<HashMap<String, ProgressBar>>> = Arc::default();
        Arc::new(move |event| match event {
            BuildEvent::Present { service, image } => ui.detail(format!("service {service}: {image} is built already")),
            BuildEvent::Started { service, image } => {
                if tty && !ui.verbose {
                    let bar = ProgressBar::new_spinner().with_message(format!("building {service} ({image})"));
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.lock().unwrap_or_else(|e| e.into_inner()).insert(service, bar);
                } else {
                    ui.line(format!("+ build {service} ({image})"));
                }
            }
            BuildEvent::Step { service, step } => {
                if let Some(bar) = bars.lock().unwrap_or_else(|e| e.into_inner()).get(&service) {
                    bar.set_message(format!("building {service}: {step}"));
                }
            }
            BuildEvent::Output { service, line } => ui.detail(format!("  {service} | {line}")),
            BuildEvent::Built { service, image, secs } => {
                if let Some(bar) = bars.lock().unwrap_or_else(|e| e.into_inner()).remove(&service) {
                    bar.finish_and_clear();
                    ui.line(format!("+ build {service} ({image})"));
                }
                ui.note(format!("built {image} in {secs:.1}s"));
            }
        })
    }

    /// `fleet releases`: per service, newest first, the running one marked.
    pub fn releases(&self, r: &ReleasesReport, format: Format) {
        if format == Format::Json {
            self.json(&serde_json::to_value(r).unwrap_or_default());
            return;
        }
        if r.releases.is_empty() {
            self.line(format!("Stage {} has no releases on its servers.", r.stage));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .releases
            .iter()
            .map(|row| {
                let mut mark = Vec::new();
                if row.current {
                    mark.push("current");
                }
                if row.in_file {
                    mark.push("file");
                }
                vec![
                    row.service.clone(),
                    row.version.clone(),
                    row.created.clone(),
                    mark.join(", "),
                    row.servers.join(", "),
                ]
            })
            .collect();
        self.line(table(&["SERVICE", "RELEASE", "CREATED", "", "SERVERS"], &rows));
    }
}
