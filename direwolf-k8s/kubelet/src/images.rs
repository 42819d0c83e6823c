//! The image map: which local program stands for which container image, and the `$(VAR)`
//! expansion Kubernetes applies to a container's command, args and env.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

/// The program an image stands for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageProgram {
    /// The command line (the image's entrypoint); `$(VAR)` expands from the container's env.
    pub argv: Vec<String>,
    /// Environment added after the container's own (the image's env).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Image name → program.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct ImageMap(pub BTreeMap<String, ImageProgram>);

/// The image map cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageMapError {
    /// The file cannot be read.
    #[error("cannot read the image map {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an image map.
    #[error("the image map {path} is not YAML of image: {{argv: [..], env: {{..}}}}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why (boxed: the parser error is large).
        source: Box<serde_saphyr::Error>,
    },
    /// An image has an empty argv.
    #[error("the image map {path}: image {image} has an empty argv")]
    EmptyArgv {
        /// The file.
        path: String,
        /// The image.
        image: String,
    },
}

impl ImageMap {
    /// Reads a YAML image map.
    pub fn load(path: &Path) -> Result<Self, ImageMapError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ImageMapError::Read {
            path: p.clone(),
            source,
        })?;
        let map: ImageMap = serde_saphyr::from_str(&text).map_err(|source| ImageMapError::Parse {
            path: p.clone(),
            source: Box::new(source),
        })?;
        if let Some((image, _)) = map.0.iter().find(|(_, prog)| prog.argv.is_empty()) {
            return Err(ImageMapError::EmptyArgv {
                path: p,
                image: image.clone(),
            });
        }
        Ok(map)
    }

    /// The program of `image`, if mapped.
    pub fn get(&self, image: &str) -> Option<&ImageProgram> {
        self.0.get(image)
    }
}

/// Expands `$(VAR)` from `env` as Kubernetes does: `$$` is a literal `$`, an unknown or
/// malformed reference stays as written.
pub fn expand(input: &str, env: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(')
            && let Some(end) = body.find(')')
            && let Some(value) = env.get(&body[..end])
        {
            out.push_str(value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let env: HashMap<String, String> = [("A".to_owned(), "x".to_owned())].into();
        assert_eq!(expand("--a=$(A) $(B) $$(A) $", &env), "--a=x $(B) $(A) $");
        assert_eq!(expand("$(A", &env), "$(A");
    }

    #[test]
    fn map_parses_and_rejects_empty_argv() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("images.yaml");
        std::fs::write(&path, "img:1:\n  argv: [sh, -c]\n  env: {K: v}\n").expect("write");
        let map = ImageMap::load(&path).expect("a map");
        assert_eq!(map.get("img:1").map(|p| p.argv.len()), Some(2));
        std::fs::write(&path, "img:1: {argv: []}\n").expect("write");
        assert!(matches!(
            ImageMap::load(&path),
            Err(ImageMapError::EmptyArgv { .. })
        ));
    }
}
