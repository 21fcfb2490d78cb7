//! The image preprocessing a reference model was trained with (torchvision's weights transforms, timm's
//! `pretrained_cfg`, pytorchcv's defaults), so that `tchzoo predict --model NAME --input a.png` feeds an image as
//! the reference's own pipeline would: resize the shorter side to ⌊size / crop_pct⌋, centre-crop size × size,
//! scale to [0, 1], normalise per channel.

/// One model's eval transform.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    /// The side of the centre crop the model takes.
    pub size: u32,
    /// The crop's share of the resized shorter side (torchvision's 224/256 = 0.875).
    pub crop_pct: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Bicubic resizing (timm's models), else bilinear (torchvision, pytorchcv).
    pub bicubic: bool,
}

const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
const INCEPTION_MEAN: [f32; 3] = [0.5, 0.5, 0.5];

/// The eval transform of a registered ImageNet model (`None` for models not made for ImageNet: those trained here
/// take their training data's scaling, pixels / 255).
pub fn imagenet_config(name: &str, family: &str, default_classes: i64) -> Option<ImageConfig> {
    if default_classes != 1000 || family == "channel_boost" {
        return None;
    }
    let torchvision =
        ImageConfig { size: 224, crop_pct: 0.875, mean: IMAGENET_MEAN, std: IMAGENET_STD, bicubic: false };
    let timm = |size, crop_pct, mean, std| ImageConfig { size, crop_pct, mean, std, bicubic: true };
    Some(match name {
        // torchvision's Inception_V3 weights: resize 342, crop 299.
        "inception_v3" => ImageConfig { size: 299, crop_pct: 299.0 / 342.0, ..torchvision },
        "inception_v4" => timm(299, 0.875, INCEPTION_MEAN, INCEPTION_MEAN),
        "inception_resnet_v2" | "legacy_xception" => timm(299, 0.8975, INCEPTION_MEAN, INCEPTION_MEAN),
        "xception41" | "xception71" => timm(299, 0.903, INCEPTION_MEAN, INCEPTION_MEAN),
        "xception65" => timm(299, 0.94, INCEPTION_MEAN, INCEPTION_MEAN),
        "mobilenetv1_100" => timm(224, 0.875, INCEPTION_MEAN, INCEPTION_MEAN),
        _ if family == "senet" => timm(224, 0.875, IMAGENET_MEAN, IMAGENET_STD),
        // pytorchcv's input sizes.
        "polynet" => ImageConfig { size: 331, ..torchvision },
        "inceptionresnetv1" => ImageConfig { size: 299, ..torchvision },
        _ => torchvision,
    })
}
