//! `drp notify test`: a test message through every notifier of a config file, and what
//! happened to each. Exit status 1 if any failed.

use std::path::Path;

use drp_core::monitor::notify::DeliveryStatus;
use drp_core::monitor::{Event, NotifiersConfig, RetryPolicy};

use crate::cli::NotifyCommand;
use crate::output::{CommandError, print_json};

pub async fn run(command: NotifyCommand) -> Result<u8, CommandError> {
    match command {
        NotifyCommand::Test {
            config,
            attempts,
            json,
        } => test(&config, attempts, json).await,
    }
}

async fn test(config: &Path, attempts: u32, json: bool) -> Result<u8, CommandError> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| CommandError::message(format!("cannot read {}: {e}", config.display())))?;
    let parsed: NotifiersConfig = toml::from_str(&text)
        .map_err(|e| CommandError::message(format!("{}: {e}", config.display())))?;
    if parsed.notifiers.is_empty() {
        return Err(CommandError::message(format!(
            "{}: no [[notifiers]] table",
            config.display()
        )));
    }
    let notifications = parsed
        .build(RetryPolicy {
            max_attempts: attempts,
            ..RetryPolicy::default()
        })
        .map_err(|e| CommandError::message(e.to_string()))?;
    let report = notifications.send(&Event::Test).await;
    if json {
        print_json(&report);
    } else {
        for delivery in &report.deliveries {
            let who = format!("{} ({})", delivery.notifier, delivery.kind);
            match delivery.status {
                DeliveryStatus::Sent if delivery.recipients.is_empty() => {
                    println!("sent     {who}")
                }
                DeliveryStatus::Sent => {
                    println!("sent     {who} to {}", delivery.recipients.join(", "))
                }
                DeliveryStatus::Failed => println!(
                    "failed   {who} after {} attempt(s): {}",
                    delivery.attempts,
                    delivery.error.as_deref().unwrap_or("unknown error")
                ),
                DeliveryStatus::Skipped => {
                    println!(
                        "skipped  {who}: it reaches no one on the team (test messages go to the team only)"
                    )
                }
            }
        }
    }
    Ok(if report.all_sent() {
        drp_core::exit::SUCCESS
    } else {
        drp_core::exit::FAILURE
    })
}
