//! The User's caps on game containers (`docs/protocol/kubernetes.md` § Caps and sidecar policies)
//! and the merge of sidecar policy resources over the built-in defaults, with the Kubernetes
//! quantity arithmetic they need.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of a Kubernetes quantity (`2`, `500m`, `4Gi`, `1e3`), or `None` if it is not one.
pub fn quantity_value(quantity: &Quantity) -> Option<f64> {
    let text = quantity.0.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// A game container over (or without) a capped amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapViolation {
    /// The container asks for more than the cap.
    #[error("container {container:?} {kind} {resource}={asked} exceeds the User's cap {cap}")]
    Exceeds {
        /// The game container.
        container: String,
        /// `limit` or `request`.
        kind: &'static str,
        /// The resource name.
        resource: String,
        /// What the container asks for.
        asked: String,
        /// The User's cap.
        cap: String,
    },
    /// The container sets no amount of a capped resource (it would be unbounded).
    #[error("container {container:?} sets no {kind} for {resource}, which the User caps at {cap}")]
    Unset {
        /// The game container.
        container: String,
        /// `limit` or `request`.
        kind: &'static str,
        /// The resource name.
        resource: String,
        /// The User's cap.
        cap: String,
    },
    /// A quantity that is not one.
    #[error("{what} {value:?} is not a Kubernetes quantity")]
    Invalid {
        /// Where it was found.
        what: String,
        /// The text.
        value: String,
    },
}

/// Checks one game container against the User's caps: for every resource the User names, the
/// container's limit (request) must be set and not exceed the User's limit (request). An unset
/// request counts as the limit, as Kubernetes defaults it.
///
/// # Errors
/// The first violation found.
pub fn check_caps(container: &Container, caps: &ResourceRequirements) -> Result<(), CapViolation> {
    let own = container.resources.clone().unwrap_or_default();
    let limits = own.limits.unwrap_or_default();
    let requests = own.requests.unwrap_or_default();
    let checks = [
        ("limit", caps.limits.as_ref(), &limits, None),
        ("request", caps.requests.as_ref(), &requests, Some(&limits)),
    ];
    for (kind, capped, asked, fallback) in checks {
        for (resource, cap) in capped.into_iter().flatten() {
            let asked = asked
                .get(resource)
                .or_else(|| fallback.and_then(|f| f.get(resource)));
            let Some(asked) = asked else {
                return Err(CapViolation::Unset {
                    container: container.name.clone(),
                    kind,
                    resource: resource.clone(),
                    cap: cap.0.clone(),
                });
            };
            let value = |q: &Quantity, what: String| {
                quantity_value(q).ok_or_else(|| CapViolation::Invalid {
                    what,
                    value: q.0.clone(),
                })
            };
            let cap_value = value(cap, format!("the User's {kind} cap on {resource}"))?;
            let asked_value = value(
                asked,
                format!("container {:?} {kind} of {resource}", container.name),
            )?;
            if asked_value > cap_value {
                return Err(CapViolation::Exceeds {
                    container: container.name.clone(),
                    kind,
                    resource: resource.clone(),
                    asked: asked.0.clone(),
                    cap: cap.0.clone(),
                });
            }
        }
    }
    Ok(())
}

/// `policy` merged over `defaults` resource by resource: a resource the policy names replaces
/// the default, the others keep it.
pub fn merge_resources(
    defaults: ResourceRequirements,
    policy: Option<&ResourceRequirements>,
) -> ResourceRequirements {
    let Some(policy) = policy else {
        return defaults;
    };
    let merge = |base: Option<BTreeMap<String, Quantity>>, over: &Option<BTreeMap<String, Quantity>>| {
        let mut merged = base.unwrap_or_default();
        merged.extend(over.clone().unwrap_or_default());
        (!merged.is_empty()).then_some(merged)
    };
    ResourceRequirements {
        limits: merge(defaults.limits, &policy.limits),
        requests: merge(defaults.requests, &policy.requests),
        claims: policy.claims.clone().or(defaults.claims),
    }
}

