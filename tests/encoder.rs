//! The encoders against reference embeddings made in Python with numpy, no ONNX (`scripts/make-encoder-fixture.py`):
//! MiniLM in fp32, MiniLM by the dynamic int8 rule, the static model. Needs `scripts/fetch-models.sh` to have run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use dualrouter_ml::encoder::{Encoder, EncoderConfig, EncoderKind};

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn fixture() -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoder.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn load(kind: EncoderKind) -> Encoder {
    let fx = fixture();
    let cfg = EncoderConfig {
        kind,
        models_dir: models_dir(),
        max_tokens: fx["max_tokens"].as_u64().unwrap() as usize,
        head_tokens: fx["head_tokens"].as_u64().unwrap() as usize,
        ..EncoderConfig::default()
    };
    Encoder::load(&cfg).unwrap_or_else(|e| {
        panic!(
            "encoder models missing or broken ({e}); run scripts/fetch-models.sh before cargo test"
        )
    })
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * y).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if na == 0.0 && nb == 0.0 {
        return 1.0;
    }
    dot / (na * nb)
}

fn check(kind: EncoderKind, key: &str, dim: usize) {
    let enc = load(kind);
    assert_eq!(enc.dim(), dim);
    let fx = fixture();
    let sentences: Vec<&str> = fx["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let want: Vec<Vec<f64>> = fx[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect();
    // batched (padding inside a batch must not change results) and one at a time (cache hit path)
    assert!(!enc.is_cached(sentences[0]), "{key}: nothing is cached yet");
    let batch = enc.embed_batch(&sentences).unwrap();
    assert!(
        sentences.iter().all(|s| enc.is_cached(s)),
        "{key}: what was encoded is cached"
    );
    for (i, s) in sentences.iter().enumerate() {
        let one = enc.embed(s).unwrap();
        let c_batch = cosine(&batch[i], &want[i]);
        let c_one = cosine(&one, &want[i]);
        assert!(
            c_batch >= 0.999,
            "{key} sentence {i} batched: cosine {c_batch}"
        );
        assert!(c_one >= 0.999, "{key} sentence {i} single: cosine {c_one}");
    }
    // the long prompt keeps its end: changing only its last words changes the embedding, while changing words in
    // its middle (cut by the head+tail truncation) does not
    let long = sentences[sentences.len() - 1];
    let rep = "Answer the following multiple choice question. ";
    let mid = format!(
        "{}Totally unrelated filler words. {}Which gas do plants absorb? A) oxygen B) carbon dioxide",
        rep.repeat(20),
        rep.repeat(40)
    );
    let end = long.replace("carbon dioxide", "nitrogen gas");
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let base = enc.embed(long).unwrap();
    let c_mid = cos(&base, &enc.embed(&mid).unwrap());
    let c_end = cos(&base, &enc.embed(&end).unwrap());
    assert!(
        c_mid > 0.99999,
        "{key}: middle of a long prompt changed the embedding ({c_mid})"
    );
    assert!(
        c_end < 0.9999,
        "{key}: end of a long prompt was dropped (cosine {c_end})"
    );
}

#[test]
fn minilm_matches_python_reference() {
    // fp32 from model.safetensors against a numpy BERT forward pass (no ONNX on the Python side)
    check(EncoderKind::Minilm, "minilm", 384);
}

#[test]
fn minilm_int8_matches_python_reference() {
    // int8 products from the same weights against numpy applying the documented quantisation rule
    check(EncoderKind::MinilmInt8, "minilm_int8", 384);
}

#[test]
fn minilm_int8_stays_close_to_the_model() {
    // what quantising costs: each fixture sentence's int8 embedding against the fp32 reference (measured 0.9788 at
    // worst, on the empty prompt; with 8-bit weights, which saturate on AVX2 without VNNI, it measured 0.971)
    let enc = load(EncoderKind::MinilmInt8);
    let fx = fixture();
    for (i, s) in fx["sentences"].as_array().unwrap().iter().enumerate() {
        let want: Vec<f64> = fx["minilm"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let c = cosine(&enc.embed(s.as_str().unwrap()).unwrap(), &want);
        assert!(c >= 0.975, "sentence {i}: int8 vs fp32 cosine {c}");
    }
}

#[test]
fn static_matches_python_reference() {
    check(EncoderKind::Static, "static", 256);
}

#[test]
fn missing_model_says_how_to_fetch() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [
        EncoderKind::Minilm,
        EncoderKind::MinilmInt8,
        EncoderKind::Static,
    ] {
        let cfg = EncoderConfig {
            kind,
            models_dir: dir.path().to_path_buf(),
            ..EncoderConfig::default()
        };
        let err = Encoder::load(&cfg).unwrap_err().to_string();
        assert!(err.contains("scripts/fetch-models.sh"), "{err}");
    }
}

#[test]
fn corrupt_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("potion-base-8M");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::copy(
        models_dir().join("potion-base-8M/tokenizer.json"),
        d.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(d.join("model.safetensors"), b"not a safetensors file").unwrap();
    let cfg = EncoderConfig {
        kind: EncoderKind::Static,
        models_dir: dir.path().to_path_buf(),
        ..EncoderConfig::default()
    };
    let err = Encoder::load(&cfg).unwrap_err().to_string();
    assert!(
        err.contains("unusable") && err.contains("fetch-models.sh"),
        "{err}"
    );
}

#[test]
fn a_pool_of_sessions_encodes_concurrent_prompts_as_one_session_does_serially() {
    let cfg = |sessions| EncoderConfig {
        kind: EncoderKind::MinilmInt8,
        models_dir: models_dir(),
        // Every pass a real one: no cached answer.
        cache_size: 0,
        sessions,
        ..EncoderConfig::default()
    };
    let prompts: Vec<String> = (0..24)
        .map(|i| format!("prompt {i}: fix the failing test in module {}", i * 7))
        .collect();
    let one = Encoder::load(&cfg(1)).unwrap();
    let serial: Vec<_> = prompts.iter().map(|p| one.embed(p).unwrap()).collect();
    let pool = Encoder::load(&cfg(3)).unwrap();
    let concurrent: Vec<Vec<std::sync::Arc<[f32]>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (pool, prompts) = (&pool, &prompts);
                s.spawn(move || {
                    prompts
                        .iter()
                        .skip(t)
                        .step_by(4)
                        .map(|p| pool.embed(p).unwrap())
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, vecs) in concurrent.iter().enumerate() {
        for (k, v) in vecs.iter().enumerate() {
            let i = t + 4 * k;
            let diff = v
                .iter()
                .zip(serial[i].iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff <= 1e-6, "prompt {i}: off by {diff}");
        }
    }
    assert_eq!(
        concurrent.iter().map(Vec::len).sum::<usize>(),
        prompts.len()
    );
}
