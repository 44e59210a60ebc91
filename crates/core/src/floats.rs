//! Float vectors as text: base64 (standard alphabet, padded) of little-endian `f32`s. MIRT
//! checkpoints and the decision log's stored embeddings use it: exact, and a third the size of
//! decimal JSON.

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of bytes.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode(s: &str) -> Result<Vec<u8>, String> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for ch in s.bytes() {
        let v = B64
            .iter()
            .position(|&b| b == ch)
            .ok_or_else(|| format!("invalid base64 character `{}`", ch as char))?
            as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// The floats as base64 of their little-endian bytes.
pub fn to_b64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    encode(&bytes)
}

/// The floats back from [`to_b64`]'s text.
pub fn from_b64(s: &str) -> Result<Vec<f32>, String> {
    let b = decode(s)?;
    if b.len() % 4 != 0 {
        return Err("base64 float data is not a multiple of 4 bytes".into());
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for n in 0..7 {
            let v: Vec<f32> = (0..n).map(|i| i as f32 * -1.25e-3 + 0.1).collect();
            assert_eq!(from_b64(&to_b64(&v)).unwrap(), v);
        }
        assert_eq!(encode(b"Man"), "TWFu");
        assert_eq!(encode(b"Ma"), "TWE=");
        assert!(from_b64("TWE=").is_err(), "3 bytes are not whole floats");
        assert!(from_b64("T*E=").is_err());
    }
}
