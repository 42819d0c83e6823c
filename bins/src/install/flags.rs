//! The checks of `direwolf install`'s flags: what would be refused by the API server or by the
//! container runtime only once applied is refused here, in one line, before anything is printed.

/// A namespace: a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters,
/// starting and ending with a letter or digit).
pub fn namespace(s: &str) -> Result<String, String> {
    accepted(s, dns_label(s), || {
        format!(
            "namespace {s:?} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63, e.g. games)"
        )
    })
}

/// `s`, when `ok`; else the message `why` makes.
fn accepted(s: &str, ok: bool, why: impl FnOnce() -> String) -> Result<String, String> {
    if ok { Ok(s.to_owned()) } else { Err(why()) }
}

/// The name of a Secret: a DNS-1123 subdomain (lowercase letters, digits, `-` and `.`).
pub fn secret_name(s: &str) -> Result<String, String> {
    accepted(s, dns_subdomain(s), || {
        format!(
            "Secret name {s:?} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', e.g. direwolf-oidc)"
        )
    })
}

/// An image reference, `[REGISTRY[:PORT]/]NAME[:TAG][@DIGEST]` as the container runtimes parse it.
pub fn image(s: &str) -> Result<String, String> {
    accepted(s, image_reference(s), || {
        format!(
            "image {s:?} is not an image reference ([REGISTRY/]NAME[:TAG][@DIGEST], lowercase NAME, e.g. ghcr.io/games-on-whales/direwolf:latest)"
        )
    })
}

/// An extended resource and a count, `NAME=COUNT` with a qualified resource name
/// (`nvidia.com/gpu=1`, `gpu.intel.com/i915=1`).
pub fn gpu_resource(s: &str) -> Result<direwolf_k8s::operator::GpuResource, String> {
    let gpu: direwolf_k8s::operator::GpuResource = s.parse().map_err(|e| format!("{e}"))?;
    let qualified = match gpu.name.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && resource_name(name),
        None => resource_name(&gpu.name),
    };
    if qualified {
        Ok(gpu)
    } else {
        Err(format!(
            "GPU resource {:?} is not a resource name (e.g. nvidia.com/gpu=1)",
            gpu.name
        ))
    }
}

/// A Gateway, `NAMESPACE/NAME`.
pub fn gateway(s: &str) -> Result<direwolf_k8s::operator::GatewayExposure, String> {
    s.parse().map_err(|e| format!("{e}"))
}

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum_lower(c) || c == '-')
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower)
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// The name part of a qualified name: alphanumerics, `-`, `_`, `.`, at most 63, alphanumeric
/// at both ends.
fn resource_name(s: &str) -> bool {
    let edge = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| edge(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(edge)
        && s.ends_with(edge)
}

fn image_reference(s: &str) -> bool {
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if digest.is_some_and(|d| !image_digest(d)) {
        return false;
    }
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry's port).
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if tag.is_some_and(|t| !image_tag(t)) || name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 {
        let first = components[0];
        if first.contains(['.', ':']) || first == "localhost" {
            if !registry(first) {
                return false;
            }
            components.remove(0);
        }
    }
    components.into_iter().all(path_component)
}

/// `host[:port]`: labels of letters, digits and `-`.
fn registry(s: &str) -> bool {
    let (host, port) = match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label) && port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok())
}

/// Lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn path_component(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| alnum_lower(c) || matches!(c, '.' | '_' | '-'))
        && s.starts_with(alnum_lower)
        && s.ends_with(alnum_lower)
        && !s.contains("..")
        && !s.contains("___")
        && !s.contains("._")
        && !s.contains("_.")
}

fn image_tag(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
}

/// `ALGORITHM:HEX` with at least 32 hexadecimal digits (`sha256:` and 64).
fn image_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    !algorithm.is_empty()
        && algorithm
            .chars()
            .all(|c| alnum_lower(c) || matches!(c, '+' | '.' | '_' | '-'))
        && hex.len() >= 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for good in ["direwolf", "games", "a", "team-1", &"a".repeat(63)] {
            assert!(namespace(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Games",
            "-games",
            "games-",
            "ga_mes",
            "ga.mes",
            &"a".repeat(64),
        ] {
            let err = namespace(bad).expect_err(bad);
            assert!(err.contains("DNS-1123") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn images() {
        for good in [
            "direwolf",
            "ghcr.io/games-on-whales/direwolf:latest",
            "ghcr.io/games-on-whales/direwolf:v0.1.0-rc.1",
            "localhost:5000/direwolf:dev",
            "localhost/direwolf",
            "registry.example.com:443/team/direwolf@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "direwolf:1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "my_org/my__image",
        ] {
            assert!(image(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Direwolf",
            "ghcr.io/Games/direwolf",
            "direwolf:",
            "direwolf:-x",
            "direwolf@sha256:abc",
            "direwolf@latest",
            "ghcr.io//direwolf",
            "ghcr.io/direwolf/",
            "direwolf latest",
            "ghcr.io:port/direwolf",
            "direwolf:a:b",
        ] {
            let err = image(bad).expect_err(bad);
            assert!(err.contains("image reference") && !err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn gpu_resources() {
        for good in [
            "nvidia.com/gpu=1",
            "gpu.intel.com/i915=2",
            "amd.com/gpu=1",
            "gpu=1",
        ] {
            assert!(gpu_resource(good).is_ok(), "{good}");
        }
        for bad in [
            "nvidia.com/gpu",
            "nvidia.com/gpu=0",
            "nvidia.com/gpu=x",
            "=1",
            "Nvidia.com/gpu=1",
            "a b=1",
            "nvidia.com/=1",
        ] {
            let err = gpu_resource(bad).expect_err(bad);
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
