//! A block as large as the consensus rules allow travels between two node processes (issue 10:
//! the old request-response codec doubled every byte under a 10 MiB cap, so a block over about
//! 5.5 MB could never be fetched).

use std::time::Duration;

use ergon_chain::{seal, Chain, ChainParams, Genesis};
use ergon_store::Store;
use ergon_types::block::MAX_TX_BYTES;
use ergon_types::job::MAX_SHARDS;
use ergon_types::{Canonical, JobKind, JobSpec, Requirements, SecretKey, SignedTransaction, Transaction, TxKind};

mod common;
use common::{get, wait, Net};

/// A matmul job of 64 small shards (about 5 KiB): the largest transaction a client can send
/// without a lease or a dispute behind it.
fn wide_job(chain: &Chain, client: &SecretKey, nonce: u64) -> SignedTransaction {
    let shards = (0..MAX_SHARDS as u64)
        .map(|i| {
            let mut root_a = [0u8; 32];
            root_a[..8].copy_from_slice(&nonce.to_le_bytes());
            root_a[8..16].copy_from_slice(&i.to_le_bytes());
            ergon_pouw::WorkCommitment { m: 24, k: 24, n: 24, root_a, root_b: [1; 32] }
        })
        .collect();
    let spec = JobSpec {
        kind: JobKind::Matmul,
        inputs: vec![],
        shards,
        macs_per_shard: 24 * 24 * 24,
        requirements: Requirements { min_memory_mib: 0, min_int8_gmacs: 0, gpu: false, replicas: 1, lease_blocks: 3 },
        max_price_per_gmac: 1,
        client_key: [6; 32],
    };
    let kind = TxKind::SubmitJob { spec };
    Transaction { chain: chain.chain_id(), from: client.public(), nonce, fee: 1, kind }.sign(client)
}

#[test]
fn a_block_with_all_the_transaction_bytes_a_block_may_carry_syncs_between_processes() {
    let dir = std::env::temp_dir().join(format!("ergon-bigblock-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let client = SecretKey::from_bytes(&[9; 32]);
    let balances = [(client.public().address().to_string(), 1_000_000_000)].into_iter().collect();
    let g = Genesis { network: "bigblock".into(), time_ms: 1_000_000, params: ChainParams::small(48), balances };
    std::fs::write(dir.join("g.json"), g.to_json()).unwrap();

    // Block 1, built here: as many wide jobs as fit under the transaction-byte bound.
    let mut chain = Chain::new(g.clone()).unwrap();
    let one = wide_job(&chain, &client, 0).encode().len();
    let txs: Vec<_> = (0..(MAX_TX_BYTES / one) as u64).map(|n| wide_job(&chain, &client, n)).collect();
    let template = chain.template(client.public().address(), txs, g.time_ms + 10_000);
    assert!(template.refused.is_empty(), "{:?}", template.refused.first().map(|r| r.1.to_string()));
    let block = seal(template, 0, 10_000).unwrap().expect("a winner");
    let bytes = block.encode().len();
    let tx_bytes: usize = block.txs.iter().map(|t| t.encode().len()).sum();
    assert!(tx_bytes + one > MAX_TX_BYTES && bytes > 8_000_000, "{bytes} bytes, {tx_bytes} of transactions");
    let id = block.header.id();

    // Node A holds it in its store; node B starts empty and must fetch it from A.
    let mut net = Net::new(dir.clone());
    net.genesis = net.p("g.json");
    {
        std::fs::create_dir_all(dir.join("a")).unwrap();
        let (mut store, mut stored) = Store::open(&dir.join("a").join("chain.redb"), Some(&g)).unwrap();
        store.import(&mut stored, block, u64::MAX / 2).unwrap().unwrap();
    }
    let a = net.node("a", &[]);
    assert_eq!(get(&a, "/status").unwrap()["tip"].as_str(), Some(id.to_hex().as_str()));
    let b = net.node("b", &[]);
    wait("B to fetch the big block", Duration::from_secs(60), || {
        get(&b, "/status").is_some_and(|s| s["tip"].as_str() == Some(id.to_hex().as_str()))
    });
    eprintln!("a block of {bytes} bytes ({tx_bytes} of transactions) went from A to B");
    let summary = get(&b, &format!("/blocks/{}", id.to_hex())).unwrap();
    assert_eq!(summary["txs"].as_array().map(Vec::len), Some(MAX_TX_BYTES / one), "{bytes} bytes");
}
