//! A handler manifest (`handler.toml`): a deployment written down — the job type, tenant,
//! component file, limits and grants — so that `jobhost handlers deploy --manifest` needs no
//! flags. It becomes the same query parameters as the flags, which may add to it or override it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A manifest as written. Unknown fields are refused, so a typo does not silently drop a grant.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(rename = "type")]
    pub job_type: Option<String>,
    pub tenant: Option<String>,
    /// The component file, relative to the manifest.
    pub component: Option<PathBuf>,
    #[serde(default)]
    pub limits: ManifestLimits,
    #[serde(default)]
    pub grants: ManifestGrants,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    pub memory_mb: Option<u32>,
    pub timeout_ms: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub max_retries: Option<u32>,
    pub backoff_ms: Option<u64>,
    pub backoff_cap_ms: Option<u64>,
    pub fuel: Option<u64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestGrants {
    #[serde(default)]
    pub allow_http: Vec<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub kv: Vec<String>,
    #[serde(default)]
    pub inject_headers: Vec<String>,
}

impl Manifest {
    /// Reads a manifest; a relative component path is resolved against the manifest's folder.
    pub fn read(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut manifest =
            Manifest::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(component) = &manifest.component
            && component.is_relative()
        {
            let base = path.parent().unwrap_or(Path::new("."));
            manifest.component = Some(base.join(component));
        }
        Ok(manifest)
    }

    pub fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The deployment's query parameters, in the names `POST /api/v1/handlers` takes.
    pub fn query(&self) -> Vec<(String, String)> {
        let mut query = Vec::new();
        let mut one = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                query.push((name.to_string(), value));
            }
        };
        one("type", self.job_type.clone());
        one("tenant", self.tenant.clone());
        let l = &self.limits;
        one("memory_mb", l.memory_mb.map(|v| v.to_string()));
        one("timeout_ms", l.timeout_ms.map(|v| v.to_string()));
        one("max_concurrency", l.max_concurrency.map(|v| v.to_string()));
        one("max_retries", l.max_retries.map(|v| v.to_string()));
        one("backoff_ms", l.backoff_ms.map(|v| v.to_string()));
        one("backoff_cap_ms", l.backoff_cap_ms.map(|v| v.to_string()));
        one("fuel", l.fuel.map(|v| v.to_string()));
        let g = &self.grants;
        let many = [
            ("allow_http", g.allow_http.clone()),
            ("secret", g.secrets.clone()),
            (
                "config",
                g.config.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            ),
            ("kv", g.kv.clone()),
            ("inject_header", g.inject_headers.clone()),
        ];
        for (name, values) in many {
            query.extend(values.into_iter().map(|v| (name.to_string(), v)));
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
type = "charge"
tenant = "acme"
component = "charge.wasm"

[limits]
memory_mb = 32
timeout_ms = 10000

[grants]
allow_http = ["https://api.stripe.com"]
secrets = ["STRIPE_KEY"]
kv = ["payments"]
config = { region = "eu", mode = "live" }
"#;

    #[test]
    fn a_manifest_becomes_the_deploy_query() {
        let query = Manifest::parse(EXAMPLE).unwrap().query();
        let has = |k: &str, v: &str| query.iter().any(|(a, b)| a == k && b == v);
        assert!(has("type", "charge"));
        assert!(has("tenant", "acme"));
        assert!(has("memory_mb", "32"));
        assert!(has("timeout_ms", "10000"));
        assert!(has("allow_http", "https://api.stripe.com"));
        assert!(has("secret", "STRIPE_KEY"));
        assert!(has("kv", "payments"));
        assert!(has("config", "region=eu"));
        assert!(has("config", "mode=live"));
    }

    #[test]
    fn a_misspelt_field_is_refused_rather_than_ignored() {
        let error = Manifest::parse("[grants]\nalow_http = [\"https://x.com\"]\n").unwrap_err();
        assert!(error.contains("alow_http"), "{error}");
    }

    #[test]
    fn the_component_path_is_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handler.toml");
        std::fs::write(&path, EXAMPLE).unwrap();
        let manifest = Manifest::read(&path).unwrap();
        assert_eq!(manifest.component, Some(dir.path().join("charge.wasm")));
    }
}
