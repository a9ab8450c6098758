//! The proxy's whole Caddy configuration, as JSON, from the stage's routes and the container each
//! routed service runs in now. Pure: the same inputs give the same bytes, so "is the proxy up to
//! date" is a string comparison.

use crate::model::{ProxySettings, ProxyTls, Route};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Caddy's admin endpoint: loopback inside the proxy container's own network namespace, so
/// nothing outside that container (not the server, not the stage network) can reach it.
pub const ADMIN_LISTEN: &str = "localhost:2019";
/// Where the configuration lives in the proxy container; `caddy run` starts from it after a restart.
pub const CONFIG_PATH: &str = "/etc/caddy/fleet.json";
/// Where the private ACME CA's root (`ca_root`) is copied in the proxy container.
pub const CA_ROOT_PATH: &str = "/etc/caddy/fleet-ca-root.pem";
/// How long the proxy holds a request while no upstream accepts it (a container restarting, the
/// instant of a switch) before it answers 502: holding beats failing.
const TRY_DURATION: &str = "10s";
/// How often it retries an upstream within that window.
const TRY_INTERVAL: &str = "100ms";

/// One route of one service, with the container serving it (None: no container runs it yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTarget {
    pub service: String,
    pub route: Route,
    /// `container:port` on the stage network.
    pub dial: Option<String>,
}

/// Every route of the stage, paired with where it goes: path routes first (longest path first),
/// so `/api` on a host wins over the host's catch-all.
pub fn targets(routes: &[(String, Route)], upstreams: &BTreeMap<String, String>) -> Vec<RouteTarget> {
    let mut out: Vec<RouteTarget> = routes
        .iter()
        .map(|(service, route)| RouteTarget {
            service: service.clone(),
            route: route.clone(),
            dial: upstreams.get(service).map(|c| format!("{c}:{}", route.port)),
        })
        .collect();
    out.sort_by(|a, b| {
        let len = |t: &RouteTarget| t.route.path.as_ref().map_or(0, String::len);
        (&a.route.host, std::cmp::Reverse(len(a))).cmp(&(&b.route.host, std::cmp::Reverse(len(b))))
    });
    out
}

/// The JSON Caddy loads. Inside the container the proxy always listens on 80 and 443; the host
/// ports it is published on are the container's business, not Caddy's.
pub fn config(settings: &ProxySettings, targets: &[RouteTarget]) -> Value {
    let tls_on = settings.tls != ProxyTls::Off;
    let mut server = json!({
        "listen": [if tls_on { ":443" } else { ":80" }],
        "routes": targets.iter().enumerate().map(|(i, t)| route_json(i, t)).collect::<Vec<_>>(),
    });
    if !tls_on {
        server["automatic_https"] = json!({ "disable": true });
    }
    let mut apps = json!({
        "http": { "http_port": 80, "https_port": 443, "servers": { "fleet": server } },
    });
    if tls_on {
        let mut hosts: Vec<&str> = targets.iter().map(|t| t.route.host.as_str()).collect();
        hosts.sort();
        hosts.dedup();
        apps["tls"] =
            json!({ "automation": { "policies": [ { "subjects": hosts, "issuers": [issuer(&settings.tls)] } ] } });
        // Caddy's own CA must not try to install its root into the container's trust store.
        apps["pki"] = json!({ "certificate_authorities": { "local": { "install_trust": false } } });
    }
    json!({ "admin": { "listen": ADMIN_LISTEN }, "apps": apps })
}

fn issuer(tls: &ProxyTls) -> Value {
    match tls {
        ProxyTls::Internal | ProxyTls::Off => json!({ "module": "internal" }),
        ProxyTls::Acme(acme) => {
            let mut issuer = json!({ "module": "acme" });
            if let Some(ca) = &acme.ca {
                issuer["ca"] = json!(ca);
            }
            if let Some(email) = &acme.email {
                issuer["email"] = json!(email);
            }
            if acme.ca_root.is_some() {
                issuer["trusted_roots_pem_files"] = json!([CA_ROOT_PATH]);
            }
            issuer
        }
    }
}

/// Each route carries an `@id` naming its service (`web#0`), so the upstreams can be read back.
fn route_json(index: usize, t: &RouteTarget) -> Value {
    let mut matcher = json!({ "host": [t.route.host] });
    if let Some(path) = &t.route.path {
        let base = path.trim_end_matches('/');
        matcher["path"] = json!([base, format!("{base}/*")]);
    }
    let handler = match &t.dial {
        Some(dial) => json!({
            "handler": "reverse_proxy",
            "upstreams": [ { "dial": dial } ],
            "load_balancing": { "try_duration": TRY_DURATION, "try_interval": TRY_INTERVAL },
        }),
        None => json!({
            "handler": "static_response",
            "status_code": 503,
            "body": format!("service {} has no running container", t.service),
        }),
    };
    json!({ "@id": format!("{}#{index}", t.service), "match": [matcher], "handle": [handler], "terminal": true })
}

