//! `ergon bench mempool`: the pool under the floods of issue 10, timed.
//!
//! 1. Junk: transfers of u64::MAX from accounts that hold nothing (what filled the old pool).
//! 2. A paid flood: valid, fee-paying transfers from many funded accounts, far more than the
//!    pool holds, so it must evict.
//! 3. An honest transfer paying a little more than the flood, submitted last: it must be
//!    admitted and be in the next block's template.
//!
//! Signing happens before the clock starts: what is timed is admission (the pool's checks,
//! the signature check of what survives them, and the application to the pool's view).

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use ergon_chain::{Chain, ChainParams, Genesis, Mempool};
use ergon_types::block::MAX_TXS;
use ergon_types::{SecretKey, SignedTransaction, Transaction, TxKind};
use rayon::prelude::*;
use serde::Serialize;

use crate::CmdResult;

#[derive(Args)]
pub struct MempoolArgs {
    /// Junk transactions in the first flood, and valid ones in the second.
    #[arg(long, default_value_t = 50_000)]
    flood: usize,
    /// Print JSON instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct MempoolReport {
    bench: &'static str,
    junk: usize,
    junk_admission_seconds: f64,
    junk_admitted: usize,
    paid: usize,
    paid_admission_seconds: f64,
    pool_after_paid_flood: usize,
    pool_limit: usize,
    floor_after_paid_flood: u64,
    honest_admitted: bool,
    honest_in_next_block: bool,
    next_block_transactions: usize,
}

fn key(tag: u8, i: usize) -> SecretKey {
    let mut b = [tag; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SecretKey::from_bytes(&b)
}

pub fn run(args: MempoolArgs) -> CmdResult {
    if args.flood == 0 || args.flood > 1_000_000 {
        return Err("--flood must be in 1..=1000000".into());
    }
    let senders = 1_000usize;
    let honest = key(3, 0);
    let mut balances: std::collections::BTreeMap<String, u64> =
        (0..senders).map(|i| (key(2, i).public().address().to_string(), 1_000_000_000)).collect();
    balances.insert(honest.public().address().to_string(), 1_000_000);
    let genesis =
        Genesis { network: "bench-mempool".into(), time_ms: 1_000_000, params: ChainParams::small(48), balances };
    let mut chain = Chain::new(genesis).map_err(|e| e.to_string())?;
    let id = chain.chain_id();
    let to = key(9, 0).public().address();
    let sign = |k: &SecretKey, nonce: u64, fee: u64, amount: u64| -> SignedTransaction {
        Transaction { chain: id, from: k.public(), nonce, fee, kind: TxKind::Transfer { to, amount } }.sign(k)
    };
    let junk: Vec<_> = (0..args.flood).into_par_iter().map(|i| sign(&key(1, i), 0, 1, u64::MAX)).collect();
    let per_sender = args.flood.div_ceil(senders);
    let paid: Vec<_> = (0..args.flood)
        .into_par_iter()
        .map(|i| sign(&key(2, i % senders), (i / senders) as u64, 1 + (i as u64 * 7919) % 10, 1))
        .collect();
    let mut pool = Mempool::default();

    let t = Instant::now();
    let junk_admitted = junk.into_iter().filter(|tx| pool.admit(&chain, tx.clone()).is_ok()).count();
    let junk_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for tx in paid {
        let _ = pool.admit(&chain, tx);
    }
    let paid_s = t.elapsed().as_secs_f64();
    let (pool_after, floor) = (pool.len(), pool.floor());

    let honest_tx = sign(&honest, 0, 11, 5);
    let honest_id = honest_tx.id();
    let honest_admitted = pool.admit(&chain, honest_tx).is_ok();
    let now = chain.tip_header().time_ms + 10_000;
    let template = chain.template(key(8, 0).public().address(), pool.best(MAX_TXS), now);
    let honest_in_next_block = template.txs.iter().any(|t| t.id() == honest_id);
    let report = MempoolReport {
        bench: "mempool",
        junk: args.flood,
        junk_admission_seconds: junk_s,
        junk_admitted,
        paid: args.flood,
        paid_admission_seconds: paid_s,
        pool_after_paid_flood: pool_after,
        pool_limit: ergon_chain::MempoolLimits::default().max_txs,
        floor_after_paid_flood: floor,
        honest_admitted,
        honest_in_next_block,
        next_block_transactions: template.txs.len(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
    } else {
        println!(
            "junk: {} unfunded transfers admitted in {:.3} s total ({:.1} µs each): {} admitted",
            report.junk,
            junk_s,
            junk_s * 1e6 / report.junk as f64,
            junk_admitted
        );
        println!(
            "paid flood: {} valid transfers from {senders} accounts ({per_sender} each, fees 1..=10) in {:.3} s: pool {} of {} at most, floor now {}",
            report.paid, paid_s, pool_after, report.pool_limit, floor
        );
        println!(
            "honest transfer at fee 11: admitted {}, in the next block's template {} ({} transactions)",
            honest_admitted, honest_in_next_block, report.next_block_transactions
        );
    }
    Ok(if honest_in_next_block && junk_admitted == 0 && pool_after <= report.pool_limit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
