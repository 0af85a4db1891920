//! The one canonical binary encoding of Ergon's types.
//!
//! Rules: integers little-endian at fixed width; fixed-size byte strings as they are; a
//! variable-length field is a u32 length then its bytes (or elements); an enum is a u8 tag then
//! its fields; every top-level type begins with a version byte. There is exactly one encoding of
//! each value, so hashes and signatures over encodings are well defined. Decoding never trusts a
//! length: it is checked against a per-field limit and against the bytes actually left before
//! anything is allocated, and leftover bytes are an error.

use crate::TypesError;

/// Appends canonical encodings to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A u32 length, then the bytes.
    pub fn var_bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32).bytes(v)
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads canonical encodings from a slice, refusing anything malformed.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the type being decoded, for error messages.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, at: 0, what }
    }

    fn err(&self, why: String) -> TypesError {
        TypesError::Decode { what: self.what, at: self.at, why }
    }

    pub fn take(&mut self, len: usize) -> Result<&'a [u8], TypesError> {
        let end = self.at.checked_add(len).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| self.err(format!("{len} bytes needed, {} left", self.bytes.len() - self.at)))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], TypesError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
    pub fn u8(&mut self) -> Result<u8, TypesError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, TypesError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, TypesError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// The version byte every top-level type starts with.
    pub fn version(&mut self, supported: u8) -> Result<(), TypesError> {
        let v = self.u8()?;
        if v != supported {
            return Err(self.err(format!("unsupported version {v} (this node speaks {supported})")));
        }
        Ok(())
    }
    /// A u32 length (at most `max`) then that many bytes.
    pub fn var_bytes(&mut self, max: usize) -> Result<&'a [u8], TypesError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(self.err(format!("length {len} exceeds the limit {max}")));
        }
        self.take(len)
    }
    /// A u32 element count, at most `max`, and no more than the bytes left could hold.
    pub fn count(&mut self, max: usize, min_element_bytes: usize) -> Result<usize, TypesError> {
        let n = self.u32()? as usize;
        let left = (self.bytes.len() - self.at) / min_element_bytes.max(1);
        if n > max || n > left {
            return Err(self.err(format!("count {n} exceeds the limit {max} or the {left} that fit")));
        }
        Ok(n)
    }
    /// Refuses trailing bytes.
    pub fn finish(self) -> Result<(), TypesError> {
        if self.at != self.bytes.len() {
            return Err(self.err(format!("{} trailing bytes", self.bytes.len() - self.at)));
        }
        Ok(())
    }
    pub fn fail<T>(&self, why: impl Into<String>) -> Result<T, TypesError> {
        Err(self.err(why.into()))
    }
}

/// A type with one canonical encoding.
pub trait Canonical: Sized {
    /// Largest encoding accepted; decoders refuse bigger inputs before parsing.
    const MAX_BYTES: usize;
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, TypesError>;

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.write(&mut w);
        w.finish()
    }

    /// Decodes exactly one value from `bytes` (no trailing bytes).
    fn decode(bytes: &[u8]) -> Result<Self, TypesError> {
        if bytes.len() > Self::MAX_BYTES {
            return Err(TypesError::TooLarge {
                what: std::any::type_name::<Self>(),
                len: bytes.len(),
                max: Self::MAX_BYTES,
            });
        }
        let mut r = Reader::new(bytes, std::any::type_name::<Self>());
        let v = Self::read(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}
