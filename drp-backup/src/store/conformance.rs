//! The behaviour every [`BackupStore`] must have, as one suite that each backend's tests run
//! (after object_store's `integration` module). It panics with a message on the first
//! violation; give it an empty store.

use bytes::Bytes;

use super::{BackupStore, BackupStoreExt, StoreError, UPLOAD_PART_SIZE};

/// Runs every check against `store`, which must be empty.
pub async fn run(store: &dyn BackupStore) {
    put_get_head_delete(store).await;
    missing_objects(store).await;
    listing_is_by_whole_segment(store).await;
    streamed_upload_of_several_parts(store).await;
    aborted_and_dropped_uploads_leave_nothing(store).await;
    put_if_absent_creates_once(store).await;
    racing_creates_have_one_winner(store).await;
    unfinished_uploads_are_listed_and_aborted(store).await;
}

/// An upload left unfinished (as by a killed process: neither completed nor aborted) is
/// either nothing at all (the store keeps nothing of it) or listed by `incomplete_uploads`,
/// under its own key only, and gone once aborted. Finished uploads are never listed.
async fn unfinished_uploads_are_listed_and_aborted(store: &dyn BackupStore) {
    let mut finished = store.put_stream("i/stack/data/done").await.unwrap();
    finished.write(Bytes::from_static(b"whole")).await.unwrap();
    finished.complete().await.unwrap();
    let mut unfinished = store.put_stream("i/stack/data/1/www").await.unwrap();
    unfinished
        .write(Bytes::from(pattern(UPLOAD_PART_SIZE + 10)))
        .await
        .unwrap();
    // Let the part reach the store, as a backup killed later would have.
    unfinished.write(Bytes::from_static(b"tail")).await.unwrap();
    let elsewhere = store.put_stream("i/stack-two/data/x").await.unwrap();

    let listed = store.incomplete_uploads("i/stack/data").await.unwrap();
    assert!(
        listed.iter().all(|u| u.key == "i/stack/data/1/www"),
        "{store}: incomplete uploads under i/stack/data: {listed:?}"
    );
    assert!(listed.len() <= 1, "{store}: {listed:?}");
    // `initiated` is not checked: moto answers a constant (2010-11-10T20:48:33Z).
    for upload in &listed {
        store.abort_incomplete_upload(upload).await.unwrap();
        // Twice is fine: another prune may have been first.
        store.abort_incomplete_upload(upload).await.unwrap();
    }
    assert_eq!(
        store.incomplete_uploads("i/stack/data").await.unwrap(),
        [],
        "{store}: an aborted upload is still listed"
    );
    assert!(
        store.incomplete_uploads("none").await.unwrap().is_empty(),
        "{store}: incomplete uploads under an empty prefix"
    );
    drop(unfinished);
    elsewhere.abort().await.unwrap();
    store.delete("i/stack/data/done").await.unwrap();
    assert!(store.incomplete_uploads("i").await.unwrap().is_empty());
}

async fn put_if_absent_creates_once(store: &dyn BackupStore) {
    let key = "x/lock";
    assert!(
        store
            .put_if_absent(key, Bytes::from_static(b"first"))
            .await
            .unwrap(),
        "{store}: put_if_absent of a missing object did not create it"
    );
    assert!(
        !store
            .put_if_absent(key, Bytes::from_static(b"second"))
            .await
            .unwrap(),
        "{store}: put_if_absent over an existing object claimed to create it"
    );
    assert_eq!(
        store.get_bytes(key).await.unwrap(),
        Bytes::from_static(b"first"),
        "{store}: put_if_absent replaced an existing object"
    );
    store.delete(key).await.unwrap();
    assert!(
        store
            .put_if_absent(key, Bytes::from_static(b"third"))
            .await
            .unwrap(),
        "{store}: put_if_absent after a delete did not create the object"
    );
    store.delete(key).await.unwrap();
}

