//! The server over real HTTP: a real listener, the router, a hyper client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dlinkwm_host::{Config, HostMethods, PluginHost, ReloadEvent};
use dlinkwm_serve::{ServeOptions, Server, serve};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use test_programs_artifacts::{SDK_TEST_A, SDK_TEST_B};

const TOKEN: &str = "s3cret-admin-token";
const WAIT: Duration = Duration::from_secs(60);

struct Running {
    addr: SocketAddr,
    server: Server,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), dlinkwm_serve::ServeError>>,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
    dir: PathBuf,
    /// Signalled when a `nap` host method starts.
    nap_started: Arc<tokio::sync::Notify>,
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// `nap` sleeps 500 ms, after signalling `started`.
fn methods(started: Arc<tokio::sync::Notify>) -> HostMethods {
    let mut methods = HostMethods::new();
    methods.register_async("nap", move |arg: String| {
        let started = started.clone();
        async move {
            started.notify_one();
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok::<_, String>(format!("rested {arg}"))
        }
    });
    methods
}

async fn start(configure: impl FnOnce(&mut Config, &Path)) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    std::fs::copy(SDK_TEST_A, path.join("sdk.wasm"))?;
    let mut config = Config::default();
    configure(&mut config, &path);
    let nap_started = Arc::new(tokio::sync::Notify::new());
    let host = PluginHost::builder()
        .config(config)
        .host_methods(methods(nap_started.clone()))
        .build()?;
    let options = ServeOptions::default().with_admin_token(Some(TOKEN.to_owned()));
    let server = Server::from_directory(&host, &path, options).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        listener,
        server.router(),
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(30),
    ));
    Ok(Running {
        addr,
        server,
        stop: Some(stop),
        task,
        client: Client::builder(TokioExecutor::new()).build_http(),
        _dir: dir,
        dir: path,
        nap_started,
    })
}

impl Running {
    async fn send(
        &self,
        method: &str,
        route: &str,
        content_type: Option<&str>,
        body: &[u8],
        token: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("http://{}{route}", self.addr));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::copy_from_slice(body)))?)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn get(&self, route: &str) -> anyhow::Result<Answer> {
        self.send("GET", route, None, &[], None).await
    }

    async fn post_json(&self, route: &str, body: &str) -> anyhow::Result<Answer> {
        self.send(
            "POST",
            route,
            Some("application/json"),
            body.as_bytes(),
            None,
        )
        .await
    }

    /// Waits (bounded) until `done` holds for the answer of `GET route`.
    async fn wait_for(&self, route: &str, done: impl Fn(&Answer) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let answer = self.get(route).await?;
            if done(&answer) {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "{route}: {}", answer.text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime builds")
}

/// Replaces `path` in one step (a rename), as a deploy does.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, bytes)?;
    std::fs::rename(&staged, path)?;
    Ok(())
}

