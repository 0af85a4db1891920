//! The request-response wire format: raw bytes, not CBOR.
//!
//! libp2p's CBOR codec encodes a `Vec<u8>` as an array of integers (about 1.9 bytes per byte)
//! under a 10 MiB response cap, so blocks above ~5.5 MB, well under the largest valid block,
//! could never be fetched. Here a message is its bytes: a request is a tag and fixed fields; a
//! response is a presence byte followed by the payload up to the end of the stream, read with
//! a hard limit (`MAX_MESSAGE_BYTES`, above `Block::MAX_BYTES`, for blocks; one sealed piece for
//! blobs), so a peer cannot make us buffer more than that.

use std::io;
use std::marker::PhantomData;

use futures::prelude::*;
use libp2p::StreamProtocol;

use crate::{PieceRequest, PieceResponse, Request, Response, MAX_MESSAGE_BYTES};

/// A message with a raw encoding and a size bound.
pub trait Wire: Sized + Send {
    const MAX_BYTES: usize;
    fn to_wire(&self) -> Vec<u8>;
    fn from_wire(bytes: &[u8]) -> Result<Self, String>;
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

impl Wire for Request {
    const MAX_BYTES: usize = 33;
    fn to_wire(&self) -> Vec<u8> {
        match self {
            Request::Block(id) => [&[1u8][..], id].concat(),
            Request::Tip => vec![2],
            Request::BlockAt(h) => [&[3u8][..], &h.to_le_bytes()].concat(),
            Request::Headers { from, count } => [&[4u8][..], &from.to_le_bytes(), &count.to_le_bytes()].concat(),
        }
    }
    fn from_wire(b: &[u8]) -> Result<Self, String> {
        match b {
            [1, id @ ..] if id.len() == 32 => Ok(Request::Block(id.try_into().expect("32 bytes"))),
            [2] => Ok(Request::Tip),
            [3, h @ ..] if h.len() == 8 => Ok(Request::BlockAt(u64::from_le_bytes(h.try_into().expect("8 bytes")))),
            [4, rest @ ..] if rest.len() == 10 => Ok(Request::Headers {
                from: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
                count: u16::from_le_bytes(rest[8..].try_into().expect("2 bytes")),
            }),
            _ => Err(format!("not a block request ({} bytes)", b.len())),
        }
    }
}

impl Wire for Response {
    const MAX_BYTES: usize = 1 + MAX_MESSAGE_BYTES;
    fn to_wire(&self) -> Vec<u8> {
        match &self.0 {
            None => vec![0],
            Some(block) => [&[1u8][..], block].concat(),
        }
    }
    fn from_wire(b: &[u8]) -> Result<Self, String> {
        match b {
            [0] => Ok(Response(None)),
            [1, block @ ..] => Ok(Response(Some(block.to_vec()))),
            _ => Err("not a block response".into()),
        }
    }
}

impl Wire for PieceRequest {
    const MAX_BYTES: usize = 36;
    fn to_wire(&self) -> Vec<u8> {
        [&self.name[..], &self.piece.to_le_bytes()].concat()
    }
    fn from_wire(b: &[u8]) -> Result<Self, String> {
        if b.len() != 36 {
            return Err(format!("a piece request is 36 bytes, not {}", b.len()));
        }
        let name = b[..32].try_into().expect("32 bytes");
        Ok(PieceRequest { name, piece: u32::from_le_bytes(b[32..].try_into().expect("4 bytes")) })
    }
}

impl Wire for PieceResponse {
    /// One piece: a 1 MiB chunk with its tag (or the header), and the piece count.
    const MAX_BYTES: usize = 1 + 4 + ergon_jobdata::seal::CHUNK_BYTES + 64;
    fn to_wire(&self) -> Vec<u8> {
        match &self.0 {
            None => vec![0],
            Some((total, piece)) => [&[1u8][..], &total.to_le_bytes(), piece].concat(),
        }
    }
    fn from_wire(b: &[u8]) -> Result<Self, String> {
        match b {
            [0] => Ok(PieceResponse(None)),
            [1, rest @ ..] if rest.len() >= 4 => {
                let total = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
                Ok(PieceResponse(Some((total, rest[4..].to_vec()))))
            }
            _ => Err("not a piece response".into()),
        }
    }
}

/// Reads a whole message (the stream's remaining bytes), refusing more than `M::MAX_BYTES`.
async fn read<M: Wire, T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<M> {
    let mut buf = Vec::new();
    io.take(M::MAX_BYTES as u64 + 1).read_to_end(&mut buf).await?;
    if buf.len() > M::MAX_BYTES {
        return Err(invalid(format!("message over its limit of {} bytes", M::MAX_BYTES)));
    }
    M::from_wire(&buf).map_err(invalid)
}

async fn write<M: Wire, T: AsyncWrite + Unpin + Send>(io: &mut T, m: M) -> io::Result<()> {
    let bytes = m.to_wire();
    if bytes.len() > M::MAX_BYTES {
        return Err(invalid(format!("message over its limit of {} bytes", M::MAX_BYTES)));
    }
    io.write_all(&bytes).await?;
    io.close().await
}

/// The codec for one request-response protocol.
pub struct RawCodec<Req, Resp>(PhantomData<(Req, Resp)>);

impl<Req, Resp> Default for RawCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp> Clone for RawCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl<Req: Wire, Resp: Wire> libp2p::request_response::Codec for RawCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req> {
        read(io).await
    }
    async fn read_response<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp> {
        read(io).await
    }
    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> io::Result<()> {
        write(io, req).await
    }
    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()> {
        write(io, res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    fn round_trip<M: Wire>(m: M) -> io::Result<M> {
        let mut out = Cursor::new(Vec::new());
        block_on(write(&mut out, m))?;
        block_on(read(&mut Cursor::new(out.into_inner())))
    }

    #[test]
    fn a_block_of_the_largest_size_travels_raw_and_one_byte_more_is_refused() {
        let block: Vec<u8> = (0..MAX_MESSAGE_BYTES).map(|i| (i * 31 % 251) as u8).collect();
        let back = round_trip(Response(Some(block.clone()))).unwrap();
        assert_eq!(back.0.as_deref(), Some(&block[..]), "byte for byte, no expansion");
        assert!(round_trip(Response(None)).unwrap().0.is_none());
        // A peer that sends more than the limit is cut off, not buffered.
        let mut over = vec![1u8];
        over.extend(std::iter::repeat_n(0u8, MAX_MESSAGE_BYTES + 1));
        assert!(block_on(read::<Response, _>(&mut Cursor::new(over))).is_err());
    }

    #[test]
    fn requests_and_pieces_round_trip_and_junk_is_an_error() {
        assert!(matches!(round_trip(Request::Block([7; 32])).unwrap(), Request::Block(id) if id == [7; 32]));
        assert!(matches!(round_trip(Request::Tip).unwrap(), Request::Tip));
        assert!(matches!(round_trip(Request::BlockAt(1 << 40)).unwrap(), Request::BlockAt(h) if h == 1 << 40));
        let back = round_trip(Request::Headers { from: 1 << 33, count: 256 }).unwrap();
        assert!(matches!(back, Request::Headers { from, count: 256 } if from == 1 << 33));
        let p = round_trip(PieceRequest { name: [3; 32], piece: 9 }).unwrap();
        assert_eq!((p.name, p.piece), ([3; 32], 9));
        let piece = vec![5u8; ergon_jobdata::seal::CHUNK_BYTES + 16];
        let back = round_trip(PieceResponse(Some((4, piece.clone())))).unwrap();
        assert_eq!(back.0, Some((4, piece)));
        for junk in [&[][..], &[9][..], &[1, 2, 3][..], &[2, 0][..]] {
            assert!(block_on(read::<Request, _>(&mut Cursor::new(junk.to_vec()))).is_err(), "{junk:?}");
            assert!(block_on(read::<PieceResponse, _>(&mut Cursor::new(junk.to_vec()))).is_err(), "{junk:?}");
        }
        assert!(block_on(read::<Response, _>(&mut Cursor::new(vec![]))).is_err());
    }
}
