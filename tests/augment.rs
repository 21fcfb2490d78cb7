//! Training-time augmentation: CIFAR's crop-and-flip and the affine map, drawn on the device; and a CIFAR ResNet
//! training on a CIFAR-10 binary folder named as `cifar10:DIR`.
mod common;

use tch::{Device, Kind, Tensor};
use tchzoo::config::RunConfig;
use tchzoo::data::augment::Augment;
use tchzoo::optim::HyperConfig;
use tchzoo::train::progress::Verbosity;

fn images() -> Tensor {
    Tensor::arange(2 * 3 * 6 * 5, (Kind::Float, Device::Cpu)).reshape([2, 3, 6, 5]) + 1.0
}

#[test]
fn crop_flip_keeps_shape_and_moves_whole_windows() {
    tch::manual_seed(1);
    let xs = images();
    let a = Augment::parse("crop_flip:pad=0,flip=false").unwrap();
    assert!(a.apply(&xs).equal(&xs), "no padding, no flip: unchanged");

    let flip = Augment::parse("crop_flip:pad=0").unwrap();
    let mut flipped = 0;
    for _ in 0..20 {
        let ys = flip.apply(&xs);
        for i in 0..2 {
            let (y, x) = (ys.get(i), xs.get(i));
            assert!(y.equal(&x) || y.equal(&x.flip([2])), "a sample is itself or its mirror");
            flipped += i64::from(!y.equal(&x));
        }
    }
    assert!(flipped > 5 && flipped < 35, "about half are flipped: {flipped} of 40");

    let crop = Augment::parse("crop_flip:pad=2,flip=false").unwrap();
    let padded = xs.constant_pad_nd([2, 2, 2, 2]);
    for _ in 0..10 {
        let ys = crop.apply(&xs);
        assert_eq!(ys.size(), xs.size());
        for i in 0..2 {
            let y = ys.get(i);
            let found = (0..5).any(|dy| (0..5).any(|dx| padded.get(i).narrow(1, dy, 6).narrow(2, dx, 5).equal(&y)));
            assert!(found, "each sample is a 6×5 window of its zero-padded image");
        }
    }
    assert!(Augment::parse("crop_flip:pad=-1").is_err());
    assert!(Augment::parse("crop_flip:size=3").unwrap_err().to_string().contains("size"));
    assert!(Augment::parse("mixup").unwrap_err().to_string().contains("crop_flip"));
    assert_eq!(Augment::parse("cifar").unwrap(), Augment::CropFlip { pad: 4, flip: true });
    // Non-image data passes unchanged.
    let table = Tensor::ones([4, 3], (Kind::Float, Device::Cpu));
    assert!(Augment::parse("cifar").unwrap().apply(&table).equal(&table));
}

#[test]
fn resnet20_trains_on_a_cifar10_folder_with_crop_and_flip() {
    let dir = common::tempdir();
    let data = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir_all(&data).unwrap();
    // 40 records of one label byte and 3,072 pixel bytes (CHW), two classes told apart by brightness.
    let mut bytes = vec![];
    for i in 0..40u32 {
        let label = (i % 2) as u8;
        bytes.push(label);
        bytes.extend((0..3072u32).map(|p| if label == 1 { 200 + (p % 50) as u8 } else { (p % 50) as u8 }));
    }
    std::fs::write(data.join("data_batch_1.bin"), &bytes).unwrap();
    let config = RunConfig {
        model: "resnet20".into(),
        data: format!("cifar10:{}", data.display()),
        epochs: 3,
        batch_size: 8,
        hyper: HyperConfig { lr: Some(0.01), ..Default::default() },
        augment: Some("crop_flip:pad=4".into()),
        lr_schedule: None,
        validation_split: Some(0.25),
        out: Some(dir.path().join("run").display().to_string()),
        ..RunConfig::default()
    };
    let outcome = tchzoo::run::train(&config, Verbosity::Silent, vec![]).unwrap();
    assert_eq!(outcome.history.len(), 3);
    eprintln!("cifar10 files: {:?}, loss {:?}", outcome.history.get("val_accuracy"), outcome.history.get("loss"));
    assert!(outcome.history.last("val_accuracy").unwrap() >= 0.5, "{:?}", outcome.history.get("val_accuracy"));
    let missing = RunConfig {
        data: "cifar10:/no/such/folder".into(),
        out: Some(dir.path().join("run2").display().to_string()),
        ..config
    };
    let e = tchzoo::run::train(&missing, Verbosity::Silent, vec![]).unwrap_err().to_string();
    assert!(e.contains("/no/such/folder") && e.contains("cifar10"), "{e}");
}