/// Many creates of one key at once, several rounds: exactly one wins each round, and the
/// object holds the winner's data.
async fn racing_creates_have_one_winner(store: &dyn BackupStore) {
    const RACERS: usize = 8;
    for round in 0..5 {
        let key = format!("x/race-{round}");
        let attempts = (0..RACERS).map(|i| {
            let key = key.clone();
            async move {
                let won = store
                    .put_if_absent(&key, Bytes::from(format!("racer {i}")))
                    .await
                    .unwrap();
                (i, won)
            }
        });
        let results = futures::future::join_all(attempts).await;
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, won)| *won)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "{store}: {} of {RACERS} racing creates of {key} won",
            winners.len()
        );
        assert_eq!(
            store.get_bytes(&key).await.unwrap(),
            Bytes::from(format!("racer {}", winners[0])),
            "{store}: {key} does not hold the winner's data"
        );
        store.delete(&key).await.unwrap();
    }
}

async fn put_get_head_delete(store: &dyn BackupStore) {
    let data = Bytes::from_static(b"{\"manifest\":true}");
    store.put("c/a/one.json", data.clone()).await.unwrap();
    assert_eq!(store.get_bytes("c/a/one.json").await.unwrap(), data);
    assert_eq!(
        store.head("c/a/one.json").await.unwrap().size,
        data.len() as u64
    );

    let replaced = Bytes::from_static(b"second version");
    store.put("c/a/one.json", replaced.clone()).await.unwrap();
    assert_eq!(store.get_bytes("c/a/one.json").await.unwrap(), replaced);

    store.delete("c/a/one.json").await.unwrap();
    assert!(
        store.list("c").await.unwrap().is_empty(),
        "{store}: deleted object still listed"
    );
    // Deleting twice is not an error: prune may be resumed after a crash.
    store.delete("c/a/one.json").await.unwrap();
}

async fn missing_objects(store: &dyn BackupStore) {
    match store.get("m/none").await {
        Err(StoreError::NotFound { key, .. }) => assert_eq!(key, "m/none"),
        Err(other) => panic!("{store}: get of a missing object: expected NotFound, got {other}"),
        Ok(_) => panic!("{store}: get of a missing object succeeded"),
    }
    assert!(matches!(
        store.head("m/none").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.list("m").await.unwrap().is_empty());
}

async fn listing_is_by_whole_segment(store: &dyn BackupStore) {
    for key in ["l/stack/x.json", "l/stack/data/1/a", "l/stack-two/y.json"] {
        store.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    let mut keys: Vec<String> = store
        .list("l/stack")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["l/stack/data/1/a", "l/stack/x.json"],
        "{store}: listing crossed a segment"
    );
    for key in ["l/stack/x.json", "l/stack/data/1/a", "l/stack-two/y.json"] {
        store.delete(key).await.unwrap();
    }
}

/// Several parts plus a short tail, written in uneven pieces.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn streamed_upload_of_several_parts(store: &dyn BackupStore) {
    let data = pattern(2 * UPLOAD_PART_SIZE + 12345);
    let mut upload = store.put_stream("s/big").await.unwrap();
    for piece in data.chunks(700_001) {
        upload.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    assert!(
        store.list("s").await.unwrap().is_empty(),
        "{store}: an upload in progress is visible"
    );
    upload.complete().await.unwrap();
    let back = store.get_bytes("s/big").await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "{store}: streamed object differs");
    let listed = store.list("s").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].size, data.len() as u64);
    store.delete("s/big").await.unwrap();
}

async fn aborted_and_dropped_uploads_leave_nothing(store: &dyn BackupStore) {
    let data = pattern(UPLOAD_PART_SIZE + 10);
    let mut upload = store.put_stream("u/aborted").await.unwrap();
    upload.write(Bytes::from(data.clone())).await.unwrap();
    upload.abort().await.unwrap();

    let mut upload = store.put_stream("u/dropped").await.unwrap();
    upload.write(Bytes::from(data)).await.unwrap();
    drop(upload);

    assert!(
        store.list("u").await.unwrap().is_empty(),
        "{store}: an unfinished upload became visible"
    );
}
