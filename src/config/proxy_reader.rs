//! `route "host" port=8080` in a service and `proxy { … }` in a stage: what the proxy serves.

use super::diagnostic::ConfigError;
use super::reader::{Reader, Spans, children, normalize, unknown_node};
use crate::model::{Acme, ProxySettings, ProxyTls, Route, StageSpec};
use kdl::{KdlNode, KdlValue};

const ROUTE_PROPS: &[&str] = &["port", "path", "health", "drain"];
const PROXY_NODES: &[&str] = &["image", "acme", "tls", "http_port", "https_port"];
const ACME_PROPS: &[&str] = &["email", "ca", "ca_root"];

impl Reader<'_> {
    /// `route "shop.example.com" port=8080 path="/api" health="/up" drain="30s"`.
    pub(super) fn route(&mut self, node: &KdlNode) -> Option<Route> {
        self.check_props(node, ROUTE_PROPS);
        self.no_children(node);
        let args = self.args(node);
        let [host_entry] = args.as_slice() else {
            self.error(node.span(), "`route` takes one host name: route \"shop.example.com\" port=8080");
            return None;
        };
        let host = self.string(host_entry)?;
        if !is_host_name(&host) {
            self.push(
                ConfigError::new(self.src, host_entry.span(), format!("`{host}` is not a host name"))
                    .help("write the name clients use, e.g. \"shop.example.com\" or \"localhost\""),
            );
            return None;
        }
        let Some(port_entry) = self.prop(node, "port") else {
            self.error(node.span(), "`route` needs the container port: route \"shop.example.com\" port=8080");
            return None;
        };
        let port = self.integer(port_entry, 1, 65535, "port")? as u16;
        let path = self.url_path(node, "path")?;
        let health = self.url_path(node, "health")?.unwrap_or_else(|| Route::DEFAULT_HEALTH.into());
        let drain_ms = match self.prop(node, "drain") {
            Some(e) => self.duration_ms(e)?,
            None => Route::DEFAULT_DRAIN_MS,
        };
        Some(Route { host, port, path, health, drain_ms })
    }

    /// An optional property that must be an absolute URL path (`/api`). `Some(None)`: not given.
    fn url_path(&mut self, node: &KdlNode, key: &str) -> Option<Option<String>> {
        let Some(entry) = self.prop(node, key) else { return Some(None) };
        let value = self.string(entry)?;
        if !value.starts_with('/') || value.contains(char::is_whitespace) {
            self.push(
                ConfigError::new(self.src, entry.span(), format!("`{key}` must be a path starting with `/`"))
                    .label(format!("e.g. {key}=\"/up\"")),
            );
            return None;
        }
        Some(Some(value))
    }

    /// `proxy { image "caddy:2"; acme email="…" ca="…" ca_root="./ca.pem"; tls "internal" | tls #false }`.
    pub(super) fn proxy(&mut self, node: &KdlNode) -> Option<ProxySettings> {
        self.check_props(node, &[]);
        let mut settings = ProxySettings::defaults(false);
        let mut tls: Option<ProxyTls> = None;
        let mut acme: Option<Acme> = None;
        for child in children(node) {
            match child.name().value() {
                "image" => settings.image = self.one_string(child)?,
                "acme" => acme = Some(self.acme(child)?),
                "tls" => tls = Some(self.tls(child)?),
                name @ ("http_port" | "https_port") => {
                    let e = self.one_arg(child)?;
                    let port = self.integer(e, 1, 65535, "port")? as u16;
                    if name == "http_port" {
                        settings.http_port = port;
                    } else {
                        settings.https_port = port;
                    }
                }
                _ => self.push(unknown_node(self.src, child, "in `proxy`", PROXY_NODES)),
            }
        }
        settings.tls = match (tls, acme) {
            (Some(ProxyTls::Acme(_)) | None, a) => ProxyTls::Acme(a.unwrap_or_default()),
            (Some(other), None) => other,
            (Some(_), Some(_)) => {
                self.error(node.span(), "`proxy` has both `acme` and `tls`: certificates come from one place");
                return None;
            }
        };
        Some(settings)
    }

    fn acme(&mut self, node: &KdlNode) -> Option<Acme> {
        self.check_props(node, ACME_PROPS);
        self.no_children(node);
        if let Some(e) = self.args(node).first() {
            self.error(e.span(), "`acme` takes properties: acme email=\"ops@example.com\"");
            return None;
        }
        let mut acme = Acme::default();
        if let Some(e) = self.prop(node, "email") {
            acme.email = Some(self.string(e)?);
        }
        if let Some(e) = self.prop(node, "ca") {
            let ca = self.string(e)?;
            if !ca.starts_with("https://") {
                self.push(
                    ConfigError::new(self.src, e.span(), "`ca` must be an https:// ACME directory URL")
                        .label("e.g. \"https://ca.internal:14000/dir\""),
                );
                return None;
            }
            acme.ca = Some(ca);
        }
        if let Some(e) = self.prop(node, "ca_root") {
            let p = self.string(e)?;
            acme.ca_root = Some(normalize(&self.dir.join(p)));
        }
        Some(acme)
    }

    /// `tls "internal"`, `tls "acme"` or `tls #false`.
    fn tls(&mut self, node: &KdlNode) -> Option<ProxyTls> {
        let e = self.one_arg(node)?;
        match e.value() {
            KdlValue::Bool(false) => Some(ProxyTls::Off),
            KdlValue::String(s) if s == "internal" => Some(ProxyTls::Internal),
            KdlValue::String(s) if s == "acme" => Some(ProxyTls::Acme(Acme::default())),
            _ => {
                self.push(
                    ConfigError::new(self.src, e.span(), "unknown `tls` setting")
                        .help("use tls \"internal\" (the proxy's own CA), tls #false (plain HTTP), or an `acme` line"),
                );
                None
            }
        }
    }

    /// Checks that need the whole stage: swarm stages take no routes; one host and path is
    /// served by one service; a stage without a `proxy` block gets the defaults for its kind.
    pub(super) fn check_routes(&mut self, spec: &StageSpec, spans: &Spans) {
        let mut seen: std::collections::BTreeMap<(String, Option<String>), &str> = Default::default();
        for svc in spec.services.iter().filter(|s| !s.routes.is_empty()) {
            let Some(span) = spans.routes.get(&svc.name).copied() else { continue };
            if spec.is_swarm() {
                self.push(
                    ConfigError::new(
                        self.src,
                        span,
                        format!("service `{}` has a route, and stage `{}` is a swarm stage", svc.name, spec.name),
                    )
                    .help("routes need fleet's own containers (the proxy switches between them); publish `ports` in a swarm stage"),
                );
            }
            for r in &svc.routes {
                if let Some(other) = seen.insert((r.host.clone(), r.path.clone()), &svc.name)
                    && other != svc.name
                {
                    self.push(ConfigError::new(
                        self.src,
                        span,
                        format!(
                            "route {}{} is declared by both `{other}` and `{}`",
                            r.host,
                            r.path.as_deref().unwrap_or(""),
                            svc.name
                        ),
                    ));
                }
            }
        }
    }
}

