//! Push, resolve and pull against a real registry (Debian's `docker-registry`), and what a
//! damaged, oversized or unreachable registry ends in.

use dlinkwm_oci::{OciError, PluginRef, Registry, RegistryOptions, block_on};
use test_programs_artifacts::registry::TestRegistry;

fn reference(registry: &TestRegistry, name: &str) -> PluginRef {
    format!("oci://{}/{name}", registry.host()).parse().unwrap()
}

fn client(store: Option<&std::path::Path>) -> Registry {
    Registry::new(RegistryOptions::default().with_store_dir(store.map(Into::into)))
}

#[test]
fn pushes_resolves_and_pulls_by_tag_and_by_digest() {
    let registry = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let client = client(Some(store.path()));
    let hello = std::fs::read(test_programs_artifacts::HELLO).unwrap();
    let tag = reference(&registry, "plugins/hello:v1");
    let pushed = block_on(client.push(&hello, &tag)).unwrap();
    assert!(pushed.manifest_digest.starts_with("sha256:"));
    assert_eq!(
        block_on(client.resolve(&tag)).unwrap(),
        pushed.manifest_digest
    );

    let pulled = block_on(client.fetch(&tag)).unwrap();
    assert_eq!(pulled.bytes, hello);
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert_eq!(pulled.layer_digest, pushed.layer_digest);
    assert!(!pulled.from_store);

    let pinned = tag.pinned(&pushed.manifest_digest).unwrap();
    let by_digest = block_on(client.fetch(&pinned)).unwrap();
    assert_eq!(by_digest.bytes, hello);
    // A push names a tag: a digest is the content's own, never the pusher's to choose.
    assert!(matches!(
        block_on(client.push(&hello, &pinned)),
        Err(dlinkwm_oci::OciError::Reference { .. })
    ));

    // A second push under another tag moves only that tag.
    let other = with_custom_section(&hello);
    let v2 = reference(&registry, "plugins/hello:v2");
    let pushed2 = block_on(client.push(&other, &v2)).unwrap();
    assert_ne!(pushed2.manifest_digest, pushed.manifest_digest);
    assert_eq!(
        block_on(client.resolve(&tag)).unwrap(),
        pushed.manifest_digest
    );

    // Promoting v2 to v1 moves v1 without pushing anything.
    let promoted = block_on(client.tag(&v2, "v1")).unwrap();
    assert_eq!(promoted, pushed2.manifest_digest);
    assert_eq!(
        block_on(client.resolve(&tag)).unwrap(),
        pushed2.manifest_digest
    );
    assert_eq!(block_on(client.fetch(&tag)).unwrap().bytes, other);

    // A pinned digest the store holds (a version kept once it loaded) needs no registry at all.
    client.keep(&by_digest).unwrap();
    drop(registry);
    let offline = block_on(client.fetch(&pinned)).unwrap();
    assert_eq!(offline.bytes, hello);
}

fn with_custom_section(module: &[u8]) -> Vec<u8> {
    test_programs_artifacts::with_custom_section(module, b"v2")
}

#[test]
fn falls_back_to_the_last_known_good_version_when_the_registry_fails() {
    let mut registry = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let client = client(Some(store.path()));
    let hello = std::fs::read(test_programs_artifacts::HELLO).unwrap();
    let tag = reference(&registry, "plugins/fallback:stable");
    let unknown = reference(&registry, "plugins/fallback:never-pushed");
    block_on(client.push(&hello, &tag)).unwrap();
    let pulled = block_on(client.fetch(&tag)).unwrap();
    // Pulled, not kept: only versions that loaded are kept.
    assert!(client.remember(&tag, &pulled.manifest_digest).is_ok());
    registry.stop();
    assert!(block_on(client.fetch(&tag)).unwrap_err().is_unreachable());
    registry.restart();
    // Unknown tag while the registry answers: its error (nothing stored to fall back to).
    let error = block_on(client.fetch(&unknown)).unwrap_err();
    assert!(matches!(error, OciError::Registry { .. }), "{error}");

    registry.stop();
    // Kept, but never remembered as good for the tag... (a fresh store)
    let fresh = tempfile::tempdir().unwrap();
    let other = Registry::new(RegistryOptions::default().with_store_dir(Some(fresh.path().into())));
    other.keep(&pulled).unwrap();
    let error = block_on(other.fetch(&tag)).unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    // ...and kept and remembered: the fallback.
    client.keep(&pulled).unwrap();
    client.remember(&tag, &pulled.manifest_digest).unwrap();
    let fallback = block_on(client.fetch(&tag)).unwrap();
    assert!(fallback.from_store);
    assert_eq!(fallback.bytes, hello);
    assert_eq!(fallback.manifest_digest, pulled.manifest_digest);

    // Back up: the registry is asked again.
    registry.restart();
    let fresh = block_on(client.fetch(&tag)).unwrap();
    assert!(!fresh.from_store);
}