#[test]
fn every_route_and_status() -> anyhow::Result<()> {
    runtime().block_on(async {
        let running = start(|config, dir| {
            config.defaults.timeout_ms = Some(300);
            config.defaults.max_input_bytes = Some(1024);
            let name = dir.join("sdk.wasm").display().to_string();
            config.plugins.entry(name).or_default().host_methods = Some(vec!["nap".to_owned()]);
        })
        .await?;
        assert_eq!(running.get("/healthz").await?.status, 200);
        assert_eq!(running.get("/readyz").await?.status, 200);

        // A call in each format, answered in the same one.
        let answer = running
            .post_json("/v1/plugins/sdk/echo", "\"hello\"")
            .await?;
        assert_eq!((answer.status, answer.text().as_str()), (200, "\"hello\""));
        assert_eq!(answer.headers["content-type"], "application/json");
        let answer = running
            .send("POST", "/v1/plugins/sdk/echo", None, b"raw text", None)
            .await?;
        assert_eq!((answer.status, answer.text().as_str()), (200, "raw text"));
        let answer = running
            .send(
                "POST",
                "/v1/plugins/sdk/add",
                Some("application/postcard"),
                &[0x04, 0x06],
                None,
            )
            .await?;
        assert_eq!((answer.status, answer.body.as_slice()), (200, &[0x0a][..]));

        // The status table.
        let check = |answer: &Answer, status: u16, kind: &str| {
            assert_eq!(answer.status, status, "{}", answer.text());
            assert_eq!(answer.json()["kind"], kind, "{}", answer.text());
            // No host internals: the plugin's path never reaches a client.
            assert!(!answer.text().contains("/tmp"), "{}", answer.text());
        };
        check(
            &running.post_json("/v1/plugins/nope/echo", "\"x\"").await?,
            404,
            "UnknownPlugin",
        );
        check(
            &running.post_json("/v1/plugins/sdk/nope", "\"x\"").await?,
            404,
            "EntryNotFound",
        );
        check(
            &running
                .send(
                    "POST",
                    "/v1/plugins/sdk/echo",
                    Some("text/html"),
                    b"x",
                    None,
                )
                .await?,
            415,
            "UnsupportedMediaType",
        );
        check(
            &running
                .post_json("/v1/plugins/sdk/echo", &format!("\"{}\"", "x".repeat(4096)))
                .await?,
            413,
            "InputTooLarge",
        );
        let failed = running
            .post_json("/v1/plugins/sdk/fail", "\"the ledger is closed\"")
            .await?;
        check(&failed, 422, "Guest");
        assert_eq!(failed.json()["error"], "the ledger is closed");
        check(
            &running.post_json("/v1/plugins/sdk/spin", "null").await?,
            504,
            "Timeout",
        );
        check(
            &running
                .post_json("/v1/plugins/sdk/panic_now", "\"boom\"")
                .await?,
            500,
            "GuestPanic",
        );
        // The next request after a panic succeeds.
        assert_eq!(
            running
                .post_json("/v1/plugins/sdk/echo", "\"again\"")
                .await?
                .status,
            200
        );

        // Listing and describing.
        let list = running.get("/v1/plugins").await?.json();
        assert_eq!(list["plugins"][0]["name"], "sdk");
        let described = running.get("/v1/plugins/sdk").await?.json();
        assert_eq!(described["kind"], "abi");
        assert_eq!(described["version"], 1);
        assert!(
            described["entries"]
                .as_array()
                .is_some_and(|entries| entries.iter().any(|entry| entry == "echo"))
        );
        assert_eq!(running.get("/v1/plugins/nope").await?.status, 404);

        // Admin routes: refused without the token, working with it.
        let plugin = running.server.plugin("sdk").expect("sdk is served");
        plugin
            .reload_from_bytes_async(&std::fs::read(SDK_TEST_B)?)
            .await?;
        let unauthorized = running
            .send("POST", "/v1/plugins/sdk/rollback", None, &[], None)
            .await?;
        check(&unauthorized, 401, "Unauthorized");
        let wrong = running
            .send("POST", "/v1/plugins/sdk/rollback", None, &[], Some("nope"))
            .await?;
        assert_eq!(wrong.status, 401);
        let rolled = running
            .send("POST", "/v1/plugins/sdk/rollback", None, &[], Some(TOKEN))
            .await?;
        assert_eq!(
            (rolled.status, rolled.json()["version"].clone()),
            (200, 1.into())
        );
        let reloaded = running
            .send("POST", "/v1/plugins/sdk/reload", None, &[], Some(TOKEN))
            .await?;
        assert_eq!(reloaded.status, 200, "{}", reloaded.text());

        // /metrics parses as Prometheus text, and its counters match the requests made.
        let metrics = running.get("/metrics").await?;
        assert_eq!(metrics.status, 200);
        let text = metrics.text();
        for line in text.lines() {
            assert!(
                line.starts_with('#')
                    || line
                        .rsplit_once(' ')
                        .is_some_and(|(_, value)| value.parse::<f64>().is_ok()),
                "not a Prometheus line: {line}"
            );
        }
        for (series, count) in [
            (
                r#"dlinkwm_requests_total{plugin="sdk",entry="echo",outcome="ok"}"#,
                3,
            ),
            (
                r#"dlinkwm_requests_total{plugin="sdk",entry="spin",outcome="Timeout"}"#,
                1,
            ),
            (
                r#"dlinkwm_requests_total{plugin="sdk",entry="fail",outcome="Guest"}"#,
                1,
            ),
            (r#"dlinkwm_rollbacks_total{plugin="sdk"}"#, 1),
            // Entry names from URLs that the plugin does not have share one label.
            (
                r#"dlinkwm_requests_total{plugin="sdk",entry="_unknown",outcome="EntryNotFound"}"#,
                1,
            ),
        ] {
            assert!(
                text.lines().any(|line| line == format!("{series} {count}")),
                "missing {series} {count} in:\n{text}"
            );
        }
        Ok(())
    })
}

#[test]
fn deploys_under_load_fail_no_request() -> anyhow::Result<()> {
    runtime().block_on(async {
        let running = Arc::new(start(|_, _| {}).await?);
        let (a, b) = (std::fs::read(SDK_TEST_A)?, std::fs::read(SDK_TEST_B)?);
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let (running, stop, failures) = (running.clone(), stop.clone(), failures.clone());
                tokio::spawn(async move {
                    let mut answered = 0_u64;
                    while !stop.load(Ordering::SeqCst) {
                        let answer = running
                            .send("POST", "/v1/plugins/sdk/variant", None, &[], None)
                            .await?;
                        // Every answer comes from one whole version: "a" or "b", never a
                        // failure.
                        if answer.status != 200 || !matches!(answer.body.as_slice(), b"a" | b"b") {
                            failures.fetch_add(1, Ordering::SeqCst);
                            eprintln!("{} {}", answer.status, answer.text());
                        }
                        answered += 1;
                    }
                    anyhow::Ok(answered)
                })
            })
            .collect();
        let plugin = running.server.plugin("sdk").expect("sdk is served");
        let events = plugin.subscribe();
        let file = running.dir.join("sdk.wasm");
        let (mut current_is_a, mut refused) = (true, 0);
        for round in 0..50 {
            let garbage = round % 10 == 9;
            let bytes: &[u8] = if garbage {
                b"this is not a plugin"
            } else if current_is_a {
                &b
            } else {
                &a
            };
            replace(&file, bytes)?;
            // Each deploy ends in one event: the new version, or the refusal of the bad file.
            let event = events.recv_timeout(WAIT)?;
            match (garbage, event) {
                (false, ReloadEvent::Reloaded { .. }) => current_is_a = !current_is_a,
                (true, ReloadEvent::Failed { .. }) => refused += 1,
                (_, other) => anyhow::bail!("round {round}: {other:?}"),
            }
        }
        // The last refusal is reported, and the old version kept serving.
        running
            .wait_for("/v1/plugins/sdk", |answer| {
                answer.json()["last_refusal"].is_string()
            })
            .await?;
        stop.store(true, Ordering::SeqCst);
        let mut answered = 0;
        for client in clients {
            answered += client.await??;
        }
        assert_eq!(failures.load(Ordering::SeqCst), 0);
        assert!(answered > 0);
        assert_eq!(refused, 5);
        let metrics = running.get("/metrics").await?.text();
        assert!(
            metrics
                .lines()
                .any(|line| line == r#"dlinkwm_reloads_total{plugin="sdk",result="refused"} 5"#),
            "{metrics}"
        );
        Ok(())
    })
}

