//! Criterion benches of the online reconstruction: one ePIE update (probe held, and updating
//! the probe) and one Poisson Wirtinger-flow update per pattern at windows of 32², 64² and
//! 128², beside the cost of the 2-D FFT pair every update needs (the bound on updates per
//! second). The online stream, one thread; throughput in updates (patterns). Set-up
//! (simulation, preparation, plans) is outside `b.iter`.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use num_complex::Complex32;
use ptyflow::benchmark::recon::{case, epie, epie_with_probe, poisson_wf};
use ptyflow::recon::fft::Fft2;

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
}

fn updates(c: &mut Criterion) {
    let mut group = c.benchmark_group("recon_update");
    for m in [32, 64, 128] {
        let methods = [
            ("epie", epie()),
            ("epie_probe", epie_with_probe()),
            ("poisson_wf", poisson_wf()),
        ];
        for (name, method) in methods {
            let mut case = case(m, 4, method, false).expect("benchmark case");
            let n = case.patterns.len();
            group.throughput(Throughput::Elements(n as u64));
            group.bench_function(BenchmarkId::new(name, m), |b| {
                b.iter(|| {
                    for (i, p) in case.patterns.iter().enumerate() {
                        case.recon.update(i, black_box(p)).unwrap();
                    }
                })
            });
            // A diverged engine skips patterns and would look fast: refuse such a result.
            assert_eq!(case.recon.skipped(), 0, "{name}/{m}: patterns were skipped");
        }
        // The floor: one forward and one inverse 2-D FFT of the window.
        let mut fft = Fft2::new(m);
        let mut data = vec![Complex32::new(0.5, 0.25); m * m];
        let mut spec = vec![Complex32::new(0.0, 0.0); m * m];
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("fft2_pair", m), |b| {
            b.iter(|| {
                fft.forward_transposed(black_box(&mut data), &mut spec);
                fft.inverse_from_transposed(&mut spec, &mut data);
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = updates
}
criterion_main!(benches);
