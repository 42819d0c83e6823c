//! Runnable examples of the direwolf crates; see `examples/README.md`.
