//! Training on the shipped digits reaches the accuracy goal, deterministically, and the model
//! survives a safetensors round trip.

use ergon_ml::{Dataset, Exact, Mlp, TrainConfig};

#[test]
fn trains_to_95_percent_on_held_out_digits() {
    let data = Dataset::digits().unwrap();
    assert_eq!((data.len(), data.features, data.classes), (1797, 64, 10));
    let (train, test) = data.split(5);
    let config = TrainConfig::default();
    let mut mul = Exact::default();
    let model = Mlp::train(&train, &config, &mut mul).unwrap();
    let acc = model.accuracy(&test, &mut Exact::default()).unwrap();
    println!("held-out accuracy {:.2}% ({} multiply-adds of training)", acc * 100.0, ergon_ml::Multiply::macs(&mul));
    assert!(acc >= 0.95, "held-out accuracy {acc}");
    let again = Mlp::train(&train, &config, &mut Exact::default()).unwrap();
    assert_eq!(again, model, "same data and config, same bytes");
    let file = model.to_safetensors().unwrap();
    assert_eq!(again.to_safetensors().unwrap(), file, "same model, same file bytes");
    assert_eq!(Mlp::from_safetensors(&file).unwrap(), model);
    assert!(Mlp::from_safetensors(&file[..file.len() - 1]).is_err());
    assert!(Mlp::from_safetensors(b"not a model").is_err());
}

#[test]
fn training_through_pouw_mining_gives_the_same_bytes_and_tickets() {
    let (train, test) = Dataset::digits().unwrap().split(5);
    let config = TrainConfig { epochs: 2, ..TrainConfig::default() };
    let plain = Mlp::train(&train, &config, &mut Exact::default()).unwrap();
    let mut mining = ergon_ml::Mining::new(b"ergon ml test".to_vec(), 200_000);
    let mined = Mlp::train(&train, &config, &mut mining).unwrap();
    assert_eq!(mined, plain, "every product recovered exactly from the mined (noisy) one");
    assert!(!mining.winners.is_empty(), "{} products, no winning ticket", mining.products);
    assert_eq!(plain.predict(&test, &mut Exact::default()).unwrap(), mined.predict(&test, &mut mining).unwrap());
}

#[test]
fn bad_data_gets_a_reason() {
    assert!(Dataset::from_csv("1,2,x").unwrap_err().to_string().contains("line 1"));
    assert!(Dataset::from_csv("1,2,3\n1,2").unwrap_err().to_string().contains("expected 2"));
    assert!(Dataset::from_csv("").is_err());
    assert!(Dataset::from_csv_gz(b"plain").is_err());
    let (train, _) = Dataset::digits().unwrap().split(5);
    let model =
        Mlp::train(&train, &TrainConfig { epochs: 1, ..TrainConfig::default() }, &mut Exact::default()).unwrap();
    let narrow = Dataset::from_csv("1,2,3\n").unwrap();
    assert!(model.predict(&narrow, &mut Exact::default()).is_err());
}