/// The container each route's traffic goes to, read back from a configuration this module made:
/// service → container name (for `status` and to recover an interrupted replacement).
pub fn upstreams_in(config: &Value) -> BTreeMap<String, String> {
    let routes = config.pointer("/apps/http/servers/fleet/routes").and_then(Value::as_array);
    let mut out = BTreeMap::new();
    for r in routes.into_iter().flatten() {
        if let Some(id) = r.get("@id").and_then(Value::as_str)
            && let Some((service, _)) = id.rsplit_once('#')
            && let Some(dial) = r.pointer("/handle/0/upstreams/0/dial").and_then(Value::as_str)
            && let Some((container, _)) = dial.rsplit_once(':')
        {
            out.insert(service.to_string(), container.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Acme;

    fn route(host: &str, path: Option<&str>) -> Route {
        Route { host: host.into(), port: 8080, path: path.map(str::to_string), health: "/up".into(), drain_ms: 30_000 }
    }

    fn settings(tls: ProxyTls) -> ProxySettings {
        ProxySettings { tls, ..ProxySettings::defaults(false) }
    }

    #[test]
    fn plain_http_listens_on_80_without_automatic_https() {
        let routes = vec![("web".to_string(), route("shop.test", None))];
        let up = BTreeMap::from([("web".to_string(), "p-s-web".to_string())]);
        let c = config(&settings(ProxyTls::Off), &targets(&routes, &up));
        assert_eq!(c["apps"]["http"]["servers"]["fleet"]["listen"], json!([":80"]));
        assert_eq!(c["apps"]["http"]["servers"]["fleet"]["automatic_https"]["disable"], json!(true));
        assert!(c["apps"].get("tls").is_none());
        let h = &c["apps"]["http"]["servers"]["fleet"]["routes"][0]["handle"][0];
        assert_eq!(h["upstreams"][0]["dial"], json!("p-s-web:8080"));
        assert_eq!(h["load_balancing"]["try_duration"], json!(TRY_DURATION));
        assert_eq!(c["admin"]["listen"], json!("localhost:2019"));
    }

    #[test]
    fn acme_with_a_private_ca_names_its_root_and_email() {
        let acme = Acme {
            email: Some("ops@example.com".into()),
            ca: Some("https://ca:14000/dir".into()),
            ca_root: Some("/x/ca.pem".into()),
        };
        let routes = vec![("web".to_string(), route("shop.test", None))];
        let c = config(&settings(ProxyTls::Acme(acme)), &targets(&routes, &BTreeMap::new()));
        let policy = &c["apps"]["tls"]["automation"]["policies"][0];
        assert_eq!(policy["subjects"], json!(["shop.test"]));
        assert_eq!(
            policy["issuers"][0],
            json!({ "module": "acme", "ca": "https://ca:14000/dir", "email": "ops@example.com",
                    "trusted_roots_pem_files": [CA_ROOT_PATH] })
        );
        assert_eq!(c["apps"]["http"]["servers"]["fleet"]["listen"], json!([":443"]));
        // No container yet: the route answers 503 naming the service, never a wrong upstream.
        let h = &c["apps"]["http"]["servers"]["fleet"]["routes"][0]["handle"][0];
        assert_eq!(h["status_code"], json!(503));
    }

    #[test]
    fn path_routes_come_before_the_hosts_catch_all_and_read_back() {
        let routes =
            vec![("web".to_string(), route("shop.test", None)), ("api".to_string(), route("shop.test", Some("/api")))];
        let up = BTreeMap::from([("web".to_string(), "p-s-web".into()), ("api".to_string(), "p-s-api-next".into())]);
        let t = targets(&routes, &up);
        assert_eq!(t[0].service, "api");
        let c = config(&settings(ProxyTls::Internal), &t);
        let first = &c["apps"]["http"]["servers"]["fleet"]["routes"][0];
        assert_eq!(first["match"][0]["path"], json!(["/api", "/api/*"]));
        assert_eq!(c["apps"]["tls"]["automation"]["policies"][0]["issuers"][0]["module"], json!("internal"));
        assert_eq!(upstreams_in(&c), up);
    }
}
