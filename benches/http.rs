//! What `FailoverClient` costs on top of the reqwest `Client` it wraps,
//! measured against real local HTTP/1.1 servers (three hyper backends
//! started with `LocalHttpBackends`, answering `200` with a small JSON
//! document) on loopback, in the same process and run:
//!
//! * `http/get/{raw,failover}/{1,16}`: one `GET /bench`, body read to the
//!   end, on a bare `reqwest::Client` to backend 0 (`raw`) vs
//!   `FailoverClient::get(..).send()` and the body read, over one endpoint,
//!   backend 0 (`failover`): the same server, so the difference is the
//!   client's;
//! * `http/get-3/{raw,failover}/{1,16}`: the same over all three backends:
//!   the bare client going round-robin over the three URLs by hand vs a
//!   `FailoverClient` over the three (its default strategy is round-robin);
//! * `pick/failover/3`: one `FailoverClient::failover().pick()` over three
//!   endpoints (what choosing an endpoint costs per try).
//!
//! `1` is one request per iteration; `16` is 16 concurrent requests (16
//! tasks, joined) per iteration. Both clients are `reqwest::Client::new()`
//! (the `FailoverClient`'s default), each with its own keep-alive
//! connections, opened before anything is measured.
//!
//! After criterion's report, the bench measures every pair again itself,
//! as `benches/redis_overhead.rs` does: short loops of the bare client and
//! the failover client alternate (ABBA order, so that neither always runs
//! first) for a few seconds per pair, every iteration is timed, and the
//! median over the rounds of (failover median / bare median) is printed as
//! `overhead <pair> ratio=<failover/bare>`: `http-get/{1,16}`,
//! `http-get-3/{1,16}`, and `http-fetch/1` (`RequestBuilder::fetch`, which
//! reads the body inside the try, vs the bare client). A second bare
//! client configured like the first gives the noise floor (`noise floor
//! ... ratio=` lines): an overhead ratio within it is no measured overhead.
//! Then `pick ns=<x>`: the median over 5 rounds of the time per
//! `pick()` in a loop of a million. The goals: `ratio` ≤ 1.05 at the
//! median, `pick` ≤ 50 ns.
//!
//! Run with `cargo bench --all-features --bench http` (about 40 s, 20 s
//! more with `HTTP_BENCH_PROFILE=1`).
//! Environment: `HTTP_BENCH_PAIRS=<text>` limits the bench's own
//! measurement to the pairs whose name contains `<text>` (e.g.
//! `http-get/1`); `HTTP_BENCH_PROFILE=1` also prints where the overhead
//! goes: the size of the futures a caller holds, the pieces of work the
//! failover client adds to a request timed in tight loops (building the
//! request, copying and re-addressing it per try, the per-response metric,
//! a full `Failover::execute_with` around a no-op, the parts of `pick()`),
//! and, measured like the pairs against the bare client (one request to
//! backend 0 per iteration), the steps between the bare client and
//! `FailoverClient`: the bare request within a 30 s `tokio::time::timeout`
//! (the core's default attempt timeout), as the operation of
//! `Failover::execute_with`, then also built against a placeholder host and
//! copied and re-addressed per try as `FailoverClient` does, and
//! `FailoverClient` without an attempt timeout. A criterion filter that
//! matches nothing (`-- none`) skips criterion and leaves the bench's own
//! measurement.

mod common;
use common::{Limits, Timed, median, overhead};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use criterion::Criterion;
use failover_pool::core::clock::now_nanos;
use failover_pool::core::strategy::{Excluded, PickContext, RoundRobin};
use failover_pool::core::{CallOptions, Classified, Failover, RetryPolicy, Strategy};
use failover_pool::drill::http::LocalHttpBackends;
use failover_pool::http::FailoverClient;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Tasks per iteration of the concurrent cases.
const TASKS: u32 = 16;
/// How many backends there are; the round-robin cases use them all.
const BACKENDS: usize = 3;
/// The path every request asks for.
const PATH: &str = "/bench";
/// The host `FailoverClient` builds its requests against (profile only).
const PLACEHOLDER: &str = "http://failover.invalid";
/// Target duration of one loop (one variant) of the bench's own
/// measurement: short, so that both variants see the same machine state.
const LOOP_TIME: Duration = Duration::from_millis(20);
/// Time spent on each pair by the bench's own measurement.
const PAIR_TIME: Duration = Duration::from_secs(2);
/// Fewest rounds per pair (a multiple of 4: ABBA order).
const MIN_ROUNDS: usize = 24;
/// Picks per round of the `pick ns=` measurement, and rounds.
const PICKS: u32 = 1_000_000;
const PICK_ROUNDS: usize = 5;

