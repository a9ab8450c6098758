//! `providers { … }` and `server "name" { … }`: where a remote stage runs.

use super::Config;
use super::diagnostic::{ConfigError, suggest};
use super::reader::{Reader, children, normalize, unknown_node};
use crate::model::{DnsNames, DnsProvider, Server, ServerProvider, SshKey, SshSettings, StartupScript};
use kdl::{KdlNode, KdlValue};
use std::path::PathBuf;

const SERVER_NODES: &[&str] = &[
    "provider",
    "plan",
    "disk",
    "disk-size",
    "os",
    "ssh-key",
    "ssh",
    "address",
    "services",
    "dns",
    "dns-aliases",
    "tags",
    "startup-script",
    "init-script-vars",
    "deploy-path",
    "role",
];

/// FleetFlow's other spellings of server children (its parser accepted them all).
fn canonical(name: &str) -> &str {
    match name {
        "disk_size" => "disk-size",
        "archive" => "os",
        "ssh_keys" | "ssh-keys" | "ssh_key" => "ssh-key",
        "startup_script" | "init_script" | "init-script" => "startup-script",
        "init_script_vars" => "init-script-vars",
        "dns_alias" | "dns_aliases" | "dns-alias" => "dns-aliases",
        "deploy_path" => "deploy-path",
        other => other,
    }
}
const PROVIDERS: &[&str] = &["sakura-cloud", "cloudflare", "sakura-dns"];
const DEFAULT_OS: &str = "ubuntu-24.04";
const DEFAULT_SSH_KEY: &str = "~/.ssh/id_ed25519.pub";

/// A server block being read: each child sets its field; the provider is resolved last.
struct ServerDraft {
    provider: Option<(String, miette::SourceSpan)>,
    core: u32,
    memory_gb: u32,
    disk_gb: u32,
    os: String,
    ssh_key: Option<SshKey>,
    address: Option<String>,
    ssh: SshSettings,
    services: Vec<String>,
    dns: Option<DnsNames>,
    dns_aliases: Option<(Vec<String>, miette::SourceSpan)>,
    tags: Vec<String>,
    scripts: Vec<String>,
    script_vars: Vec<(String, String)>,
    deploy_path: Option<String>,
    manager: bool,
}

