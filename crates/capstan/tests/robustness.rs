//! Bad input never gets a 5xx: hundreds of generated malformed requests (odd paths, garbage
//! query parameters, broken, mistyped, deep and oversized bodies, wrong content types) sent
//! with curl and the admin certificate to a real server, which must answer each with a
//! 2xx/4xx and stay healthy. The one 5xx allowed is upstream's contract for a
//! resourceVersion from the future: 504 with the `ResourceVersionTooLarge` cause, on which
//! client-go and kube-rs relist.

mod support;

use anyhow::{Context, Result, ensure};
use base64::Engine;
use std::path::Path;
use std::process::{Command, Stdio};
use support::{Server, isolated};

/// The admin credentials of a kubeconfig, written as PEM files curl can use.
fn credentials(kubeconfig: &Path, dir: &Path) -> Result<[String; 3]> {
    let text = std::fs::read_to_string(kubeconfig)?;
    let field = |name: &str| -> Result<Vec<u8>> {
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
            .with_context(|| format!("no {name} in the kubeconfig"))?;
        Ok(base64::engine::general_purpose::STANDARD.decode(line.trim())?)
    };
    let mut paths = Vec::new();
    for (name, file) in [
        ("certificate-authority-data", "ca.pem"),
        ("client-certificate-data", "cert.pem"),
        ("client-key-data", "key.pem"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, field(name)?)?;
        paths.push(path.display().to_string());
    }
    Ok([paths[0].clone(), paths[1].clone(), paths[2].clone()])
}

/// One generated request.
#[derive(Debug)]
struct Probe {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Option<Vec<u8>>,
}

const PATHS: &[&str] = &[
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/x",
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/pods/p/status",
    "/api/v1/namespaces/default/services/kubernetes",
    "/api/v1/namespaces/nowhere/secrets",
    "/api/v1/namespaces",
    "/api/v1/namespaces/default",
    "/api/v1/nodes/n",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/deployments/d/scale",
    "/apis/batch/v1/namespaces/default/cronjobs",
    "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
    "/apis/events.k8s.io/v1/namespaces/default/events",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "/api/v1/watch/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/%2e%2e",
    "/api/v1/namespaces/%ff%fe/configmaps",
    "/api/v1/namespaces/default/configmaps/a/b/c",
    "/apis/nonsense/v1/things",
    "/openapi/v3/apis/apps/v1",
    "/openapi/v3/nope",
    "//api//v1//",
];

const QUERIES: &[&str] = &[
    "",
    "?limit=2",
    "?limit=-1",
    "?limit=abc",
    "?continue=garbage",
    "?continue=eyJydiI6MX0=",
    "?resourceVersion=abc",
    "?resourceVersion=99999999999",
    "?resourceVersion=0&resourceVersionMatch=Exact",
    "?resourceVersionMatch=Sometimes",
    "?labelSelector=a%20in%20(",
    "?labelSelector=!!!",
    "?fieldSelector=spec.nodeName%3Dx",
    "?fieldSelector=nope.field%3Dx",
    "?watch=maybe",
    "?watch=1&timeoutSeconds=0",
    "?watch=1&resourceVersion=1&timeoutSeconds=0",
    "?dryRun=Sometimes",
    "?dryRun=All",
    "?fieldValidation=Loose",
    "?fieldValidation=Strict",
    "?gracePeriodSeconds=x",
    "?propagationPolicy=Sideways",
    "?includeObject=Everything",
    "?%zz=%zz&=&&&",
];

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "",
];

