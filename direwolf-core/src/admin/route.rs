//! The routes of the admin API, parsed from the path, and how the audit log names them.

use std::fmt;

use hyper::Method;

/// The version prefix of every path.
pub const PREFIX: &str = "/api/v1";

/// A resource of the admin API; path parameters are kept as text (handlers parse them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/users`
    Users,
    /// `/users/{name}`
    User(String),
    /// `/users/{name}/password`
    UserPassword(String),
    /// `/users/{name}/pairing-links`
    UserLinks(String),
    /// `/apps`
    Apps,
    /// `/apps/{id}`
    App(String),
    /// `/apps/{id}/image`
    AppImage(String),
    /// `/pairings`
    Pairings,
    /// `/pairings/{fingerprint}`
    Pairing(String),
    /// `/pending-pairings`
    Pending,
    /// `/pending-pairings/{secret}/approve`
    Approve(String),
    /// `/sessions`
    Sessions,
    /// `/sessions/{id}`
    Session(String),
}

impl Route {
    /// The route of `path`, or `None`.
    pub fn parse(path: &str) -> Option<Route> {
        let rest = path.strip_prefix(PREFIX)?;
        let segments: Vec<&str> = rest.strip_prefix('/')?.split('/').collect();
        let param = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(match segments.as_slice() {
            ["users"] => Route::Users,
            ["users", name] => Route::User(param(name)?),
            ["users", name, "password"] => Route::UserPassword(param(name)?),
            ["users", name, "pairing-links"] => Route::UserLinks(param(name)?),
            ["apps"] => Route::Apps,
            ["apps", id] => Route::App(param(id)?),
            ["apps", id, "image"] => Route::AppImage(param(id)?),
            ["pairings"] => Route::Pairings,
            ["pairings", fingerprint] => Route::Pairing(param(fingerprint)?),
            ["pending-pairings"] => Route::Pending,
            ["pending-pairings", secret, "approve"] => Route::Approve(param(secret)?),
            ["sessions"] => Route::Sessions,
            ["sessions", id] => Route::Session(param(id)?),
            _ => return None,
        })
    }

    /// The methods this route answers.
    pub fn allowed(&self) -> &'static [Method] {
        match self {
            Route::Users | Route::Apps => &[Method::GET, Method::POST],
            Route::User(_) | Route::App(_) | Route::Pairing(_) | Route::Session(_) => &[Method::DELETE],
            Route::AppImage(_) => &[Method::GET, Method::PUT],
            Route::Pairings | Route::Pending | Route::Sessions => &[Method::GET],
            Route::Approve(_) | Route::UserLinks(_) => &[Method::POST],
            Route::UserPassword(_) => &[Method::PUT],
        }
    }
}

/// How the audit log names a route: paths, except a pending pairing's secret (a capability
/// for that pairing), of which only the first four characters are shown.
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Users => write!(f, "users"),
            Route::User(name) => write!(f, "users/{name}"),
            Route::UserPassword(name) => write!(f, "users/{name}/password"),
            Route::UserLinks(name) => write!(f, "users/{name}/pairing-links"),
            Route::Apps => write!(f, "apps"),
            Route::App(id) => write!(f, "apps/{id}"),
            Route::AppImage(id) => write!(f, "apps/{id}/image"),
            Route::Pairings => write!(f, "pairings"),
            Route::Pairing(fp) => write!(f, "pairings/{fp}"),
            Route::Pending => write!(f, "pending-pairings"),
            Route::Approve(secret) => {
                let shown: String = secret.chars().take(4).collect();
                write!(f, "pending-pairings/{shown}…/approve")
            }
            Route::Sessions => write!(f, "sessions"),
            Route::Session(id) => write!(f, "sessions/{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(Route::parse("/api/v1/users"), Some(Route::Users));
        assert_eq!(
            Route::parse("/api/v1/apps/3/image"),
            Some(Route::AppImage("3".into()))
        );
        assert_eq!(
            Route::parse("/api/v1/pending-pairings/ABCDEF0123456789/approve"),
            Some(Route::Approve("ABCDEF0123456789".into()))
        );
        for bad in [
            "/",
            "/api/v1",
            "/api/v1/",
            "/api/v1/users/",
            "/api/v2/users",
            "/api/v1/users/a/b",
        ] {
            assert_eq!(Route::parse(bad), None, "{bad}");
        }
        let shown = Route::Approve("ABCDEF0123456789".into()).to_string();
        assert!(!shown.contains("0123456789"), "{shown}");
    }
}
