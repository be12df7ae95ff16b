//! Micro-benchmarks of each backup stage on bytes in memory: chunking, hashing,
//! compression, pack write and read, index lookups. `cargo bench --bench stages`.

use cairn::chunker::{self, ChunkerParams};
use cairn::compress;
use cairn::index::Index;
use cairn::pack::{self, PackWriter};
use cairn::storage::LocalStorage;
use cairn::ChunkId;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;

/// Half noise, half text-like bytes: compressible but not trivially.
fn corpus(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 4096) % 2 == 0 {
                (x >> 32) as u8
            } else {
                b"the quick brown fox "[i % 20]
            }
        })
        .collect()
}

fn chunks_of<'a>(data: &'a [u8], params: &ChunkerParams) -> Vec<&'a [u8]> {
    let mut start = 0;
    chunker::cut(data, params, true)
        .into_iter()
        .map(|len| {
            let chunk = &data[start..start + len];
            start += len;
            chunk
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let data = corpus(64 << 20);
    let mut group = c.benchmark_group("stages");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(data.len() as u64));
    for (name, params) in [("default", ChunkerParams::DEFAULT), ("fine", ChunkerParams::FINE)] {
        group.bench_function(format!("cut/{name}"), |b| {
            b.iter(|| chunker::cut(black_box(&data), &params, true))
        });
    }
    let chunks = chunks_of(&data, &ChunkerParams::DEFAULT);
    group.bench_function("blake3", |b| {
        b.iter(|| {
            chunks.iter().for_each(|c| {
                black_box(ChunkId::of(c));
            })
        })
    });
    group.bench_function("zstd3", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| compress::compress(ChunkId([0; 32]), c.to_vec(), 3).bytes.len())
                .sum::<usize>()
        })
    });
    let frames: Vec<compress::Frame> =
        chunks.iter().map(|c| compress::compress(ChunkId::of(c), c.to_vec(), 3)).collect();
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalStorage::new(dir.path());
    group.bench_function("pack_write", |b| {
        b.iter(|| {
            let mut writer = PackWriter::create(&storage).unwrap();
            for frame in &frames {
                writer.add(frame).unwrap();
            }
            writer.finish().unwrap().size
        })
    });
    let pack = {
        let mut writer = PackWriter::create(&storage).unwrap();
        frames.iter().for_each(|f| writer.add(f).unwrap());
        writer.finish().unwrap()
    };
    let name = cairn::layout::pack(&pack.id);
    group.bench_function("pack_read_verify", |b| {
        b.iter(|| {
            for e in &pack.entries {
                let stored = pack::read_stored(&storage, &name, e.offset, e.stored_len).unwrap();
                compress::decode_chunk(&e.id, e.codec, e.raw_len, stored, None).unwrap();
            }
        })
    });
    // A database piece changed in a few places, stored and read back as a delta.
    let old: Vec<u8> = data[..32 << 10].to_vec();
    let mut new = old.clone();
    for at in [100, 9000, 20000] {
        new[at..at + 16].copy_from_slice(b"changed in place");
    }
    let (old_id, new_id) = (ChunkId::of(&old), ChunkId::of(&new));
    let delta = compress::compress_against(new_id, new.clone(), 3, old_id, &old);
    assert_eq!(delta.codec, compress::Codec::Delta);
    group.throughput(Throughput::Bytes(new.len() as u64));
    group.bench_function("delta_compress_32k", |b| {
        b.iter(|| compress::compress_against(new_id, new.clone(), 3, old_id, &old).bytes.len())
    });
    group.bench_function("delta_decode_verify_32k", |b| {
        b.iter(|| {
            compress::decode_chunk(&new_id, delta.codec, delta.raw_len, delta.bytes.clone(), Some(&old))
                .unwrap()
        })
    });
    group.finish();

    let index_dir = tempfile::tempdir().unwrap();
    let index = Index::create(&index_dir.path().join("index.redb")).unwrap();
    let entries: Vec<pack::PackEntry> = (0..100_000u32)
        .map(|i| pack::PackEntry {
            id: ChunkId::of(&i.to_le_bytes()),
            offset: 16,
            stored_len: 1,
            raw_len: 1,
            codec: compress::Codec::Raw,
            reference: None,
        })
        .collect();
    index.add_pack(&cairn::PackId([1; 32]), 1, &entries).unwrap();
    let table = index.view().unwrap().chunks().unwrap();
    let mut lookups = c.benchmark_group("index");
    lookups.throughput(Throughput::Elements(1000));
    lookups.bench_function("lookup_1000_of_100k", |b| {
        b.iter_batched(
            || (0..1000u32).map(|i| ChunkId::of(&(i * 97).to_le_bytes())).collect::<Vec<_>>(),
            |ids| ids.iter().filter(|id| table.contains(id).unwrap()).count(),
            BatchSize::SmallInput,
        )
    });
    lookups.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
