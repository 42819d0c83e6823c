//! Kubernetes backends of direwolf. Under construction: see issue 5.
