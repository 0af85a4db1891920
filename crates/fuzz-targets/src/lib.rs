//! Every decoder a peer or user reaches, as a fuzz target: bytes in, no panic out, and for the
//! canonical encodings (transactions, blocks, proofs, dispute evidence, network messages) a
//! decoded value must encode back to exactly the bytes it came from, so no two spellings of one
//! value exist.
//!
//! `fuzz/` runs these under libFuzzer (`fuzz/run.sh`); `tests/decoders.rs` runs each on its
//! seeds and a fixed set of seeded mutations inside `cargo test`.

use ergon_kernels::npy::decode_npy;
use ergon_kernels::rng::SplitMix64;
use ergon_net::codec::Wire;
use ergon_net::{PieceRequest, PieceResponse, Request, Response};
use ergon_types::block::Headers;
use ergon_types::{Block, Canonical, SignedTransaction};

pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    /// Valid inputs to start mutating from.
    pub seeds: fn() -> Vec<Vec<u8>>,
}

/// Decodes `bytes` as `T`; if it decodes, it must encode back to the same bytes.
fn canonical<T, E>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, E>, encode: impl Fn(&T) -> Vec<u8>) {
    if let Ok(v) = decode(bytes) {
        assert_eq!(encode(&v), bytes, "a decoded value must re-encode to its own bytes");
    }
}

fn wire<M: Wire>(bytes: &[u8]) {
    canonical(bytes, M::from_wire, M::to_wire);
}

pub const TARGETS: &[Target] = &[
    Target {
        name: "transaction",
        run: |b| canonical(b, SignedTransaction::decode, |t| t.encode()),
        seeds: seeds::transactions,
    },
    Target {
        name: "block",
        run: |b| {
            canonical(b, Block::decode, |x| x.encode());
            if let Ok(block) = Block::decode(b) {
                let _ = block.check_self_consistent(); // the proof check runs on decoded blocks
            }
            // A run of headers with proofs (headers-first sync), and its proof check.
            canonical(b, Headers::decode, |x| x.encode());
            if let Ok(Headers(run)) = Headers::decode(b) {
                let _ = ergon_chain::headers::check_proofs(&run);
            }
        },
        seeds: seeds::blocks,
    },
    Target { name: "proof", run: |b| canonical(b, ergon_pouw::Proof::decode, |p| p.encode()), seeds: seeds::proofs },
    Target {
        name: "dispute",
        run: |b| {
            canonical(b, ergon_pouw::WrongEntry::decode, |e| e.encode());
            canonical(b, ergon_pouw::RevealedRow::decode, |r| r.encode());
        },
        seeds: seeds::disputes,
    },
    Target {
        name: "npy",
        run: |b| {
            let _ = decode_npy::<i8>(b);
            let _ = decode_npy::<i32>(b);
            let _ = decode_npy::<f32>(b);
        },
        seeds: seeds::npys,
    },
    Target {
        name: "ml",
        run: |b| {
            let _ = ergon_ml::Mlp::from_safetensors(b);
            let _ = ergon_ml::TrainSpec::decode(b);
            let _ = ergon_ml::Dataset::from_csv_gz(b);
            let _ = ergon_ml::job::parse_predictions(b);
        },
        seeds: seeds::ml,
    },
    Target {
        name: "sealed_blob",
        run: |b| {
            let secret = x25519_dalek::StaticSecret::from([1; 32]);
            let _ = ergon_jobdata::seal::open(b, &secret);
            let _ = ergon_jobdata::author(&[2; 32], b);
        },
        seeds: seeds::blobs,
    },
    Target {
        name: "genesis",
        run: |b| {
            if let Ok(text) = std::str::from_utf8(b) {
                let _ = ergon_chain::Genesis::from_json(text);
            }
        },
        seeds: seeds::genesis,
    },
    Target {
        name: "wire",
        run: |b| {
            wire::<Request>(b);
            wire::<Response>(b);
            wire::<PieceRequest>(b);
            wire::<PieceResponse>(b);
            // Proof-of-AI gossip: round announcements and answers.
            canonical(b, ergon_types::poai::PoaiMessage::decode, |m| m.encode());
        },
        seeds: seeds::wire,
    },
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// `count` inputs derived from `seeds` by `seed`: bit flips, overwrites, cuts, insertions,
/// splices and random tails, and some plain random bytes. The same arguments give the same
/// inputs on every machine.
pub fn mutations(seeds: &[Vec<u8>], count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let base = &seeds[rng.below(seeds.len() as u64) as usize];
        let mut v = base.clone();
        for _ in 0..1 + rng.below(4) {
            let len = v.len().max(1) as u64;
            match rng.below(7) {
                0 if !v.is_empty() => {
                    let i = rng.below(len) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
                1 if !v.is_empty() => {
                    let i = rng.below(len) as usize;
                    v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.below(5) as usize];
                }
                2 => v.truncate(rng.below(len + 1) as usize),
                3 => {
                    let i = rng.below(len) as usize;
                    v.insert(i.min(v.len()), rng.next_u64() as u8);
                }
                4 => {
                    let other = &seeds[rng.below(seeds.len() as u64) as usize];
                    let at = rng.below(len) as usize;
                    v.truncate(at.min(v.len()));
                    v.extend_from_slice(&other[rng.below(other.len().max(1) as u64) as usize..]);
                }
                5 => v.extend((0..rng.below(64)).map(|_| rng.next_u64() as u8)),
                _ => v = (0..rng.below(256)).map(|_| rng.next_u64() as u8).collect(),
            }
        }
        out.push(v);
    }
    out
}

