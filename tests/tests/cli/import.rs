//! Import: every format detected and read, invalid and guarded lines
//! refused unless told otherwise, replace and merge, TTLs and the export
//! round trip.

use serde_json::Value;

use crate::common::{ENTRY_KEYS, Env, array, assert_entry_shape, set, target_set, targets, time};

/// A plain list with a UTF-8 BOM, CRLF line ends, `#` and `;` comments and
/// blank lines.
const PLAIN: &[u8] = b"\xEF\xBB\xBF# blocked scanners\r\n198.51.100.101\r\n; a semicolon comment\r\n\r\n  198.51.100.102 # trailing comment\r\n203.0.113.64/26\r\n2001:DB8:0:0::10\r\n";

const SPAMHAUS: &[u8] = b"; Spamhaus DROP List 2026/11/28 - (c) 2026 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Sat, 28 Nov 2026 10:00:00 GMT
198.51.100.128/25 ; SBL000111
203.0.113.16/28 ; SBL000222
";

/// drop_v4.json style: one record a line, and the metadata record last.
const SPAMHAUS_JSON: &[u8] = br#"{"cidr":"198.51.100.96/27","sblid":"SBL000333","rir":"arin"}
{"cidr":"2001:db8:5::/48","sblid":"SBL000444","rir":"ripencc"}
{"type":"metadata","timestamp":1795867200,"size":2,"records":2,"copyright":"(c) 2026 The Spamhaus Project SLU","terms":"https://www.spamhaus.org/drop/terms/"}
"#;

const FIREHOL: &[u8] = b"#
# firehol_level1
#
# ipv4 hash:net ipset
#
# A firewall blacklist composed from IP lists, providing
# maximum protection with minimum false positives.
#
# Maintainer      : FireHOL
#
198.51.100.200
203.0.113.200/30
";

const OUR_JSON: &[u8] = br#"[
  {"target": "198.51.100.77", "list": "deny", "reason": "from elsewhere", "ttl": 3600,
   "expires_at": null, "monitor": true, "source": "import:partner", "added_by": "alice",
   "added_at": "2026-01-02T03:04:05.000Z"},
  {"target": "2001:db8:77::/48", "list": "allow", "reason": null, "ttl": null,
   "expires_at": null, "monitor": false, "source": "manual", "added_by": "bob",
   "added_at": "2026-01-02T03:04:06.000Z"}
]
"#;