impl ServerDraft {
    fn new() -> Self {
        ServerDraft {
            provider: None,
            core: 1,
            memory_gb: 1,
            disk_gb: 20,
            os: DEFAULT_OS.to_string(),
            ssh_key: None,
            address: None,
            ssh: SshSettings { user: String::new(), port: 22, identity: None },
            services: Vec::new(),
            dns: None,
            dns_aliases: None,
            tags: Vec::new(),
            scripts: Vec::new(),
            script_vars: Vec::new(),
            deploy_path: None,
            manager: false,
        }
    }
}

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
        let mut d = ServerDraft::new();
        for child in children(node) {
            self.server_field(config, name, &mut d, child);
        }
        let (tags_empty, scripts_empty) = (d.tags.is_empty(), d.scripts.is_empty());
        let provider = self.server_provider(name, node, zone, &mut d)?;
        if let ServerProvider::Host { .. } = provider {
            let sakura_only = [("tags", !tags_empty), ("startup-script", !scripts_empty)];
            for (what, set) in sakura_only {
                if set {
                    self.error(
                        node.span(),
                        format!(
                            "server `{name}` uses provider \"host\": `{what}` applies only to servers fleet creates"
                        ),
                    );
                }
            }
        }
        let ServerDraft { mut ssh, services, mut dns, dns_aliases, deploy_path, manager, .. } = d;
        if let Some((aliases, span)) = dns_aliases {
            match &mut dns {
                Some(DnsNames { aliases: existing, .. }) => existing.extend(aliases),
                None => dns = self.dns_names(config, name, span, name.to_string(), aliases),
            }
        }
        if ssh.user.is_empty() {
            // Sakura's public Ubuntu archives log in as `ubuntu`; a brought host as root.
            ssh.user = match &provider {
                ServerProvider::SakuraCloud { os, .. } if os.starts_with("ubuntu") => "ubuntu".into(),
                _ => "root".into(),
            };
        }
        let deploy_path = deploy_path.unwrap_or_else(|| format!("/srv/fleet/{}", config.project));
        Some(Server { name: name.to_string(), provider, ssh, services, dns, deploy_path, manager })
    }

    /// One child of a server block into the draft.
    fn server_field(&mut self, config: &Config, name: &str, d: &mut ServerDraft, child: &KdlNode) {
        match canonical(child.name().value()) {
            "provider" => {
                let span = child.span();
                d.provider = self.one_string(child).map(|p| (p, span));
            }
            "plan" => self.plan(child, &mut d.core, &mut d.memory_gb),
            "disk" => {
                self.check_props(child, &["size", "os"]);
                if let Some(e) = self.prop(child, "size") {
                    d.disk_gb = self.integer(e, 20, 4096, "disk size (GB)").map_or(d.disk_gb, |v| v as u32);
                }
                if let Some(e) = self.prop(child, "os") {
                    d.os = self.string(e).unwrap_or(std::mem::take(&mut d.os));
                }
            }
            "disk-size" => {
                if let Some(e) = self.one_arg(child) {
                    d.disk_gb = self.integer(e, 20, 4096, "disk size (GB)").map_or(d.disk_gb, |v| v as u32);
                }
            }
            "os" => d.os = self.one_string(child).unwrap_or(std::mem::take(&mut d.os)),
            "ssh-key" => d.ssh_key = self.one_string(child).map(|k| self.ssh_key(&k)),
            "tags" => self.server_tags(child, &mut d.tags),
            "startup-script" => {
                self.check_props(child, &[]);
                d.scripts.extend(self.args(child).into_iter().filter_map(|e| self.string(e)));
            }
            "init-script-vars" => d.script_vars = self.key_values(child, true),
            "dns-aliases" => {
                self.check_props(child, &[]);
                let names = self.args(child).into_iter().filter_map(|e| self.string(e)).collect();
                d.dns_aliases = Some((names, child.span()));
            }
            "role" => match self.one_string(child).as_deref() {
                Some("manager") => d.manager = true,
                Some("worker") | None => {}
                Some(other) => self.push(
                    ConfigError::new(self.src, child.span(), format!("unknown role `{other}`"))
                        .help("use \"manager\" or \"worker\" (swarm stages)"),
                ),
            },
            "deploy-path" => {
                if let Some(p) = self.deploy_path(child) {
                    d.deploy_path = Some(p);
                }
            }
            "ssh" => self.ssh_settings(child, &mut d.ssh),
            "address" => d.address = self.one_string(child),
            "dns" => d.dns = self.dns(config, name, child),
            "services" => {
                self.check_props(child, &[]);
                d.services = self.args(child).into_iter().filter_map(|e| self.plain_string(e)).collect();
            }
            _ => self.push(unknown_node(self.src, child, &format!("in server `{name}`"), SERVER_NODES)),
        }
    }

    /// `tags "a" "b"`: added to the server's tags, except the ones fleet finds its servers by.
    fn server_tags(&mut self, child: &KdlNode, tags: &mut Vec<String>) {
        self.check_props(child, &[]);
        for e in self.args(child) {
            let Some(t) = self.string(e) else { continue };
            // fleet finds its servers by `fleetflow:<project>:<stage>[:<server>]`.
            if t == "fleetflow" || t.matches(':').count() >= 2 && t.starts_with("fleetflow:") {
                self.push(
                    ConfigError::new(self.src, e.span(), format!("tag `{t}` is one fleet uses to find its servers"))
                        .help("choose another tag; fleet adds its own ownership tags itself"),
                );
            } else {
                tags.push(t);
            }
        }
    }

    /// `deploy-path "/srv/app"`: an absolute path on the server, without a trailing slash.
    fn deploy_path(&mut self, child: &KdlNode) -> Option<String> {
        let p = self.one_string(child)?;
        if p.starts_with('/') {
            return Some(p.trim_end_matches('/').to_string());
        }
        self.error(child.span(), format!("deploy-path `{p}` must be an absolute path on the server"));
        None
    }

    /// `ssh user="…" port=22 identity="~/.ssh/id"`: each property given replaces its default.
    fn ssh_settings(&mut self, child: &KdlNode, ssh: &mut SshSettings) {
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

    /// The server's provider from its draft: a brought host needs an address, sakura-cloud a zone.
    fn server_provider(
        &mut self,
        name: &str,
        node: &KdlNode,
        zone: Option<String>,
        d: &mut ServerDraft,
    ) -> Option<ServerProvider> {
        let provider = match d.provider.as_ref().map(|(p, s)| (p.as_str(), *s)) {
            Some(("host", span)) => {
                let Some(address) = d.address.take() else {
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
                    core: d.core,
                    memory_gb: d.memory_gb,
                    disk_gb: d.disk_gb,
                    os: std::mem::take(&mut d.os),
                    ssh_key: d.ssh_key.take().unwrap_or_else(|| SshKey::File(self.path(DEFAULT_SSH_KEY))),
                    tags: std::mem::take(&mut d.tags),
                    startup_scripts: std::mem::take(&mut d.scripts)
                        .into_iter()
                        .map(|name| StartupScript { name, variables: d.script_vars.clone() })
                        .collect(),
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
        Some(provider)
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

    /// The `zone` of a provider: `providers { sakura-cloud zone="tk1a" }` or FleetFlow's top-level
    /// `provider "sakura-cloud" { zone "tk1a" }`.
    fn zone_of(&mut self, config: &Config, provider: &str) -> Option<String> {
        let node = provider_nodes(config).find(|(name, _)| *name == provider)?.1;
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
        self.dns_names(config, server, node.span(), hostname, aliases)
    }

    /// Names in the zone of the one declared DNS provider.
    fn dns_names(
        &mut self,
        config: &Config,
        server: &str,
        span: miette::SourceSpan,
        hostname: String,
        aliases: Vec<String>,
    ) -> Option<DnsNames> {
        let declared = [("cloudflare", DnsProvider::Cloudflare), ("sakura-dns", DnsProvider::SakuraDns)]
            .into_iter()
            .filter_map(|(name, provider)| Some((provider, self.zone_of(config, name)?)))
            .collect::<Vec<_>>();
        let (provider, zone) = match declared.as_slice() {
            [one] => one.clone(),
            [] => {
                self.push(
                    ConfigError::new(self.src, span, format!("server `{server}` has DNS names but no DNS zone is declared"))
                        .help(
                            "declare one: providers { cloudflare zone=\"example.com\" } or provider \"cloudflare\" { zone \"example.com\" }",
                        ),
                );
                return None;
            }
            _ => {
                self.push(
                    ConfigError::new(self.src, span, "both cloudflare and sakura-dns are declared with a zone")
                        .help("declare the one DNS provider that serves the zone"),
                );
                return None;
            }
        };
        Some(DnsNames { provider, zone, hostname, aliases })
    }

    /// `ssh-key "~/.ssh/id.pub"` is a file here; `ssh-key "laptop"` (FleetFlow's form) names a key
    /// registered in the account.
    fn ssh_key(&self, key: &str) -> SshKey {
        if key.contains('/') || key.ends_with(".pub") || key.starts_with('~') {
            SshKey::File(self.path(key))
        } else {
            SshKey::Account(key.to_string())
        }
    }

    /// `~/x` and paths relative to the project directory.
    fn path(&self, p: &str) -> PathBuf {
        match p.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default().join(rest),
            None => normalize(&self.dir.join(p)),
        }
    }
}

/// Every provider declaration with its name: the entries of `providers { … }` and the top-level
/// `provider "NAME" { … }` nodes, one model behind both spellings.
fn provider_nodes(config: &Config) -> impl Iterator<Item = (&str, &KdlNode)> {
    config.doc.nodes().iter().flat_map(|n| match n.name().value() {
        "providers" => children(n).map(|p| (p.name().value(), p)).collect::<Vec<_>>(),
        "provider" => {
            n.entries().first().and_then(|e| e.value().as_string()).map(|name| (name, n)).into_iter().collect()
        }
        _ => Vec::new(),
    })
}

/// Checks the provider declarations once, at load.
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
            check_zone_block(src, p, &mut errors);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for p in config.doc.nodes().iter().filter(|n| n.name().value() == "provider") {
        let name = match p.entries() {
            [e] if e.name().is_none() => e.value().as_string(),
            _ => None,
        };
        let Some(name) = name else {
            errors.push(
                ConfigError::new(src, p.span(), "`provider` takes the provider's name")
                    .help("provider \"sakura-cloud\" { zone \"tk1a\" }"),
            );
            continue;
        };
        if !PROVIDERS.contains(&name) {
            let mut err = ConfigError::new(src, p.entries()[0].span(), format!("unknown provider `{name}`"));
            err = err.help(
                suggest(name, PROVIDERS.iter().copied())
                    .unwrap_or_else(|| format!("expected one of: {}", PROVIDERS.join(", "))),
            );
            errors.push(err);
        }
        if !seen.insert(name) {
            errors.push(ConfigError::new(src, p.span(), format!("provider `{name}` is declared twice")));
        }
        check_zone_block(src, p, &mut errors);
    }
    errors
}

/// The children of a provider block: only `zone "…"`.
fn check_zone_block(src: &super::diagnostic::SourceFile, p: &KdlNode, errors: &mut Vec<ConfigError>) {
    for child in children(p) {
        let ok = child.name().value() == "zone"
            && matches!(child.entries(), [e] if e.name().is_none() && matches!(e.value(), KdlValue::String(_)));
        if !ok {
            errors.push(
                ConfigError::new(src, child.span(), "a provider block holds only `zone \"…\"`")
                    .help("provider \"sakura-cloud\" { zone \"tk1a\" }"),
            );
        }
    }
}

/// Sakura's largest plans are well inside these; beyond them a number is a typo.
const MAX_CORES: u32 = 128;
const MAX_MEMORY_GB: u32 = 1024;
