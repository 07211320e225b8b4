//! `certfleet run --once` against real Pebble (issue 7, item 6): the first run issues, writes
//! the files and runs the deploy command with the right environment; a second run is silent;
//! a failing CA fails the run with the reason; deploy arguments with shell metacharacters are
//! passed literally; a failed deploy command is run again; webroot mode is validated by
//! Pebble through a plain static file server; a server holding the data directory stops it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use certfleet_acme::inspect::ParsedChain;
use certfleet_testkit::proxy::{Action, FaultProxy, Match, Rule};
use certfleet_testkit::{Pebble, PebbleOptions, StaticSite, require_program};

use crate::harness::{Server, bin, stderr};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `certfleet --data-dir DATA run --once --config CONFIG [extra]`.
fn run_once(data: &Path, config: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .args(["run", "--once", "--config"])
        .arg(config)
        .env_remove("CERTFLEET_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run certfleet")
}

/// A TOML string literal.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn argv(args: &[&str]) -> String {
    let items: Vec<String> = args.iter().map(|a| q(a)).collect();
    format!("[{}]", items.join(", "))
}

/// The issuer section for `directory`, trusting Pebble's listener CA, answering HTTP-01 on
/// `http01` (Pebble's httpPort).
fn issuer(directory: &str, pebble: &Pebble, http01: u16) -> String {
    format!(
        "[server]\nhttp01_listen = \"127.0.0.1:{http01}\"\n\n[issuers.default]\ndirectory = {}\n\
         ca_roots = [{}]\ncontacts = [\"mailto:ops@example.test\"]\n\n",
        q(directory),
        q(pebble.ca_cert_path().to_str().unwrap())
    )
}

fn python() -> String {
    require_program("python3", "apt-get install -y python3")
        .to_string_lossy()
        .to_string()
}

/// A deploy command (no shell) that writes its environment and arguments as JSON to `out`.
fn recorder(out: &Path, args: &[&str]) -> Vec<String> {
    let py = python();
    let script = "import json, os, sys\n\
                  json.dump({'env': dict(os.environ), 'args': sys.argv[2:]}, open(sys.argv[1], 'w'))";
    let mut v = vec![py, "-c".into(), script.into(), out.to_str().unwrap().into()];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

fn recorded(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out).expect("the deploy command ran")).unwrap()
}

fn serial_of(dir: &Path) -> String {
    let pem = std::fs::read_to_string(dir.join("cert.pem")).unwrap();
    ParsedChain::parse(&pem).unwrap().leaf().serial.clone()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    config: PathBuf,
    certs: PathBuf,
    env_out: PathBuf,
}

