//! Deny by default. Every route declares what it needs in its OpenAPI
//! `security` attribute, which is both documentation and enforcement:
//! - `security(("bearer" = ["team:create"]))`: that permission (for
//!   team-scoped resources: in some team; the handler then checks the
//!   resource's own team);
//! - `security(("bearer" = []))`: any authenticated caller;
//! - `security(())`: public, allowed only for the routes in `PUBLIC_ROUTES`.
//!
//! The table is built from the generated OpenAPI document at start-up, and
//! start-up fails on a route that declares nothing.

use std::collections::HashMap;

use super::permission::Permission;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Authenticated,
    Requires(Permission),
}

/// The short list of routes that need no credentials.
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/api/v1/openapi.json"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
];

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

#[derive(Default)]
pub struct RouteTable {
    routes: HashMap<(String, String), Access>,
    /// Request path -> declared pattern ("/api/v1/teams/{id}").
    patterns: matchit::Router<String>,
    /// Each path's methods, for the `Allow` header of a 405 ("GET, POST").
    allow: HashMap<String, String>,
}

impl RouteTable {
    pub fn from_openapi(doc: &serde_json::Value) -> Result<RouteTable, String> {
        let mut routes = HashMap::new();
        let paths = doc.get("paths").and_then(|p| p.as_object()).ok_or("OpenAPI document has no paths")?;
        for (path, item) in paths {
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let m = method.to_uppercase();
                let access = access_of(op).map_err(|e| format!("{m} {path}: {e}"))?;
                if access == Access::Public && !PUBLIC_ROUTES.contains(&(m.as_str(), path.as_str())) {
                    return Err(format!("{m} {path} is public but not in PUBLIC_ROUTES"));
                }
                routes.insert((m, path.clone()), access);
            }
        }
        let mut patterns = matchit::Router::new();
        for path in paths.keys() {
            patterns.insert(path.clone(), path.clone()).map_err(|e| format!("{path}: {e}"))?;
        }
        let mut allow: HashMap<String, Vec<String>> = HashMap::new();
        for (m, path) in routes.keys() {
            allow.entry(path.clone()).or_default().push(m.clone());
        }
        let allow = allow
            .into_iter()
            .map(|(path, mut methods)| {
                methods.sort();
                (path, methods.join(", "))
            })
            .collect();
        Ok(RouteTable { routes, patterns, allow })
    }

    /// The declared pattern a request path falls under, if any.
    pub fn pattern_of(&self, path: &str) -> Option<&str> {
        self.patterns.at(path).ok().map(|m| m.value.as_str())
    }

    /// The route pattern of a request: the radix tree over the path the
    /// router matches on, else actix's own lookup (slower: a regex per
    /// resource), which also finds routes missing from the table so that
    /// the guard can refuse them. `None`: no route matches (404).
    pub fn pattern_of_request(&self, req: &actix_web::dev::ServiceRequest) -> Option<String> {
        match self.pattern_of(req.match_info().as_str()) {
            Some(p) => Some(p.to_string()),
            None => req.match_pattern(),
        }
    }

    pub fn access(&self, method: &str, pattern: &str) -> Option<Access> {
        self.routes.get(&(method.to_string(), pattern.to_string())).copied()
    }

    /// The methods declared on `pattern` ("GET, POST"), if any.
    pub fn allowed(&self, pattern: &str) -> Option<&str> {
        self.allow.get(pattern).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &Access)> {
        self.routes.iter()
    }
}

fn access_of(op: &serde_json::Value) -> Result<Access, String> {
    let reqs = op.get("security").and_then(|s| s.as_array()).ok_or("declares no security requirement")?;
    match reqs.as_slice() {
        [single] => {
            let obj = single.as_object().ok_or("malformed security requirement")?;
            match obj.get("bearer") {
                None if obj.is_empty() => Ok(Access::Public),
                None => Err("unknown security scheme".into()),
                Some(scopes) => match scopes.as_array().map(|a| a.as_slice()) {
                    Some([]) => Ok(Access::Authenticated),
                    Some([p]) => p
                        .as_str()
                        .and_then(Permission::parse)
                        .map(Access::Requires)
                        .ok_or_else(|| format!("unknown permission {p}")),
                    _ => Err("declare exactly one permission".into()),
                },
            }
        }
        _ => Err("declare exactly one security requirement".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undeclared_or_unlisted_public_routes_are_refused() {
        let ok = json!({"paths": {"/api/v1/teams": {"post": {"security": [{"bearer": ["team:create"]}]}},
                                 "/healthz": {"get": {"security": [{}]}}}});
        let t = RouteTable::from_openapi(&ok).unwrap();
        assert!(matches!(t.access("POST", "/api/v1/teams"), Some(Access::Requires(_))));
        assert_eq!(t.access("GET", "/healthz"), Some(Access::Public));
        let none = json!({"paths": {"/api/v1/x": {"get": {}}}});
        assert!(RouteTable::from_openapi(&none).is_err());
        let sneaky = json!({"paths": {"/api/v1/x": {"get": {"security": [{}]}}}});
        assert!(RouteTable::from_openapi(&sneaky).is_err());
        let bad = json!({"paths": {"/api/v1/x": {"get": {"security": [{"bearer": ["root:all"]}]}}}});
        assert!(RouteTable::from_openapi(&bad).is_err());
    }

    #[test]
    fn knows_each_paths_methods() {
        let doc = json!({"paths": {"/api/v1/teams": {"post": {"security": [{"bearer": ["team:create"]}]},
                                                    "get": {"security": [{"bearer": ["team:read"]}]}}}});
        let t = RouteTable::from_openapi(&doc).unwrap();
        assert_eq!(t.allowed("/api/v1/teams"), Some("GET, POST"));
        assert_eq!(t.allowed("/api/v1/nope"), None);
    }
}
