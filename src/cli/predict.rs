//! `tchzoo predict`: the eval-mode forward of a saved model on an input tensor or image.
use std::path::{Path, PathBuf};

use clap::Args;
use tch::{Kind, Tensor};

use crate::checkpoint::Object;
use crate::error::{Error, Result};
use crate::models::preprocess::{imagenet_config, ImageConfig};
use crate::run::{load_model, ModelSource};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A run folder: its config.json and model.pt (or --weights).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A model spec (e.g. lenet5), when not using a run folder.
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Output units of the model [default: the registry's].
    #[arg(long)]
    pub num_classes: Option<i64>,
    /// Input: a tensor (.pt, .safetensors, .npy) of shape [N, …] or one sample, or an image (.png, .jpg). An image
    /// for an ImageNet model given by --model gets that model's eval transform (shorter side resized, centre crop,
    /// mean/std, as torchvision/timm/pytorchcv); for a run folder it is resized to the run's input and scaled to
    /// [0, 1], as the training images were.
    /// Several files, or a folder (its .pt, .safetensors, .npy, .png and .jpg files in name order), print one
    /// line per sample, named by file.
    #[arg(long, num_args = 1.., required = true)]
    pub input: Vec<PathBuf>,
    /// Write the outputs (logits) here: .pt (a tensor for torch.load) or .npy; a classifier's predicted labels
    /// (class names where the run recorded them) go beside it, one per line, in <output>.labels.txt.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print probabilities (softmax / sigmoid) instead of logits.
    #[arg(long)]
    pub proba: bool,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long)]
    pub device: Option<String>,
}

/// An image as the reference's eval transform makes it (see `models::preprocess`): shorter side resized to
/// ⌊size / crop_pct⌋ (the longer in proportion, truncated, as torchvision), centre crop, [0, 1], normalised.
fn preprocess(img: image::DynamicImage, c: &ImageConfig) -> Tensor {
    use image::imageops::FilterType;
    let img = img.to_rgb8();
    let (w, h) = img.dimensions();
    let short = (c.size as f64 / c.crop_pct).floor() as u32;
    let (nw, nh) = if w <= h {
        (short, (short as u64 * h as u64 / w as u64) as u32)
    } else {
        ((short as u64 * w as u64 / h as u64) as u32, short)
    };
    let filter = if c.bicubic { FilterType::CatmullRom } else { FilterType::Triangle };
    let img = if (nw, nh) == (w, h) { img } else { image::imageops::resize(&img, nw, nh, filter) };
    let top = ((nh.saturating_sub(c.size)) as f64 / 2.0).round_ties_even() as u32;
    let left = ((nw.saturating_sub(c.size)) as f64 / 2.0).round_ties_even() as u32;
    let img = image::imageops::crop_imm(&img, left, top, c.size, c.size).to_image();
    let s = c.size as i64;
    let xs = Tensor::from_slice(img.as_raw()).reshape([s, s, 3]).permute([2, 0, 1]).to_kind(Kind::Float) / 255.0;
    let mean = Tensor::from_slice(&c.mean).reshape([3, 1, 1]);
    let std = Tensor::from_slice(&c.std).reshape([3, 1, 1]);
    (xs - mean) / std
}

fn read_input(path: &Path, sample_shape: &[i64], prep: Option<&ImageConfig>) -> Result<Tensor> {
    let bad = |msg: String| Error::data(path.display(), msg);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase();
    let xs = match ext.as_str() {
        "npy" => crate::data::files::npy::read_npy(path)?,
        "pt" | "pth" | "bin" => match crate::checkpoint::read_pt(path)? {
            Object::Tensor(t) => t,
            other => {
                let tensors = other.find_state_dict().unwrap_or_default();
                match tensors.len() {
                    1 => tensors.into_iter().next().map(|(_, t)| t).unwrap_or_default(),
                    n => return Err(bad(format!("holds {n} tensors; save one tensor (torch.save(x, path))"))),
                }
            }
        },
        "safetensors" => {
            let tensors = crate::checkpoint::read_state_dict(path)?;
            match tensors.len() {
                1 => tensors.into_iter().next().map(|(_, t)| t).unwrap_or_default(),
                n => return Err(bad(format!("holds {n} tensors; give a file with one"))),
            }
        }
        "png" | "jpg" | "jpeg" => {
            let img = image::open(path).map_err(|e| bad(format!("not a readable image: {e}")))?;
            if let Some(c) = prep {
                return Ok(preprocess(img, c).unsqueeze(0));
            }
            let (c, h, w) = match sample_shape {
                [c, h, w] => (*c, *h as u32, *w as u32),
                _ => return Err(bad(format!("the model takes inputs of shape {sample_shape:?}, not images"))),
            };
            let img = img.resize_exact(w, h, image::imageops::FilterType::Triangle);
            let (data, channels): (Vec<u8>, i64) =
                if c == 1 { (img.to_luma8().into_raw(), 1) } else { (img.to_rgb8().into_raw(), 3) };
            Tensor::from_slice(&data).reshape([h as i64, w as i64, channels]).permute([2, 0, 1]).to_kind(Kind::Float)
                / 255.0
        }
        other => {
            return Err(bad(format!("unsupported input type '.{other}': use .pt, .safetensors, .npy, .png or .jpg")))
        }
    };
    let xs = xs.to_kind(Kind::Float);
    let size = xs.size();
    if size == sample_shape {
        Ok(xs.unsqueeze(0))
    } else if size.len() == sample_shape.len() + 1 && size[1..] == *sample_shape {
        Ok(xs)
    } else {
        Err(bad(format!(
            "input of shape {size:?}; the model takes [N, {sample_shape:?}] or one sample {sample_shape:?}"
        )))
    }
}

