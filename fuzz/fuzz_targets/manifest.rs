//! Snapshot manifests as read from the store (`Manifest::parse`): anything an attacker with
//! write access to the bucket puts there is refused with an error or gives a manifest that
//! belongs to the asked stack and snapshot, and that the rest of drp can use without a panic.
#![no_main]

use drp_backup::Manifest;
use libfuzzer_sys::fuzz_target;

const STACK: &str = "acme";
const SNAPSHOT: &str = "20260102T030405.000Z-0000abcd";

fuzz_target!(|data: &[u8]| {
    // As asked by a restore of acme, and as asked for whatever the input claims to be (so that
    // the fuzzer gets past the identity check without guessing it).
    let claimed = serde_json::from_slice::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            Some((
                v.get("stack")?.as_str()?.to_owned(),
                v.get("snapshot")?.as_str()?.to_owned(),
            ))
        });
    let mut asks = vec![(STACK.to_owned(), SNAPSHOT.to_owned())];
    asks.extend(claimed);
    for (stack, snapshot) in asks {
        match Manifest::parse(data, &stack, &snapshot) {
            Err(error) => {
                assert!(error.is_integrity_failure(), "{error}");
                let _ = error.to_string();
            }
            Ok(manifest) => {
                assert_eq!(
                    (manifest.stack.as_str(), manifest.snapshot.as_str()),
                    (stack.as_str(), snapshot.as_str())
                );
                let _ = (manifest.stored_bytes(), manifest.plain_bytes());
                // What drp writes, it reads back as the same manifest.
                let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
                let again = Manifest::parse(&bytes, &stack, &snapshot).unwrap();
                assert_eq!(again, manifest);
            }
        }
    }
});
