//! Cost of recovery plans, in-process: checking a plan of 1,000 stacks (parse, validate,
//! resolve references, parse every probe condition; key files not opened) and the executor's
//! own overhead running the 1,000 stacks of that plan with steps that do nothing (ordering,
//! the parallelism limit, events). Plus parsing a snapshot manifest, which every list,
//! restore and verify does per snapshot. Run with `cargo bench -p drp-benches --bench recovery`.
//!
//! Goals (issue 5): the executor under 1 s of overhead for 1,000 stacks x 5 steps, `plan
//! check` of that plan under 200 ms.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drp_backup::{Manifest, SourceKind, SourceRecord};
use drp_core::executor::{
    Event, EventSink, ExecuteOptions, SinkError, StepCall, StepError, StepOutput, StepRunner,
    execute,
};
use drp_core::plan::{self, CheckOptions, compile::compile};

const STACKS: usize = 1000;

/// Every step succeeds at once: what is left is the executor's own work.
struct NoOp;

#[async_trait]
impl StepRunner for NoOp {
    async fn run(&self, _call: StepCall<'_>) -> Result<StepOutput, StepError> {
        Ok(StepOutput::done())
    }
}

/// Counts the events (the executor awaits the sink for each, as it does the journal).
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl EventSink for Counting {
    async fn record(&self, _event: &Event) -> Result<(), SinkError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn plan_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, drp_benches::plan_with_stacks(STACKS)).expect("the plan is written");
    let checked = plan::check_file(&path, CheckOptions { files: false });
    assert!(checked.is_valid(), "{:?}", checked.problems.first());

    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(STACKS as u64));
    group.bench_function("check_1000_stacks", |b| {
        b.iter(|| black_box(plan::check_file(&path, CheckOptions { files: false })))
    });
    group.finish();
}

fn executor(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, drp_benches::plan_with_stacks(STACKS)).expect("the plan is written");
    let plan = plan::check_file(&path, CheckOptions { files: false })
        .plan
        .expect("the plan is valid");
    let run = compile(&plan, &[]).expect("the plan compiles");
    let steps: usize = run.stacks.iter().map(|s| s.steps.len()).sum();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");

    let mut group = c.benchmark_group("executor");
    group.throughput(Throughput::Elements(steps as u64));
    group.bench_function(format!("run_1000_stacks_{steps}_steps"), |b| {
        b.iter(|| {
            let sink = Counting::default();
            let summary = runtime
                .block_on(execute(&run, &NoOp, &sink, ExecuteOptions::new("bench")))
                .expect("the run completes");
            assert!(summary.all_recovered());
            black_box(sink.0.load(Ordering::Relaxed))
        })
    });
    group.finish();
}

fn manifest_parse(c: &mut Criterion) {
    let stack = "acme-web";
    let snapshot = "20261129T120000.000Z-0123abcd";
    let layout = drp_backup::manifest::Layout::new(stack);
    let sources = (0..10)
        .map(|i| {
            let name = format!("source-{i}");
            SourceRecord {
                object: layout.object(snapshot, &name, SourceKind::Directory),
                name,
                kind: SourceKind::Directory,
                plain_bytes: 1 << 30,
                stored_bytes: 1 << 29,
                sha256: "ab".repeat(32),
            }
        })
        .collect();
    let time: jiff::Timestamp = "2026-11-29T12:00:00Z".parse().expect("a timestamp");
    let manifest = Manifest {
        format: 1,
        tool: "drp bench".into(),
        stack: stack.into(),
        snapshot: snapshot.into(),
        time,
        finished: time,
        hostname: "backup-1".into(),
        recipients: vec!["0123456789ABCDEF0123456789ABCDEF01234567".into()],
        signer: None,
        sources,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");

    let mut group = c.benchmark_group("manifest");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("parse_10_sources", |b| {
        b.iter(|| black_box(Manifest::parse(&bytes, stack, snapshot).expect("it parses")))
    });
    group.finish();
}

criterion_group!(benches, plan_check, executor, manifest_parse);
criterion_main!(benches);
