//! Fleet mode against a real PostgreSQL 15 that each test starts: the
//! shared command log at the store's level (`store`), the store suite
//! SQLite passes (`suite`), and denylistd nodes with real traffic
//! (`nodes`).

mod nodes;
mod store;
mod suite;
