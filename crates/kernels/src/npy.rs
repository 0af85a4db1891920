//! Reading and writing NumPy `.npy` files (format versions 1.0–3.0), the format ML users already
//! have matrices in. Only 2-D arrays of int8, int32 and float32 are accepted; every malformed,
//! truncated or oversized input is an [`NpyError`], never a panic.

use std::io::{Read, Write};
use std::path::Path;

use crate::matrix::Matrix;

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// Headers are a short Python dict; anything longer than this is not a file we wrote or expect.
const MAX_HEADER_LEN: usize = 64 * 1024;
/// Refuse arrays above 16 GiB of payload before allocating for them.
pub const MAX_PAYLOAD_BYTES: u64 = 16 << 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NpyError {
    #[error("{0}")]
    Io(String),
    #[error("not a .npy file (bad magic bytes; matrices are 2-D NumPy .npy arrays: docs/data.md)")]
    BadMagic,
    #[error("unsupported .npy format version {0}.{1}")]
    Version(u8, u8),
    #[error("malformed .npy header: {0}")]
    Header(String),
    #[error("expected dtype {expected}, file has {found} (docs/data.md: inputs are int8, products int32)")]
    Dtype { expected: &'static str, found: String },
    #[error("expected a 2-D array, file has shape {0} (docs/data.md)")]
    NotMatrix(String),
    #[error("array data truncated: expected {expected} bytes, found {found}")]
    Truncated { expected: u64, found: u64 },
    #[error("{0} trailing bytes after the array data")]
    Trailing(u64),
    #[error("array of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(u64),
}

/// Element types that can live in a `.npy` matrix here.
pub trait NpyElement: Copy + Default + Send + Sync + 'static {
    /// The little-endian dtype string NumPy writes for this type.
    const DESCR: &'static str;
    const SIZE: usize;
    fn from_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut Vec<u8>);
    /// Other spellings of the same dtype that NumPy may write.
    fn accepts(descr: &str) -> bool {
        descr == Self::DESCR
    }
}

impl NpyElement for i8 {
    const DESCR: &'static str = "|i1";
    const SIZE: usize = 1;
    fn from_le(b: &[u8]) -> Self {
        b[0] as i8
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self as u8);
    }
    fn accepts(descr: &str) -> bool {
        matches!(descr, "|i1" | "<i1" | ">i1" | "=i1" | "i1" | "b")
    }
}

impl NpyElement for i32 {
    const DESCR: &'static str = "<i4";
    const SIZE: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    const SIZE: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// What a `.npy` header says: dtype, memory order and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<u64>,
}

/// Reads a 2-D matrix of element type `T` from a `.npy` file.
pub fn read_npy<T: NpyElement>(path: &Path) -> Result<Matrix<T>, NpyError> {
    let file = std::fs::File::open(path).map_err(|e| NpyError::Io(format!("{}: {e}", path.display())))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = std::io::BufReader::new(file);
    let mut bytes = Vec::with_capacity(len.min(MAX_PAYLOAD_BYTES + MAX_HEADER_LEN as u64) as usize);
    reader
        .by_ref()
        .take(MAX_PAYLOAD_BYTES + MAX_HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| NpyError::Io(format!("{}: {e}", path.display())))?;
    decode_npy(&bytes)
}

/// Reads only the header of a `.npy` file (to learn its dtype before choosing how to load it).
pub fn read_npy_header(path: &Path) -> Result<NpyHeader, NpyError> {
    let mut file = std::fs::File::open(path).map_err(|e| NpyError::Io(format!("{}: {e}", path.display())))?;
    let mut buf = Vec::new();
    Read::by_ref(&mut file)
        .take(MAX_HEADER_LEN as u64 + 12)
        .read_to_end(&mut buf)
        .map_err(|e| NpyError::Io(format!("{}: {e}", path.display())))?;
    parse_header(&buf).map(|(h, _)| h)
}