fn setup(directory: &str, pebble: &Pebble, extra_cert: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("etc-ssl");
    let env_out = tmp.path().join("deploy.json");
    let deploy = recorder(&env_out, &[]);
    let deploy: Vec<&str> = deploy.iter().map(String::as_str).collect();
    let config = tmp.path().join("certfleet.toml");
    let text = format!(
        "{}[[certificates]]\nname = \"www\"\ndomains = [\"www.example.test\", \"example.test\"]\n\
         dir = {}\ndeploy = {}\n{extra_cert}",
        issuer(directory, pebble, pebble.http01_port()),
        q(certs.join("www").to_str().unwrap()),
        argv(&deploy),
    );
    std::fs::write(&config, text).unwrap();
    Setup {
        data: tmp.path().join("data"),
        config,
        certs,
        env_out,
        _tmp: tmp,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_run_issues_and_deploys_and_the_second_is_silent() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let s = setup(&pebble.directory_url(), &pebble, "");
    let out = run_once(&s.data, &s.config, &[]);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    let dir = s.certs.join("www");
    let serial = serial_of(&dir);
    let said = stdout(&out);
    assert!(
        said.contains(&format!("www: issued version 1 (serial {serial})")),
        "{said}"
    );
    assert!(said.contains("deploy command"), "{said}");
    for file in [
        "cert.pem",
        "chain.pem",
        "fullchain.pem",
        "privkey.pem",
        "bundle.pem",
    ] {
        assert!(dir.join(file).is_file(), "{file} written");
    }
    assert_eq!(mode(&dir.join("privkey.pem")), 0o600);
    assert_eq!(mode(&dir.join("bundle.pem")), 0o600);
    assert_eq!(mode(&dir.join("fullchain.pem")), 0o644);
    let full = std::fs::read_to_string(dir.join("fullchain.pem")).unwrap();
    crate::chains::verify_against(&pebble.root_pem().await, &full, "www.example.test");

    let seen = recorded(&s.env_out);
    let env = &seen["env"];
    let dir_text = dir.to_str().unwrap();
    assert_eq!(env["CERTFLEET_NAME"], "www");
    assert_eq!(env["CERTFLEET_DOMAINS"], "www.example.test example.test");
    assert_eq!(env["CERTFLEET_DIR"], dir_text);
    assert_eq!(env["CERTFLEET_SERIAL"], serial.as_str());
    assert_eq!(env["CERTFLEET_VERSION"], "1");
    assert_eq!(env["RENEWED_LINEAGE"], dir_text, "certbot's variables too");
    assert_eq!(env["RENEWED_DOMAINS"], "www.example.test example.test");

    // Nothing due: no output at all, exit 0, the command is not run again.
    std::fs::remove_file(&s.env_out).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    assert!(!s.env_out.exists(), "the deploy command did not run");
    assert_eq!(serial_of(&dir), serial);

    // Files lost on the machine are put back (and deployed) without a new certificate.
    std::fs::remove_file(dir.join("privkey.pem")).unwrap();
    let out = run_once(&s.data, &s.config, &["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let www = &report["certificates"][0];
    assert!(www["issued"].is_null(), "no new certificate: {report}");
    assert_eq!(www["deploy"]["files_changed"], true);
    assert_eq!(www["deploy"]["status"], 0);
    assert!(dir.join("privkey.pem").is_file());
    assert_eq!(
        recorded(&s.env_out)["env"]["CERTFLEET_SERIAL"],
        serial.as_str()
    );

    // A name added in the file: a new version at once (the responder listens for it although
    // nothing is due by the schedule), deployed with the new names.
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "\"example.test\"]",
        "\"example.test\", \"api.example.test\"]",
    );
    std::fs::write(&s.config, text).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("www: renewed version 2"),
        "{}",
        stdout(&out)
    );
    let env = &recorded(&s.env_out)["env"];
    assert_eq!(
        env["CERTFLEET_DOMAINS"],
        "www.example.test example.test api.example.test"
    );
    assert_eq!(env["CERTFLEET_SERIAL"], serial_of(&dir).as_str());
    assert_ne!(serial_of(&dir), serial);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_ca_fails_the_run_with_the_reason() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let proxy = FaultProxy::start(&pebble).await;
    let s = setup(&proxy.directory_url(), &pebble, "");
    let refusal = Action::problem(
        403,
        "rejectedIdentifier",
        "fault proxy: issuance for example.test is forbidden by policy",
        None,
    );
    proxy.add(Rule::new(Match::post("/order-plz"), refusal).times(1));
    let out = run_once(&s.data, &s.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains("error: www:")
            && said.contains(
                "rejectedIdentifier: fault proxy: issuance for example.test is forbidden by policy"
            ),
        "the CA's words: {said}"
    );
    assert!(said.contains("1 certificate(s) failed: www"), "{said}");
    assert_eq!(stdout(&out), "", "nothing issued");
    assert!(!s.env_out.exists(), "nothing deployed");

    // Every run tries a failed certificate again; the CA answers now.
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("www: issued version 1"),
        "{}",
        stdout(&out)
    );

    // A CA that is gone: its directory does not answer.
    let gone = setup("https://127.0.0.1:1/dir", &pebble, "");
    let out = run_once(&gone.data, &gone.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(
        said.contains("error: www:") && said.contains("https://127.0.0.1:1/dir did not answer"),
        "{said}"
    );
    assert_eq!(stdout(&out), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_arguments_with_shell_metacharacters_run_literally() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("args.json");
    let canary = tmp.path().join("canary");
    let tricky = [
        format!("a; touch {}", canary.display()),
        format!("$(touch {})", canary.display()),
        format!("`touch {}`", canary.display()),
        "two words | cat > /dev/null && \"quoted\" 'single' * ~ $HOME".to_string(),
    ];
    let tricky_refs: Vec<&str> = tricky.iter().map(String::as_str).collect();
    let deploy = recorder(&out_file, &tricky_refs);
    let deploy_refs: Vec<&str> = deploy.iter().map(String::as_str).collect();
    // Fails while `flag` exists.
    let flag = tmp.path().join("fail-deploy");
    std::fs::write(&flag, "").unwrap();
    let failing = [
        python(),
        "-c".into(),
        "import os, sys; print('reload refused: config test failed'); sys.exit(3 if os.path.exists(sys.argv[1]) else 0)".into(),
        flag.to_str().unwrap().into(),
    ];
    let failing_refs: Vec<&str> = failing.iter().map(String::as_str).collect();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[certificates]]\nname = \"www\"\ndomains = [\"www.example.test\"]\ndir = {}\n\
             deploy = {}\n\n[[certificates]]\nname = \"api\"\ndomains = [\"api.example.test\"]\n\
             dir = {}\ndeploy = {}\ngroup = \"0\"\n",
            issuer(&pebble.directory_url(), &pebble, pebble.http01_port()),
            q(tmp.path().join("www").to_str().unwrap()),
            argv(&deploy_refs),
            q(tmp.path().join("api").to_str().unwrap()),
            argv(&failing_refs),
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let out = run_once(&data, &config, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "api's deploy fails: {}",
        stderr(&out)
    );
    let seen = recorded(&out_file);
    assert_eq!(
        seen["args"],
        serde_json::json!(tricky),
        "every argument exactly as written"
    );
    assert!(!canary.exists(), "no shell ran any of it");
    let said = stderr(&out);
    assert!(
        said.contains("error: api: the deploy command")
            && said.contains("exited with 3: reload refused: config test failed"),
        "{said}"
    );
    assert!(said.contains("1 certificate(s) failed: api"), "{said}");
    assert_eq!(
        mode(&tmp.path().join("api/privkey.pem")),
        0o640,
        "key_mode with a group"
    );

    // The failed command runs again at the next run (the files did not change), and once it
    // succeeds, the run after is silent.
    std::fs::remove_file(&out_file).unwrap();
    let out = run_once(&data, &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out_file.exists(), "www was deployed already");
    std::fs::remove_file(&flag).unwrap();
    let out = run_once(&data, &config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("api: files of version 1 already in")
            && stdout(&out).contains("exited with 0"),
        "{}",
        stdout(&out)
    );
    let out = run_once(&data, &config, &[]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
}

#[tokio::test(flavor = "multi_thread")]
async fn webroot_mode_is_validated_by_pebble_through_a_static_file_server() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let webroot = tmp.path().join("html");
    std::fs::create_dir_all(&webroot).unwrap();
    std::fs::write(webroot.join("index.html"), "hello\n").unwrap();
    // The site answers on Pebble's httpPort: the built-in responder could not even listen.
    let site = StaticSite::start(&webroot, pebble.http01_port()).await;
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "{}[[solvers]]\ntype = \"webroot\"\npath = {}\n\n[[certificates]]\nname = \"site\"\n\
             domains = [\"site.example.test\"]\nsolver = \"webroot\"\ndir = {}\n{}",
            issuer(&pebble.directory_url(), &pebble, pebble.http01_port()),
            q(webroot.to_str().unwrap()),
            q(tmp.path().join("site").to_str().unwrap()),
            // Orders running at once write into the one webroot side by side.
            (1..=4)
                .map(|i| format!(
                    "\n[[certificates]]\nname = \"site{i}\"\ndomains = [\"site{i}.example.test\"]\n\
                     solver = \"webroot\"\ndir = {}\n",
                    q(tmp.path().join(format!("site{i}")).to_str().unwrap())
                ))
                .collect::<String>(),
        ),
    )
    .unwrap();
    let out = run_once(&tmp.path().join("data"), &config, &[]);
    assert!(
        out.status.success(),
        "{}\n{}\nsite log:\n{}",
        stdout(&out),
        stderr(&out),
        site.log()
    );
    for name in ["site", "site1", "site2", "site3", "site4"] {
        assert!(
            stdout(&out).contains(&format!("{name}: issued version 1")),
            "{}",
            stdout(&out)
        );
    }
    let log = site.log();
    assert!(
        log.lines()
            .any(|l| l.contains("GET /.well-known/acme-challenge/") && l.contains(" 200 ")),
        "Pebble fetched the token from the static server:\n{log}"
    );
    let challenges = webroot.join(".well-known/acme-challenge");
    assert_eq!(
        std::fs::read_dir(&challenges).unwrap().count(),
        0,
        "the token files are removed after"
    );
    assert_eq!(mode(&challenges), 0o755);
    assert!(tmp.path().join("site/fullchain.pem").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_the_data_directory_stops_a_run_and_config_errors_name_the_field() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let s = setup(&pebble.directory_url(), &pebble, "");
    {
        let server = Server::start(&pebble, &s.data);
        let out = run_once(&s.data, &s.config, &[]);
        assert_eq!(out.status.code(), Some(1));
        let said = stderr(&out);
        assert!(
            said.contains("is in use by another certfleet process")
                && said.contains("nothing was done"),
            "{said}"
        );
        assert!(!s.certs.exists(), "nothing written");
        drop(server);
    }

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    let head = issuer(&pebble.directory_url(), &pebble, pebble.http01_port());
    let cases = [
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\n",
            "certificates[0].dir: run --once writes the files of \"a\" into a directory",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"relative/a\"\n",
            "certificates[0].dir: \"relative/a\" is not an absolute path",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndeploy = [\"true\"]\n",
            "certificates[0].deploy: needs certificates[0].dir",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"/tmp/a\"\ndeploy = []\n",
            "certificates[0].deploy: give the program and its arguments as a list",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"/tmp/a\"\ndeploy = \"systemctl reload nginx\"\n",
            "certificates[0].deploy: invalid type: string \"systemctl reload nginx\", expected a sequence",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"/tmp/a\"\nkey_mode = 640\n",
            "certificates[0].key_mode: invalid type: integer `640`, expected a string",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"/tmp/a\"\nkey_mode = \"0644\"\n",
            "certificates[0].key_mode: mode \"0644\": a private key must not be accessible to others",
        ),
        (
            "[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = \"/tmp/a\"\ngroup = \"no-such-group-certfleet\"\n",
            "certificates[0].group: unknown group \"no-such-group-certfleet\"",
        ),
        (
            "[[solvers]]\ntype = \"webroot\"\npath = \"www\"\n",
            "solvers[0].path: \"www\" is not an absolute path",
        ),
    ];
    for (text, want) in cases {
        std::fs::write(&bad, format!("{head}{text}")).unwrap();
        let out = run_once(&tmp.path().join("data"), &bad, &[]);
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            stderr(&out).contains(want),
            "{text}\nwant: {want}\ngot: {}",
            stderr(&out)
        );
        assert!(
            !tmp.path().join("data").exists(),
            "nothing created for {text}"
        );
    }
}