/// Which backends a case sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Backend 0 only.
    One,
    /// All three: round-robin.
    Three,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::One => "get",
            Target::Three => "get-3",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The bare reqwest client.
    Raw,
    /// A second bare client, configured like the first: raw vs raw-b is
    /// the noise floor (only in the bench's own measurement).
    RawB,
    /// `FailoverClient`: `send()`, then the body read.
    Failover,
    /// `FailoverClient`: `fetch()` (the body read inside the try; only in
    /// the bench's own measurement).
    Fetch,
    /// Profile only: the bare request within a 30 s `tokio::time::timeout`
    /// (the core's default attempt timeout).
    RawTimeout,
    /// Profile only: the bare request (to backend 0) as the operation of
    /// the failover client's `Failover::execute_with`.
    ExecuteRaw,
    /// Profile only: as `ExecuteRaw`, the request built once per call
    /// against a placeholder host and copied and re-addressed per try,
    /// as `FailoverClient` does.
    ExecuteRetarget,
    /// Profile only: `FailoverClient` with no attempt timeout.
    FailoverNoTimeout,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::RawB => "raw-b",
            Kind::Failover => "failover",
            Kind::Fetch => "fetch",
            Kind::RawTimeout => "raw-timeout",
            Kind::ExecuteRaw => "execute-raw",
            Kind::ExecuteRetarget => "execute-retarget",
            Kind::FailoverNoTimeout => "failover-no-timeout",
        }
    }
}

/// One measured thing: a client, its backends, a concurrency.
#[derive(Debug, Clone, Copy)]
struct Case {
    target: Target,
    kind: Kind,
    tasks: u32,
}

/// The clients under test.
#[derive(Debug)]
struct Clients {
    raw: reqwest::Client,
    raw_b: reqwest::Client,
    /// `http://127.0.0.1:<port>/bench` of every backend.
    urls: Vec<String>,
    /// The next backend of the hand-made round-robin.
    next: AtomicUsize,
    /// Over backend 0.
    failover_1: FailoverClient,
    /// Over the three backends.
    failover_3: FailoverClient,
    /// Over backend 0, with no attempt timeout (profile only).
    failover_no_timeout: FailoverClient,
}

impl Clients {
    fn new(backends: &LocalHttpBackends) -> Clients {
        let failover = |n: usize, retry: RetryPolicy| {
            let mut builder = FailoverClient::builder(format!("bench-{n}")).retry(retry);
            for i in 0..n {
                builder = builder.url(&backends.url(i)).expect("backend URL");
            }
            builder.build().expect("FailoverClient")
        };
        let no_timeout = RetryPolicy {
            attempt_timeout: None,
            ..RetryPolicy::default()
        };
        Clients {
            raw: reqwest::Client::new(),
            raw_b: reqwest::Client::new(),
            urls: (0..BACKENDS)
                .map(|i| format!("{}{PATH}", backends.url(i)))
                .collect(),
            next: AtomicUsize::new(0),
            failover_1: failover(1, RetryPolicy::default()),
            failover_3: failover(BACKENDS, RetryPolicy::default()),
            failover_no_timeout: failover(1, no_timeout),
        }
    }

    /// The URL the bare clients send the next request of `target` to.
    fn raw_url(&self, target: Target) -> &str {
        match target {
            Target::One => &self.urls[0],
            Target::Three => &self.urls[self.next.fetch_add(1, Relaxed) % BACKENDS],
        }
    }

    fn failover(&self, target: Target) -> &FailoverClient {
        match target {
            Target::One => &self.failover_1,
            Target::Three => &self.failover_3,
        }
    }

