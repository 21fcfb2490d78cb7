//! `tchzoo predict`: the eval-mode forward of a saved model on an input tensor or image.
use std::path::PathBuf;

use clap::Args;
use tch::Tensor;

use crate::checkpoint::Object;
use crate::error::{Error, Result};
use crate::inference::Predictor;
use crate::run::ModelSource;

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
    /// Input: a tensor (.pt, .safetensors, .npy) of shape [N, …] or one sample, or an image (.png, .jpg). A model
    /// given by --model is built for the input's shape and takes any size it can; an image gets the registry's
    /// evaluation transform (shorter side resized, centre crop, mean/std, as torchvision/timm/pytorchcv). A run
    /// folder's model keeps its training input size; an image gets the run's recorded evaluation transform (an
    /// image-folder run) or its data's size and [0, 1] scaling (data held in memory).
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
    let files = crate::data::inputs::input_files(&args.input)?;
    let mut predictor = Predictor::new(ModelSource {
        run: args.run.clone(),
        model: args.model.clone(),
        weights: args.weights.clone(),
        num_classes: args.num_classes,
        device: args.device.clone(),
        ..ModelSource::default()
    })?;
    let loaded = predictor.model();
    for note in &loaded.notes {
        eprintln!("{note}");
    }
    let classifier = loaded.trainer.loss != crate::train::Loss::Mse;
    let names = loaded.class_names.clone();
    let mut all = vec![];
    let mut labels: Vec<String> = vec![];
    let mut shown = 0i64;
    let several = files.len() > 1;
    // Prints (the first 50) and keeps the outputs of `files`: one file of many samples, or one sample a file.
    let mut emit = |files: &[&PathBuf], ys: Tensor| {
        let n = ys.size()[0];
        for i in 0..n {
            let row = Vec::<f32>::try_from(ys.get(i).reshape([-1])).unwrap_or_default();
            let label = classifier.then(|| class_label(predicted_class(&row, args.proba), names.as_ref()));
            if let Some(l) = &label {
                labels.push(l.clone());
            }
            if args.output.is_none() && shown < 50 {
                shown += 1;
                let values: Vec<String> = row.iter().take(10).map(|v| format!("{v:.4}")).collect();
                let more = if row.len() > 10 { " …" } else { "" };
                let which = match (several, files.len() > 1 || n == 1) {
                    (false, _) => i.to_string(),
                    (true, true) => files[(i as usize).min(files.len() - 1)].display().to_string(),
                    (true, false) => format!("{}[{i}]", files[0].display()),
                };
                let label = label.map(|l| format!("{l}  ")).unwrap_or_default();
                println!("{which}: {label}[{}{more}]", values.join(", "));
            }
        }
        all.push(ys);
    };
    // Files of one sample each (images) of one shape go through the model together, --batch-size at a time; the
    // `None` after the last file sends the last group.
    let mut group: Vec<(&PathBuf, Tensor)> = vec![];
    for file in files.iter().map(Some).chain([None]) {
        let xs = file.map(|f| predictor.read(f)).transpose()?;
        let single = xs.as_ref().is_some_and(|x| x.size()[0] == 1);
        let joins = single
            && group.first().is_some_and(|(_, g)| xs.as_ref().is_some_and(|x| g.size() == x.size()))
            && group.len() < args.batch_size;
        if !joins && !group.is_empty() {
            let (names, xs): (Vec<&PathBuf>, Vec<Tensor>) = group.drain(..).unzip();
            emit(&names, predictor.predict(&Tensor::cat(&xs, 0), args.proba, args.batch_size, names[0])?);
        }
        match (file, xs) {
            (Some(f), Some(xs)) if single => group.push((f, xs)),
            (Some(f), Some(xs)) => emit(&[f], predictor.predict(&xs, args.proba, args.batch_size, f)?),
            _ => {}
        }
    }
    let total: i64 = all.iter().map(|y| y.size()[0]).sum();
    match &args.output {
        Some(out) => {
            let ys = Tensor::f_cat(&all, 0).map_err(|e| {
                Error::data(out.display(), format!("the inputs' outputs differ in shape and cannot be stacked: {e}"))
            })?;
            match out.extension().and_then(|e| e.to_str()) {
                Some("npy") => crate::util::write_atomic_with(out, |tmp| {
                    ys.write_npy(tmp).map_err(|e| Error::io(out, std::io::Error::other(e.to_string())))
                })?,
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