/// The config file is the whole truth for a run: a certificate taken out of it is neither
/// ordered nor reported, even when its last attempt failed (its versions stay stored).
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_removed_from_the_file_is_left_alone() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let extra = "\n[issuers.gone]\ndirectory = \"https://127.0.0.1:1/dir\"\n\n\
                 [[certificates]]\nname = \"old\"\ndomains = [\"old.example.test\"]\n\
                 issuer = \"gone\"\ndir = \"/nonexistent-certfleet/old\"\n";
    let s = setup(&pebble.directory_url(), &pebble, extra);
    let out = run_once(&s.data, &s.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("error: old:"), "{}", stderr(&out));
    assert!(stdout(&out).contains("www: issued version 1"));

    let text = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, &text[..text.find("\n[issuers.gone]").unwrap()]).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "nothing due");
    assert_eq!(
        stderr(&out),
        "",
        "nothing said about the removed certificate"
    );

    // Its versions stay: `run --list` shows both, as `cert ls` would.
    let mut list = Command::new(bin());
    list.arg("--data-dir").arg(&s.data).arg("--json");
    let out = list
        .args(["run", "--list", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let certs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = certs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{certs}");
    assert!(names.contains(&"old") && names.contains(&"www"), "{certs}");
    let www = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "www")
        .unwrap();
    assert_eq!(www["status"], "valid", "{www}");
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&s.data)
        .args(["run", "--list", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    assert!(
        stdout(&out).starts_with("NAME") && stdout(&out).contains("www.example.test"),
        "{}",
        stdout(&out)
    );
}

/// A renewal that failed against a CA the file no longer names is tried again, at once, with
/// the issuer the file names now; the stale error is not reported as this run's.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_config_retries_a_failed_renewal_at_once() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let s = setup(&pebble.directory_url(), &pebble, "");
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let good = std::fs::read_to_string(&s.config).unwrap();

    // A name added (a new version is due now) while the directory points nowhere.
    let edited = good.replace(
        "\"example.test\"]",
        "\"example.test\", \"api.example.test\"]",
    );
    std::fs::write(
        &s.config,
        edited.replace(&q(&pebble.directory_url()), "\"https://127.0.0.1:1/dir\""),
    )
    .unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("https://127.0.0.1:1/dir did not answer"));

    std::fs::write(&s.config, &edited).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("www: renewed version 2"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
}

