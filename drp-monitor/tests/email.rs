//! Email through a real SMTP server (aiosmtpd, with its Mailbox handler writing a Maildir):
//! recipients, subjects and bodies per audience; STARTTLS and implicit TLS with our own CA.
//! Without aiosmtpd these tests fail and say to run .ci/install-deps.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use drp_monitor::notify::{
    Contacts, DeliveryStatus, EmailNotifier, EmailOptions, SmtpSecurity, Templates,
};
use drp_monitor::{Audience, Event, Notifications, RetryPolicy, StackRef};
use support::{Mail, Pki, Smtpd, SmtpdTls};

const TECHNICAL: &str = "probe https://acme.example/health: HTTP 502; pg on 10.0.0.5:5432 refused";

fn options(port: u16, security: SmtpSecurity) -> EmailOptions {
    EmailOptions {
        server: "127.0.0.1".into(),
        port: Some(port),
        security,
        username: None,
        password: None,
        from: "drp <drp@ops.example>".into(),
        team: vec!["ops@ops.example".into(), "oncall@ops.example".into()],
        contacts: BTreeMap::from([
            (
                "acme".to_owned(),
                Contacts {
                    customer: vec!["it@acme.example".into()],
                    partner: vec!["support@integrator.example".into()],
                },
            ),
            (
                "beta".to_owned(),
                Contacts {
                    customer: vec!["Beta Boss <boss@beta.example>".into()],
                    partner: Vec::new(),
                },
            ),
        ]),
        ca_file: None,
        timeout: Duration::from_secs(30),
    }
}

fn notifications(options: EmailOptions) -> Notifications {
    let mut notifications = Notifications::new(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_secs(1),
    });
    notifications.add(std::sync::Arc::new(
        EmailNotifier::new("mail", options, Templates::builtin()).unwrap(),
    ));
    notifications
}

fn mail_to<'a>(mails: &'a [Mail], address: &str) -> &'a Mail {
    mails
        .iter()
        .find(|m| {
            m.to()
                .iter()
                .any(|to| to == address || to.ends_with(&format!("<{address}")))
        })
        .unwrap_or_else(|| panic!("no mail to {address} among {mails:#?}"))
}

#[tokio::test]
async fn each_audience_gets_its_own_message_about_its_own_stacks() {
    let smtpd = Smtpd::start(SmtpdTls::None);
    let notifications = notifications(options(smtpd.port, SmtpSecurity::Plain));
    let event = Event::RecoveryStarted {
        run_id: "run-7".into(),
        stacks: vec![
            StackRef::new("acme-web", "acme"),
            StackRef::new("beta-db", "beta"),
        ],
        cause: Some(TECHNICAL.into()),
    };
    let report = notifications.send(&event).await;
    assert!(report.all_sent(), "{report:#?}");
    // The team; acme and its partner; beta (which has no partner contact).
    let mut reached: Vec<(Audience, Option<&str>, Vec<String>)> = report
        .deliveries
        .iter()
        .map(|d| {
            (
                d.audience.unwrap(),
                d.customer.as_deref(),
                d.recipients.clone(),
            )
        })
        .collect();
    reached.sort();
    assert_eq!(
        reached,
        vec![
            (
                Audience::Team,
                None,
                vec!["ops@ops.example".into(), "oncall@ops.example".into()]
            ),
            (
                Audience::Customer,
                Some("acme"),
                vec!["it@acme.example".into()]
            ),
            (
                Audience::Customer,
                Some("beta"),
                vec!["boss@beta.example".into()]
            ),
            (
                Audience::Partner,
                Some("acme"),
                vec!["support@integrator.example".into()]
            ),
        ]
    );

    let mails = smtpd.messages();
    assert_eq!(mails.len(), 4, "{mails:#?}");
    for mail in &mails {
        assert_eq!(mail.header("from"), Some("drp <drp@ops.example>"));
    }

    let team = mail_to(&mails, "ops@ops.example");
    assert_eq!(team.to(), vec!["oncall@ops.example", "ops@ops.example"]);
    assert_eq!(
        team.header("subject"),
        Some("[drp] recovery run-7 started: acme-web, beta-db")
    );
    assert!(team.body.contains(TECHNICAL), "{}", team.body);
    assert!(team.body.contains("customers: acme, beta"), "{}", team.body);

    let acme = mail_to(&mails, "it@acme.example");
    assert_eq!(acme.to(), vec!["it@acme.example"]);
    assert_eq!(
        acme.header("subject"),
        Some("Service interruption: we are restoring acme-web")
    );
    assert!(
        acme.body
            .starts_with("Hello,\n\nYour service acme-web is currently unavailable."),
        "{}",
        acme.body
    );
    for technical in ["502", "10.0.0.5", "probe", "run-7"] {
        assert!(
            !acme.body.contains(technical),
            "customer mail shows {technical:?}: {}",
            acme.body
        );
    }
    // Only its own stacks.
    assert!(!acme.body.contains("beta"), "{}", acme.body);

    let partner = mail_to(&mails, "support@integrator.example");
    assert_eq!(
        partner.header("subject"),
        Some("Service interruption for acme: we are restoring acme-web")
    );
    assert!(
        partner
            .body
            .contains("The service acme-web that we run for acme is currently unavailable")
    );
    assert!(!partner.body.contains("10.0.0.5"), "{}", partner.body);

    let beta = mail_to(&mails, "boss@beta.example");
    assert_eq!(
        beta.header("subject"),
        Some("Service interruption: we are restoring beta-db")
    );
    assert!(!beta.body.contains("acme"), "{}", beta.body);
}

