//! libpq's password file, which `PGPASSFILE` names (else `~/.pgpass`):
//! rust-postgres reads none, so the few rules of libpq's format are kept
//! here, as libpq 15's `passwordFromFile` applies them
//! (<https://www.postgresql.org/docs/15/libpq-pgpass.html>).

use std::path::Path;

use postgres::config::Host;

/// The password the first matching line of `text` gives a connection made
/// with `pg`; None when no line matches.
pub(super) fn lookup(text: &str, pg: &postgres::Config) -> Option<String> {
    let user = pg.get_user()?;
    let db = pg.get_dbname().unwrap_or(user);
    let port = pg.get_ports().first().copied().unwrap_or(5432).to_string();
    // rust-postgres takes one password for every host it tries: the first
    // host's line gives it.
    let host = match pg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(dir)) => unix_host(dir),
        None => "localhost".into(),
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(fields)
        .find(|f| {
            let matches = |field: &str, value: &str| field == "*" || field == value;
            matches(&f[0], &host)
                && matches(&f[1], &port)
                && matches(&f[2], db)
                && matches(&f[3], user)
        })
        .map(|mut f| f.swap_remove(4))
}

/// libpq matches a Unix-domain socket's connection by the name
/// `localhost` when it is the default directory, else by the directory.
fn unix_host(dir: &Path) -> String {
    if dir == Path::new("/var/run/postgresql") || dir == Path::new("/run/postgresql") {
        "localhost".into()
    } else {
        dir.to_string_lossy().into_owned()
    }
}

/// A line's five fields, with `\:` and `\\` unescaped; None for a line
/// with fewer. As in libpq, the password ends at the next unescaped colon.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut()?.extend(chars.next()),
            ':' if out.len() < 5 => out.push(String::new()),
            ':' => break,
            c => out.last_mut()?.push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::lookup;

    fn pg(url: &str) -> postgres::Config {
        postgres::Config::from_str(url).unwrap()
    }

    #[test]
    fn the_first_matching_line_gives_the_password() {
        let text = "# fleet\n\
                    other:5432:denylist:node1:wrong\n\
                    db.example:5432:denylist:node1:pa\\:ss:word\n\
                    *:*:*:node1:fallback\n";
        let at = |url| lookup(text, &pg(url));
        assert_eq!(
            at("postgres://node1@db.example/denylist").as_deref(),
            Some("pa:ss"),
            "the password ends at an unescaped colon, as in libpq"
        );
        assert_eq!(
            at("postgres://node1@db.example:6432/denylist").as_deref(),
            Some("fallback"),
            "another port"
        );
        assert_eq!(at("postgres://node2@db.example/denylist"), None);
    }

    #[test]
    fn the_database_defaults_to_the_user_and_sockets_match_by_directory() {
        let text = "localhost:5432:node1:node1:a\n/tmp/pg:5433:denylist:node1:b\n";
        assert_eq!(
            lookup(text, &pg("host=/run/postgresql user=node1")).as_deref(),
            Some("a")
        );
        assert_eq!(
            lookup(
                text,
                &pg("host=/tmp/pg port=5433 user=node1 dbname=denylist")
            )
            .as_deref(),
            Some("b")
        );
        assert_eq!(lookup("short:line\n", &pg("host=h user=node1")), None);
    }
}