    /// One request, its body read to the end.
    async fn request(&self, target: Target, kind: Kind) {
        let body = match kind {
            Kind::Raw | Kind::RawB => {
                let client = if kind == Kind::Raw {
                    &self.raw
                } else {
                    &self.raw_b
                };
                let response = client.get(self.raw_url(target)).send().await;
                read(response.expect("bare GET")).await
            }
            Kind::Failover => {
                let response = self.failover(target).get(PATH).send().await;
                read(response.expect("FailoverClient GET")).await
            }
            Kind::Fetch => {
                let fetched = self.failover(target).get(PATH).fetch().await;
                let fetched = fetched.expect("FailoverClient fetch");
                assert_eq!(fetched.status, reqwest::StatusCode::OK);
                fetched.body
            }
            Kind::RawTimeout => {
                let send = self.raw.get(self.raw_url(target)).send();
                let response = tokio::time::timeout(Duration::from_secs(30), send).await;
                read(response.expect("in time").expect("bare GET")).await
            }
            Kind::ExecuteRaw => {
                let url = self.raw_url(target);
                let served = self
                    .failover(target)
                    .failover()
                    .execute_with(CallOptions::idempotent(), |_| {
                        let send = self.raw.get(url).send();
                        async move { Ok::<_, Classified>(read(send.await.unwrap()).await) }
                    })
                    .await;
                served.expect("execute").value
            }
            Kind::ExecuteRetarget => {
                let client = self.failover(target);
                let http = client.http_client();
                let template = http.get(format!("{PLACEHOLDER}{PATH}")).build().unwrap();
                let template = Arc::new(template);
                let served = client
                    .failover()
                    .execute_with(CallOptions::idempotent(), |ep| {
                        let mut request = template.try_clone().unwrap();
                        let (e, url) = (ep.endpoint(), request.url_mut());
                        url.set_scheme("http").unwrap();
                        url.set_ip_host(e.address.parse().unwrap()).unwrap();
                        url.set_port(Some(e.port)).unwrap();
                        let send = http.execute(request);
                        async move { Ok::<_, Classified>(read(send.await.unwrap()).await) }
                    })
                    .await;
                served.expect("execute").value
            }
            Kind::FailoverNoTimeout => {
                let response = self.failover_no_timeout.get(PATH).send().await;
                read(response.expect("FailoverClient GET")).await
            }
        };
        black_box(body);
    }

    /// One iteration: one request, or `tasks` concurrent ones.
    async fn iteration(self: &Arc<Self>, case: Case) {
        let Case { target, kind, .. } = case;
        if case.tasks == 1 {
            return self.request(target, kind).await;
        }
        let mut set = JoinSet::new();
        for _ in 0..case.tasks {
            let clients = Arc::clone(self);
            set.spawn(async move { clients.request(target, kind).await });
        }
        while let Some(joined) = set.join_next().await {
            joined.expect("request task panicked");
        }
    }
}

/// The body of a `200`.
async fn read(response: reqwest::Response) -> bytes::Bytes {
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    response.bytes().await.expect("response body")
}

impl Timed for Arc<Clients> {
    type Case = Case;

    async fn iteration(&self, case: Case) {
        Clients::iteration(self, case).await;
    }
}

/// The measurement's loop and pair lengths.
const LIMITS: Limits = Limits {
    loop_time: LOOP_TIME,
    pair_time: PAIR_TIME,
    min_rounds: MIN_ROUNDS,
};

