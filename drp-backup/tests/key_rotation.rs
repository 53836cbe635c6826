//! Rotating a customer's key as SECURITY.md describes it: new backups are encrypted to the
//! new certificate, old snapshots stay restorable with the old secret key, each manifest
//! lists the certificates its data needs, and a file holding both secret keys restores
//! every snapshot.

use std::fs;
use std::sync::Arc;

use drp_backup::keys::generate_key;
use drp_backup::{
    BackupStore, CreateOptions, Error, Recipients, Repository, RestoreDestination, RestoreOptions,
    SecretKeys, SnapshotSelector, open_store,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_snapshots_need_the_old_key_and_new_ones_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let store: Arc<dyn BackupStore> =
        open_store(&format!("file://{}/store", dir.path().display())).unwrap();
    let repo = Repository::new(store, "acme").unwrap();
    generate_key("acme-2025", &keys, None).unwrap();
    generate_key("acme-2026", &keys, None).unwrap();
    let cert =
        |name: &str| Recipients::from_files(&[keys.join(format!("{name}.pub.asc"))]).unwrap();
    let secret =
        |name: &str| SecretKeys::from_file(&keys.join(format!("{name}.sec.asc")), None).unwrap();

    let backup = |recipients: Recipients, text: &'static str| {
        let repo = repo.clone();
        async move {
            let spec = format!("db=cmd:echo {text}").parse().unwrap();
            repo.create(CreateOptions::new(vec![spec], recipients))
                .await
                .unwrap()
        }
    };
    let old = backup(cert("acme-2025"), "before rotation").await;
    let new = backup(cert("acme-2026"), "after rotation").await;
    // Which key each snapshot needs is in its manifest (`recipients`, plain JSON in the store).
    assert_eq!(old.recipients, cert("acme-2025").fingerprints());
    assert_eq!(new.recipients, cert("acme-2026").fingerprints());
    assert_ne!(old.recipients, new.recipients);

    let restore = |keys: SecretKeys, snapshot: &str, to: &str| {
        let mut options =
            RestoreOptions::new(keys, RestoreDestination::Directory(dir.path().join(to)));
        options.snapshot = SnapshotSelector::Id(snapshot.to_string());
        repo.restore(options)
    };
    restore(secret("acme-2025"), &old.snapshot, "old")
        .await
        .unwrap();
    restore(secret("acme-2026"), &new.snapshot, "new")
        .await
        .unwrap();
    assert_eq!(
        fs::read(dir.path().join("old/db")).unwrap(),
        b"before rotation\n"
    );
    assert_eq!(
        fs::read(dir.path().join("new/db")).unwrap(),
        b"after rotation\n"
    );

    // The other key is the operator's mistake, named as such, not a broken backup; the
    // error says which key the snapshot needs.
    for (key, snapshot, needed) in [
        ("acme-2026", &old.snapshot, "acme-2025"),
        ("acme-2025", &new.snapshot, "acme-2026"),
    ] {
        let err = restore(secret(key), snapshot, "wrong").await.unwrap_err();
        assert!(matches!(err, Error::WrongKey { .. }), "{err}");
        assert!(!err.is_integrity_failure());
        assert!(
            err.to_string().contains(&format!(
                "it needs the secret key of {}",
                cert(needed).fingerprints()[0]
            )),
            "{err}"
        );
        assert!(!dir.path().join("wrong").exists());
    }

    // `verify` reports which key each snapshot needs.
    let verified = repo.verify(None, &secret("acme-2025"), None).await.unwrap();
    assert_eq!(verified.len(), 2);
    let (_, old_outcome) = verified.iter().find(|(id, _)| *id == old.snapshot).unwrap();
    assert_eq!(
        old_outcome.as_ref().unwrap().recipients,
        cert("acme-2025").fingerprints()
    );
    let (_, new_outcome) = verified.iter().find(|(id, _)| *id == new.snapshot).unwrap();
    let refused = new_outcome.as_ref().unwrap_err().to_string();
    assert!(
        refused.contains(&cert("acme-2026").fingerprints()[0]),
        "{refused}"
    );

    // Keep both secret keys in one file (what the plan's `secret_key` names): every snapshot
    // restores with it.
    let both = dir.path().join("acme-both.sec.asc");
    let mut text = fs::read(keys.join("acme-2025.sec.asc")).unwrap();
    text.extend(fs::read(keys.join("acme-2026.sec.asc")).unwrap());
    fs::write(&both, text).unwrap();
    let both = SecretKeys::from_file(&both, None).unwrap();
    restore(both.clone(), &old.snapshot, "both-old")
        .await
        .unwrap();
    restore(both, &new.snapshot, "both-new").await.unwrap();
    assert_eq!(
        fs::read(dir.path().join("both-old/db")).unwrap(),
        b"before rotation\n"
    );
    assert_eq!(
        fs::read(dir.path().join("both-new/db")).unwrap(),
        b"after rotation\n"
    );
}
