//! Plans as the library sees them: the example plan loads into the model, compiles into the
//! executor's steps, and a thousand-stack plan checks fast enough to run on every commit.

use std::path::{Path, PathBuf};

use drp_core::executor::{CommandPhase, NotifyEvent, StepKind};
use drp_core::plan::{self, Audience, CheckOptions, RestoreTarget, compile::compile};

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plan.toml")
}

/// The example plan, without opening its key files (the CLI tests do that).
fn example_plan() -> plan::Plan {
    plan::load(&example(), CheckOptions { files: false }).unwrap()
}

#[test]
fn the_example_loads_with_defaults_applied_and_paths_resolved() {
    let plan = example_plan();
    assert_eq!(plan.name, "production");
    assert_eq!(plan.recovery.target_datacenter, "roubaix");
    assert_eq!(plan.recovery.parallelism, 2);
    let web = &plan.stacks["acme-web"];
    assert_eq!(web.depends_on, vec!["acme-db"]);
    assert_eq!(web.rto, Some(std::time::Duration::from_secs(45 * 60)));
    assert_eq!(
        web.notify,
        vec!["team-slack", "mail"],
        "the recovery default"
    );
    assert_eq!(
        web.sources[0].restore,
        RestoreTarget::Directory("/srv/acme".into())
    );
    let acme = &plan.customers["acme"];
    assert_eq!(acme.certificates[0].written, "keys/acme.pub.asc");
    assert_eq!(
        acme.certificates[0].path,
        example().parent().unwrap().join("keys/acme.pub.asc")
    );
    let spares: Vec<&str> = plan
        .spares_for("roubaix", "db")
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(spares, vec!["spare-1", "spare-3"]);
    let options = plan.host("spare-3").unwrap().ssh_options();
    assert_eq!((options.user.as_str(), options.port), ("root", 2222));
    assert!(options.known_hosts.ends_with("examples/ssh/known_hosts"));
}

#[test]
fn e_mail_notifiers_get_the_customers_contacts() {
    let plan = example_plan();
    let mail = &plan.notifiers["mail"];
    let acme = &plan.customers["acme"].contacts;
    assert_eq!(
        mail.reaches(Audience::Partner, "acme", Some(acme)),
        Some(vec!["noc@payments.example".to_string()])
    );
    assert_eq!(
        plan.notifiers["team-slack"].reaches(Audience::Customer, "acme", Some(acme)),
        None,
        "a Slack channel is the team's unless it says otherwise"
    );
    let Some(drp_core::monitor::NotifierSpec::Email(spec)) = plan.notifier_spec("mail") else {
        panic!("mail is an e-mail notifier");
    };
    assert_eq!(
        spec.contacts["globex"].customer,
        vec!["admin@globex.example"]
    );
    assert_eq!(spec.team, vec!["oncall@ops.example"]);
}

#[test]
fn stacks_compile_into_the_steps_the_runbook_documents() {
    let plan = example_plan();
    let run = compile(&plan, &[]).unwrap();
    assert_eq!(run.parallelism, 2);
    assert_eq!(run.plan_digest, plan.digest);
    let crm = run.stacks.iter().find(|s| s.name == "globex-crm").unwrap();
    let names: Vec<&str> = crm.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "acquire-host",
            "restore:db",
            "restore:files",
            "restore-command:1",
            "restore-command:2",
            "approve-start",
            "start:1",
            "wait-healthy",
            "notify-recovered"
        ]
    );
    assert!(matches!(
        &crm.steps[0].kind,
        StepKind::AcquireHost { role, datacenter } if role == "app" && datacenter == "roubaix"
    ));
    assert!(matches!(
        &crm.steps[6].kind,
        StepKind::Command { phase: CommandPhase::Start, command } if command == "systemctl start crm"
    ));
    // Ordinary steps: the stack's timeout and the recovery's retries. The approval waits
    // as long as it takes; the wait for probes is bounded by healthy_within, not retried.
    assert_eq!(
        crm.steps[1].timeout,
        Some(std::time::Duration::from_secs(15 * 60))
    );
    assert_eq!(crm.steps[1].retry.retries, 2);
    assert_eq!(crm.steps[5].timeout, None);
    assert_eq!(
        crm.steps[7].timeout,
        Some(std::time::Duration::from_secs(10 * 60))
    );
    assert_eq!(crm.steps[7].retry.retries, 0);
    assert!(matches!(
        &crm.on_failure[0].kind,
        StepKind::Notify {
            event: NotifyEvent::Failed,
            ..
        }
    ));
}

#[test]
fn a_selection_of_stacks_takes_dependencies_outside_it_as_up() {
    let plan = example_plan();
    let run = compile(&plan, &["acme-web".to_string()]).unwrap();
    assert_eq!(run.stacks.len(), 1);
    assert!(run.stacks[0].depends_on.is_empty());
    let error = compile(&plan, &["nope".to_string()]).unwrap_err();
    assert_eq!(error.to_string(), "stack `nope` is not in the plan");
}

#[test]
fn a_thousand_stack_plan_checks_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from(
        "format = 1\n[storage]\nurl = \"memory://\"\n\n[customers.c]\n\
         certificates = [\"c.pub.asc\"]\n\n[datacenters.dc]\n\n\
         [[hosts]]\nname = \"spare\"\ndatacenter = \"dc\"\naddress = \"10.0.0.1\"\n\
         roles = [\"app\"]\nspare = true\n\n[recovery]\ntarget_datacenter = \"dc\"\n",
    );
    for i in 0..1000 {
        let depends = if i % 10 == 0 {
            String::new()
        } else {
            format!("depends_on = [\"s{:04}\"]\n", i - 1)
        };
        text.push_str(&format!(
            "\n[stacks.s{i:04}]\ncustomer = \"c\"\nrole = \"app\"\n{depends}\
             sources = [\"www=/srv/www\", \"db=cmd:pg_dump\"]\nrestore_to = \"/srv\"\n\
             start_commands = [\"systemctl start s\"]\n\
             [stacks.s{i:04}.probes.home]\nkind = \"http\"\nurl = \"http://{{host}}/\"\n\
             conditions = [\"[STATUS] == 200\"]\n"
        ));
    }
    let path = dir.path().join("big.toml");
    std::fs::write(&path, &text).unwrap();
    let started = std::time::Instant::now();
    let checked = plan::check_file(&path, CheckOptions { files: false });
    let elapsed = started.elapsed();
    eprintln!("plan check of 1000 stacks: {elapsed:?}");
    assert!(checked.is_valid(), "{:?}", checked.problems.first());
    let plan = checked.plan.unwrap();
    assert_eq!(plan.stacks.len(), 1000);
    assert_eq!(plan::doc::waves(&plan).len(), 10);
}