/// Requirements of `requests` (name, quantity) only.
pub fn requests(pairs: &[(&str, &str)]) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        ),
        ..ResourceRequirements::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_owned())
    }

    fn container(limits: &[(&str, &str)], reqs: &[(&str, &str)]) -> Container {
        let map = |pairs: &[(&str, &str)]| {
            (!pairs.is_empty()).then(|| pairs.iter().map(|(k, v)| ((*k).to_owned(), q(v))).collect())
        };
        Container {
            name: "game".to_owned(),
            resources: Some(ResourceRequirements {
                limits: map(limits),
                requests: map(reqs),
                claims: None,
            }),
            ..Container::default()
        }
    }

    fn caps(limits: &[(&str, &str)], reqs: &[(&str, &str)]) -> ResourceRequirements {
        container(limits, reqs).resources.expect("set")
    }

    #[test]
    fn quantities_parse() {
        for (text, value) in [
            ("2", 2.0),
            ("500m", 0.5),
            ("2000m", 2.0),
            ("4Gi", 4.0 * 1024.0 * 1024.0 * 1024.0),
            ("1k", 1000.0),
            ("1e3", 1000.0),
            ("0.5", 0.5),
        ] {
            assert_eq!(quantity_value(&q(text)), Some(value), "{text}");
        }
        assert_eq!(quantity_value(&q("lots")), None);
        assert_eq!(quantity_value(&q("1Zi")), None);
    }

    #[test]
    fn caps_bound_limits_and_requests_of_named_resources_only() {
        let user = caps(&[("cpu", "8"), ("memory", "16Gi")], &[("cpu", "4")]);
        let fits = container(
            &[("cpu", "8000m"), ("memory", "4Gi"), ("nvidia.com/gpu", "1")],
            &[("cpu", "2")],
        );
        assert_eq!(check_caps(&fits, &user), Ok(()));
        let over = container(&[("cpu", "9"), ("memory", "4Gi")], &[("cpu", "2")]);
        let err = check_caps(&over, &user).expect_err("over the cpu cap");
        assert!(
            err.to_string().contains("limit cpu=9 exceeds the User's cap 8"),
            "{err}"
        );
        // The request defaults to the limit, which is above the request cap.
        let request_over = container(&[("cpu", "6"), ("memory", "1Gi")], &[]);
        assert!(matches!(
            check_caps(&request_over, &user),
            Err(CapViolation::Exceeds { kind: "request", .. })
        ));
        let unset = container(&[("cpu", "1")], &[]);
        assert!(matches!(
            check_caps(&unset, &user),
            Err(CapViolation::Unset { ref resource, .. }) if resource == "memory"
        ));
        let invalid = container(&[("cpu", "many"), ("memory", "1Gi")], &[("cpu", "1")]);
        assert!(matches!(
            check_caps(&invalid, &user),
            Err(CapViolation::Invalid { .. })
        ));
        assert_eq!(check_caps(&over, &ResourceRequirements::default()), Ok(()));
    }

    #[test]
    fn policy_resources_replace_defaults_one_by_one() {
        let defaults = requests(&[("cpu", "100m"), ("memory", "100Mi")]);
        let policy = ResourceRequirements {
            requests: Some([("cpu".to_owned(), q("1"))].into()),
            limits: Some([("nvidia.com/gpu".to_owned(), q("1"))].into()),
            claims: None,
        };
        let merged = merge_resources(defaults.clone(), Some(&policy));
        let requests = merged.requests.expect("requests");
        assert_eq!(requests.get("cpu"), Some(&q("1")));
        assert_eq!(requests.get("memory"), Some(&q("100Mi")));
        assert_eq!(
            merged.limits.expect("limits").get("nvidia.com/gpu"),
            Some(&q("1"))
        );
        assert_eq!(merge_resources(defaults.clone(), None), defaults);
    }
}
