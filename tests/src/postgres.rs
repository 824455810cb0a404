//! A private PostgreSQL 15 server for one test: initdb into a temporary
//! directory and pg_ctl on a free loopback port and a private socket
//! directory, both as the postgres user (initdb refuses root). Dropping it
//! stops the server and deletes the directory, after a failure too.

use std::{
    fs,
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Where Debian's postgresql-15 puts the server's programs; `cargo xtask
/// setup` installs it.
const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", &format!("{BIN}/{program}")]);
    c
}

fn ok(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A port nothing listens on now. Another process may take it before the
/// server binds it; pg_ctl then fails loudly rather than the test passing.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("its address").port()
}

impl Postgres {
    /// Starts a new, empty server; its superuser is `postgres`, who
    /// connects over the socket without a password. Roles made by the
    /// tests log in over TCP with a password (scram-sha-256).
    pub fn start() -> Postgres {
        crate::require_root();
        let dir = std::env::temp_dir().join(format!(
            "denylist-pg-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        fs::create_dir(&dir).expect("create the server's directory");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod 0700");
        ok(
            "chown",
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .output()
                .expect("run chown"),
        );
        // From here on Drop cleans up, whatever fails next.
        let pg = Postgres {
            dir,
            port: free_port(),
        };
        ok(
            "initdb",
            as_postgres("initdb")
                .arg("-D")
                .arg(pg.data())
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ])
                .output()
                .expect("run initdb"),
        );
        pg.resume();
        pg
    }

    /// Starts the server again after [`Postgres::stop`], on the same port.
    pub fn resume(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.dir.display()
        );
        ok(
            "pg_ctl start",
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-o", &options, "-l"])
                .arg(self.dir.join("server.log"))
                .arg("start")
                .output()
                .expect("run pg_ctl"),
        );
    }

    /// A new server set up for a fleet as docs/fleet.md says: its roles
    /// (docs/fleet-roles.sql), the tables made by the owner
    /// (`denylistd --init-fleet`'s migration), and a login role per node
    /// in `nodes`, with the password `pw-NODE` over TCP (the socket needs
    /// none).
    pub fn fleet(nodes: &[&str]) -> Postgres {
        let pg = Postgres::start();
        let mut admin = pg.admin("postgres");
        // One statement at a time, as psql -f runs it: CREATE DATABASE may
        // not share a transaction.
        let sql: String = include_str!("../../docs/fleet-roles.sql")
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for statement in sql.split(';').filter(|s| !s.trim().is_empty()) {
            admin
                .batch_execute(statement)
                .expect("the roles of docs/fleet-roles.sql");
        }
        for n in nodes {
            admin
                .batch_execute(&format!(
                    "CREATE ROLE {n} LOGIN PASSWORD 'pw-{n}' IN ROLE denylist_node"
                ))
                .expect("a node's role");
        }
        denylist::store::migrate(&mut pg.owner()).expect("the fleet's tables");
        pg
    }

    /// Turns TLS on, with a server certificate for the name `localhost`
    /// alone, signed by a CA made for it; returns that CA's certificate
    /// and another CA's, which did not sign it. Made with the openssl
    /// tool, as an operator would.
    pub fn enable_tls(&self) -> (PathBuf, PathBuf) {
        let tls = self.dir.join("tls");
        fs::create_dir(&tls).expect("create the TLS directory");
        let openssl = |args: &[&str]| {
            ok(
                "openssl",
                Command::new("openssl")
                    .current_dir(&tls)
                    .args(args)
                    .output()
                    .expect("run openssl"),
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        for ca in ["ca", "other-ca"] {
            openssl(
                &[
                    &["req", "-x509", "-nodes", "-days", "2"][..],
                    &ec,
                    &[
                        "-keyout",
                        &format!("{ca}.key"),
                        "-out",
                        &format!("{ca}.crt"),
                    ],
                    &["-subj", &format!("/CN=denylist test {ca}")],
                ]
                .concat(),
            );
        }
        openssl(
            &[
                &["req", "-nodes"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        fs::write(tls.join("server.ext"), "subjectAltName=DNS:localhost\n").expect("write");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        ok(
            "chown",
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&tls)
                .output()
                .expect("run chown"),
        );
        fs::set_permissions(tls.join("server.key"), fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        let mut admin = self.admin("postgres");
        for (key, file) in [
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ] {
            admin
                .batch_execute(&format!(
                    "ALTER SYSTEM SET {key} = '{}'",
                    tls.join(file).display()
                ))
                .expect("set the server's TLS files");
        }
        // One statement each: ALTER SYSTEM refuses a transaction block.
        for statement in ["ALTER SYSTEM SET ssl = on", "SELECT pg_reload_conf()"] {
            admin.batch_execute(statement).expect("turn TLS on");
        }
        // The reload is asynchronous: wait until the server says it took it.
        for _ in 0..100 {
            let on: String = admin.query_one("SHOW ssl", &[]).expect("SHOW ssl").get(0);
            if on == "on" {
                return (tls.join("ca.crt"), tls.join("other-ca.crt"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "the server never turned TLS on: {}",
            fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// A connection as the fleet database's owner, over the socket.
    pub fn owner(&self) -> postgres::Client {
        let params = format!(
            "host={} port={} user=denylist_owner dbname=denylist",
            self.dir.display(),
            self.port
        );
        postgres::Client::connect(&params, postgres::NoTls).expect("connect as the owner")
    }

    /// The `--store` URL of node `name`: its role over the socket, which
    /// every network namespace sees.
    pub fn node_url(&self, name: &str) -> String {
        format!(
            "postgres://{name}@{}:{}/denylist?sslmode=disable",
            self.dir.display().to_string().replace('/', "%2F"),
            self.port
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory of the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Connection parameters for the superuser, over the socket.
    pub fn admin_params(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.display(),
            self.port
        )
    }

    /// Connection parameters for `user` with `password`, over TCP.
    pub fn params(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db}",
            self.port
        )
    }

    /// A superuser connection to `db`.
    pub fn admin(&self, db: &str) -> postgres::Client {
        postgres::Client::connect(&self.admin_params(db), postgres::NoTls)
            .expect("connect as the superuser")
    }

    /// Stops the server at once, as a crash or an outage would.
    pub fn stop(&self) {
        ok(
            "pg_ctl stop",
            as_postgres("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-w", "-m", "immediate", "stop"])
                .output()
                .expect("run pg_ctl"),
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
