//! The capabilities a handler version holds beyond computing: outbound HTTP by rule, secrets,
//! config values and key-value buckets. This module owns how each grant is declared and
//! validated at deploy, which component imports each one unlocks, and the rule matching that
//! enforcement uses; everything is denied unless granted.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most rules, names or values of one kind a handler version may be granted.
pub const MAX_GRANTS_PER_KIND: usize = 64;
/// Longest config value.
pub const MAX_CONFIG_VALUE_BYTES: usize = 4096;
/// Longest secret, config key or bucket name.
pub const MAX_GRANT_NAME_BYTES: usize = 128;

/// What one handler version may reach. Stored with the version; changed only by a new deploy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Outbound HTTP rules, as declared (see [`HttpRule`]).
    pub http: Vec<String>,
    /// Names of the tenant's secrets the handler may read.
    pub secrets: Vec<String>,
    /// Config values the handler reads by key.
    pub config: BTreeMap<String, String>,
    /// Key-value buckets of the tenant the handler may open.
    pub kv: Vec<String>,
    /// Headers the host adds to allowed requests, as declared (see [`HeaderInjection`]).
    pub inject_headers: Vec<String>,
}

/// Grants as an API receives them, before validation.
#[derive(Clone, Debug, Default)]
pub struct GrantRequest {
    pub http: Vec<String>,
    pub secrets: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub config: Vec<String>,
    pub kv: Vec<String>,
    pub inject_headers: Vec<String>,
}

impl Grants {
    /// Validates a request; the message says which entry is wrong and how it should look.
    pub fn from_request(request: GrantRequest) -> Result<Grants, String> {
        let GrantRequest {
            http,
            secrets,
            config,
            kv,
            inject_headers,
        } = request;
        for (kind, count) in [
            ("allow_http rules", http.len()),
            ("secrets", secrets.len()),
            ("config values", config.len()),
            ("kv buckets", kv.len()),
            ("inject_header entries", inject_headers.len()),
        ] {
            if count > MAX_GRANTS_PER_KIND {
                return Err(format!(
                    "at most {MAX_GRANTS_PER_KIND} {kind} may be granted, got {count}"
                ));
            }
        }
        let http = http.iter().map(|rule| normalized(rule)).collect::<Vec<_>>();
        for rule in &http {
            HttpRule::parse(rule)?;
        }
        let secrets = deduplicated(secrets);
        for name in &secrets {
            check_name("secret", name)?;
        }
        let kv = deduplicated(kv);
        for bucket in &kv {
            check_name("kv bucket", bucket)?;
        }
        let mut values = BTreeMap::new();
        for pair in config {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(format!("config '{pair}' must be KEY=VALUE"));
            };
            let key = key.trim();
            check_name("config key", key)?;
            if value.len() > MAX_CONFIG_VALUE_BYTES {
                return Err(format!(
                    "config value of '{key}' has {} bytes; at most {MAX_CONFIG_VALUE_BYTES}",
                    value.len()
                ));
            }
            if secrets.iter().any(|s| s == key) {
                return Err(format!(
                    "'{key}' is granted both as a secret and as a config key; a handler reads both by name, so pick one"
                ));
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                return Err(format!("config key '{key}' is given twice"));
            }
        }
        let inject_headers = inject_headers
            .iter()
            .map(|entry| entry.trim().to_string())
            .collect::<Vec<_>>();
        for entry in &inject_headers {
            let injection = HeaderInjection::parse(entry)?;
            for secret in injection.secrets_named() {
                if !secrets.iter().any(|s| s == secret) {
                    return Err(format!(
                        "inject_header '{entry}' uses secret '{secret}', which is not granted: add --secret {secret}"
                    ));
                }
            }
        }
        Ok(Grants {
            http,
            secrets,
            config: values,
            kv,
            inject_headers,
        })
    }

    pub fn is_empty(&self) -> bool {
        self == &Grants::default()
    }

    /// The parsed outbound rules (validated at deploy, so none is dropped here).
    pub fn http_rules(&self) -> Vec<HttpRule> {
        self.http
            .iter()
            .filter_map(|r| HttpRule::parse(r).ok())
            .collect()
    }

    /// The parsed header injections.
    pub fn header_injections(&self) -> Vec<HeaderInjection> {
        self.inject_headers
            .iter()
            .filter_map(|r| HeaderInjection::parse(r).ok())
            .collect()
    }

    /// Refuses a component import that no grant of this version unlocks, naming the grant to
    /// add. Imports that grant nothing by themselves (types, WASI basics) pass.
    pub fn check_import(&self, import: &str) -> Result<(), String> {
        let missing = if import.starts_with("wasi:http/outgoing-handler") && self.http.is_empty() {
            Some(
                "outbound HTTP: add --allow-http PATTERN (e.g. --allow-http https://api.example.com)",
            )
        } else if import.starts_with("wasi:config/")
            && self.config.is_empty()
            && self.secrets.is_empty()
        {
            Some("config values or secrets: add --config KEY=VALUE or --secret NAME")
        } else if import.starts_with("wasi:keyvalue/") && self.kv.is_empty() {
            Some("key-value buckets: add --kv BUCKET")
        } else {
            None
        };
        match missing {
            Some(what) => Err(format!(
                "the component imports {import}, but the handler is granted no {what}"
            )),
            None => Ok(()),
        }
    }
}

