//! `direwolf crd`: prints every CustomResourceDefinition of direwolf as multi-document YAML,
//! for `kubectl apply --server-side -f -` and for the committed copy under `crds/` (server-side:
//! the App schema is too large for the annotation client-side apply writes).

use std::io::Write;

/// Writes the CRDs to `out`.
pub fn run(out: &mut impl Write) -> anyhow::Result<()> {
    let yaml = direwolf_k8s::crd::crds_yaml()?;
    out.write_all(yaml.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn prints_all_four_crds() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for name in ["apps", "users", "pairings", "sessions"] {
            assert!(
                text.contains(&format!("name: {name}.direwolf.games-on-whales.github.io")),
                "{name}"
            );
        }
    }
}