/// Letters, digits, `-` and `.`, as DNS names are written (a leading `*.` for a wildcard).
fn is_host_name(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .all(|l| !l.is_empty() && !l.starts_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::error::Error;
    use crate::model::{Acme, ProxyTls, Route};
    use std::path::Path;

    fn stage(text: &str, name: &str) -> Result<crate::model::StageSpec, Vec<String>> {
        let cfg = Config::from_text(Path::new("/proj/fleet.kdl"), text.to_string()).expect("parses");
        cfg.stage(name).map_err(|e| match e {
            Error::Config(errs) => errs.errors.iter().map(|e| format!("{} at {}", e.message, e.location())).collect(),
            other => vec![other.to_string()],
        })
    }

    const ROUTED: &str = r#"
project "shop"
service "web" {
    image "web:1"
    route "shop.example.com" port=8080
    route "shop.example.com" port=9090 path="/api" health="/healthz" drain="5s"
}
stage "prod" {
    service "web"
    proxy {
        image "caddy:2"
        acme email="ops@example.com" ca="https://ca.internal:14000/dir" ca_root="./ca.pem"
    }
}
stage "local" {
    service "web"
    proxy { tls "internal"; http_port 8080; https_port 8443 }
}
stage "plain" {
    service "web"
    proxy { tls #false }
}
stage "bare" { service "web" }
"#;

    #[test]
    fn reads_routes_with_their_defaults_and_the_proxy_block() {
        let prod = stage(ROUTED, "prod").expect("valid");
        let web = &prod.services[0];
        assert_eq!(
            web.routes,
            vec![
                Route {
                    host: "shop.example.com".into(),
                    port: 8080,
                    path: None,
                    health: "/up".into(),
                    drain_ms: 30_000
                },
                Route {
                    host: "shop.example.com".into(),
                    port: 9090,
                    path: Some("/api".into()),
                    health: "/healthz".into(),
                    drain_ms: 5_000
                },
            ]
        );
        let proxy = prod.proxy.expect("proxy block");
        assert_eq!(proxy.image, "caddy:2");
        assert_eq!(
            proxy.tls,
            ProxyTls::Acme(Acme {
                email: Some("ops@example.com".into()),
                ca: Some("https://ca.internal:14000/dir".into()),
                ca_root: Some("/proj/ca.pem".into()),
            })
        );
        assert_eq!((proxy.http_port, proxy.https_port), (80, 443));
        let local = stage(ROUTED, "local").expect("valid").proxy.expect("proxy");
        assert_eq!((local.tls, local.http_port, local.https_port), (ProxyTls::Internal, 8080, 8443));
        assert_eq!(stage(ROUTED, "plain").expect("valid").proxy.expect("proxy").tls, ProxyTls::Off);
        assert_eq!(stage(ROUTED, "bare").expect("valid").proxy, None);
    }

    #[test]
    fn routes_do_not_change_the_config_hash() {
        let prod = stage(ROUTED, "prod").expect("valid");
        let mut without = prod.services[0].clone();
        without.routes.clear();
        assert_eq!(crate::plan::ConfigHash::of(&prod.services[0], "x"), crate::plan::ConfigHash::of(&without, "x"));
    }

    #[test]
    fn mistakes_name_the_place() {
        let bad = |route: &str, stage_extra: &str| {
            let text = format!(
                "project \"shop\"\nservice \"web\" {{\n    image \"web:1\"\n    {route}\n}}\nstage \"s\" {{\n    service \"web\"\n    {stage_extra}\n}}\n"
            );
            stage(&text, "s").expect_err("invalid")
        };
        assert_eq!(
            bad(r#"route "shop.example.com""#, ""),
            vec!["`route` needs the container port: route \"shop.example.com\" port=8080 at /proj/fleet.kdl:4:5"]
        );
        assert!(bad(r#"route "https://x" port=80"#, "")[0].contains("is not a host name"));
        assert!(bad(r#"route "x.test" port=80 health="up""#, "")[0].contains("`health` must be a path"));
        assert!(bad(r#"route "x.test" port=80 drain="soon""#, "")[0].contains("invalid duration"));
        assert!(
            bad(r#"route "x.test" port=80"#, r#"proxy { tls "letsencrypt" }"#)[0].contains("unknown `tls` setting")
        );
        assert!(bad(r#"route "x.test" port=80"#, r#"proxy { acme ca="http://ca/dir" }"#)[0].contains("https://"));
        let swarm = bad(r#"route "x.test" port=80"#, r#"orchestrator "swarm""#);
        assert!(swarm[0].contains("has a route, and stage `s` is a swarm stage"), "{swarm:?}");
    }

    #[test]
    fn host_names() {
        assert!(super::is_host_name("shop.example.com"));
        assert!(super::is_host_name("localhost"));
        assert!(super::is_host_name("*.example.com"));
        assert!(!super::is_host_name("shop example.com"));
        assert!(!super::is_host_name("https://shop.example.com"));
        assert!(!super::is_host_name(""));
    }
}
