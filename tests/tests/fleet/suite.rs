//! The store suite that SQLite's unit tests run (`store::suite`), here on
//! fleet nodes: each store it opens is a node of its own new fleet, on a
//! real PostgreSQL, whose every change goes through the log.

use denylist::store::{
    FleetStore, Store,
    suite::{ALL, Test},
};
use denylist_tests::{daemon::TempDir, postgres::Postgres};

fn on_fleet(test: Test) {
    // Dropped after the stores, which the test drops before it returns.
    let mut fleets: Vec<(Postgres, TempDir)> = Vec::new();
    test(&mut || -> Box<dyn Store> {
        let pg = Postgres::fleet(&[]);
        let dir = TempDir::new("fleet-suite");
        let params = pg.admin_params("denylist");
        let connect = Box::new(move || postgres::Client::connect(&params, postgres::NoTls));
        let store = FleetStore::open(dir.path(), connect, "the suite's", "suite").unwrap();
        fleets.push((pg, dir));
        Box::new(store)
    });
}

#[test]
fn the_store_suite_passes_on_fleet_nodes() {
    for (name, test) in ALL {
        eprintln!("suite: {name}");
        on_fleet(*test);
    }
}
