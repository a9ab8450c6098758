//! `providers { … }` and `server "name" { … }`: where a remote stage runs.

use super::Config;
use super::diagnostic::{ConfigError, suggest};
use super::reader::{Reader, children, normalize, unknown_node};
use crate::model::{DnsNames, DnsProvider, Server, ServerProvider, SshSettings};
use kdl::{KdlNode, KdlValue};
use std::path::PathBuf;

const SERVER_NODES: &[&str] =
    &["provider", "plan", "disk", "disk-size", "ssh-key", "ssh", "address", "services", "dns"];
const PROVIDERS: &[&str] = &["sakura-cloud", "cloudflare", "sakura-dns"];
const DEFAULT_OS: &str = "ubuntu-24.04";
const DEFAULT_SSH_KEY: &str = "~/.ssh/id_ed25519.pub";

impl Reader<'_> {
    /// `server "x"` in a stage: a reference to a top-level server, or an inline definition.
    pub(super) fn stage_server(&mut self, config: &Config, node: &KdlNode) -> Option<Server> {
        let entry = self.args(node).first().copied();
        let Some(entry) = entry else {
            self.error(node.span(), "`server` needs a name, e.g. server \"app-1\"");
            return None;
        };
        let name = self.plain_string(entry)?;
        if node.children().is_some() {
            return self.server(config, &name, node);
        }
        let defined = config.doc.nodes().iter().find(|n| {
            n.name().value() == "server"
                && n.entries().first().and_then(|e| e.value().as_string()) == Some(name.as_str())
        });
        match defined {
            Some(def) => self.server(config, &name, def),
            None => {
                self.push(
                    ConfigError::new(self.src, entry.span(), format!("server `{name}` is not defined"))
                        .label("undefined server")
                        .help(format!(
                            "define it at the top level or inline: server \"{name}\" {{ provider \"sakura-cloud\" }}"
                        )),
                );
                None
            }
        }
    }

    fn server(&mut self, config: &Config, name: &str, node: &KdlNode) -> Option<Server> {
        let zone = self.provider_zone(config);
        let mut provider_name: Option<(String, miette::SourceSpan)> = None;
        let (mut core, mut memory_gb, mut disk_gb) = (1u32, 1u32, 20u32);
        let mut os = DEFAULT_OS.to_string();
        let mut ssh_key = None;
        let mut address = None;
        let mut ssh = SshSettings { user: String::new(), port: 22, identity: None };
        let mut services = Vec::new();
        let mut dns = None;
        for child in children(node) {
            match child.name().value() {
                "provider" => {
                    let span = child.span();
                    provider_name = self.one_string(child).map(|p| (p, span));
                }
                "plan" => self.plan(child, &mut core, &mut memory_gb),
                "disk" => {
                    self.check_props(child, &["size", "os"]);
                    if let Some(e) = self.prop(child, "size") {
                        disk_gb = self.integer(e, 20, 4096, "disk size (GB)").map_or(disk_gb, |v| v as u32);
                    }
                    if let Some(e) = self.prop(child, "os") {
                        os = self.string(e).unwrap_or(os);
                    }
                }
                "disk-size" => {
                    if let Some(e) = self.one_arg(child) {
                        disk_gb = self.integer(e, 20, 4096, "disk size (GB)").map_or(disk_gb, |v| v as u32);
                    }
                }
                "ssh-key" => ssh_key = self.one_string(child).map(|p| self.path(&p)),
                "ssh" => {
                    self.check_props(child, &["user", "port", "identity"]);
                    if let Some(e) = self.prop(child, "user") {
                        ssh.user = self.string(e).unwrap_or_default();
                    }
                    if let Some(e) = self.prop(child, "port") {
                        ssh.port = self.integer(e, 1, 65535, "port").map_or(22, |v| v as u16);
                    }
                    if let Some(e) = self.prop(child, "identity") {
                        ssh.identity = self.string(e).map(|p| self.path(&p));
                    }
                }
                "address" => address = self.one_string(child),
                "dns" => dns = self.dns(config, name, child),
                "services" => {
                    self.check_props(child, &[]);
                    services = self.args(child).into_iter().filter_map(|e| self.plain_string(e)).collect();
                }
                _ => self.push(unknown_node(self.src, child, &format!("in server `{name}`"), SERVER_NODES)),
            }
        }
        let provider = match provider_name.as_ref().map(|(p, s)| (p.as_str(), *s)) {
            Some(("host", span)) => {
                let Some(address) = address else {
                    self.error(span, format!("server `{name}` uses provider \"host\" and needs an `address`"));
                    return None;
                };
                ServerProvider::Host { address }
            }
            Some(("sakura-cloud", span)) => {
                let Some(zone) = zone else {
                    self.push(
                        ConfigError::new(self.src, span, "provider `sakura-cloud` needs a zone")
                            .help("declare it: providers { sakura-cloud zone=\"tk1a\" }"),
                    );
                    return None;
                };
                ServerProvider::SakuraCloud {
                    zone,
                    core,
                    memory_gb,
                    disk_gb,
                    os,
                    ssh_public_key: ssh_key.unwrap_or_else(|| self.path(DEFAULT_SSH_KEY)),
                }
            }
            Some((other, span)) => {
                let mut err = ConfigError::new(self.src, span, format!("unknown provider `{other}`"));
                err = err.help(
                    suggest(other, ["sakura-cloud", "host"])
                        .unwrap_or_else(|| "use \"sakura-cloud\" or \"host\"".into()),
                );
                self.push(err);
                return None;
            }
            None => {
                self.push(
                    ConfigError::new(self.src, node.span(), format!("server `{name}` needs a provider"))
                        .help("add `provider \"sakura-cloud\"` or, for a machine you bring, `provider \"host\"` and `address \"…\"`"),
                );
                return None;
            }
        };
        if ssh.user.is_empty() {
            // Sakura's public Ubuntu archives log in as `ubuntu`; a brought host as root.
            ssh.user = match &provider {
                ServerProvider::SakuraCloud { os, .. } if os.starts_with("ubuntu") => "ubuntu".into(),
                _ => "root".into(),
            };
        }
        Some(Server { name: name.to_string(), provider, ssh, services, dns })
    }

    /// `plan core=4 memory=8` or FleetFlow's `plan "4core-8gb"`, within what any plan offers.
    fn plan(&mut self, node: &KdlNode, core: &mut u32, memory_gb: &mut u32) {
        self.check_props(node, &["core", "memory"]);
        if let Some(e) = self.prop(node, "core") {
            *core = self.integer(e, 1, MAX_CORES.into(), "core count").map_or(*core, |v| v as u32);
        }
        if let Some(e) = self.prop(node, "memory") {
            *memory_gb = self.integer(e, 1, MAX_MEMORY_GB.into(), "memory (GB)").map_or(*memory_gb, |v| v as u32);
        }
        if let Some(e) = self.args(node).first().copied() {
            let Some(text) = self.string(e) else { return };
            let parsed = text
                .to_lowercase()
                .split_once("core-")
                .and_then(|(c, m)| Some((c.parse().ok()?, m.strip_suffix("gb")?.parse().ok()?)));
            match parsed {
                Some((c, m)) if (1..=MAX_CORES).contains(&c) && (1..=MAX_MEMORY_GB).contains(&m) => {
                    (*core, *memory_gb) = (c, m)
                }
                Some((c, m)) => self.push(
                    ConfigError::new(self.src, e.span(), format!("plan `{text}` is out of range ({c} cores, {m} GB)"))
                        .label(format!("cores must be 1-{MAX_CORES}, memory 1-{MAX_MEMORY_GB} GB")),
                ),
                None => self.push(
                    ConfigError::new(self.src, e.span(), format!("cannot read plan `{text}`"))
                        .help("write `plan core=4 memory=8` or `plan \"4core-8gb\"`"),
                ),
            }
        }
    }

    /// The zone of `providers { sakura-cloud zone="tk1a" }` (or the block form).
    fn provider_zone(&mut self, config: &Config) -> Option<String> {
        self.zone_of(config, "sakura-cloud")
    }

    /// The `zone` of one entry of `providers { … }`, in property or block form.
    fn zone_of(&mut self, config: &Config, provider: &str) -> Option<String> {
        let providers = config.doc.nodes().iter().find(|n| n.name().value() == "providers")?;
        let node = children(providers).find(|n| n.name().value() == provider)?;
        if let Some(e) = self.prop(node, "zone") {
            return self.string(e);
        }
        let zone = children(node).find(|n| n.name().value() == "zone")?;
        self.one_string(zone)
    }

    /// `dns { hostname "dev"; aliases "api" "forge" }` in the zone of the DNS provider.
    fn dns(&mut self, config: &Config, server: &str, node: &KdlNode) -> Option<DnsNames> {
        self.check_props(node, &[]);
        let mut hostname = None;
        let mut aliases = Vec::new();
        for child in children(node) {
            match child.name().value() {
                "hostname" => hostname = self.one_string(child),
                "aliases" => {
                    self.check_props(child, &[]);
                    aliases = self.args(child).into_iter().filter_map(|e| self.string(e)).collect();
                }
                _ => self.push(unknown_node(self.src, child, "in `dns`", &["hostname", "aliases"])),
            }
        }
        let Some(hostname) = hostname else {
            self.error(node.span(), format!("`dns` of server `{server}` needs a `hostname`"));
            return None;
        };
        let declared = [("cloudflare", DnsProvider::Cloudflare), ("sakura-dns", DnsProvider::SakuraDns)]
            .into_iter()
            .filter_map(|(name, provider)| Some((provider, self.zone_of(config, name)?)))
            .collect::<Vec<_>>();
        let (provider, zone) = match declared.as_slice() {
            [one] => one.clone(),
            [] => {
                self.push(
                    ConfigError::new(
                        self.src,
                        node.span(),
                        format!("server `{server}` has DNS names but no DNS provider is declared"),
                    )
                    .help(
                        "declare one: providers { cloudflare zone=\"example.com\" } or sakura-dns zone=\"example.com\"",
                    ),
                );
                return None;
            }
            _ => {
                self.push(
                    ConfigError::new(self.src, node.span(), "both cloudflare and sakura-dns are declared")
                        .help("declare the one DNS provider that serves the zone"),
                );
                return None;
            }
        };
        Some(DnsNames { provider, zone, hostname, aliases })
    }

    /// `~/x` and paths relative to the project directory.
    fn path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
            None => normalize(&self.dir.join(p)),
        }
    }
}

/// Checks `providers { … }` once, at load.
pub(super) fn check_providers(config: &Config) -> Vec<ConfigError> {
    let src = &config.source;
    let mut errors = Vec::new();
    for providers in config.doc.nodes().iter().filter(|n| n.name().value() == "providers") {
        for p in children(providers) {
            if !PROVIDERS.contains(&p.name().value()) {
                errors.push(unknown_node(src, p, "in `providers`", PROVIDERS));
            }
            for e in p.entries() {
                let ok = e.name().is_some_and(|n| n.value() == "zone") && matches!(e.value(), KdlValue::String(_));
                if !ok {
                    errors.push(
                        ConfigError::new(src, e.span(), "expected zone=\"…\"")
                            .help("providers { sakura-cloud zone=\"tk1a\" }"),
                    );
                }
            }
        }
    }
    errors
}

/// Sakura's largest plans are well inside these; beyond them a number is a typo.
const MAX_CORES: u32 = 128;
const MAX_MEMORY_GB: u32 = 1024;
