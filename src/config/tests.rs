use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn a_file_that_sets_nothing_is_refused() {
    for text in [
        "",
        "\n",
        "   \n\t\n",
        "# only a comment\n",
        "# a\n\n  # b\n",
        "\u{feff}",
    ] {
        let e = Config::parse(text, "t.toml").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Empty { path } if path == "t.toml"),
            "{text:?}: {e:?}"
        );
        assert!(
            e.to_string().starts_with("t.toml: the file sets nothing"),
            "{e}"
        );
    }
    // One key is enough; the rest are the defaults.
    let c = Config::parse("# c\nroot = \"html\"\n", "t").unwrap();
    assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.root, PathBuf::from("html"));
    assert_eq!(c.keepalive_timeout.0, Duration::from_secs(60));
    assert_eq!(c.header_timeout.0, Duration::from_secs(15));
    assert_eq!(c.max_header_size, 8192);
}

#[test]
fn shipped_config_is_the_defaults() {
    let shipped =
        Config::parse(include_str!("../../conf/tandem.toml"), "conf/tandem.toml").unwrap();
    assert_eq!(format!("{shipped:?}"), format!("{:?}", Config::default()));
}

/// Every key is in the shipped file: set (to its default, checked above),
/// or, where the default is "none", shown in a comment as `key = ...`.
#[test]
fn shipped_config_names_every_key() {
    let text = include_str!("../../conf/tandem.toml");
    let doc = toml::de::DeTable::parse(text).unwrap();
    let set: Vec<&str> = doc.get_ref().iter().map(|(k, _)| &**k.get_ref()).collect();
    for key in Config::keys() {
        let shown = text.contains(&format!("{key} = ")) || text.contains(&format!("[[{key}]]"));
        assert!(
            set.contains(key) || shown,
            "{key} is not in conf/tandem.toml"
        );
    }
    // The keys it leaves unset are those without a value to show.
    let unset: Vec<&str> = Config::keys()
        .iter()
        .copied()
        .filter(|k| !set.contains(k))
        .collect();
    assert_eq!(
        unset,
        [
            key::pidfile,
            key::user,
            key::group,
            key::error_page_404,
            key::rules,
            key::tls_certificates
        ]
    );
}

#[test]
fn unknown_key_names_line() {
    let e = Config::parse("root = \"x\"\n\nbogus = 1\n", "t.toml").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("t.toml:3:"), "{s}");
    assert!(s.contains("bogus"), "{s}");
}

#[test]
fn values() {
    let c = Config::parse(
        "engine = \"io_uring\"\nworkers = 3\nkeepalive_timeout = \"500ms\"\naccess_log = \"off\"\n",
        "t",
    )
    .unwrap();
    assert_eq!(c.engine, EngineChoice::IoUring);
    assert_eq!(c.workers, Workers::Count(3));
    assert_eq!(c.keepalive_timeout.0, Duration::from_millis(500));
    assert_eq!(c.access_log, LogTarget::Off);
    assert!(Config::parse("workers = 0", "t").is_err());
    assert!(Config::parse("engine = \"kqueue\"", "t").is_err());
    assert!(Config::parse("header_timeout = \"5 fortnights\"", "t").is_err());
    let e = Config::parse("root = \"x\"\n\nmax_connections = 0\n", "t.toml").unwrap_err();
    assert!(
        e.to_string().starts_with("t.toml:3: max_connections"),
        "{e}"
    );
    // Values whose deadline arithmetic would overflow are refused by name and line.
    for (text, key) in [
        (
            "keepalive_timeout = 9223372036854775807",
            "keepalive_timeout",
        ),
        ("shutdown_timeout = 9223372036854775807", "shutdown_timeout"),
        ("shutdown_delay = \"25h\"", "shutdown_delay"),
        ("header_timeout = \"25h\"", "header_timeout"),
        ("send_timeout = 0", "send_timeout"),
        ("max_header_size = 18446744073709551615", "max_header_size"),
        ("max_connections = 18446744073709551615", "max_connections"),
    ] {
        let e = Config::parse(&format!("\n{text}\n"), "t.toml").unwrap_err();
        assert!(
            e.to_string().starts_with(&format!("t.toml:2: {key}")),
            "{text}: {e}"
        );
    }
    assert!(Config::parse("keepalive_timeout = \"24h\"\nshutdown_timeout = 0", "t").is_ok());
    let c = Config::parse("shutdown_delay = \"5s\"", "t").unwrap();
    assert_eq!(c.shutdown_delay.0, Duration::from_secs(5));
    assert_eq!(Config::default().shutdown_delay.0, Duration::ZERO);
    let e = Config::parse("# c\nlog_level = \"loud\"\n", "t.toml").unwrap_err();
    assert!(e.to_string().starts_with("t.toml:2: log_level"), "{e}");
    // log_level is read as a level, like the other keys with a few values.
    for (text, level) in [
        ("error", crate::log::Level::Error),
        ("warn", crate::log::Level::Warn),
        ("info", crate::log::Level::Info),
        ("debug", crate::log::Level::Debug),
    ] {
        let c = Config::parse(&format!("log_level = \"{text}\""), "t").unwrap();
        assert_eq!((c.log_level, c.level()), (level, level));
    }
    assert_eq!(Config::default().log_level, crate::log::Level::Info);
}