/// Time per call of `f` in ns: the median over `rounds` loops of `n`.
fn ns_per_call(rounds: usize, n: u32, mut f: impl FnMut()) -> f64 {
    let mut per_call: Vec<f64> = (0..rounds)
        .map(|_| {
            let began = Instant::now();
            for _ in 0..n {
                f();
            }
            began.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    median(&mut per_call)
}

/// The time of one `pick()` on `failover`, in ns.
fn pick_ns(failover: &Failover) -> f64 {
    ns_per_call(PICK_ROUNDS, PICKS, || {
        black_box(failover.pick().expect("an endpoint"));
    })
}

/// Times, in tight loops, the pieces of work `FailoverClient` adds to a
/// request (`HTTP_BENCH_PROFILE=1`), and prints each in ns.
fn profile(runtime: &Runtime, clients: &Clients) {
    const N: u32 = 200_000;
    const ROUNDS: usize = 5;
    let http = clients.failover_3.http_client();
    let failover = clients.failover_3.failover();
    let ep = failover.pick().expect("an endpoint");
    let mut rows: Vec<(&str, f64)> = Vec::new();
    rows.push((
        "bare: client.get(url).build()",
        ns_per_call(ROUNDS, N, || {
            black_box(http.get(clients.urls[0].as_str()).build().unwrap());
        }),
    ));
    rows.push((
        "failover: RequestBuilder::new (get(path))",
        ns_per_call(ROUNDS, N, || {
            drop(black_box(clients.failover_3.get(PATH)));
        }),
    ));
    rows.push((
        "failover: template build (placeholder URL)",
        ns_per_call(ROUNDS, N, || {
            let url = format!("http://failover.invalid{PATH}");
            black_box(http.get(url).build().unwrap());
        }),
    ));
    let template = http
        .get(format!("http://failover.invalid{PATH}"))
        .build()
        .unwrap();
    rows.push((
        "per try: template.try_clone()",
        ns_per_call(ROUNDS, N, || {
            black_box(template.try_clone().unwrap());
        }),
    ));
    let e = ep.endpoint();
    rows.push((
        "per try: try_clone + URL rewrite",
        ns_per_call(ROUNDS, N, || {
            let mut request = template.try_clone().unwrap();
            let url = request.url_mut();
            url.set_scheme("http").unwrap();
            let ip: std::net::IpAddr = e.address.parse().unwrap();
            url.set_ip_host(ip).unwrap();
            url.set_port(Some(e.port)).unwrap();
            black_box(request);
        }),
    ));
    rows.push((
        "  alternative: as above, scheme set only if not",
        ns_per_call(ROUNDS, N, || {
            let mut request = template.try_clone().unwrap();
            let url = request.url_mut();
            if url.scheme() != "http" {
                url.set_scheme("http").unwrap();
            }
            let ip: std::net::IpAddr = e.address.parse().unwrap();
            url.set_ip_host(ip).unwrap();
            url.set_port(Some(e.port)).unwrap();
            black_box(request);
        }),
    ));
    // The endpoint's base URL, parsed once (e.g. when the endpoint is
    // added), joined with the request's path and query per try.
    let base = reqwest::Url::parse(&format!("http://{}:{}/", e.address, e.port)).unwrap();
    rows.push((
        "  alternative: try_clone + cached base.join(path)",
        ns_per_call(ROUNDS, N, || {
            let mut request = template.try_clone().unwrap();
            *request.url_mut() = base.join(template.url().path()).unwrap();
            black_box(request);
        }),
    ));
    let manager = failover.name();
    rows.push((
        "per try: counter! with labels (no recorder)",
        ns_per_call(ROUNDS, N, || {
            metrics::counter!(
                failover_pool::http::RESPONSES_TOTAL,
                "manager" => metrics::SharedString::from(Arc::clone(manager)),
                "endpoint" => ep.id().to_owned(),
                "class" => black_box("2xx")
            )
            .increment(1);
        }),
    ));
    let cached = metrics::counter!(
        failover_pool::http::RESPONSES_TOTAL,
        "manager" => metrics::SharedString::from(Arc::clone(manager)),
        "endpoint" => ep.id().to_owned(),
        "class" => "2xx"
    );
    rows.push((
        "  alternative: a Counter registered once",
        ns_per_call(ROUNDS, N, || black_box(&cached).increment(1)),
    ));
    let by = failover_pool::http::ServedBy {
        endpoint: Some(Arc::clone(&ep.endpoint().id)),
        attempts: 1,
    };
    rows.push((
        "per call: ServedBy into the response extensions",
        ns_per_call(ROUNDS, N, || {
            let mut extensions = http::Extensions::new();
            extensions.insert(by.clone());
            black_box(extensions);
        }),
    ));
    rows.push((
        "per try: tracing::debug! (no subscriber)",
        ns_per_call(ROUNDS, N, || {
            let status = black_box(reqwest::StatusCode::OK);
            tracing::debug!(%status, "http try answered");
        }),
    ));
    rows.push((
        "per call: pick()",
        ns_per_call(ROUNDS, N, || {
            black_box(failover.pick().unwrap());
        }),
    ));
    rows.push((
        "  pick part: clock::now_nanos()",
        ns_per_call(ROUNDS, N, || {
            black_box(now_nanos());
        }),
    ));
    rows.push((
        "  pick part: std::time::Instant::now()",
        ns_per_call(ROUNDS, N, || {
            black_box(Instant::now());
        }),
    ));
    rows.push((
        "  pick part: endpoint snapshot load",
        ns_per_call(ROUNDS, N, || {
            black_box(failover.endpoints().snapshot());
        }),
    ));
    {
        let snapshot = failover.endpoints().load_full();
        let excluded = Excluded::new();
        let ctx = PickContext::new(&snapshot, now_nanos(), &excluded);
        let rr = RoundRobin::new();
        rows.push((
            "  pick part: RoundRobin::pick",
            ns_per_call(ROUNDS, N, || {
                black_box(rr.pick(black_box(&ctx)));
            }),
        ));
    }
    rows.push((
        "  pick part: Arc<LiveEndpoint> clone + drop",
        ns_per_call(ROUNDS, N, || {
            black_box(Arc::clone(black_box(&ep)));
        }),
    ));
    rows.push((
        "per call: execute_with(no-op), 3 endpoints",
        runtime.block_on(async {
            let mut per_call = Vec::new();
            for _ in 0..ROUNDS {
                let began = Instant::now();
                for _ in 0..N {
                    let served = failover
                        .execute_with(CallOptions::idempotent(), |_| async {
                            Ok::<_, Classified>(1u32)
                        })
                        .await;
                    black_box(served.unwrap().value);
                }
                per_call.push(began.elapsed().as_secs_f64() * 1e9 / f64::from(N));
            }
            median(&mut per_call)
        }),
    ));
    // What a caller's task holds (and moves) while a request is pending.
    let raw_send = http.get(clients.urls[0].as_str()).send();
    let failover_send = clients.failover_1.get(PATH).send();
    let failover_fetch = clients.failover_1.get(PATH).fetch();
    println!(
        "future sizes: bare send {} B, FailoverClient send {} B, fetch {} B",
        std::mem::size_of_val(&raw_send),
        std::mem::size_of_val(&failover_send),
        std::mem::size_of_val(&failover_fetch)
    );
    drop((raw_send, failover_send, failover_fetch));
    {
        // The core's part: an operation like `FailoverClient`'s (a reqwest
        // request sent), run by `execute_with` or `execute_hedged`.
        let op = |_| {
            let send = http.get(clients.urls[0].as_str()).send();
            async move {
                send.await
                    .map_err(|_| Classified::from(std::io::Error::other("x")))
            }
        };
        let plain = failover.execute_with(CallOptions::idempotent(), op);
        let hedged = failover.execute_hedged(
            CallOptions::idempotent(),
            failover_pool::core::HedgeDelay::Fixed(Duration::from_millis(1)),
            op,
        );
        println!(
            "future sizes: Failover::execute_with {} B, execute_hedged {} B (same operation)",
            std::mem::size_of_val(&plain),
            std::mem::size_of_val(&hedged)
        );
    }
    println!("profile (each in a tight loop, median of {ROUNDS} rounds of {N}):");
    for (what, ns) in rows {
        println!("  {what:<46} {ns:>8.1} ns");
    }
}

/// Measures, as the pairs are, variants between the bare client and
/// `FailoverClient` against the bare client (`HTTP_BENCH_PROFILE=1`; one
/// request per iteration to backend 0): where the overhead comes from.
fn profile_pairs(runtime: &Runtime, clients: &Arc<Clients>) {
    let kinds = [
        Kind::RawB,
        Kind::RawTimeout,
        Kind::ExecuteRaw,
        Kind::ExecuteRetarget,
        Kind::FailoverNoTimeout,
        Kind::Failover,
    ];
    let case = |kind, tasks| Case {
        target: Target::One,
        kind,
        tasks,
    };
    runtime.block_on(async {
        for kind in kinds {
            for _ in 0..5 {
                clients.iteration(case(kind, TASKS)).await;
            }
        }
    });
    println!("profile (GET to backend 0, 1 task, each variant against the bare client):");
    for kind in kinds {
        let o = overhead(runtime, clients, case(Kind::Raw, 1), case(kind, 1), LIMITS);
        println!(
            "  {:<20} median {:>6.1} µs vs raw {:>6.1} µs (+{:>5.2} µs): ratio={:.3}",
            kind.name(),
            o.b_median,
            o.a_median,
            o.b_median - o.a_median,
            o.ratio
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let backends = runtime
        .block_on(LocalHttpBackends::start(BACKENDS))
        .unwrap_or_else(|e| panic!("starting the local HTTP backends failed: {e}"));
    eprintln!("local HTTP backends: {backends:?}");
    let clients = Arc::new(runtime.block_on(async { Clients::new(&backends) }));
    let case = |target, kind, tasks| Case {
        target,
        kind,
        tasks,
    };
    // Open every client's connections before anything is measured.
    runtime.block_on(async {
        for target in [Target::One, Target::Three] {
            for kind in [Kind::Raw, Kind::RawB, Kind::Failover, Kind::Fetch] {
                for _ in 0..5 {
                    clients.iteration(case(target, kind, TASKS)).await;
                }
            }
        }
    });

    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        // Rendering plots takes longer than measuring here.
        .without_plots()
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("http");
        for target in [Target::One, Target::Three] {
            for tasks in [1, TASKS] {
                for kind in [Kind::Raw, Kind::Failover] {
                    let id = format!("{}/{}/{tasks}", target.name(), kind.name());
                    let (clients, case) = (&clients, case(target, kind, tasks));
                    group.bench_function(id, |b| {
                        b.to_async(&runtime)
                            .iter(|| async move { clients.iteration(case).await });
                    });
                }
            }
        }
        group.finish();
    }
    {
        let mut group = criterion.benchmark_group("pick");
        let failover = clients.failover_3.failover();
        group.bench_function(format!("failover/{BACKENDS}"), |b| {
            b.iter(|| failover.pick().expect("an endpoint"))
        });
        group.finish();
    }
    criterion.final_summary();

    // `cargo test --benches` runs this without `--bench`: criterion then
    // runs every benchmark once as a test; skip the long measurement.
    let args: Vec<String> = std::env::args().collect();
    let measuring = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list");
    if measuring {
        let mut lines = Vec::new();
        let mut extra = Vec::new();
        // (name, target, b, tasks): `b` measured against the bare client.
        let pairs = [
            ("http-get", Target::One, Kind::Failover, 1),
            ("http-get", Target::One, Kind::Failover, TASKS),
            ("http-get-3", Target::Three, Kind::Failover, 1),
            ("http-get-3", Target::Three, Kind::Failover, TASKS),
            ("http-fetch", Target::One, Kind::Fetch, 1),
            ("http-get", Target::One, Kind::RawB, 1),
            ("http-get", Target::One, Kind::RawB, TASKS),
        ];
        let only = std::env::var("HTTP_BENCH_PAIRS").unwrap_or_default();
        for (name, target, kind, tasks) in pairs {
            let pair = format!("{name}/{tasks}");
            if !pair.contains(only.as_str()) {
                continue;
            }
            let raw = case(target, Kind::Raw, tasks);
            let o = overhead(&runtime, &clients, raw, case(target, kind, tasks), LIMITS);
            println!(
                "measured {pair} raw vs {}: raw median {:.1} µs mean {:.1} µs, {} median {:.1} \
                 µs mean {:.1} µs; {} alternating rounds of {} iterations each; median of \
                 per-round ratios: of medians {:.3}, of means {:.3}",
                kind.name(),
                o.a_median,
                o.a_mean,
                kind.name(),
                o.b_median,
                o.b_mean,
                o.rounds,
                o.iters,
                o.ratio,
                o.mean_ratio
            );
            if kind == Kind::RawB {
                extra.push(format!(
                    "noise floor (a second bare client vs the bare client): {pair} ratio={:.3}",
                    o.ratio
                ));
            } else {
                lines.push(format!("overhead {pair} ratio={:.3}", o.ratio));
            }
        }
        for line in extra.iter().chain(&lines) {
            println!("{line}");
        }
        println!(
            "pick ns={:.1} (FailoverClient::failover().pick(), {BACKENDS} endpoints, median of \
             {PICK_ROUNDS} rounds of {PICKS})",
            pick_ns(clients.failover_3.failover())
        );
        if std::env::var_os("HTTP_BENCH_PROFILE").is_some() {
            profile(&runtime, &clients);
            profile_pairs(&runtime, &clients);
        }
    }

    clients.failover_1.close();
    clients.failover_3.close();
    {
        // Clients may spawn clean-up work when dropped; the backends'
        // tasks are aborted.
        let _context = runtime.enter();
        drop(clients);
        drop(backends);
    }
    drop(runtime);
}