/// Decodes a whole `.npy` file held in memory.
pub fn decode_npy<T: NpyElement>(bytes: &[u8]) -> Result<Matrix<T>, NpyError> {
    let (header, data_start) = parse_header(bytes)?;
    if !T::accepts(&header.descr) {
        return Err(NpyError::Dtype { expected: T::DESCR, found: header.descr });
    }
    let (rows, cols) = match header.shape.as_slice() {
        [r, c] if *r > 0 && *c > 0 => (*r, *c),
        other => return Err(NpyError::NotMatrix(format!("{other:?}"))),
    };
    let expected =
        rows.checked_mul(cols).and_then(|n| n.checked_mul(T::SIZE as u64)).ok_or(NpyError::TooLarge(u64::MAX))?;
    if expected > MAX_PAYLOAD_BYTES {
        return Err(NpyError::TooLarge(expected));
    }
    let payload = &bytes[data_start..];
    let found = payload.len() as u64;
    if found < expected {
        return Err(NpyError::Truncated { expected, found });
    }
    if found > expected {
        return Err(NpyError::Trailing(found - expected));
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let data: Vec<T> = payload.chunks_exact(T::SIZE).map(T::from_le).collect();
    let m = if header.fortran_order {
        Matrix::from_vec(cols, rows, data).map(|t| t.transpose())
    } else {
        Matrix::from_vec(rows, cols, data)
    };
    m.map_err(|e| NpyError::Header(e.to_string()))
}

/// Encodes a matrix as a version 1.0 `.npy` file (C order), as `numpy.save` would.
pub fn encode_npy<T: NpyElement>(m: &Matrix<T>) -> Vec<u8> {
    let dict = format!("{{'descr': '{}', 'fortran_order': False, 'shape': ({}, {}), }}", T::DESCR, m.rows(), m.cols());
    // Magic (6) + version (2) + length (2) + dict + padding + '\n' must be a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let header_len = dict.len() + pad + 1;
    let mut out = Vec::with_capacity(10 + header_len + m.as_slice().len() * T::SIZE);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header_len as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    for &v in m.as_slice() {
        v.write_le(&mut out);
    }
    out
}

/// Writes a matrix to `path` as `.npy`, via a temporary file renamed into place so a crash never
/// leaves a half-written result under the final name.
pub fn write_npy<T: NpyElement>(path: &Path, m: &Matrix<T>) -> Result<(), NpyError> {
    let bytes = encode_npy(m);
    let tmp = path.with_extension("npy.partial");
    let io = |e: std::io::Error| NpyError::Io(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Parses the preamble; returns the header and the offset where array data starts.
fn parse_header(bytes: &[u8]) -> Result<(NpyHeader, usize), NpyError> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(NpyError::BadMagic);
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(NpyError::Header("truncated header length".into()));
            }
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        _ => return Err(NpyError::Version(major, minor)),
    };
    if header_len > MAX_HEADER_LEN {
        return Err(NpyError::Header(format!("header of {header_len} bytes is too long")));
    }
    let end = start + header_len;
    let text = bytes.get(start..end).ok_or_else(|| NpyError::Header("file ends inside the header".into()))?;
    let text = std::str::from_utf8(text).map_err(|_| NpyError::Header("header is not text".into()))?;
    Ok((parse_dict(text)?, end))
}

