//! The Moonlight (GameStream) HTTP/HTTPS server library. Under construction: see issue 2.