#[test]
fn files_added_and_removed_while_serving() -> anyhow::Result<()> {
    runtime().block_on(async {
        let running = start(|_, _| {}).await?;
        assert_eq!(running.get("/v1/plugins/other").await?.status, 404);
        replace(&running.dir.join("other.wasm"), &std::fs::read(SDK_TEST_B)?)?;
        running
            .wait_for("/v1/plugins/other", |answer| answer.status == 200)
            .await?;
        let answer = running
            .send("POST", "/v1/plugins/other/variant", None, &[], None)
            .await?;
        assert_eq!(answer.text(), "b");
        std::fs::remove_file(running.dir.join("other.wasm"))?;
        running
            .wait_for("/v1/plugins/other", |answer| answer.status == 404)
            .await?;
        // A garbage file is reported, not served.
        std::fs::write(running.dir.join("bad.wasm"), b"garbage")?;
        running
            .wait_for("/v1/plugins/bad", |answer| {
                answer.json()["last_refusal"].is_string()
            })
            .await?;
        // The refusal names the plugin, not the host's path of its file.
        let refusal = running.get("/v1/plugins/bad").await?.text();
        let folder = running.dir.display().to_string();
        assert!(!refusal.contains(&folder), "{refusal}");
        assert_eq!(
            running
                .send("POST", "/v1/plugins/bad/variant", None, &[], None)
                .await?
                .status,
            404
        );
        Ok(())
    })
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() -> anyhow::Result<()> {
    runtime().block_on(async {
        let mut running = start(|_, _| {}).await?;
        let stop = running.stop.take().expect("not stopped yet");
        let nap_started = running.nap_started.clone();
        let running_ref = &running;
        let slow = async move {
            running_ref
                .post_json(
                    "/v1/plugins/sdk/call_host",
                    r#"{"method":"nap","arg":"late"}"#,
                )
                .await
        };
        let (answer, ()) = tokio::join!(slow, async move {
            // The request is under way (its host method sleeps 500 ms) when the signal comes.
            nap_started.notified().await;
            let _ = stop.send(());
        });
        let answer = answer?;
        assert_eq!(
            (answer.status, answer.text().as_str()),
            (200, "\"rested late\"")
        );
        tokio::time::timeout(WAIT, &mut running.task).await???;
        // No new connections once it is down.
        assert!(tokio::net::TcpStream::connect(running.addr).await.is_err());
        Ok(())
    })
}

#[test]
fn an_entry_not_allowed_is_403_and_a_saturated_plugin_is_503_with_retry_after() -> anyhow::Result<()>
{
    runtime().block_on(async {
        let running = start(|config, dir| {
            let name = dir.join("sdk.wasm").display().to_string();
            config.entry_functions.insert(
                name.clone(),
                vec!["echo".to_owned(), "call_host".to_owned()],
            );
            let settings = config.plugins.entry(name).or_default();
            settings.max_instances = Some(1);
            settings.queue_timeout_ms = Some(50);
        })
        .await?;
        let refused = running.post_json("/v1/plugins/sdk/add", "[1,2]").await?;
        assert_eq!(refused.status, 403, "{}", refused.text());
        assert_eq!(refused.json()["kind"], "EntryNotAllowed");
        // The only instance naps (500 ms) while a second request waits 50 ms for it.
        let nap = running.post_json(
            "/v1/plugins/sdk/call_host",
            r#"{"method":"nap","arg":"busy"}"#,
        );
        let second = async {
            running.nap_started.notified().await;
            running.post_json("/v1/plugins/sdk/echo", "\"x\"").await
        };
        let (nap, busy) = tokio::join!(nap, second);
        assert_eq!(nap?.status, 200);
        let busy = busy?;
        assert_eq!(busy.status, 503, "{}", busy.text());
        assert_eq!(busy.json()["kind"], "Busy");
        assert_eq!(busy.headers["retry-after"], "1");
        Ok(())
    })
}
