//! Bodies POSTed to the alert receiver by external monitoring: any bytes give alerts or a
//! "not JSON" error (the receiver answers 400), never a panic; the alerts serialize (drill
//! reports and `--json` output carry them).
#![no_main]

use drp_monitor::receiver::parse_body;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_body(data) {
        Err(error) => {
            let _ = error.to_string();
        }
        Ok(alerts) => {
            for alert in alerts {
                let _ = serde_json::to_string(&alert.body).unwrap();
                let _ = (
                    alert.status,
                    alert.labels,
                    alert.annotations,
                    alert.starts_at,
                );
            }
        }
    }
});