const INPUT_TYPES: [&str; 7] = ["pt", "pth", "bin", "safetensors", "npy", "png", "jpg"];

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// The input files: each file given, and each folder's readable files in name order.
fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.is_file()
                        && f.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                            let e = e.to_lowercase();
                            INPUT_TYPES.contains(&e.as_str()) || e == "jpeg"
                        })
                })
                .collect();
            if found.is_empty() {
                return Err(Error::data(
                    p.display(),
                    "a folder with no inputs (.pt, .safetensors, .npy, .png or .jpg files) in it",
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The predicted class of one output row: the arg-max, or for one output (a binary model) 1 when the
/// probability is above 0.5 (the logit above 0).
fn predicted_class(row: &[f32], proba: bool) -> usize {
    match row {
        [v] => usize::from(if proba { *v > 0.5 } else { *v > 0.0 }),
        _ => row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(j, _)| j),
    }
}

fn class_label(class: usize, names: Option<&Vec<String>>) -> String {
    match names.and_then(|n| n.get(class)) {
        Some(name) => name.clone(),
        None => format!("class {class}"),
    }
}

pub fn run(args: PredictArgs) -> Result<()> {
    if args.run.is_some() && (args.model.is_some() || args.num_classes.is_some()) {
        return Err(Error::config(
            "--run takes the model and its classes from the run folder: give --run DIR, or --model NAME --weights W \
             [--num-classes N], not both",
        ));
    }
    let files = input_files(&args.input)?;
    // An image given to a reference ImageNet model (--model, not a run folder) gets that model's eval transform.
    let prep = match (&args.model, &args.run, files.iter().any(|f| is_image(f))) {
        (Some(spec), None, true) => {
            let entry = crate::models::find(&crate::util::Spec::parse(spec, "model")?.source)?;
            imagenet_config(entry.name, entry.family, entry.default_classes)
        }
        _ => None,
    };
    let loaded = load_model(&ModelSource {
        run: args.run.clone(),
        model: args.model.clone(),
        weights: args.weights.clone(),
        num_classes: args.num_classes,
        device: args.device.clone(),
        input_shape: prep.as_ref().map(|c| vec![3, c.size as i64, c.size as i64]),
        ..ModelSource::default()
    })?;
    let classifier = loaded.trainer.loss != crate::train::Loss::Mse;
    let names = loaded.class_names.as_ref();
    let mut all = vec![];
    let mut labels: Vec<String> = vec![];
    let mut shown = 0i64;
    let several = files.len() > 1;
    for file in &files {
        let xs = read_input(file, &loaded.input_shape, prep.as_ref())?;
        let ys = crate::util::catch_torch(|| {
            if args.proba {
                loaded.trainer.predict_proba(&xs, args.batch_size)
            } else {
                loaded.trainer.predict(&xs, args.batch_size)
            }
        })
        .map_err(|e| Error::data(file.display(), format!("the model cannot take it: {e}")))?;
        let n = ys.size()[0];
        for i in 0..n {
            let row = Vec::<f32>::try_from(ys.get(i).reshape([-1])).unwrap_or_default();
            let label = classifier.then(|| class_label(predicted_class(&row, args.proba), names));
            if let Some(l) = &label {
                labels.push(l.clone());
            }
            if args.output.is_none() && shown < 50 {
                shown += 1;
                let values: Vec<String> = row.iter().take(10).map(|v| format!("{v:.4}")).collect();
                let more = if row.len() > 10 { " …" } else { "" };
                let which = match (several, n) {
                    (false, _) => i.to_string(),
                    (true, 1) => file.display().to_string(),
                    (true, _) => format!("{}[{i}]", file.display()),
                };
                let label = label.map(|l| format!("{l}  ")).unwrap_or_default();
                println!("{which}: {label}[{}{more}]", values.join(", "));
            }
        }
        all.push(ys);
    }
    let total: i64 = all.iter().map(|y| y.size()[0]).sum();
    match &args.output {
        Some(out) => {
            let ys = Tensor::f_cat(&all, 0).map_err(|e| {
                Error::data(out.display(), format!("the inputs' outputs differ in shape and cannot be stacked: {e}"))
            })?;
            match out.extension().and_then(|e| e.to_str()) {
                Some("npy") => ys.write_npy(out).map_err(|e| Error::io(out, std::io::Error::other(e.to_string())))?,
                Some("pt") | Some("pth") => crate::checkpoint::write_pt(out, &Object::Tensor(ys.shallow_clone()))?,
                _ => return Err(Error::config(format!("--output {}: use a .pt or .npy file", out.display()))),
            }
            let mut wrote = format!("wrote outputs of shape {:?} to {}", ys.size(), out.display());
            if classifier {
                let side = PathBuf::from(format!("{}.labels.txt", out.display()));
                let text: String = labels.iter().map(|l| format!("{l}\n")).collect();
                crate::util::write_atomic(&side, text.as_bytes())?;
                wrote.push_str(&format!(" and the predicted labels to {}", side.display()));
            }
            println!("{wrote}");
        }
        None if total > 50 => println!("… {} more rows (use --output to save them all)", total - 50),
        None => {}
    }
    Ok(())
}
