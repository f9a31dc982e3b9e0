//! The config file as users write it: every key, every default, every error.

use super::*;

fn parse(s: &str) -> Result<Config, String> {
    Config::parse(s, Path::new("test.toml")).map_err(|e| e.to_string())
}

#[test]
fn empty_file_is_the_built_in_default() {
    assert_eq!(parse("").unwrap(), Config::default());
}

#[test]
fn the_example_config_shows_exactly_the_defaults() {
    // It says "the values shown are the defaults": hold it to that.
    let text = include_str!("../../../config.example.toml");
    assert_eq!(parse(text).unwrap(), Config::default());
}

#[test]
fn every_key_of_a_full_config_is_read() {
    let cfg = parse(
        r#"
        user = "metrics"
        [web]
        listen_address = "127.0.0.1:9999"
        telemetry_path = "/m"
        max_requests = 3
        config_file = "/etc/hge/web.yml"
        max_connections = 100
        read_header_timeout = "2s"
        idle_timeout = "1m"
        write_timeout = "500ms"
        [metrics]
        scrape_interval = "200ms"
        buckets = [0.1, 0.2]
        status_label = "code"
        max_series = 50
        max_series_per_target = 20
        [bpf]
        attach_mode = "tc"
        flow_table_size = 1024
        [[target]]
        name = "web"
        interfaces = ["veth*", "eth0"]
        netns = "/run/netns/web"
        ports = [80, 8080]
        routes = ["/users/{id}", "/static/*"]
        [[discover]]
        name = "pods"
        netns_dirs = ["/run/netns"]
        processes = false
        interfaces = ["eth*"]
        ports = [8080]
        routes = ["/"]
        max_namespaces = 20
        "#,
    )
    .unwrap();
    let want = Config {
        user: Some("metrics".into()),
        web: Web {
            listen_address: "127.0.0.1:9999".into(),
            telemetry_path: "/m".into(),
            max_requests: 3,
            config_file: Some(PathBuf::from("/etc/hge/web.yml")),
            max_connections: 100,
            read_header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_millis(500),
        },
        metrics: Metrics {
            scrape_interval: Duration::from_millis(200),
            buckets: vec![0.1, 0.2],
            status_label: StatusLabel::Code,
            max_series: 50,
            max_series_per_target: Some(20),
            ..Metrics::default()
        },
        bpf: Bpf { attach_mode: AttachMode::Tc, flow_table_size: 1024 },
        targets: vec![Target {
            name: "web".into(),
            interfaces: vec!["veth*".into(), "eth0".into()],
            netns: Some(PathBuf::from("/run/netns/web")),
            ports: vec![80, 8080],
            routes: vec!["/users/{id}".into(), "/static/*".into()],
            up_non_loopback: false,
        }],
        discover: vec![Discover {
            name: "pods".into(),
            netns_dirs: vec![PathBuf::from("/run/netns")],
            processes: false,
            interfaces: vec!["eth*".into()],
            ports: vec![8080],
            routes: vec!["/".into()],
            max_namespaces: 20,
        }],
    };
    assert_eq!(cfg, want);
    // None of the values above is a default, so no key can pass by being ignored.
    let d = Config::default();
    assert!(cfg.user != d.user && cfg.web.listen_address != d.web.listen_address);
    assert!(cfg.web.telemetry_path != d.web.telemetry_path && cfg.web.max_requests != d.web.max_requests);
    assert!(cfg.web.config_file != d.web.config_file && cfg.web.max_connections != d.web.max_connections);
    assert!(cfg.web.read_header_timeout != d.web.read_header_timeout && cfg.web.idle_timeout != d.web.idle_timeout);
    assert!(cfg.web.write_timeout != d.web.write_timeout);
    assert!(cfg.metrics.scrape_interval != d.metrics.scrape_interval && cfg.metrics.buckets != d.metrics.buckets);
    assert!(cfg.metrics.status_label != d.metrics.status_label && cfg.metrics.max_series != d.metrics.max_series);
    assert!(cfg.metrics.max_series_per_target != d.metrics.max_series_per_target);
    assert!(cfg.bpf.attach_mode != d.bpf.attach_mode && cfg.bpf.flow_table_size != d.bpf.flow_table_size);
    let (dd, cd) = (&d.discover[0], &cfg.discover[0]);
    assert!(cd.name != dd.name && cd.netns_dirs != dd.netns_dirs && cd.processes != dd.processes);
    assert!(cd.interfaces != dd.interfaces && cd.ports != dd.ports && cd.max_namespaces != dd.max_namespaces);
}

#[test]
fn with_no_target_and_no_discover_table_the_host_is_watched_and_containers_discovered() {
    let d = parse("[metrics]\nmax_series = 100\n").unwrap();
    assert_eq!(d.targets, vec![Target::host_default()]);
    assert_eq!(d.discover, vec![Discover::containers_default()]);
    // Naming targets means naming everything: no discovery unless asked for.
    let only_target = parse("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n").unwrap();
    assert!(only_target.discover.is_empty());
    // A discover table alone keeps the host target.
    let only_discover = parse("[[discover]]\nname = \"c\"\n").unwrap();
    assert_eq!(only_discover.targets, vec![Target::host_default()]);
    let c = &only_discover.discover[0];
    assert_eq!((c.processes, c.max_namespaces), (true, 512));
    assert_eq!(c.netns_dirs, Discover::containers_default().netns_dirs);
    assert!(c.interfaces.is_empty() && c.ports.is_empty());
}

