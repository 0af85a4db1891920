//! `ergon mine-local`: one node, no network yet: replay the store, mine filler blocks on the
//! tip, persist each. Useful to watch difficulty adjust and to test crash recovery.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use ergon_chain::{seal, ChainParams, Genesis};
use ergon_store::Store;
use ergon_types::Address;

use crate::CmdResult;

#[derive(Args)]
pub struct MineLocalArgs {
    /// Where the node keeps its database.
    #[arg(long)]
    data_dir: PathBuf,
    /// Genesis file (JSON) for a new data directory; a devnet genesis is made if omitted.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Blocks to mine before exiting (0: just replay and report).
    #[arg(long, default_value_t = 10)]
    blocks: u64,
    /// Address paid for the blocks.
    #[arg(long)]
    miner: Option<Address>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn run(args: MineLocalArgs) -> CmdResult {
    std::fs::create_dir_all(&args.data_dir).map_err(|e| format!("{}: {e}", args.data_dir.display()))?;
    let db_path = args.data_dir.join("chain.redb");
    let genesis = match &args.genesis {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(Genesis::from_json(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None if !db_path.exists() => Some(Genesis {
            network: "local".into(),
            time_ms: now_ms(),
            params: ChainParams::devnet(),
            balances: Default::default(),
        }),
        None => None,
    };
    let t = Instant::now();
    let (mut store, mut chain) =
        Store::open(&db_path, genesis.as_ref()).map_err(|e| format!("{}: {e}", db_path.display()))?;
    let resumed = store.opened.resumed_from.map_or(String::new(), |h| format!(", resumed from the checkpoint at {h}"));
    println!(
        "opened {}: height {} (tip {:?}), {} stored blocks, {} re-validated in {:.2} s{resumed}",
        db_path.display(),
        chain.height(),
        chain.tip(),
        store.blocks(),
        store.opened.replayed,
        t.elapsed().as_secs_f64()
    );
    let miner = args.miner.unwrap_or_default();
    for _ in 0..args.blocks {
        let t = Instant::now();
        let template = chain.template(miner, vec![], now_ms());
        let difficulty = template.header.difficulty;
        let mut nonce = 0u64;
        let block = loop {
            if let Some(b) = seal(template.clone(), nonce, 64).map_err(|e| e.to_string())? {
                break b;
            }
            nonce += 64;
        };
        let height = block.header.height;
        match store.import(&mut chain, block, now_ms()).map_err(|e| e.to_string())? {
            Ok(_) => {
                println!("block {height} mined at difficulty {difficulty} in {:.0} ms", t.elapsed().as_secs_f64() * 1e3)
            }
            Err(e) => return Err(format!("own block {height} refused (bug): {e}")),
        }
    }
    println!("height {}, supply {} minted − {} burned", chain.height(), chain.ledger().minted, chain.ledger().burned);
    Ok(ExitCode::SUCCESS)
}