/// A `renew_before` as long as the lifetime never makes a fresh version due again: one run
/// issues one version, the next run issues nothing.
#[tokio::test(flavor = "multi_thread")]
async fn renew_before_close_to_the_lifetime_issues_once_per_due_time() {
    // One-hour certificates: 99 % puts the renewal 36 s after issuance, and the per-name
    // jitter (up to 1/20 of the lifetime, 180 s) reaches back past issuance: due at once.
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(3600),
        ..PebbleOptions::fast()
    })
    .await;
    let s = setup(&pebble.directory_url(), &pebble, "renew_before = \"99%\"\n");
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("www: issued version 1"),
        "{}",
        stdout(&out)
    );
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "", "a fresh version is not due again");
}

/// Two certificates writing into one directory would overwrite each other at every run.
#[tokio::test(flavor = "multi_thread")]
async fn two_certificates_in_one_directory_are_refused_by_name() {
    let pebble = Pebble::start(PebbleOptions::fast()).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("same");
    let text = format!(
        "{}[[certificates]]\nname = \"a\"\ndomains = [\"a.example.test\"]\ndir = {}\n\n\
         [[certificates]]\nname = \"b\"\ndomains = [\"b.example.test\"]\ndir = {}\n",
        issuer(&pebble.directory_url(), &pebble, pebble.http01_port()),
        q(dir.to_str().unwrap()),
        q(&format!("{}/", dir.display())),
    );
    let config = tmp.path().join("certfleet.toml");
    std::fs::write(&config, text).unwrap();
    let out = run_once(&tmp.path().join("data"), &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("certificates[1].dir: ")
            && stderr(&out).contains("certificates[0].dir")
            && stderr(&out).contains("\"a\""),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("data").exists());
}

/// A renewal that failed is moot once the file no longer asks for it (here: `renew_before`
/// taken out again): the next run neither orders nor reports the old failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_renewal_that_is_no_longer_due_is_not_reported_again() {
    // 30-second certificates: by the lifetime rule due after about 15 s; with renew_before
    // 99 % after the minimum age (1/20 of the lifetime, 1.5 s).
    let pebble = Pebble::start(PebbleOptions {
        validity_secs: Some(30),
        ..PebbleOptions::fast()
    })
    .await;
    let s = setup(&pebble.directory_url(), &pebble, "");
    let good = std::fs::read_to_string(&s.config).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_secs(2));

    let down = good.replace(&q(&pebble.directory_url()), "\"https://127.0.0.1:1/dir\"");
    std::fs::write(&s.config, format!("{down}renew_before = \"99%\"\n")).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("https://127.0.0.1:1/dir did not answer"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&s.config, &good).unwrap();
    let out = run_once(&s.data, &s.config, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("127.0.0.1:1"), "{}", stderr(&out));
}