#[test]
fn a_target_label_value_names_one_target_or_discover_table() {
    let e = parse("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[discover]]\nname = \"a\"\n").unwrap_err();
    assert!(e.contains("\"a\" is used twice"), "{e}");
    let e = parse("[[discover]]\nname = \"a\"\n[[discover]]\nname = \"a\"\n").unwrap_err();
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn the_series_budget_is_shared_evenly_unless_set() {
    let two = "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"b\"\ninterfaces = [\"y\"]\n";
    assert_eq!(parse("").unwrap().series_budget(), 5_000, "the host, and each discovered namespace");
    assert_eq!(parse("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n").unwrap().series_budget(), 10_000);
    assert_eq!(parse(two).unwrap().series_budget(), 5_000);
    assert_eq!(parse(&format!("[metrics]\nmax_series_per_target = 7000\n{two}")).unwrap().series_budget(), 7_000);
    let capped = format!("[metrics]\nmax_series = 100\nmax_series_per_target = 7000\n{two}");
    assert_eq!(parse(&capped).unwrap().series_budget(), 100, "never above max_series");
}

#[test]
fn unknown_keys_are_rejected_with_line_and_key() {
    let e = parse("[metrics]\nscrape_interval = \"5s\"\nbukets = [1.0]\n").unwrap_err();
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("bukets"), "{e}");
}

#[test]
fn bad_values_name_their_line() {
    let cases = [
        ("[metrics]\nbuckets = [0.5, 0.1]\n", 2, "strictly increasing"),
        ("[metrics]\nbuckets = []\n", 2, "1 to 30"),
        ("[metrics]\nscrape_interval = \"soon\"\n", 2, "not a duration"),
        ("[metrics]\nscrape_interval = \"1ms\"\n", 2, "between 100ms"),
        ("[metrics]\nstatus_label = \"both\"\n", 2, "class"),
        ("[metrics]\nmax_series = 0\n", 2, "max_series"),
        ("[metrics]\nnative_schema = 9\n", 2, "native_schema must be between 0 and 8"),
        ("[metrics]\nnative_schema = -1\n", 2, "native_schema"),
        ("[metrics]\nnative_zero_threshold = \"0s\"\n", 2, "between 1ns and 1s"),
        ("[metrics]\nnative_zero_threshold = \"tiny\"\n", 2, "not a duration"),
        ("[metrics]\nnative_histograms = \"yes\"\n", 2, "native_histograms"),
        ("[web]\nlisten_address = \"nowhere\"\n", 2, "listen"),
        ("[web]\ntelemetry_path = \"metrics\"\n", 2, "absolute"),
        ("[web]\nconfig_file = \"\"\n", 2, "config_file"),
        ("[web]\nmax_connections = 1\n", 2, "max_connections"),
        ("[web]\nwrite_timeout = \"0s\"\n", 2, "between 100ms"),
        ("[[target]]\nname = \"a\"\ninterfaces = []\n", 3, "at least one"),
        ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [0]\n", 4, "port 0"),
        ("[[target]]\nname = \"a\"\ninterfaces = [\"eth0\"]\nports = [80, 80]\n", 4, "twice"),
        ("[[target]]\nname = \"\"\ninterfaces = [\"eth0\"]\n", 2, "target name"),
        ("[bpf]\nattach_mode = \"xdp\"\n", 2, "auto"),
        ("user = \"a b\"\n", 1, "not a valid user name"),
        ("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nnetns = \"run/netns/a\"\n", 4, "absolute path"),
        ("[[discover]]\nname = \"c\"\nnetns_dirs = [\"netns\"]\n", 3, "absolute directory"),
        ("[[discover]]\nname = \"c\"\nmax_namespaces = 0\n", 3, "max_namespaces must be between 1"),
        ("[[discover]]\nname = \"c\"\ninterfaces = []\n", 3, "at least one"),
        ("[[discover]]\nname = \"c\"\nports = [70000]\n", 3, "not in 1..65535"),
        ("[[discover]]\nname = \"c\"\nprocess = true\n", 3, "unknown field"),
        ("[[discover]]\nnetns_dirs = []\n", 1, "missing field `name`"),
        ("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nroutes = [\"/a/*/b\"]\n", 4, "only be the last segment"),
        ("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nroutes = [\"/a//b\"]\n", 4, "empty segment"),
        ("[[discover]]\nname = \"c\"\nroutes = [\"users\"]\n", 3, "must start with /"),
    ];
    for (text, line, needle) in cases {
        let e = parse(text).unwrap_err();
        assert!(e.contains(needle), "{text:?} gave {e}");
        assert!(e.contains(&format!("line {line}, column")), "{text:?}: not at line {line}: {e}");
    }
}

#[test]
fn a_bad_route_names_its_line_and_key() {
    let text = "[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nroutes = [\"/ok\", \"/x/*/y\"]\n";
    let e = parse(text).unwrap_err();
    assert!(e.contains("line 4") && e.contains("routes"), "{e}");
    let many: Vec<String> = (0..33).map(|i| format!("\"/r{i}\"")).collect();
    let text = format!("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\nroutes = [{}]\n", many.join(", "));
    assert!(parse(&text).unwrap_err().contains("at most 32 routes per target"));
}

#[test]
fn duplicate_target_names_are_rejected() {
    let e = parse("[[target]]\nname = \"a\"\ninterfaces = [\"x\"]\n[[target]]\nname = \"a\"\ninterfaces = [\"y\"]\n")
        .unwrap_err();
    assert!(e.contains("used twice"), "{e}");
}

#[test]
fn missing_default_file_means_defaults_but_missing_named_file_is_an_error() {
    let p = Path::new("/nonexistent/http-golden-exporter.toml");
    assert_eq!(Config::load(p, false).unwrap(), Config::default());
    assert!(Config::load(p, true).unwrap_err().to_string().contains("reading config file"));
}
