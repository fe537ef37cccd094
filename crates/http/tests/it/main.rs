//! smpx-http's integration tests: one binary (ARCHITECTURE.md, "Tests").
mod serve;
