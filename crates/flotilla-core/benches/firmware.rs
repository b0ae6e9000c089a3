//! Image parser throughput: parse + validate + hash a full-size (3.9 MiB) ESP32 app image, plain
//! and gzip-compressed. Target: at least 500 MB/s for the plain image.
//!
//! Run: `cargo bench -p flotilla-core --bench firmware -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flotilla_core::firmware::image::inspect;
use flotilla_imagegen::{Esp32Image, gzip};

/// 3.9 MiB: a large app in a 4 MB OTA slot.
const IMAGE_SIZE: usize = 4_089_446;

fn inspect_images(c: &mut Criterion) {
    let raw = Esp32Image::new().segments(6).size(IMAGE_SIZE).build();
    let gz = gzip(&raw);
    let mut group = c.benchmark_group("inspect");

    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("esp32_3.9MiB", |b| {
        b.iter(|| inspect(black_box(&raw)).map(|info| info.size));
    });

    // Throughput counted in inflated bytes, so the two numbers compare.
    group.throughput(Throughput::Bytes(raw.len() as u64));
    group.bench_function("esp32_3.9MiB_gzip", |b| {
        b.iter(|| inspect(black_box(&gz)).map(|info| info.size));
    });
    group.finish();
}

criterion_group!(benches, inspect_images);
criterion_main!(benches);
