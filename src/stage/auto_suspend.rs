//! Servers that power themselves off when idle: `auto_suspend idle="2h" after_boot="10m"`.
//!
//! `up` installs a systemd timer on each server; its check, as root on the server, decides
//! whether the server is idle and, after the window, schedules a cancellable `shutdown -h +1`
//! that logs why. No cloud credentials go on the server: the guest powers itself off, which the
//! cloud reports as down (only disks are billed), and `up` boots it as after `--suspend`.
//!
//! Idle means all of: no SSH login session (a terminal in `who`; fleet's own commands open none),
//! no established TCP connection to a port the stage publishes there, no container above 10% CPU,
//! and no `/run/fleetflow/no-auto-suspend`. A boot starts a grace of `after_boot`.

use crate::engine::{Engine, Events};
use crate::error::Result;
use crate::model::{AutoSuspend, StageSpec};
use crate::report::{IdleTimer, IdleWindow};
use crate::ssh::AutoSuspendView;
use crate::ssh::commands::{AUTO_SUSPEND_CONF, AUTO_SUSPEND_STATE};

/// A container above this CPU share (percent of one core) counts as work.
const CPU_PERCENT: u32 = 10;
/// The power-off is scheduled this many minutes ahead, so a login can still cancel it.
const SHUTDOWN_DELAY_MIN: u64 = 1;
/// Bumped when the check or the units change: a server with an older one gets the new one.
const VERSION: u32 = 2;

/// The settings file: what the check reads, and what `up` compares to decide whether to install.
pub fn conf(a: &AutoSuspend, ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "# fleetflow auto-suspend (written by fleet up; remove auto_suspend from the stage to remove it)\n\
         VERSION={VERSION}\nIDLE_SECONDS={}\nAFTER_BOOT_SECONDS={}\nCHECK_SECONDS={}\nPORTS=\"{}\"\nCPU_PERCENT={CPU_PERCENT}\nDELAY_MINUTES={SHUTDOWN_DELAY_MIN}\n",
        a.idle_secs,
        a.after_boot_secs,
        a.check_every_secs(),
        ports.join(" ")
    )
}

/// The check, run by the timer as root. Keeps its state in /run (gone at boot: a boot is a new
/// start) and its reasons in the log.
const CHECK: &str = r#"#!/bin/sh
# fleetflow auto-suspend check: powers this server off once it has been idle for IDLE_SECONDS.
. /etc/fleetflow/auto-suspend.conf
STATE=/run/fleetflow/auto-suspend.state
PENDING=/run/fleetflow/auto-suspend.pending
LOG=/var/log/fleetflow-auto-suspend.log
mkdir -p /run/fleetflow
now=$(date +%s)
up=$(cut -d. -f1 /proc/uptime)
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >>"$LOG"; }
save() { printf 'checked=%s\nidle_since=%s\nbusy=%s\npending=%s\n' "$now" "$1" "$2" "$3" >"$STATE.tmp" && mv "$STATE.tmp" "$STATE"; }
busy=""
if [ -e /run/fleetflow/no-auto-suspend ]; then
    busy="disabled by /run/fleetflow/no-auto-suspend"
elif [ "$up" -lt "$AFTER_BOOT_SECONDS" ]; then
    busy="booted ${up}s ago (grace ${AFTER_BOOT_SECONDS}s)"
elif ! command -v who >/dev/null 2>&1 || ! command -v ss >/dev/null 2>&1; then
    # What cannot be seen is not idle: never power off a server whose use cannot be measured.
    busy="who or ss is missing, so logins and connections cannot be seen"
else
    sessions=$(who | wc -l)
    [ "$sessions" -gt 0 ] && busy="$sessions SSH login session(s)"
    if [ -z "$busy" ]; then
        for p in $PORTS; do
            n=$(ss -Htn state established "( sport = :$p )" 2>/dev/null | wc -l)
            if [ "$n" -gt 0 ]; then busy="$n connection(s) to port $p"; break; fi
        done
    fi
    if [ -z "$busy" ] && command -v docker >/dev/null 2>&1; then
        hot=$(timeout 30 docker stats --no-stream --format '{{.Name}} {{.CPUPerc}}' 2>/dev/null \
            | awk -v t="$CPU_PERCENT" '{ c = $2; sub("%", "", c); if (c + 0 > t) { print $1; exit } }')
        [ -n "$hot" ] && busy="container $hot above ${CPU_PERCENT}% CPU"
    fi
fi
if [ -n "$busy" ]; then
    if [ -e "$PENDING" ]; then
        shutdown -c "fleetflow auto-suspend: $busy" 2>/dev/null || true
        rm -f "$PENDING"
        log "cancelled the pending power-off: $busy"
    fi
    save "" "$busy" ""
    exit 0