fn normalized(rule: &str) -> String {
    rule.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn deduplicated(mut names: Vec<String>) -> Vec<String> {
    for name in &mut names {
        *name = name.trim().to_string();
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Secret names, config keys and bucket names: letters, digits, `_`, `-` and `.`.
pub fn check_name(kind: &str, name: &str) -> Result<(), String> {
    let fine = (1..=MAX_GRANT_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "{kind} name '{name}' must be 1-{MAX_GRANT_NAME_BYTES} letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Which hosts a rule names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// Every host (`https://*`).
    Any,
    /// The host itself, lowercase (a name or an IP literal without brackets).
    Exact(String),
    /// Any subdomain of this suffix, not the suffix itself (`*.example.com`).
    SubdomainOf(String),
}

/// One outbound HTTP rule: `[METHOD,METHOD ]SCHEME://HOST[:PORT]`, e.g.
/// `https://api.example.com`, `https://*.example.com`, `GET,POST http://127.0.0.1:8080`.
/// Without a port, the scheme's default port is meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpRule {
    pub text: String,
    /// Uppercase; empty: every method.
    pub methods: Vec<String>,
    pub https: bool,
    pub host: HostPattern,
    pub port: u16,
}

/// What an outgoing request is matched on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestTarget {
    pub method: String,
    pub https: bool,
    /// Lowercase, IP literals without brackets.
    pub host: String,
    pub port: u16,
}

impl HttpRule {
    pub fn parse(text: &str) -> Result<HttpRule, String> {
        let text = normalized(text);
        let shape = "an HTTP rule looks like [METHODS ]SCHEME://HOST[:PORT], e.g. https://api.example.com, https://*.example.com or GET,POST http://127.0.0.1:8080";
        let (methods, target) = match text.split_once(' ') {
            Some((methods, target)) => (methods, target),
            None => ("", text.as_str()),
        };
        let methods = methods
            .split(',')
            .filter(|m| !m.is_empty())
            .map(|m| {
                let upper = m.to_ascii_uppercase();
                if upper.bytes().all(|b| b.is_ascii_uppercase()) {
                    Ok(upper)
                } else {
                    Err(format!("'{m}' in '{text}' is not an HTTP method; {shape}"))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (https, rest) = if let Some(rest) = target.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = target.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "'{text}' has no http:// or https:// scheme; {shape}"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "'{text}' must name a host and an optional port only (no path, query or user); {shape}"
            ));
        }
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("'{text}' has an invalid port; {shape}"))?;
        let port = port.unwrap_or(if https { 443 } else { 80 });
        let host = host.to_ascii_lowercase();
        let pattern = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !valid_host(suffix) {
                return Err(format!("'{text}' has an invalid host; {shape}"));
            }
            HostPattern::SubdomainOf(suffix.to_string())
        } else if valid_host(&host) || host.parse::<IpAddr>().is_ok() {
            HostPattern::Exact(host)
        } else {
            return Err(format!("'{text}' has an invalid host; {shape}"));
        };
        Ok(HttpRule {
            text,
            methods,
            https,
            host: pattern,
            port,
        })
    }

    pub fn matches(&self, target: &RequestTarget) -> bool {
        let host = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(host) => *host == target.host,
            HostPattern::SubdomainOf(suffix) => target
                .host
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        };
        host && self.https == target.https
            && self.port == target.port
            && (self.methods.is_empty() || self.methods.contains(&target.method))
    }

    /// Whether the rule names its host (not every host), which the server's rules must do to
    /// let a request reach a private, loopback or link-local address.
    pub fn names_its_host(&self) -> bool {
        self.host != HostPattern::Any
    }
}

