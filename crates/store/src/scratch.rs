//! Throw-away databases for the tests and benchmarks of crates that already depend on the
//! store (`smpx_testdb` itself, re-exported; only with the `test-util` feature, so nothing of
//! it ships in a release build of a service).

pub use smpx_testdb::{
    database, postgres, postgres_base_url, sqlite, Backend, Backend as Which, TestDbError,
};
