//! Learning: the pattern library (seeded patterns shipped in `patterns/*.toml`, and
//! patterns learned from verified fixes), how patterns match alerts, and how their
//! confidence follows outcomes.

pub mod library;
pub mod patterns;
pub mod record;