/// Splits `host[:port]`, with IPv6 literals in brackets; `None` for a bad port.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl RequestTarget {
    /// The target of a URL's scheme, authority and method; `None` if the scheme is not HTTP.
    pub fn new(method: &str, scheme: &str, host: &str, port: Option<u16>) -> Option<RequestTarget> {
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(RequestTarget {
            method: method.to_ascii_uppercase(),
            https,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(if https { 443 } else { 80 }),
        })
    }

    /// `https://host:port`, for messages.
    pub fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The operator's ceiling over every handler's outbound HTTP (`serve --http-allow`).
#[derive(Clone, Debug, Default)]
pub struct ServerHttpPolicy {
    /// Empty: any public host.
    pub rules: Vec<HttpRule>,
}

/// Why a request may not go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpRefusal {
    /// No rule of the handler matches.
    NotGranted,
    /// The server's rules do not allow it.
    NotAllowedByServer,
    /// The host resolves to an address of this kind, which the server's rules do not name.
    PrivateAddress(IpAddr),
}

impl std::fmt::Display for HttpRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpRefusal::NotGranted => write!(f, "no --allow-http rule of the handler matches"),
            HttpRefusal::NotAllowedByServer => {
                write!(f, "the server's --http-allow rules do not allow it")
            }
            HttpRefusal::PrivateAddress(ip) => write!(
                f,
                "the host resolves to {ip}, a private, loopback or link-local address, which only a server --http-allow rule naming the host may open"
            ),
        }
    }
}

/// What a request may do, decided before it connects: the handler's rules, then the server's.
/// Returns whether the server's rules name the host (which lets private addresses through).
pub fn authorize_request(
    handler_rules: &[HttpRule],
    server: &ServerHttpPolicy,
    target: &RequestTarget,
) -> Result<bool, HttpRefusal> {
    if !handler_rules.iter().any(|rule| rule.matches(target)) {
        return Err(HttpRefusal::NotGranted);
    }
    if server.rules.is_empty() {
        return Ok(false);
    }
    let matching = server.rules.iter().filter(|rule| rule.matches(target));
    let mut allowed = false;
    let mut names_host = false;
    for rule in matching {
        allowed = true;
        names_host |= rule.names_its_host();
    }
    if allowed {
        Ok(names_host)
    } else {
        Err(HttpRefusal::NotAllowedByServer)
    }
}

/// Checks an address the host resolved to, after DNS, so that no name can point a grant at
/// the server's own network unless the operator named that host.
pub fn check_address(ip: IpAddr, private_allowed: bool) -> Result<(), HttpRefusal> {
    if private_allowed || is_public(ip) {
        Ok(())
    } else {
        Err(HttpRefusal::PrivateAddress(ip))
    }
}

/// Whether an address is reachable on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// A header the host adds to allowed requests to one host:
/// `HOST=Name: value with {{secret:NAME}}`, so the guest never holds the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderInjection {
    /// Lowercase host the header is added for.
    pub host: String,
    pub name: String,
    /// The value, with `{{secret:NAME}}` placeholders.
    pub template: String,
}