fi
since=$(sed -n 's/^idle_since=//p' "$STATE" 2>/dev/null)
[ -n "$since" ] || since=$now
idle=$((now - since))
if [ "$idle" -ge "$IDLE_SECONDS" ] && [ ! -e "$PENDING" ]; then
    reason="idle for ${idle}s: no SSH login session, no connection to ports ${PORTS:-none}, no container above ${CPU_PERCENT}% CPU"
    # The reason is the log's last line, which the next `up` reports.
    if out=$(shutdown -h "+$DELAY_MINUTES" "fleetflow auto-suspend: $reason" 2>&1); then
        touch "$PENDING"
        log "powering off in ${DELAY_MINUTES} min: $reason"
    else
        log "shutdown -h +$DELAY_MINUTES failed ($out)"
        log "powering off now: $reason"
        systemctl poweroff
    fi
fi
pending=""
[ -e "$PENDING" ] && pending=$now
save "$since" "" "$pending"
"#;

const CHECK_PATH: &str = "/usr/local/lib/fleetflow/auto-suspend-check";
const UNIT: &str = "fleetflow-auto-suspend";

/// Writes the settings, the check and the units, then (re)starts the timer. Each file goes
/// through a temporary name, so a run killed half-way never leaves a half-written check.
fn install_script(conf: &str, check_every: u64) -> String {
    let service = format!(
        "[Unit]\nDescription=fleetflow auto-suspend check\n\n[Service]\nType=oneshot\n# A wedged engine must not stop every later check.\nTimeoutStartSec=90\nExecStart={CHECK_PATH}\n"
    );
    let timer = format!(
        "[Unit]\nDescription=fleetflow auto-suspend check every {check_every}s\n\n[Timer]\nOnBootSec={check_every}s\nOnUnitActiveSec={check_every}s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n"
    );
    let write = |path: &str, content: &str, mode: &str| {
        format!(
            "cat >{path}.fleetflow-tmp <<'FLEETFLOW_EOF'\n{content}FLEETFLOW_EOF\nchmod {mode} {path}.fleetflow-tmp && mv {path}.fleetflow-tmp {path}\n"
        )
    };
    format!(
        "set -e\nmkdir -p /etc/fleetflow /usr/local/lib/fleetflow\n{}{}{}{}systemctl daemon-reload\nsystemctl enable {UNIT}.timer >/dev/null 2>&1\nsystemctl restart {UNIT}.timer\necho installed\n",
        write(CHECK_PATH, CHECK, "755"),
        write(&format!("/etc/systemd/system/{UNIT}.service"), &service, "644"),
        write(&format!("/etc/systemd/system/{UNIT}.timer"), &timer, "644"),
        // The settings last: they are what `up` compares, so they only say "installed" once all is.
        write(AUTO_SUSPEND_CONF, conf, "644"),
    )
}

/// Stops the timer, cancels a pending power-off and removes every file.
fn remove_script() -> String {
    format!(
        "systemctl disable --now {UNIT}.timer >/dev/null 2>&1 || true\n\
         if [ -e /run/fleetflow/auto-suspend.pending ]; then shutdown -c 'fleetflow auto-suspend removed' 2>/dev/null || true; fi\n\
         rm -f /etc/systemd/system/{UNIT}.service /etc/systemd/system/{UNIT}.timer {CHECK_PATH} {AUTO_SUSPEND_STATE} /run/fleetflow/auto-suspend.pending {AUTO_SUSPEND_CONF}\n\
         systemctl daemon-reload\necho removed\n"
    )
}

/// The host ports a server's part of the stage publishes: connections to them are activity.
pub fn published_ports(part: &StageSpec) -> Vec<u16> {
    let mut ports: Vec<u16> = part.services.iter().flat_map(|s| s.ports.iter().filter_map(|p| p.host)).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// What `up` must do on one server: None when it already matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Install(String),
    Remove,
}

pub fn decide(desired: Option<&AutoSuspend>, ports: &[u16], view: &AutoSuspendView) -> Option<Change> {
    match (desired, &view.conf) {
        (Some(a), current) => {
            let want = conf(a, ports);
            (current.as_deref() != Some(want.as_str())).then_some(Change::Install(want))
        }
        (None, Some(_)) => Some(Change::Remove),
        (None, None) => None,
    }
}

/// Applies a decided change through the server's engine as root.
pub async fn apply(engine: &Engine, change: &Change, check_every: u64, events: &Events) -> Result<()> {
    match change {
        Change::Install(conf) => {
            engine.run_as_host_root("installing auto-suspend", &install_script(conf, check_every), events).await?
        }
        Change::Remove => engine.run_as_host_root("removing auto-suspend", &remove_script(), events).await?,
    };
    Ok(())
}

/// The stage's setting as `status` reports it.
pub fn window(a: &AutoSuspend) -> IdleWindow {
    IdleWindow {
        idle_seconds: a.idle_secs,
        after_boot_seconds: a.after_boot_secs,
        check_every_seconds: a.check_every_secs(),
    }
}