/// Parses the header dict, e.g. `{'descr': '<i4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> Result<NpyHeader, NpyError> {
    let err = |what: &str| NpyError::Header(format!("{what} in {:?}", text.trim_end()));
    let value_after = |key: &str| -> Result<&str, NpyError> {
        let at = text
            .find(&format!("'{key}'"))
            .or_else(|| text.find(&format!("\"{key}\"")))
            .ok_or_else(|| err(&format!("missing '{key}'")))?;
        let rest = &text[at + key.len() + 2..];
        let colon = rest.find(':').ok_or_else(|| err("missing ':'"))?;
        Ok(rest[colon + 1..].trim_start())
    };
    let descr_raw = value_after("descr")?;
    let quote =
        descr_raw.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or_else(|| err("descr is not a string"))?;
    let descr_end = descr_raw[1..].find(quote).ok_or_else(|| err("unterminated descr"))?;
    let descr = descr_raw[1..1 + descr_end].to_string();

    let order = value_after("fortran_order")?;
    let fortran_order = if order.starts_with("True") {
        true
    } else if order.starts_with("False") {
        false
    } else {
        return Err(err("fortran_order is not True/False"));
    };

    let shape_raw = value_after("shape")?;
    if !shape_raw.starts_with('(') {
        return Err(err("shape is not a tuple"));
    }
    let close = shape_raw.find(')').ok_or_else(|| err("unterminated shape"))?;
    let shape = shape_raw[1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<u64>().map_err(|_| err("bad dimension")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader { descr, fortran_order, shape })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_each_dtype() {
        let a = Matrix::from_fn(3, 5, |i, j| (i * 5 + j) as i8 - 7).unwrap();
        assert_eq!(decode_npy::<i8>(&encode_npy(&a)).unwrap(), a);
        let b = Matrix::from_fn(4, 2, |i, j| (i as i32 - 2) * 1_000_000 + j as i32).unwrap();
        assert_eq!(decode_npy::<i32>(&encode_npy(&b)).unwrap(), b);
        let c = Matrix::from_fn(2, 2, |i, j| i as f32 * 0.5 - j as f32).unwrap();
        assert_eq!(decode_npy::<f32>(&encode_npy(&c)).unwrap(), c);
        let header_total = encode_npy(&a).len() - 15;
        assert_eq!(header_total % 64, 0, "NumPy aligns the data to 64 bytes");
    }

    #[test]
    fn reads_what_numpy_writes() {
        // Bytes of numpy.save(f, np.array([[1, -2, 3], [4, 5, -128]], dtype=np.int8)).
        let mut file = b"\x93NUMPY\x01\x00v\x00{'descr': '|i1', 'fortran_order': False, 'shape': (2, 3), }".to_vec();
        while file.len() < 127 {
            file.push(b' ');
        }
        file.push(b'\n');
        file.extend_from_slice(&[1, 0xfe, 3, 4, 5, 0x80]);
        let m = decode_npy::<i8>(&file).unwrap();
        assert_eq!(m.as_slice(), &[1, -2, 3, 4, 5, -128]);
    }

    #[test]
    fn fortran_order_is_transposed_into_row_major() {
        let file = {
            let mut f = encode_npy(&Matrix::from_vec(3, 2, vec![1i8, 4, 2, 5, 3, 6]).unwrap());
            f = replace_in_header(
                &f,
                "'fortran_order': False, 'shape': (3, 2)",
                "'fortran_order': True, 'shape': (2, 3) ",
            );
            f
        };
        let m = decode_npy::<i8>(&file).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 3));
        assert_eq!(m.as_slice(), &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn rejects_bad_files_with_reasons() {
        let good = encode_npy(&Matrix::from_fn(4, 4, |i, j| (i + j) as i32).unwrap());
        assert_eq!(decode_npy::<i32>(b"hello"), Err(NpyError::BadMagic));
        assert!(matches!(decode_npy::<i8>(&good), Err(NpyError::Dtype { .. })));
        assert!(matches!(decode_npy::<i32>(&good[..good.len() - 1]), Err(NpyError::Truncated { .. })));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode_npy::<i32>(&long), Err(NpyError::Trailing(1)));
        for cut in 0..80 {
            assert!(decode_npy::<i32>(&good[..cut]).is_err());
        }
        let vector = replace_in_header(&good, "(4, 4)", "(16,) ");
        assert!(matches!(decode_npy::<i32>(&vector), Err(NpyError::NotMatrix(_))));
        let huge = replace_in_header(&good, "(4, 4), }              ", "(99999999, 99999999), }");
        assert!(matches!(decode_npy::<i32>(&huge), Err(NpyError::TooLarge(_))));
    }

    /// Rewrites part of the header text in place, keeping its length.
    fn replace_in_header(file: &[u8], from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut out = file.to_vec();
        let at = out.windows(from.len()).position(|w| w == from.as_bytes()).expect("pattern in header");
        out[at..at + to.len()].copy_from_slice(to.as_bytes());
        out
    }

    proptest::proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode_npy::<i8>(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            let _ = decode_npy::<f32>(&with_magic);
        }
    }
}