/// A file name, its content, its format, the draft's targets after the
/// import, and the reasons by target.
type FormatCase = (
    &'static str,
    &'static [u8],
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

#[test]
fn import_reads_every_format_and_detects_it() {
    let env = Env::start("cli-import", &[]);

    let cases: [FormatCase; 4] = [
        (
            "plain.txt",
            PLAIN,
            "plain",
            &[
                "198.51.100.101",
                "198.51.100.102",
                "203.0.113.64/26",
                "2001:db8::10",
            ],
            &[],
        ),
        (
            "drop.txt",
            SPAMHAUS,
            "spamhaus",
            &["198.51.100.128/25", "203.0.113.16/28"],
            &[
                ("198.51.100.128/25", "SBL000111"),
                ("203.0.113.16/28", "SBL000222"),
            ],
        ),
        (
            "drop_v4.json",
            SPAMHAUS_JSON,
            "spamhaus-json",
            &["198.51.100.96/27", "2001:db8:5::/48"],
            &[
                ("198.51.100.96/27", "SBL000333"),
                ("2001:db8:5::/48", "SBL000444"),
            ],
        ),
        (
            "level1.netset",
            FIREHOL,
            "firehol",
            &["198.51.100.200", "203.0.113.200/30"],
            &[],
        ),
    ];
    for (name, content, format, want, reasons) in cases {
        let file = env.file(name, content);
        let file = file.to_str().unwrap();
        for given in ["auto", format] {
            let r = env.json(&["import", file, "--format", given, "--json"]);
            assert_eq!(r["format"], format, "{name} with --format {given}: {r}");
            assert_eq!(r["source"], name, "the source is the file name: {r}");
            assert_eq!(r["entries"], want.len(), "{r}");
            assert_eq!(r["added"], want.len(), "{r}");
            assert_eq!(
                (r["skipped_invalid"].clone(), r["skipped_guarded"].clone()),
                (0.into(), serde_json::json!([]))
            );
            let draft = env.draft();
            assert_eq!(
                target_set(&draft),
                set(want),
                "{name} with --format {given}"
            );
            for e in &draft {
                assert_eq!(e["source"], format!("import:{name}"), "{e}");
                assert_eq!(e["list"], "deny", "{e}");
                let reason = reasons
                    .iter()
                    .find(|(t, _)| e["target"] == *t)
                    .map(|(_, r)| Value::from(*r))
                    .unwrap_or(Value::Null);
                assert_eq!(e["reason"], reason, "{name}: {e}");
            }
            env.ok(&["discard"]);
        }
    }

    // The human summary.
    let file = env.path("drop.txt");
    let r = env.ok(&["import", &file]);
    assert!(
        r.out
            .contains("staged: +2 −0 ~0 from 2 entries (format spamhaus, source drop.txt)"),
        "{r}"
    );
    env.ok(&["discard"]);
    // --reason replaces the SBL id; --source names the import.
    env.ok(&[
        "import",
        &file,
        "--reason",
        "spamhaus drop",
        "--source",
        "sh-drop",
    ]);
    for e in env.draft() {
        assert_eq!(e["reason"], "spamhaus drop", "{e}");
        assert_eq!(e["source"], "import:sh-drop", "{e}");
    }
    assert_eq!(
        array(env.json(&["list", "--draft", "--source", "sh-drop", "--json"])).len(),
        2,
        "list --source takes the import's name"
    );
    env.ok(&["discard"]);
    // A Spamhaus file without its header is still recognized by its SBL ids.
    let bare = env.file("bare.txt", b"198.51.100.128/25 ; SBL000111\n");
    let r = env.json(&["import", bare.to_str().unwrap(), "--json"]);
    assert_eq!(r["format"], "spamhaus", "{r}");
    env.ok(&["discard"]);

    // Our own JSON: both lists, every field kept.
    let file = env.file("exported.json", OUR_JSON);
    for given in ["auto", "json"] {
        let r = env.json(&[
            "import",
            file.to_str().unwrap(),
            "--format",
            given,
            "--json",
        ]);
        assert_eq!(r["format"], "json", "{r}");
        assert_eq!(r["entries"], 2, "{r}");
        // An export from before listings: each entry's fields become its
        // one listing, and the fields read back as they were.
        let mut draft = env.draft();
        for e in &mut draft {
            let o = e.as_object_mut().unwrap();
            let listings = o.remove("listings").unwrap();
            assert_eq!(
                o.remove("sources").unwrap(),
                serde_json::json!([o["source"]])
            );
            assert_eq!(listings[0]["source"], o["source"], "{listings}");
            assert_eq!(listings[0]["reason"], o["reason"], "{listings}");
        }
        let want: Vec<Value> = array(serde_json::from_slice(OUR_JSON).unwrap());
        assert_eq!(draft, want, "every field of both entries, as exported");
        env.ok(&["discard"]);
    }

    // Standard input: `-`, source stdin.
    let r = env.check(0, env.dl_stdin(&["import", "-", "--json"], PLAIN));
    let r = r.json();
    assert_eq!(
        (r["format"].clone(), r["source"].clone()),
        ("plain".into(), "stdin".into()),
        "{r}"
    );
    for e in env.draft() {
        assert_eq!(e["source"], "import:stdin", "{e}");
    }
    env.ok(&["discard"]);
    let r = env.check(
        0,
        env.dl_stdin(
            &[
                "import",
                "-",
                "--format",
                "spamhaus-json",
                "--source",
                "feed",
            ],
            SPAMHAUS_JSON,
        ),
    );
    assert!(r.out.contains("source feed"), "{r}");
    env.ok(&["discard"]);

    env.expect(2, &["import", "plain.txt", "--format", "csv"]);
    let r = env.expect(2, &["import", "/no/such/file"]);
    assert!(r.err.contains("/no/such/file"), "{r}");
    let plain = env.path("plain.txt");
    env.expect(2, &["import", &plain, "--source", "two words"]);
    env.assert_nothing_staged("refused imports");
}

#[test]
fn import_rejects_invalid_and_guarded_lines_unless_told_otherwise() {
    let env = Env::start("cli-import-bad", &[]);

    // Three bad lines: all listed with number and text, nothing staged.
    let bad = env.file(
        "bad.txt",
        b"198.51.100.1\nbogus\n01.2.3.4\n198.51.100.2\n1.2.3\n",
    );
    let bad = bad.to_str().unwrap();
    let r = env.expect(2, &["import", bad]);
    for line in ["line 2: 'bogus'", "line 3: '01.2.3.4'", "line 5: '1.2.3'"] {
        assert!(r.err.contains(line), "{line}: {r}");
    }
    assert!(
        r.err.contains("leading zeros") && r.err.contains("short form"),
        "why: {r}"
    );
    assert!(
        r.err.contains("3 invalid lines") && r.err.contains("--skip-invalid"),
        "{r}"
    );
    env.assert_nothing_staged("an import with invalid lines");
    let r = env.json(&["import", bad, "--skip-invalid", "--json"]);
    assert_eq!(
        (r["skipped_invalid"].clone(), r["entries"].clone()),
        (3.into(), 2.into()),
        "{r}"
    );
    assert_eq!(
        target_set(&env.draft()),
        set(&["198.51.100.1", "198.51.100.2"])
    );
    let r = env.ok(&["import", bad, "--skip-invalid"]);
    assert!(r.out.contains("skipped 3 invalid lines"), "{r}");
    env.ok(&["discard"]);
    // Line numbers count past a BOM and CRLF; the text has no \r.
    let crlf = env.file("crlf.txt", b"\xEF\xBB\xBF198.51.100.3\r\n\r\nnope\r\n");
    let r = env.expect(2, &["import", crlf.to_str().unwrap()]);
    assert!(r.err.contains("line 3: 'nope'"), "{r}");
    // The JSON format names the bad element.
    let json = env.file(
        "bad.json",
        br#"[{"target": "198.51.100.3"}, {"target": "198.51.100.3/24"}, {"tgt": "x"}]"#,
    );
    let r = env.expect(2, &["import", json.to_str().unwrap()]);
    assert!(r.err.contains("line 2") && r.err.contains("line 3"), "{r}");
    env.assert_nothing_staged("invalid JSON entries");

    // Guarded lines: listed, and the import refused...
    let level1 =
        b"#\n# FireHOL level1 test\n#\n198.51.100.210\n10.0.0.0/8\n192.168.0.0/16\n203.0.113.210\n";
    let fh = env.file("level1.netset", level1);
    let fh = fh.to_str().unwrap();
    let r = env.expect(3, &["import", fh]);
    assert!(
        r.err.contains("line 5:") && r.err.contains("10.0.0.0/8"),
        "{r}"
    );
    assert!(
        r.err.contains("line 6:") && r.err.contains("192.168.0.0/16"),
        "{r}"
    );
    assert!(
        r.err.contains("--force") && r.err.contains("--skip-guarded"),
        "{r}"
    );
    assert!(r.err.contains("16777216 addresses"), "how many: {r}");
    env.assert_nothing_staged("an import with guarded lines");
    // ...unless left out...
    let r = env.json(&["import", fh, "--skip-guarded", "--json"]);
    assert_eq!(
        r["skipped_guarded"],
        serde_json::json!(["10.0.0.0/8", "192.168.0.0/16"]),
        "{r}"
    );
    assert_eq!(
        target_set(&env.draft()),
        set(&["198.51.100.210", "203.0.113.210"])
    );
    let r = env.ok(&["import", fh, "--skip-guarded"]);
    assert!(
        r.out.contains("10.0.0.0/8") && r.out.contains("192.168.0.0/16"),
        "listed: {r}"
    );
    env.ok(&["discard"]);
    // ...or let in.
    env.ok(&["import", fh, "--force"]);
    assert_eq!(
        target_set(&env.draft()),
        set(&[
            "198.51.100.210",
            "10.0.0.0/8",
            "192.168.0.0/16",
            "203.0.113.210"
        ])
    );
    env.ok(&["discard"]);
    env.expect(2, &["import", fh, "--force", "--skip-guarded"]);
    // Both at once: invalid lines are reported first.
    let both = env.file("both.txt", b"10.0.0.0/8\nbogus\n198.51.100.5\n");
    let both = both.to_str().unwrap();
    env.expect(2, &["import", both]);
    env.expect(3, &["import", both, "--skip-invalid"]);
    let r = env.json(&["import", both, "--skip-invalid", "--skip-guarded", "--json"]);
    assert_eq!(r["entries"], 1, "{r}");
    env.ok(&["discard"]);

    // The admin's own address, from SSH_CONNECTION.
    let ssh = [("SSH_CONNECTION", "198.51.100.50 5555 192.0.2.1 22")];
    let mine = env.file("mine.txt", b"198.51.100.0/24\n");
    let r = env.check(3, env.dl_env(&["import", mine.to_str().unwrap()], &ssh));
    assert!(r.err.contains("the address you are connected from"), "{r}");
    env.assert_nothing_staged("an import of the admin's address");
    // The guardrails of the allowlist apply to allow entries of a JSON import.
    let wide_allow = serde_json::json!([
        full_entry("198.50.0.0/15", "allow"),
        full_entry("10.1.0.0/16", "allow"),
    ]);
    let wide_allow = env.file("allow.json", wide_allow.to_string().as_bytes());
    let r = env.expect(3, &["import", wide_allow.to_str().unwrap()]);
    assert!(
        r.err.contains("198.50.0.0/15") && !r.err.contains("10.1.0.0/16"),
        "{r}"
    );
    env.assert_nothing_staged("a JSON import of a too wide allow entry");

    // A JSON entry with only some fields: the parser takes it as an entry
    // (only "target" is required), so either it is staged, or it is an
    // invalid line like any other, numbered, that --skip-invalid leaves out.
    let partial = serde_json::json!([
        {"target": "198.51.100.3", "list": "allow"},
        full_entry("198.51.100.4", "deny"),
    ]);
    let partial = env.file("partial.json", partial.to_string().as_bytes());
    let partial = partial.to_str().unwrap();
    let r = env.dl(&["import", partial]);
    match r.code {
        0 => assert_eq!(
            target_set(&env.draft()),
            set(&["198.51.100.3", "198.51.100.4"]),
            "{r}"
        ),
        2 => {
            assert!(
                r.err.contains("line 1"),
                "the partial entry is an invalid line, and says which: {r}"
            );
            env.assert_nothing_staged("an import with an invalid JSON entry");
            let r = env.dl(&["import", partial, "--skip-invalid"]);
            assert_eq!(
                r.code, 0,
                "--skip-invalid leaves out the partial entry: {r}"
            );
            assert_eq!(target_set(&env.draft()), set(&["198.51.100.4"]), "{r}");
        }
        _ => panic!("{r}"),
    }
}

/// An entry of our JSON export with every field.
fn full_entry(target: &str, list: &str) -> Value {
    serde_json::json!({
        "target": target, "list": list, "reason": null, "ttl": null,
        "expires_at": null, "monitor": false, "source": "manual",
        "added_by": "root", "added_at": "2026-01-02T03:04:05.000Z",
    })
}

#[test]
fn import_replace_merge_ttl_and_the_export_round_trip() {
    let env = Env::start("cli-roundtrip", &[]);

    // Entries of both lists with every kind of field.
    env.ok(&[
        "add",
        "198.51.100.80",
        "--reason",
        "round trip",
        "--ttl",
        "7d",
        "--monitor",
    ]);
    env.ok(&[
        "add",
        "2001:db8:80::/48",
        "--reason",
        "v6 block",
        "--ttl",
        "never",
    ]);
    env.ok(&["add", "203.0.113.96/27"]);
    env.ok(&[
        "allow",
        "add",
        "203.0.113.80",
        "--reason",
        "partner",
        "--ttl",
        "30m",
    ]);
    env.ok(&["allow", "add", "2001:db8:81::/48", "--reason", "v6 partner"]);
    env.ok(&["deploy"]);

    // export: plain is one list, deny unless asked; json both, or one.
    let plain = env.ok(&["export", "--format", "plain"]).out;
    assert_eq!(plain, "198.51.100.80\n203.0.113.96/27\n2001:db8:80::/48\n");
    let plain = env
        .ok(&["export", "--format", "plain", "--list", "deny"])
        .out;
    assert_eq!(plain, "198.51.100.80\n203.0.113.96/27\n2001:db8:80::/48\n");
    let plain = env
        .ok(&["export", "--format", "plain", "--list", "allow"])
        .out;
    assert_eq!(plain, "203.0.113.80\n2001:db8:81::/48\n");
    assert_eq!(array(env.json(&["export", "--list", "allow"])).len(), 2);
    assert_eq!(
        array(env.json(&["export", "--list", "deny", "--format", "json"])).len(),
        3
    );
    env.ok(&["add", "198.51.100.81"]);
    assert_eq!(array(env.json(&["export"])).len(), 5);
    assert_eq!(array(env.json(&["export", "--draft"])).len(), 6);
    env.ok(&["discard"]);

    let exported = env.ok(&["export", "--format", "json"]).out;
    let before = array(serde_json::from_str(&exported).unwrap());
    assert_eq!(before.len(), 5);
    for e in &before {
        assert_entry_shape(e);
    }
    let file = env.file("export.json", exported.as_bytes());
    // Everything goes away...
    env.ok(&[
        "remove",
        "198.51.100.80",
        "2001:db8:80::/48",
        "203.0.113.96/27",
    ]);
    env.ok(&["allow", "remove", "203.0.113.80", "2001:db8:81::/48"]);
    env.ok(&["deploy"]);
    assert!(array(env.json(&["export"])).is_empty());
    // ...and comes back from the export.
    let r = env.json(&["import", file.to_str().unwrap(), "--json"]);
    assert_eq!(
        (r["format"].clone(), r["added"].clone()),
        ("json".into(), 5.into()),
        "{r}"
    );
    env.ok(&["deploy"]);
    let after = array(env.json(&["export"]));
    assert_eq!(targets(&after), targets(&before));
    for (b, a) in before.iter().zip(&after) {
        // Every field round-trips except expires_at: an expiry counts from
        // the deploy that puts the entry into effect, so it restarts.
        let without_expiry = |v: &Value| {
            let mut v = v.clone();
            for l in v.as_array_mut().into_iter().flatten() {
                if let Some(l) = l.as_object_mut() {
                    l.remove("expires_at");
                }
            }
            v
        };
        for k in ENTRY_KEYS.iter().filter(|k| **k != "expires_at") {
            assert_eq!(
                without_expiry(&a[k]),
                without_expiry(&b[k]),
                "{k} of {}",
                b["target"]
            );
        }
        assert_eq!(a["expires_at"].is_null(), b["ttl"].is_null(), "{a}");
        if !b["expires_at"].is_null() {
            assert!(
                time(&a["expires_at"]) >= time(&b["expires_at"]),
                "{b} → {a}"
            );
        }
    }

    // --replace syncs a feed: its entries become exactly the file's.
    let r = env.dl_stdin(
        &["import", "-", "--source", "feed", "--deploy"],
        b"198.51.100.151\n198.51.100.152\n",
    );
    let r = env.check(0, r);
    assert!(r.out.contains("revision"), "--deploy: {r}");
    env.ok(&["add", "198.51.100.160", "--reason", "by hand", "--deploy"]);
    env.check(
        0,
        env.dl_stdin(
            &["import", "-", "--source", "other", "--deploy"],
            b"198.51.100.170\n",
        ),
    );
    let r = env.dl_stdin(
        &["import", "-", "--source", "feed", "--replace", "--json"],
        b"198.51.100.152\n198.51.100.153\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(
        (
            r["added"].clone(),
            r["removed"].clone(),
            r["changed"].clone()
        ),
        (1.into(), 1.into(), 0.into()),
        "{r}"
    );
    let feed = array(env.json(&["list", "--draft", "--source", "feed", "--json"]));
    assert_eq!(targets(&feed), ["198.51.100.152", "198.51.100.153"]);
    let d = env.diff();
    assert_eq!(
        targets(&array(d["removed"].clone())),
        ["198.51.100.151"],
        "{d}"
    );
    assert_eq!(
        targets(&array(d["added"].clone())),
        ["198.51.100.153"],
        "{d}"
    );
    assert!(
        d["changed"].as_array().unwrap().is_empty(),
        "others untouched: {d}"
    );
    let draft = target_set(&env.draft());
    assert!(
        draft.contains("198.51.100.160") && draft.contains("198.51.100.170"),
        "{draft:?}"
    );
    env.ok(&["deploy"]);

    // Duplicates within a file merge.
    let r = env.dl_stdin(
        &["import", "-", "--json"],
        b"198.51.100.40\n198.51.100.40/32\n::ffff:198.51.100.40\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(
        (r["entries"].clone(), r["added"].clone()),
        (1.into(), 1.into()),
        "{r}"
    );
    let r = env.dl_stdin(
        &["import", "-", "--json"],
        b"; Spamhaus DROP\n198.51.100.44/30 ; SBL1\n198.51.100.44/30 ; SBL2\n",
    );
    let r = env.check(0, r).json();
    assert_eq!(r["entries"], 1, "{r}");
    assert_eq!(
        env.draft_entry("198.51.100.44/30", "deny").unwrap()["reason"],
        "SBL2",
        "the later line wins"
    );
    env.ok(&["discard"]);

    // Against the import's own listings, given fields replace, the TTL
    // too, except that never (the longest) stays; the deploy keeps the
    // later expiry. (An admin's manual listings are others, and stay.)
    let stdin = ["--source", "import:stdin"];
    env.ok(&[&["add", "198.51.100.171", "--ttl", "7d"][..], &stdin].concat());
    env.ok(&[&["add", "198.51.100.172", "--ttl", "1h"][..], &stdin].concat());
    env.ok(&[&["add", "198.51.100.173", "--ttl", "never"][..], &stdin].concat());
    env.ok(&[
        &[
            "add",
            "198.51.100.174",
            "--ttl",
            "1h",
            "--reason",
            "old",
            "--deploy",
        ][..],
        &stdin,
    ]
    .concat());
    let lines = b"198.51.100.171\n198.51.100.172\n198.51.100.173\n198.51.100.174\n198.51.100.175\n";
    let r = env.dl_stdin(
        &["import", "-", "--ttl", "1d", "--reason", "batch", "--json"],
        lines,
    );
    let r = env.check(0, r).json();
    assert_eq!(r["entries"], 5, "{r}");
    for (target, ttl) in [
        ("198.51.100.171", Value::from(86_400)),
        ("198.51.100.172", Value::from(86_400)),
        ("198.51.100.173", Value::Null),
        ("198.51.100.174", Value::from(86_400)),
        ("198.51.100.175", Value::from(86_400)),
    ] {
        let e = env.draft_entry(target, "deny").unwrap();
        assert_eq!(e["ttl"], ttl, "{e}");
        assert_eq!(e["reason"], "batch", "{e}");
        assert_eq!(e["source"], "import:stdin", "{e}");
    }
    // No --ttl keeps the TTL; never is the longest.
    env.check(0, env.dl_stdin(&["import", "-"], b"198.51.100.171\n"));
    assert_eq!(
        env.draft_entry("198.51.100.171", "deny").unwrap()["ttl"],
        86_400
    );
    env.check(
        0,
        env.dl_stdin(&["import", "-", "--ttl", "never"], b"198.51.100.172\n"),
    );
    assert!(env.draft_entry("198.51.100.172", "deny").unwrap()["ttl"].is_null());
}
