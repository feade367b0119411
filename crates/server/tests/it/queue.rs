//! Queue ingress against the real Redis at 127.0.0.1:6379.