impl HeaderInjection {
    pub fn parse(text: &str) -> Result<HeaderInjection, String> {
        let shape = "an injected header looks like HOST=Name: value, e.g. 'api.stripe.com=Authorization: Bearer {{secret:STRIPE_KEY}}'";
        let (host, header) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' has no '='; {shape}"))?;
        let host = host.trim().to_ascii_lowercase();
        if !(valid_host(&host) || host.parse::<IpAddr>().is_ok()) {
            return Err(format!("'{text}' has an invalid host; {shape}"));
        }
        let (name, template) = header
            .split_once(':')
            .ok_or_else(|| format!("'{text}' has no header name; {shape}"))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("'{text}' has an invalid header name; {shape}"));
        }
        let injection = HeaderInjection {
            host,
            name: name.to_string(),
            template: template.trim().to_string(),
        };
        // Every placeholder must close and name a secret.
        let mut rest = injection.template.as_str();
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("'{text}' has an unclosed '{{{{'; {shape}"))?;
            let inner = &after[..end];
            let secret = inner.strip_prefix("secret:").ok_or_else(|| {
                format!("'{text}': placeholders look like {{{{secret:NAME}}}}; {shape}")
            })?;
            check_name("secret", secret)?;
            rest = &after[end + 2..];
        }
        Ok(injection)
    }

    /// The secrets the value uses.
    pub fn secrets_named(&self) -> Vec<&str> {
        let mut names = Vec::new();
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find("{{secret:") {
            let after = &rest[start + "{{secret:".len()..];
            let Some(end) = after.find("}}") else { break };
            names.push(&after[..end]);
            rest = &after[end + 2..];
        }
        names
    }

    /// The value with each secret filled in; `None` when a secret is not set.
    pub fn render(&self, secret: impl Fn(&str) -> Option<String>) -> Option<String> {
        let mut value = String::new();
        let mut rest = self.template.as_str();
        while let Some(start) = rest.find("{{secret:") {
            value.push_str(&rest[..start]);
            let after = &rest[start + "{{secret:".len()..];
            let end = after.find("}}")?;
            value.push_str(&secret(&after[..end])?);
            rest = &after[end + 2..];
        }
        value.push_str(rest);
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(method: &str, url_scheme: &str, host: &str, port: Option<u16>) -> RequestTarget {
        RequestTarget::new(method, url_scheme, host, port).unwrap()
    }

    fn rule(text: &str) -> HttpRule {
        HttpRule::parse(text).unwrap()
    }

    #[test]
    fn a_rule_without_a_port_means_the_schemes_default_port() {
        let r = rule("https://api.example.com");
        assert!(r.matches(&target("GET", "https", "api.example.com", None)));
        assert!(r.matches(&target("GET", "https", "API.example.com", Some(443))));
        assert!(!r.matches(&target("GET", "https", "api.example.com", Some(8443))));
        assert!(!r.matches(&target("GET", "http", "api.example.com", None)));
    }

    #[test]
    fn a_wildcard_rule_matches_subdomains_but_not_the_domain_or_lookalikes() {
        let r = rule("https://*.example.com");
        assert!(r.matches(&target("GET", "https", "a.example.com", None)));
        assert!(r.matches(&target("GET", "https", "a.b.example.com", None)));
        assert!(!r.matches(&target("GET", "https", "example.com", None)));
        assert!(!r.matches(&target("GET", "https", "badexample.com", None)));
    }

    #[test]
    fn methods_restrict_a_rule() {
        let r = rule("get,POST http://127.0.0.1:8080");
        assert!(r.matches(&target("POST", "http", "127.0.0.1", Some(8080))));
        assert!(!r.matches(&target("DELETE", "http", "127.0.0.1", Some(8080))));
    }

    #[test]
    fn ipv6_literals_are_matched_without_brackets() {
        let r = rule("http://[::1]:9000");
        assert!(r.matches(&target("GET", "http", "[::1]", Some(9000))));
    }

    #[test]
    fn malformed_rules_are_refused_with_the_expected_shape() {
        for bad in [
            "api.example.com",
            "ftp://x.com",
            "https://x.com/path",
            "https://user@x.com",
            "https://x.com:99999",
            "G3T https://x.com",
            "https://",
            "https://bad_host",
        ] {
            let error = HttpRule::parse(bad).unwrap_err();
            assert!(error.contains("SCHEME://HOST"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_server_rules_cap_what_a_handler_was_granted() {
        let handler = [rule("https://*")];
        let server = ServerHttpPolicy {
            rules: vec![rule("https://api.example.com")],
        };
        assert_eq!(
            authorize_request(
                &handler,
                &server,
                &target("GET", "https", "other.com", None)
            ),
            Err(HttpRefusal::NotAllowedByServer)
        );
        assert_eq!(
            authorize_request(
                &handler,
                &server,
                &target("GET", "https", "api.example.com", None)
            ),
            Ok(true)
        );
    }

    #[test]
    fn a_request_no_handler_rule_matches_is_not_granted() {
        let handler = [rule("https://api.example.com")];
        assert_eq!(
            authorize_request(
                &handler,
                &ServerHttpPolicy::default(),
                &target("GET", "https", "evil.com", None)
            ),
            Err(HttpRefusal::NotGranted)
        );
    }

    #[test]
    fn private_addresses_need_a_server_rule_that_names_the_host() {
        let handler = [rule("http://127.0.0.1:8080")];
        let by_default = authorize_request(
            &handler,
            &ServerHttpPolicy::default(),
            &target("GET", "http", "127.0.0.1", Some(8080)),
        )
        .unwrap();
        assert!(!by_default);
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            check_address(loopback, by_default),
            Err(HttpRefusal::PrivateAddress(loopback))
        );
        let server = ServerHttpPolicy {
            rules: vec![rule("http://127.0.0.1:8080")],
        };
        let named = authorize_request(
            &handler,
            &server,
            &target("GET", "http", "127.0.0.1", Some(8080)),
        )
        .unwrap();
        assert!(named);
        assert_eq!(check_address(loopback, named), Ok(()));
        let any = ServerHttpPolicy {
            rules: vec![rule("http://*:8080")],
        };
        assert_eq!(
            authorize_request(
                &handler,
                &any,
                &target("GET", "http", "127.0.0.1", Some(8080))
            ),
            Ok(false)
        );
    }

    #[test]
    fn addresses_of_internal_networks_are_not_public() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_config_key_may_not_shadow_a_granted_secret() {
        let error = Grants::from_request(GrantRequest {
            secrets: vec!["TOKEN".into()],
            config: vec!["TOKEN=x".into()],
            ..GrantRequest::default()
        })
        .unwrap_err();
        assert!(
            error.contains("both as a secret and as a config key"),
            "{error}"
        );
    }

    #[test]
    fn config_values_keep_everything_after_the_first_equals_sign() {
        let grants = Grants::from_request(GrantRequest {
            config: vec!["dsn=a=b".into()],
            ..GrantRequest::default()
        })
        .unwrap();
        assert_eq!(grants.config["dsn"], "a=b");
    }

    #[test]
    fn an_import_without_its_grant_names_the_grant_to_add() {
        let none = Grants::default();
        let http = none
            .check_import("wasi:http/outgoing-handler@0.2.4")
            .unwrap_err();
        assert!(http.contains("--allow-http"), "{http}");
        assert!(
            none.check_import("wasi:config/store@0.2.0-draft")
                .unwrap_err()
                .contains("--secret")
        );
        assert!(
            none.check_import("wasi:keyvalue/store@0.2.0-draft")
                .unwrap_err()
                .contains("--kv")
        );
        assert_eq!(none.check_import("wasi:http/types@0.2.4"), Ok(()));
        assert_eq!(none.check_import("wasi:cli/stdout@0.2.0"), Ok(()));
    }

    #[test]
    fn an_injected_header_must_use_granted_secrets() {
        let error = Grants::from_request(GrantRequest {
            inject_headers: vec!["api.stripe.com=Authorization: Bearer {{secret:STRIPE}}".into()],
            ..GrantRequest::default()
        })
        .unwrap_err();
        assert!(error.contains("add --secret STRIPE"), "{error}");
    }

    #[test]
    fn an_injected_header_renders_its_secrets() {
        let injection =
            HeaderInjection::parse("API.stripe.com=Authorization: Bearer {{secret:K}}!").unwrap();
        assert_eq!(injection.host, "api.stripe.com");
        assert_eq!(injection.name, "Authorization");
        assert_eq!(
            injection.render(|name| (name == "K").then(|| "s3cr3t".to_string())),
            Some("Bearer s3cr3t!".to_string())
        );
        assert_eq!(injection.render(|_| None), None);
    }
}