#[test]
fn errors_are_typed_with_file_and_line() {
    // A value validation rejects: its variant, its key's line.
    let e = Config::parse("root = \"x\"\n\nmax_connections = 0\n", "t.toml").unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Invalid { path, line: Some(3), source: Invalid::MaxConnections(0) }
                if path == "t.toml"
        ),
        "{e:?}"
    );
    assert_eq!(e.line(), Some(3));
    let e = Config::parse("listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n", "t").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Invalid { source: Invalid::ListenTwice(a), .. } if a.port() == 1),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "t:1: listen: 127.0.0.1:1 is listed twice");
    // Invalid only next to another value: the key is not in the file, so
    // the message names the file alone (no made-up line).
    let e = Config::parse("max_header_size = 256\n", "t.toml").unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::Invalid {
                line: None,
                source: Invalid::MaxTargetSize {
                    value: 4096,
                    max_header_size: 256
                },
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "t.toml: max_target_size: must be between 16 and max_header_size (256), not 4096"
    );
    // Every validation error names the key it is about, first.
    for text in [
        "listen = []",
        "index = \"a/b\"",
        "header_timeout = 0",
        "send_timeout = \"25h\"",
        "max_header_size = 100",
        "max_target_size = 1",
        "max_connections = 0",
        "h2_max_concurrent_streams = 0",
        "h2_max_resets_per_second = 0",
        "error_page_404 = \"../x\"",
    ] {
        let key = text.split(' ').next().unwrap();
        match Config::parse(&format!("\n{text}\n"), "t.toml") {
            Err(ConfigError::Invalid { line, source, .. }) => {
                assert_eq!(source.key(), key, "{text}");
                assert!(
                    source.to_string().starts_with(&format!("{key}: ")),
                    "{source}"
                );
                assert_eq!(line, Some(2), "{text}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Syntax and schema errors are Parse errors with the parser's line.
    let e = Config::parse("root = \"x\"\nthis is not toml\n", "t.toml").unwrap_err();
    assert!(
        matches!(e, ConfigError::Parse { line: Some(2), .. }),
        "{e:?}"
    );
    let e = Config::load(Path::new("/nonexistent/tandem.toml")).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert_eq!(e.line(), None);
}

/// `key = VALUE` on line 2 of t.toml: the whole message.
fn message(text: &str) -> String {
    Config::parse(&format!("# tandem\n{text}\n"), "t.toml")
        .unwrap_err()
        .to_string()
}

#[test]
fn wrong_types_say_what_the_key_accepts() {
    for (text, want) in [
        (
            "workers = true",
            "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got true",
        ),
        (
            "workers = \"many\"",
            "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got \"many\"",
        ),
        (
            "workers = 0",
            "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got 0",
        ),
        (
            "workers = 2000",
            "t.toml:2: workers: expected \"auto\" or a number from 1 to 1024, got 2000",
        ),
        (
            "listen = [\"127.0.0.1:99999\"]",
            "t.toml:2: listen: \"127.0.0.1:99999\" is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
        ),
        (
            "listen = [\"localhost:80\"]",
            "t.toml:2: listen: \"localhost:80\" is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
        ),
        (
            "listen = [8080]",
            "t.toml:2: listen: 8080 is not an address like \"127.0.0.1:8080\" or \"[::]:80\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"",
            "t.toml:2: listen: expected a list of addresses like [\"127.0.0.1:8080\", \"[::]:80\"], got \"127.0.0.1:8080\"",
        ),
        (
            "root = 3",
            "t.toml:2: root: expected a directory path, got 3",
        ),
        (
            "root = \"\"",
            "t.toml:2: root: expected a directory path, got \"\"",
        ),
        (
            "index = 3",
            "t.toml:2: index: expected a file name or a list of file names, like [\"index.html\", \"index.htm\"], got 3",
        ),
        (
            "index = [\"a\", 1]",
            "t.toml:2: index: expected a file name or a list of file names, like [\"index.html\", \"index.htm\"], got [\"a\", 1]",
        ),
        (
            "engine = \"kqueue\"",
            "t.toml:2: engine: expected \"auto\", \"epoll\" or \"io_uring\", got \"kqueue\"",
        ),
        (
            "daemon = \"yes\"",
            "t.toml:2: daemon: expected true or false, got \"yes\"",
        ),
        (
            "pidfile = 1",
            "t.toml:2: pidfile: expected a file path, got 1",
        ),
        ("user = 33", "t.toml:2: user: expected a user name, got 33"),
        (
            "group = []",
            "t.toml:2: group: expected a group name, got []",
        ),
        (
            "access_log = 1",
            "t.toml:2: access_log: expected a file path, \"stderr\" or \"off\", got 1",
        ),
        (
            "error_log = \"\"",
            "t.toml:2: error_log: expected a file path, \"stderr\" or \"off\", got \"\"",
        ),
        (
            "log_level = 3",
            "t.toml:2: log_level: expected \"error\", \"warn\", \"info\" or \"debug\", got 3",
        ),
        (
            "log_level = \"loud\"",
            "t.toml:2: log_level: \"loud\" is not one of error, warn, info, debug",
        ),
        (
            "keepalive_timeout = true",
            "t.toml:2: keepalive_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got true",
        ),
        (
            "header_timeout = \"5 fortnights\"",
            "t.toml:2: header_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got \"5 fortnights\"",
        ),
        (
            "send_timeout = -1",
            "t.toml:2: send_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got -1",
        ),
        (
            "shutdown_timeout = 1.5",
            "t.toml:2: shutdown_timeout: expected a duration like \"500ms\", \"15s\", \"2m\", \"1h\" or a number of seconds, got 1.5",
        ),
        (
            "max_header_size = \"big\"",
            "t.toml:2: max_header_size: expected a number of bytes, got \"big\"",
        ),
        (
            "max_target_size = -5",
            "t.toml:2: max_target_size: expected a number of bytes, got -5",
        ),
        (
            "max_body_size = \"1M\"",
            "t.toml:2: max_body_size: expected a number of bytes, got \"1M\"",
        ),
        (
            "max_connections = false",
            "t.toml:2: max_connections: expected a number of connections, got false",
        ),
        (
            "serve_dotfiles = 1",
            "t.toml:2: serve_dotfiles: expected true or false, got 1",
        ),
        (
            "error_page_404 = 404",
            "t.toml:2: error_page_404: expected a page path under the root, got 404",
        ),
        (
            "error_pages = \"404.html\"",
            "t.toml:2: error_pages: expected a table of pages by status, like { 404 = \"404.html\", 500 = \"50x.html\" }, got \"404.html\"",
        ),
        (
            "error_pages = { 404 = 1 }",
            "t.toml:2: error_pages: 404: expected a page path under the root, got 1",
        ),
        (
            "autoindex = \"on\"",
            "t.toml:2: autoindex: expected true or false, got \"on\"",
        ),
        (
            "fallback = false",
            "t.toml:2: fallback: expected a page path under the root, or \"\" for none, got false",
        ),
        (
            "default_type = []",
            "t.toml:2: default_type: expected a media type like \"application/octet-stream\", got []",
        ),
        (
            "mime_types = [\"wasm\"]",
            "t.toml:2: mime_types: expected a table of media types by extension, like { wasm = \"application/wasm\" }, got [\"wasm\"]",
        ),
        (
            "mime_types = { wasm = true }",
            "t.toml:2: mime_types: wasm: expected a media type like \"application/wasm\", got true",
        ),
        (
            "precompressed = \"br\"",
            "t.toml:2: precompressed: expected a list of \"br\", \"zstd\" and \"gzip\" (or [] for none), got \"br\"",
        ),
        (
            "precompressed = [\"lzma\"]",
            "t.toml:2: precompressed: \"lzma\" is not one of \"br\", \"zstd\", \"gzip\"",
        ),
        (
            "max_ranges = \"all\"",
            "t.toml:2: max_ranges: expected a number of ranges from 0 to 1024, got \"all\"",
        ),
        (
            "symlinks = \"follow\"",
            "t.toml:2: symlinks: expected \"within_root\" or \"deny\", got \"follow\"",
        ),
        (
            "rules = \"x\"",
            "t.toml:2: rules: expected [[rules]] entries with match = \"<glob>\" and headers = { ... }, got string",
        ),
        (
            "rules = [1]",
            "t.toml:2: rules: each rule is a table with match = \"<glob>\" and headers = { ... }, got integer",
        ),
        (
            "[rules]\nmatch = \"*\"",
            "t.toml:2: rules: write each rule as a [[rules]] entry (two brackets), not [rules]",
        ),
        (
            "[[rules]]\nheaders = {}",
            "t.toml:2: rules: a rule needs match = \"<glob>\" (like \"/assets/**\" or \"*.css\")",
        ),
        (
            "[[rules]]\nmatch = 3",
            "t.toml:3: rules: match: expected a glob like \"/assets/**\" or \"*.css\", got 3",
        ),
        (
            "[[rules]]\nmatch = \"*\"\nheaders = \"x\"",
            "t.toml:4: rules: headers: expected a table of header fields, like { \"Cache-Control\" = \"max-age=3600\" }, got \"x\"",
        ),
        (
            "[[rules]]\nmatch = \"*\"\nheaders = { \"X-A\" = 1 }",
            "t.toml:4: rules: headers: X-A: expected a header value (a string), got 1",
        ),
        // Unknown keys: their line, and the key meant when it is close.
        (
            "lisen = [\"127.0.0.1:80\"]",
            "t.toml:2: unknown key `lisen`; did you mean `listen`?",
        ),
        (
            "keepalive = \"5s\"",
            "t.toml:2: unknown key `keepalive`; did you mean `keepalive_timeout`?",
        ),
        ("bogus_key = 1", "t.toml:2: unknown key `bogus_key`"),
        (
            "[[rules]]\nmatch = \"*\"\nheader = {}",
            "t.toml:4: rules: unknown key `header`; did you mean `headers`?",
        ),
        (
            "[[rules]]\nmatch = \"*\"\nroot = \"x\"",
            "t.toml:4: rules: unknown key `root` (`root` is a top-level key: keys below a [[rules]] header belong to that entry, so put it above the first one)",
        ),
    ] {
        assert_eq!(message(text), want, "{text}");
    }
}

/// Every key, given a value no key takes: the message starts with the
/// key (after FILE:LINE) and has none of serde's own words.
#[test]
fn every_key_has_a_message_in_config_terms() {
    assert!(Config::keys().len() >= 31, "{:?}", Config::keys());
    for key in Config::keys() {
        for bad in ["1979-05-27T07:32:00Z", "{ x = [1] }", "[[1]]"] {
            let m = message(&format!("{key} = {bad}"));
            assert!(
                m.starts_with(&format!("t.toml:2: {key}: ")),
                "{key} = {bad}: {m}"
            );
            for serde_word in [
                "invalid type",
                "untagged",
                "sequence",
                "usize",
                "u64",
                "variant",
                "struct",
                "map",
            ] {
                assert!(!m.contains(serde_word), "{key} = {bad}: {m}");
            }
        }
    }
}

mod areas;