#[tokio::test]
async fn technical_events_reach_only_the_team() {
    let smtpd = Smtpd::start(SmtpdTls::None);
    let notifications = notifications(options(smtpd.port, SmtpSecurity::Plain));
    let report = notifications
        .send(&Event::StepFailed {
            run_id: "run-7".into(),
            stack: StackRef::new("acme-web", "acme"),
            step: "restore db".into(),
            error: TECHNICAL.into(),
        })
        .await;
    assert_eq!(report.deliveries.len(), 1);
    assert_eq!(report.deliveries[0].audience, Some(Audience::Team));
    let mails = smtpd.messages();
    assert_eq!(mails.len(), 1);
    assert_eq!(
        mails[0].header("subject"),
        Some("[drp] acme-web: step restore db failed")
    );
    assert!(mails[0].body.contains(TECHNICAL), "{}", mails[0].body);
}

#[tokio::test]
async fn starttls_and_implicit_tls_with_a_trusted_ca() {
    let pki = Pki::new(48);
    for (tls, security) in [
        (SmtpdTls::Starttls(&pki), SmtpSecurity::Starttls),
        (SmtpdTls::Smtps(&pki), SmtpSecurity::Tls),
    ] {
        let smtpd = Smtpd::start(tls);
        let mut trusted = options(smtpd.port, security);
        trusted.ca_file = Some(pki.ca_file.clone());
        let report = notifications(trusted).send(&Event::Test).await;
        assert!(report.all_sent(), "{security:?}: {report:#?}");
        let mails = smtpd.messages();
        assert_eq!(mails.len(), 1, "{security:?}");
        assert_eq!(mails[0].header("subject"), Some("[drp] test notification"));

        // Without our CA the server's certificate is refused: reported, not sent.
        let report = notifications(options(smtpd.port, security))
            .send(&Event::Test)
            .await;
        let delivery = &report.deliveries[0];
        assert_eq!(delivery.status, DeliveryStatus::Failed, "{security:?}");
        let error = delivery.error.as_deref().unwrap();
        assert!(
            error.starts_with(&format!("SMTP server 127.0.0.1:{}: ", smtpd.port)),
            "{error}"
        );
        assert!(error.contains("UnknownIssuer"), "{security:?}: {error}");
        assert_eq!(smtpd.messages().len(), 1, "{security:?}");
    }
}

#[tokio::test]
async fn a_server_that_is_down_is_retried_then_reported() {
    let port = support::free_port();
    let report = notifications(options(port, SmtpSecurity::Plain))
        .send(&Event::Test)
        .await;
    let delivery = &report.deliveries[0];
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 2);
    assert!(
        delivery
            .error
            .as_deref()
            .unwrap()
            .starts_with(&format!("SMTP server 127.0.0.1:{port}: ")),
        "{delivery:?}"
    );
}
