//! Config keys by area: observability, content, listeners, rules, TLS,
//! compression, HTTP/2.

use super::*;

#[test]
fn observability_keys() {
    let c = Config::parse(
            "listen = [\"0.0.0.0:8080\"]\nmetrics_listen = [\"0.0.0.0:9145\", \"[::1]:9145\"]\naccess_log_format = \"json\"\n",
            "t",
        )
        .unwrap();
    assert_eq!(c.metrics_listen.len(), 2);
    assert_eq!(c.access_log_format, LogFormat::Json);
    let d = Config::default();
    assert!(d.metrics_listen.is_empty());
    assert_eq!(d.access_log_format, LogFormat::Combined);
    // Port 0 picks a free port for each: no clash.
    assert!(
        Config::parse(
            "listen = [\"127.0.0.1:0\"]\nmetrics_listen = [\"127.0.0.1:0\"]",
            "t"
        )
        .is_ok()
    );
    for (listen, metrics) in [
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("0.0.0.0:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "0.0.0.0:8080"),
        ("[::]:8080", "[::1]:8080"),
    ] {
        let text = format!("listen = [\"{listen}\"]\n\nmetrics_listen = [\"{metrics}\"]\n");
        match Config::parse(&text, "t.toml") {
            Err(
                e @ ConfigError::Invalid {
                    line: Some(3),
                    source: Invalid::MetricsListenClash { .. },
                    ..
                },
            ) => {
                assert!(
                    e.to_string().starts_with("t.toml:3: metrics_listen: "),
                    "{e}"
                );
            }
            other => panic!("{listen} / {metrics}: {other:?}"),
        }
    }
    for (listen, metrics) in [
        ("127.0.0.1:8080", "127.0.0.2:8080"),
        ("0.0.0.0:8080", "[::1]:8080"),
        // [::] is IPv6 only: it leaves IPv4's port to the other.
        ("[::]:8080", "127.0.0.1:8080"),
        ("127.0.0.1:8080", "127.0.0.1:9145"),
    ] {
        let text = format!("listen = [\"{listen}\"]\nmetrics_listen = [\"{metrics}\"]\n");
        assert!(Config::parse(&text, "t").is_ok(), "{listen} / {metrics}");
    }
    let e = Config::parse("metrics_listen = [\"127.0.0.1:9\", \"127.0.0.1:9\"]", "t").unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Invalid {
                source: Invalid::MetricsListenTwice(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(matches!(
        Config::parse("\naccess_log_format = \"xml\"\n", "t"),
        Err(ConfigError::Parse { line: Some(2), .. })
    ));
}

#[test]
fn content_keys() {
    let c = Config::parse(
            "index = [\"index.htm\", \"default.html\"]\nerror_pages = { 404 = \"nf.html\", 503 = \"busy.html\" }\n\
             mime_types = { WASM = \"application/wasm\" }\nprecompressed = [\"gzip\"]\nsymlinks = \"deny\"\n\
             [[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\" }\n",
            "t",
        )
        .unwrap();
    assert_eq!(c.index.0, ["index.htm", "default.html"]);
    assert_eq!(
        c.error_pages(),
        [(404, "nf.html".to_string()), (503, "busy.html".to_string())]
    );
    assert_eq!(c.precompressed, [Encoding::Gzip]);
    assert_eq!(c.symlinks, Symlinks::Deny);
    let g = c.rules[0].glob().unwrap();
    assert!(g.is_match("/a/b/x.css") && g.is_match("/x.css") && !g.is_match("/x.css/y"));
    let g = Rule {
        pattern: "/assets/*".into(),
        headers: BTreeMap::new(),
    }
    .glob()
    .unwrap();
    assert!(g.is_match("/assets/a.js") && !g.is_match("/assets/a/b.js"));
    assert_eq!(
        Config::parse("index = \"home.htm\"", "t").unwrap().index.0,
        ["home.htm"]
    );
    // The old key still works, alone; "" turns the page off.
    let c = Config::parse("error_page_404 = \"e/nf.html\"", "t").unwrap();
    assert_eq!(c.error_pages(), [(404, "e/nf.html".to_string())]);
    assert!(
        Config::parse("error_page_404 = \"\"", "t")
            .unwrap()
            .error_pages()
            .is_empty()
    );
    assert!(
        Config::parse("precompressed = []", "t")
            .unwrap()
            .precompressed
            .is_empty()
    );
    // Each bad value names its key and line.
    for (text, key) in [
        ("index = []", "index"),
        ("index = [\"a\", \"..\"]", "index"),
        ("error_pages = { 200 = \"x.html\" }", "error_pages"),
        ("error_pages = { 4040 = \"x.html\" }", "error_pages"),
        ("error_pages = { 404 = \"../x.html\" }", "error_pages"),
        (
            "error_page_404 = \"x\"\nerror_pages = { 404 = \"y\" }",
            "error_page_404",
        ),
        ("fallback = \"../index.html\"", "fallback"),
        ("default_type = \"nonsense\"", "default_type"),
        (
            "mime_types = { \".wasm\" = \"application/wasm\" }",
            "mime_types",
        ),
        ("mime_types = { wasm = \"a/b\\r\\nX: y\" }", "mime_types"),
        ("precompressed = [\"br\", \"br\"]", "precompressed"),
        ("max_ranges = 5000", "max_ranges"),
    ] {
        match Config::parse(&format!("\n{text}\n"), "t.toml") {
            Err(ConfigError::Invalid { line, source, .. }) => {
                assert_eq!(source.key(), key, "{text}: {source}");
                assert!(
                    source.to_string().starts_with(&format!("{key}: ")),
                    "{source}"
                );
                assert_eq!(line, Some(2), "{text}: {source}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // Wrong types and unknown values are parse errors with a line.
    for text in [
        "precompressed = [\"lzma\"]",
        "symlinks = \"follow\"",
        "index = 3",
    ] {
        let e = Config::parse(&format!("\n{text}\n"), "t.toml").unwrap_err();
        assert!(
            matches!(e, ConfigError::Parse { line: Some(2), .. }),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn listen_addresses_that_cannot_all_be_bound_are_refused() {
    // Both families on one port: [::] is IPv6 only.
    let c = Config::parse("listen = [\"0.0.0.0:80\", \"[::]:80\"]\n", "t").unwrap();
    assert_eq!(c.listen.len(), 2);
    for (list, key, want) in [
        (
            "listen = [\"0.0.0.0:80\", \"127.0.0.1:80\"]",
            "listen",
            "listen: 0.0.0.0:80 and 127.0.0.1:80 take the same port (0.0.0.0:80 covers the other)",
        ),
        (
            "listen = [\"127.0.0.1:80\", \"0.0.0.0:80\"]",
            "listen",
            "listen: 127.0.0.1:80 and 0.0.0.0:80 take the same port (0.0.0.0:80 covers the other)",
        ),
        (
            "listen = [\"[::1]:80\", \"[::]:80\"]",
            "listen",
            "listen: [::1]:80 and [::]:80 take the same port ([::]:80 covers the other)",
        ),
        (
            "listen = [\"127.0.0.1:80\", \"127.0.0.1:80\"]",
            "listen",
            "listen: 127.0.0.1:80 is listed twice",
        ),
        (
            "listen = [\"[::ffff:127.0.0.1]:80\"]",
            "listen",
            "listen: [::ffff:127.0.0.1]:80 is an IPv4-mapped address; write it as 127.0.0.1:80",
        ),
        (
            "metrics_listen = [\"0.0.0.0:9\", \"127.0.0.9:9\"]",
            "metrics_listen",
            "metrics_listen: 0.0.0.0:9 and 127.0.0.9:9 take the same port",
        ),
    ] {
        let e = Config::parse(&format!("root = \"x\"\n{list}\n"), "t.toml").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { line: Some(2), source, .. } if source.key() == key),
            "{list}: {e:?}"
        );
        assert!(
            e.to_string().starts_with(&format!("t.toml:2: {want}")),
            "{list}: {e}"
        );
    }
    // Port 0 picks a free port for each.
    assert!(Config::parse("listen = [\"0.0.0.0:0\", \"127.0.0.1:0\"]", "t").is_ok());
    // Other ports, other addresses of one family: no clash.
    assert!(
        Config::parse(
            "listen = [\"127.0.0.1:80\", \"127.0.0.2:80\", \"0.0.0.0:81\"]",
            "t"
        )
        .is_ok()
    );
}

/// A bad rule names the line of the key at fault: its `match`, or the very
/// header field (inline or in a `[rules.headers]` table), in the entry it
/// is in, not the first `[[rules]]`.
#[test]
fn bad_rules_name_the_line_of_the_field() {
    let ok = "[[rules]]\nmatch = \"*.css\"\nheaders = { \"Cache-Control\" = \"max-age=60\", Vary = \"Origin\" }\n";
    for (bad, line, why) in [
        ("match = \"/a/[\"\n", 6, "match = \"/a/[\""),
        (
            "match = \"*\"\nheaders = { \"Content-Length\" = \"1\" }\n",
            7,
            "\"Content-Length\": set by the server",
        ),
        (
            "match = \"*\"\nheaders = { \"X-A\" = \"a\\nb\" }\n",
            7,
            "control character",
        ),
        (
            "match = \"*\"\nheaders = { \"X A\" = \"a\" }\n",
            7,
            "not a header field name",
        ),
        (
            "match = \"*\"\nheaders = { \"X-Ok\" = \"1\", ETag = \"\\\"fixed\\\"\" }\n",
            7,
            "\"ETag\": set by the server",
        ),
        (
            "match = \"*\"\n[rules.headers]\nX-Ok = \"1\"\nserver = \"x\"\n",
            9,
            "\"server\": set by the server",
        ),
        (
            "match = \"*\"\n[rules.headers]\n\"Content-Type\" = \"Multipart/Byteranges; boundary=x\"\n",
            8,
            "multipart type",
        ),
        (
            "match = \"*\"\nheaders = { \"Content-Type\" = \"nonsense\" }\n",
            7,
            "not a media type",
        ),
        (
            "match = \"*\"\nheaders = { Vary = \"Origin, \" }\n",
            7,
            "not a list of header field names",
        ),
    ] {
        let text = format!("\n{ok}[[rules]]\n{bad}");
        match Config::parse(&text, "t.toml") {
            Err(e @ ConfigError::Invalid { .. }) => {
                assert_eq!(e.line(), Some(line), "{text}\n{e}");
                let msg = e.to_string();
                assert!(msg.starts_with(&format!("t.toml:{line}: rules: ")), "{msg}");
                assert!(msg.contains(why), "{msg} lacks {why:?}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    for name in RULE_FORBIDDEN_HEADERS {
        let text = format!("[[rules]]\nmatch = \"*\"\nheaders = {{ \"{name}\" = \"x\" }}\n");
        assert!(Config::parse(&text, "t").is_err(), "{name} accepted");
    }
    // What a rule may set: a type that is not multipart, a Vary list.
    let c = Config::parse(
        &format!("{ok}[[rules]]\nmatch = \"*.txt\"\nheaders = {{ \"Content-Type\" = \"text/plain; charset=latin1\", vary = \"*\" }}\n"),
        "t",
    )
    .unwrap();
    assert_eq!(c.rules.len(), 2);
}

/// The TLS keys: certificates are needed with tls_listen, each entry names
/// both files, and a TLS address cannot take a plaintext one's port.
#[test]
fn tls_keys_say_what_is_missing() {
    for (text, want) in [
        (
            "tls_listen = [\"127.0.0.1:8443\"]",
            "t.toml:2: tls_listen: needs at least one [[tls_certificates]] entry with cert and key",
        ),
        (
            "[[tls_certificates]]\nkey = \"k.pem\"",
            "t.toml:2: tls_certificates: an entry needs cert = \"<file>\" and key = \"<file>\"",
        ),
        (
            "[[tls_certificates]]\ncert = \"c.pem\"",
            "t.toml:2: tls_certificates: an entry needs cert = \"<file>\" and key = \"<file>\"",
        ),
        (
            "[[tls_certificates]]\ncert = \"c.pem\"\nkye = \"k.pem\"",
            "t.toml:2: tls_certificates: an entry needs cert = \"<file>\" and key = \"<file>\"; \
             t.toml:4: tls_certificates: unknown key `kye`; did you mean `key`?",
        ),
        (
            "[tls_certificates]\ncert = \"c.pem\"",
            "t.toml:2: tls_certificates: write each certificate as a [[tls_certificates]] entry (two brackets), not [tls_certificates]",
        ),
        (
            "tls_listen = [\"0.0.0.0:8080\"]\n[[tls_certificates]]\ncert = \"c\"\nkey = \"k\"",
            "t.toml:2: tls_listen: 0.0.0.0:8080 takes the port of listen address 127.0.0.1:8080",
        ),
        (
            "tls_listen = [\"127.0.0.1:8080\"]\n[[tls_certificates]]\ncert = \"c\"\nkey = \"k\"",
            "t.toml:2: tls_listen: 127.0.0.1:8080 is in listen too: one address serves plain HTTP or TLS, not both",
        ),
    ] {
        assert_eq!(message(text), want, "{text}");
    }
    let c = Config::parse(
        "tls_listen = [\"[::]:443\"]\nredirect_to_https = true\n[[tls_certificates]]\ncert = \"a.crt\"\nkey = \"a.key\"\n[[tls_certificates]]\ncert = \"b.crt\"\nkey = \"b.key\"\n",
        "t.toml",
    )
    .unwrap();
    assert!(c.redirect_to_https);
    assert_eq!(c.tls_certificates.len(), 2);
    assert_eq!(c.tls_certificates[1].key, std::path::Path::new("b.key"));
}

/// The compression keys: defaults, a table of levels, and each bad value
/// refused by its key, line and what was wrong.
#[test]
fn compression_keys() {
    let d = Config::default();
    assert_eq!(
        d.compression,
        [Encoding::Br, Encoding::Zstd, Encoding::Gzip]
    );
    assert!(d.compression_types.iter().any(|t| t == "text/*"));
    assert_eq!(d.compression_min_size, 1024);
    assert!(d.compression_level.is_empty());
    let c = Config::parse(
        "compression = []\ncompression_level = { br = 11, zstd = 1, gzip = 0 }\n\
         compression_types = [\"text/css\"]\ncompression_min_size = 0\n",
        "t",
    )
    .unwrap();
    assert!(c.compression.is_empty());
    assert_eq!(c.compression_level["br"], 11);
    assert_eq!(c.compression_types, ["text/css"]);
    for (text, why) in [
        ("compression = [\"br\", \"br\"]", "\"br\" is listed twice"),
        ("compression = [\"deflate\"]", "is not one of"),
        (
            "compression_level = { br = 12 }",
            "br: expected a level from 0 to 11, got 12",
        ),
        (
            "compression_level = { zstd = 0 }",
            "zstd: expected a level from 1 to 19",
        ),
        (
            "compression_level = { lz4 = 1 }",
            "lz4: not one of br, zstd, gzip",
        ),
        (
            "compression_types = \"text/*\"",
            "expected a list of media types",
        ),
        (
            "compression_types = [\"\"]",
            "expected a list of media types",
        ),
        ("compression_min_size = -1", "expected a number of bytes"),
    ] {
        let e = Config::parse(&format!("\n{text}\n"), "t.toml").unwrap_err();
        let key = text.split(' ').next().unwrap();
        let e = e.to_string();
        assert!(e.starts_with(&format!("t.toml:2: {key}")), "{text}: {e}");
        assert!(e.contains(why), "{text}: {e}");
    }
}

/// The HTTP/2 keys: defaults, and a value read.
#[test]
fn http2_keys() {
    let c = Config::parse("root = \"x\"\n", "t.toml").unwrap();
    assert!(c.http2 && !c.http2_cleartext);
    assert_eq!(c.h2_max_concurrent_streams, 128);
    let c = Config::parse("http2 = false\nh2_max_concurrent_streams = 7\n", "t.toml").unwrap();
    assert!(!c.http2);
    assert_eq!(c.h2_max_concurrent_streams, 7);
    let e = Config::parse("\nh2_max_control_frames_per_second = 0\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("must be at least 1"), "{e}");
}

/// The tchar table says what RFC 9110's list says, byte for byte.
#[test]
fn tchar_table_is_the_rfc_list() {
    for b in 0..=255u8 {
        let want = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert_eq!(super::is_tchar(b), want, "byte {b:#04x}");
    }
}