fn body(rng: &mut fastrand::Rng) -> Vec<u8> {
    let valid = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","labels":{"a":"b"}},"data":{"k":"v"}}"#;
    match rng.u8(0..14) {
        0 => valid.as_bytes().to_vec(),
        1 => valid.as_bytes()[..rng.usize(0..valid.len())].to_vec(),
        2 => b"[1,2,3]".to_vec(),
        3 => b"null".to_vec(),
        4 => format!("{}{}", "{\"a\":".repeat(2000), "}".repeat(2000)).into_bytes(),
        5 => format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        6 => valid.replace("\"x\"", "123").into_bytes(),
        7 => valid.replace("{\"k\":\"v\"}", "[\"k\"]").into_bytes(),
        8 => valid.replace("\"metadata\":{", "\"metadata\":[{").into_bytes(),
        9 => b"a: [unclosed\n  - b: {c".to_vec(),
        10 => (0..rng.usize(1..512)).map(|_| rng.u8(..)).collect(),
        11 => valid.replace("ConfigMap", "Pod").into_bytes(),
        12 => valid.replace("\"x\"", &format!("\"{}\"", "y".repeat(300))).into_bytes(),
        _ => format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"x","resourceVersion":"{}"}}}}"#,
            rng.i64(..)
        )
        .into_bytes(),
    }
}

fn probes(count: usize) -> Vec<Probe> {
    let mut rng = fastrand::Rng::with_seed(0x0ca9_57a9);
    (0..count)
        .map(|_| {
            let method =
                ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"][rng.usize(..7)];
            let path = format!(
                "{}{}",
                PATHS[rng.usize(..PATHS.len())],
                QUERIES[rng.usize(..QUERIES.len())]
            );
            let with_body = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
            Probe {
                method,
                path,
                content_type: CONTENT_TYPES[rng.usize(..CONTENT_TYPES.len())],
                body: with_body.then(|| body(&mut rng)),
            }
        })
        .collect()
}

#[test]
fn no_bad_request_gets_a_server_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let args = isolated(dir.path());
    let server = Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let ready = server.wait_for("API server ready")?;
    let url = ready
        .split_whitespace()
        .find_map(|word| word.strip_prefix("server="))
        .context("no server URL in the ready line")?
        .to_owned();
    let [ca, cert, key] = credentials(&dir.path().join("kubeconfig.yaml"), dir.path())?;
    let body_file = dir.path().join("body");
    let answer_file = dir.path().join("answer");
    let mut failures = Vec::new();
    for probe in probes(400) {
        let mut command = Command::new("curl");
        command
            .args(["-s", "-o"])
            .arg(&answer_file)
            .args(["-w", "%{http_code}", "--max-time", "3"])
            .args(["--cacert", &ca, "--cert", &cert, "--key", &key])
            .args(["-X", probe.method, "-H", &format!("Content-Type: {}", probe.content_type)])
            .arg(format!("{url}{}", probe.path));
        if probe.method == "HEAD" {
            command.arg("-I");
        }
        if let Some(body) = &probe.body {
            std::fs::write(&body_file, body)?;
            command.arg("--data-binary").arg(format!("@{}", body_file.display()));
        }
        // Watches without a timeout stream until curl gives up: 200 headers, then exit 28.
        let output = command.stdin(Stdio::null()).output()?;
        let code: u16 = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
        let answer = std::fs::read_to_string(&answer_file).unwrap_or_default();
        // (A HEAD answer has no body to show the cause.)
        let future_version = code == 504
            && (answer.contains("ResourceVersionTooLarge")
                || (probe.method == "HEAD" && probe.path.contains("resourceVersion=9999")));
        if !(200..500).contains(&code) && !future_version {
            failures.push(format!(
                "{code} for {} {} ({})",
                probe.method, probe.path, probe.content_type
            ));
        }
    }
    ensure!(failures.is_empty(), "{} server errors:\n{}", failures.len(), failures.join("\n"));
    let health = Command::new("curl")
        .args(["-s", "--cacert", &ca, "--cert", &cert, "--key", &key])
        .arg(format!("{url}/readyz"))
        .output()?;
    ensure!(health.stdout == b"ok", "the server is unwell after the probes");
    ensure!(server.terminate()?, "the server exited with a failure on SIGTERM");
    Ok(())
}