#[test]
fn refuses_a_tampered_blob_and_keeps_nothing_of_it() {
    let registry = TestRegistry::start();
    let store = tempfile::tempdir().unwrap();
    let client = client(Some(store.path()));
    let hello = std::fs::read(test_programs_artifacts::HELLO).unwrap();
    let tag = reference(&registry, "plugins/tampered:v1");
    let pushed = block_on(client.push(&hello, &tag)).unwrap();
    // Same length, one byte changed, in the registry's own storage.
    let blob = registry.blob_file(&pushed.layer_digest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let error = block_on(client.fetch(&tag)).unwrap_err();
    assert!(error.is_tampered(), "{error}");
    assert!(error.is_final(), "{error}");
    assert!(error.to_string().contains(&pushed.layer_digest), "{error}");
    let kept = walk(store.path());
    assert!(
        kept.iter()
            .all(|path| !path.starts_with(store.path().join("blobs"))),
        "{kept:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn refuses_oversized_layers_and_files_that_are_not_wasm() {
    let registry = TestRegistry::start();
    let hello = std::fs::read(test_programs_artifacts::HELLO).unwrap();
    let tag = reference(&registry, "plugins/big:v1");
    block_on(client(None).push(&hello, &tag)).unwrap();
    let small = Registry::new(
        RegistryOptions::default()
            .with_store_dir(None)
            .with_max_bytes(1024),
    );
    let error = block_on(small.fetch(&tag)).unwrap_err();
    assert!(
        matches!(error, OciError::TooLarge { max: 1024, .. }),
        "{error}"
    );

    let error = block_on(client(None).push(b"#!/bin/sh\necho hi\n", &tag)).unwrap_err();
    assert!(
        matches!(error, OciError::NotAWasmArtifact { .. }),
        "{error}"
    );
}

#[test]
fn an_unreachable_registry_is_an_error_within_the_timeout() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tag: PluginRef = format!("127.0.0.1:{port}/nobody:v1").parse().unwrap();
    let error = block_on(client(None).fetch(&tag)).unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}

/// A peer on a free port that accepts connections and answers each request with `answer`
/// (`None`: never answers, holding the connection open).
fn peer(answer: Option<&'static str>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if let Some(answer) = answer {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(answer.as_bytes());
            }
            held.push(stream);
        }
    });
    address
}

#[test]
fn a_registry_that_never_answers_is_unreachable_within_the_timeout() {
    let address = peer(None);
    let client = Registry::new(
        RegistryOptions::default()
            .with_store_dir(None)
            .with_timeout(std::time::Duration::from_secs(1)),
    );
    let tag: PluginRef = format!("{address}/silent:v1").parse().unwrap();
    let started = std::time::Instant::now();
    let error = block_on(client.fetch(&tag)).unwrap_err();
    assert!(error.is_unreachable(), "{error}");
    // One step's timeout (the credential lookup, the manifest), not forever: a generous bound.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let error = block_on(client.resolve(&tag)).unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}

#[test]
fn garbage_and_server_errors_from_a_registry_are_typed_errors() {
    // A manifest that is not JSON, under a digest header that does not match it (and is not
    // even a digest), 8 KB long.
    let garbage = peer(Some(Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\
             Docker-Content-Digest: sha256:zz{}\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot json!",
            "z".repeat(8000)
        )
        .into_boxed_str(),
    )));
    let client = Registry::new(RegistryOptions::default().with_store_dir(None));
    let tag: PluginRef = format!("{garbage}/garbage:v1").parse().unwrap();
    let error = block_on(client.fetch(&tag)).unwrap_err();
    // Refused for good (the registry contradicts itself), with a bounded, printable message.
    assert!(error.is_final(), "{error}");
    let message = error.to_string();
    assert!(message.len() < 2048, "{} bytes", message.len());
    // A malformed digest header never becomes a file name or a pin.
    let error = block_on(client.resolve(&tag)).unwrap_err();
    assert!(
        matches!(
            error,
            OciError::Registry { .. } | OciError::Unreachable { .. }
        ),
        "{error}"
    );

    let failing = peer(Some(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    ));
    let tag: PluginRef = format!("{failing}/failing:v1").parse().unwrap();
    let error = block_on(client.fetch(&tag)).unwrap_err();
    assert!(error.is_unreachable(), "{error}");
}