/// `1h (after boot 10m, checked every 10m)`, as plan steps name it.
pub fn setting(a: &AutoSuspend) -> String {
    crate::ui::idle_window(&window(a))
}

/// The timer of a server that runs, from what it reports: scheduled, kept awake, or idle for how long.
pub fn timer(a: &AutoSuspend, view: &AutoSuspendView) -> IdleTimer {
    if view.conf.is_none() {
        return IdleTimer::NotInstalled;
    }
    let get = |k: &str| view.state.get(k).filter(|v| !v.is_empty());
    let now = view.now;
    if let Some(at) = get("pending").and_then(|v| v.parse::<i64>().ok()) {
        IdleTimer::PoweringOff { in_seconds: (at + SHUTDOWN_DELAY_MIN as i64 * 60 - now).max(0) as u64 }
    } else if let Some(busy) = get("busy") {
        IdleTimer::Busy { reason: busy.clone() }
    } else if let Some(since) = get("idle_since").and_then(|v| v.parse::<i64>().ok()) {
        IdleTimer::Idle {
            idle_for_seconds: (now - since).max(0) as u64,
            suspends_in_seconds: (since + a.idle_secs as i64 - now).max(0) as u64 + SHUTDOWN_DELAY_MIN * 60,
        }
    } else {
        IdleTimer::NoCheckYet
    }
}

/// The log's last line when it says the server powered itself off (read after the next boot).
pub fn suspended_itself(view: &AutoSuspendView) -> Option<&str> {
    let said = view.last_log.contains("powering off in") || view.last_log.contains("powering off now");
    (said && !view.state.contains_key("pending")).then_some(view.last_log.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_period_scales_with_the_window() {
        let a = |idle| AutoSuspend { idle_secs: idle, after_boot_secs: 600 };
        assert_eq!(a(45).check_every_secs(), 15, "a 45 s window acts within a few minutes");
        assert_eq!(a(7200).check_every_secs(), 600, "a 2 h window checks every 10 min");
        assert_eq!(a(1800).check_every_secs(), 300);
    }

    #[test]
    fn up_installs_when_the_settings_differ_and_removes_when_the_stage_drops_them() {
        let a = AutoSuspend { idle_secs: 60, after_boot_secs: 10 };
        let none = AutoSuspendView::default();
        assert!(matches!(decide(Some(&a), &[80], &none), Some(Change::Install(_))));
        let installed = AutoSuspendView { conf: Some(conf(&a, &[80])), ..Default::default() };
        assert_eq!(decide(Some(&a), &[80], &installed), None, "converged: nothing to do");
        assert!(matches!(decide(Some(&a), &[80, 443], &installed), Some(Change::Install(_))));
        assert_eq!(decide(None, &[80], &installed), Some(Change::Remove));
        assert_eq!(decide(None, &[80], &none), None);
    }

    #[test]
    fn status_says_how_long_until_it_suspends() {
        let a = AutoSuspend { idle_secs: 3600, after_boot_secs: 600 };
        let view = |state: &[(&str, &str)]| AutoSuspendView {
            conf: Some(conf(&a, &[])),
            state: state.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            now: 10_000,
            last_log: String::new(),
        };
        let idle = IdleTimer::Idle { idle_for_seconds: 600, suspends_in_seconds: 3060 };
        assert_eq!(timer(&a, &view(&[("idle_since", "9400")])), idle, "10m idle, 51m left (50m + the 1m delay)");
        let busy = IdleTimer::Busy { reason: "1 SSH login session(s)".into() };
        assert_eq!(timer(&a, &view(&[("busy", "1 SSH login session(s)"), ("idle_since", "")])), busy);
        assert_eq!(timer(&a, &view(&[("pending", "9990"), ("busy", "x")])), IdleTimer::PoweringOff { in_seconds: 50 });
        assert_eq!(timer(&a, &view(&[("checked", "9990")])), IdleTimer::NoCheckYet);
        assert_eq!(timer(&a, &AutoSuspendView::default()), IdleTimer::NotInstalled);
        assert_eq!(setting(&a), "1h (after boot 10m, checked every 10m)");
    }

    #[test]
    fn the_view_parses_and_rejects_garbage() {
        let text = "IDLE_SECONDS=60\n---\nchecked=5\nidle_since=3\n---\n100\n---\nlast\n";
        let v = AutoSuspendView::parse(text, "m1").unwrap();
        assert_eq!((v.now, v.state["idle_since"].as_str(), v.last_log.as_str()), (100, "3", "last"));
        assert!(v.conf.is_some());
        assert!(AutoSuspendView::parse("garbage", "m1").is_err());
        assert!(AutoSuspendView::parse("---\n---\nnot a clock\n---\n", "m1").is_err());
        assert_eq!(AutoSuspendView::parse("---\n---\n7\n---\n", "m1").unwrap().conf, None);
    }
}
