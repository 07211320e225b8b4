//! The shared [`certfleet_store::suite`] battery, run on both SQLite flavours.

use certfleet_store::{SqliteStore, suite};

use crate::{open, sealer};

#[tokio::test]
async fn sqlite_in_memory_passes_the_suite() {
    let store = SqliteStore::open_in_memory(sealer(1)).unwrap();
    suite::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(1));
    suite::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_add_version_numbers_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), sealer(1));
    let name = "concurrent";
    use certfleet_core::Store;
    store
        .create_certificate(&suite::new_certificate(name, &["c.example.com"]))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_version(name, suite::new_version(&format!("{i:02x}"), 1_700_000_000))
                    .await
                    .unwrap()
                    .seq
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=8).collect::<Vec<u32>>());
    let versions = store.versions(name).await.unwrap();
    let chain: Vec<_> = versions.iter().map(|v| v.replaces).collect();
    let expected: Vec<_> = (0..8)
        .map(|i| if i == 0 { None } else { Some(i) })
        .collect();
    assert_eq!(chain, expected, "each version replaces the one before");
}