/// Valid encodings of each format, built with the real encoders.
pub mod seeds {
    use ergon_chain::{seal, Chain, ChainParams, Genesis};
    use ergon_kernels::npy::encode_npy;
    use ergon_kernels::rng::random_matrix;
    use ergon_kernels::MatI32;
    use ergon_net::codec::Wire;
    use ergon_types::{Canonical, Hash, SecretKey, Transaction, TxKind};

    fn genesis_value() -> Genesis {
        let mut balances = std::collections::BTreeMap::new();
        balances.insert(SecretKey::from_bytes(&[1; 32]).public().address().to_string(), 1_000_000);
        Genesis { network: "fuzz".into(), time_ms: 1_000_000, params: ChainParams::small(48), balances }
    }

    pub fn transactions() -> Vec<Vec<u8>> {
        let k = SecretKey::from_bytes(&[1; 32]);
        let chain = Hash([3; 32]);
        let kinds = [
            TxKind::Transfer { to: k.public().address(), amount: 5 },
            TxKind::Stake { amount: 9 },
            TxKind::CancelJob { job: Hash([4; 32]) },
            TxKind::ReleaseLease { job: Hash([4; 32]), shard: 3 },
            TxKind::ChallengeResult { job: Hash([4; 32]), shard: 1, replica: 0, rows: vec![0, 7] },
            TxKind::Judge { provider: k.public().address(), gmacs: 125, reason: "as claimed".into() },
            TxKind::JudgeMemory { provider: k.public().address(), memory_mib: 4096, reason: "shown".into() },
            TxKind::DoubtResult { job: Hash([4; 32]), shard: 0, expected: Hash([5; 32]) },
            {
                let (round, answer) = poai_pair();
                TxKind::ProveFraud { round: Box::new(round), answer: Box::new(answer) }
            },
        ];
        kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| Transaction { chain, from: k.public(), nonce: i as u64, fee: 1, kind }.sign(&k).encode())
            .collect()
    }

    fn mined_block() -> ergon_types::Block {
        let mut c = Chain::new(genesis_value()).expect("valid genesis");
        let now = c.tip_header().time_ms + 10_000;
        let k = SecretKey::from_bytes(&[1; 32]);
        let tx = Transaction {
            chain: c.chain_id(),
            from: k.public(),
            nonce: 0,
            fee: 1,
            kind: TxKind::Transfer { to: k.public().address(), amount: 5 },
        }
        .sign(&k);
        let t = c.template(k.public().address(), vec![tx], now);
        seal(t, 0, 1000).expect("mining runs").expect("a winner within 1000 nonces")
    }

    pub fn blocks() -> Vec<Vec<u8>> {
        let b = mined_block();
        let headers = ergon_types::block::Headers(vec![(b.header.clone(), b.proof.clone()); 2]);
        vec![b.encode(), headers.encode()]
    }

    pub fn proofs() -> Vec<Vec<u8>> {
        vec![mined_block().proof.encode()]
    }

    pub fn disputes() -> Vec<Vec<u8>> {
        let a = random_matrix(5, 7, 126, 1).expect("shape");
        let b = random_matrix(7, 3, 126, 2).expect("shape");
        let mut c = ergon_kernels::matmul(&a, &b).expect("shapes agree");
        let row = ergon_pouw::RevealedRow::build(&c, 2).expect("row").encode();
        c.as_mut_slice()[4] += 1;
        let wrong = ergon_pouw::WrongEntry::build(&a, &b, &c, 1, 1).expect("entry").encode();
        vec![row, wrong]
    }

    pub fn npys() -> Vec<Vec<u8>> {
        let a = random_matrix(3, 5, 126, 3).expect("shape");
        let c = MatI32::from_vec(2, 2, vec![1, -2, 3, i32::MIN]).expect("shape");
        vec![encode_npy(&a), encode_npy(&c)]
    }

    pub fn ml() -> Vec<Vec<u8>> {
        let model = ergon_ml::Mlp::new(4, 3, 2, 255, 7).to_safetensors().expect("a model encodes");
        let spec = ergon_ml::TrainSpec {
            config: ergon_ml::TrainConfig { hidden: 8, epochs: 1, batch_log2: 3, lr_log2: 8, seed: 1 },
            holdout: 5,
        }
        .encode();
        vec![model, spec, b"1\n2\n3\n".to_vec(), ergon_ml::DIGITS_CSV_GZ[..2048].to_vec()]
    }

    pub fn blobs() -> Vec<Vec<u8>> {
        let recipient = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([1; 32])).to_bytes();
        let author = SecretKey::from_bytes(&[4; 32]);
        let small = ergon_jobdata::seal_signed(b"inputs", &recipient, &[2; 32], &author).expect("seals");
        let two_pieces = vec![9u8; ergon_jobdata::seal::CHUNK_BYTES / 64];
        vec![small, ergon_jobdata::seal_signed(&two_pieces, &recipient, &[2; 32], &author).expect("seals")]
    }

    pub fn genesis() -> Vec<Vec<u8>> {
        vec![genesis_value().to_json().into_bytes()]
    }

    /// A signed round announcement and a signed answer to it (a wrong one: a fraud proof).
    fn poai_pair() -> (ergon_types::poai::PoaiMessage, ergon_types::poai::PoaiMessage) {
        use ergon_types::poai::{Answer, PoaiBody, Round};
        let (v, p) = (SecretKey::from_bytes(&[1; 32]), SecretKey::from_bytes(&[2; 32]));
        let round = Round {
            chain: Hash([3; 32]),
            validator: v.public(),
            round: 9,
            seed: Hash([4; 32]),
            nonce: [5; 32],
            probe: false,
            target_ns: 1000,
            parts: 2,
            openings: 1,
            classes: vec![(p.public().address(), 1)],
        };
        let product = ergon_kernels::MatI32::from_vec(2, 2, vec![1, 2, 3, 4]).expect("2×2");
        let answer = Answer {
            chain: round.chain,
            provider: p.public(),
            validator: v.public().address(),
            round: 9,
            round_id: round.id(),
            registered_at: 1,
            part: 0,
            commitment: ergon_pouw::result_root(&product),
            openings: vec![ergon_pouw::RevealedRow::build(&product, 1).expect("row 1")],
        };
        (PoaiBody::Round(round).sign(&v), PoaiBody::Answer(answer).sign(&p))
    }

    /// A memory commitment, an opening and an answer (blocks of the right size, not a real fill:
    /// the decoder is what is fuzzed).
    fn memory_messages() -> Vec<ergon_types::poai::PoaiMessage> {
        use ergon_types::poai::{MemoryAnswer, MemoryCommit, MemoryOpen, MemoryOpening, OpenedBlock, PoaiBody};
        let (v, p) = (SecretKey::from_bytes(&[1; 32]), SecretKey::from_bytes(&[2; 32]));
        let chain = Hash([3; 32]);
        let commit = MemoryCommit {
            chain,
            provider: p.public(),
            epoch: 720,
            seed: Hash([4; 32]),
            claimed_mib: 2048,
            root: [6; 32],
        };
        let open = MemoryOpen {
            chain,
            validator: v.public(),
            epoch: 720,
            seed: Hash([4; 32]),
            open: 1,
            nonce: [5; 32],
            deadline_ms: 1000,
            providers: vec![p.public().address()],
        };
        let block = |index| OpenedBlock { index, bytes: vec![index as u8; 1024], path: vec![[9; 32]; 3] };
        let answer = MemoryAnswer {
            chain,
            provider: p.public(),
            validator: v.public().address(),
            open_id: open.id(),
            openings: vec![
                MemoryOpening { block: block(0), prev: None, refs: vec![] },
                MemoryOpening { block: block(5), prev: Some(block(4)), refs: (0..8).map(block).collect() },
            ],
        };
        vec![
            PoaiBody::MemoryCommit(commit).sign(&p),
            PoaiBody::MemoryOpen(open).sign(&v),
            PoaiBody::MemoryAnswer(answer).sign(&p),
        ]
    }

    pub fn wire() -> Vec<Vec<u8>> {
        let (round, answer) = poai_pair();
        let memory = memory_messages().iter().map(|m| m.encode()).collect::<Vec<_>>();
        vec![
            round.encode(),
            answer.encode(),
            memory[0].clone(),
            memory[1].clone(),
            memory[2].clone(),
            ergon_net::Request::Block([7; 32]).to_wire(),
            ergon_net::Request::Tip.to_wire(),
            ergon_net::Request::BlockAt(77).to_wire(),
            ergon_net::Request::Headers { from: 5, count: 256 }.to_wire(),
            ergon_net::Response(Some(vec![1, 2, 3])).to_wire(),
            ergon_net::PieceRequest { name: [1; 32], piece: 2 }.to_wire(),
            ergon_net::PieceResponse(Some((3, vec![4; 40]))).to_wire(),
        ]
    }
}
