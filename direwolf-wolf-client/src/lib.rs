//! A typed client for the Wolf HTTP API. Under construction: see issue 3.
