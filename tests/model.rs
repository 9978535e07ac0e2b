//! The U-Net: shapes, parameter count against an independent formula, conditioning, config checks.

mod common;

use burn::module::Module;
use gendi::model::UNetConfig;

/// Parameters of the default architecture, counted layer by layer from the description in
/// README (not from the code that builds it).
fn expected_parameters(c: &UNetConfig) -> usize {
    let conv = |i: usize, o: usize, k: usize| i * o * k * k + o;
    let norm = |ch: usize| 2 * ch;
    let linear = |i: usize, o: usize| i * o + o;
    let emb = c.embedding_dim;
    let res = |i: usize, o: usize| {
        norm(i)
            + conv(i, o, 3)
            + linear(emb, o)
            + norm(o)
            + conv(o, o, 3)
            + if i != o { conv(i, o, 1) } else { 0 }
    };
    let attn = |ch: usize| norm(ch) + linear(ch, 3 * ch) + linear(ch, ch);
    let chans: Vec<usize> = c
        .channel_mults
        .iter()
        .map(|m| m * c.base_channels)
        .collect();
    let mut total = linear(c.base_channels, emb) + linear(emb, emb) + (c.num_classes + 1) * emb;
    total += conv(c.image_channels, c.base_channels, 3);
    let mut cur = c.base_channels;
    let mut skips = vec![];
    for (l, &ch) in chans.iter().enumerate() {
        for _ in 0..c.blocks_per_level {
            total += res(cur, ch);
            cur = ch;
            skips.push(ch);
        }
        if l + 1 < chans.len() {
            total += conv(ch, ch, 3);
        }
    }
    total += 2 * res(cur, cur) + attn(cur);
    for (l, &ch) in chans.iter().enumerate().rev() {
        for _ in 0..c.blocks_per_level {
            total += res(cur + skips.pop().unwrap(), ch);
            cur = ch;
        }
        if l > 0 {
            total += conv(ch, ch, 3); // after nearest-neighbour upsampling
        }
    }
    total + norm(c.base_channels) + conv(c.base_channels, c.image_channels, 3)
}

#[test]
fn default_unet_has_the_documented_parameter_count() {
    let config = UNetConfig::default();
    let model = config.init(&common::device());
    assert_eq!(model.num_params(), expected_parameters(&config));
    // The number README states.
    assert_eq!(model.num_params(), 2_029_505);
}

#[test]
fn unet_output_has_the_input_shape() {
    let model = UNetConfig::default().init(&common::device());
    let x = common::filled(0.1, [3, 1, 28, 28]);
    let out = model.forward(x, &[0, 500, 999], &[Some(3), None, Some(9)]);
    assert_eq!(out.dims(), [3, 1, 28, 28]);
    assert!(common::values(out).iter().all(|v| v.is_finite()));
}

#[test]
fn labels_and_timesteps_change_the_prediction() {
    let model = UNetConfig::default().init(&common::device());
    let x = || common::filled(0.3, [1, 1, 28, 28]);
    let base = common::values(model.forward(x(), &[100], &[Some(1)]));
    let other_label = common::values(model.forward(x(), &[100], &[Some(7)]));
    let no_label = common::values(model.forward(x(), &[100], &[None]));
    let other_time = common::values(model.forward(x(), &[900], &[Some(1)]));
    assert!(common::max_abs_diff(&base, &other_label) > 1e-6);
    assert!(common::max_abs_diff(&base, &no_label) > 1e-6);
    assert!(common::max_abs_diff(&base, &other_time) > 1e-6);
}

#[test]
fn inconsistent_configs_are_rejected_before_building() {
    let bad_groups = UNetConfig {
        groups: 7,
        ..UNetConfig::default()
    };
    assert!(bad_groups.validate().unwrap_err().contains("groups"));
    let bad_levels = UNetConfig {
        channel_mults: vec![1, 1, 1, 1, 1, 1],
        ..UNetConfig::default()
    };
    assert!(bad_levels.validate().unwrap_err().contains("halve"));
    let bad_attention = UNetConfig {
        attention_levels: vec![5],
        ..UNetConfig::default()
    };
    assert!(
        bad_attention
            .validate()
            .unwrap_err()
            .contains("model.attention_levels")
    );
    assert!(UNetConfig::default().validate().is_ok());
}

#[test]
fn parameter_count_from_the_config_equals_the_built_model() {
    let configs = [
        UNetConfig::default(),
        UNetConfig {
            attention_levels: vec![1, 2],
            num_classes: 0,
            ..UNetConfig::default()
        },
        UNetConfig {
            base_channels: 16,
            channel_mults: vec![1, 2],
            blocks_per_level: 1,
            attention_levels: vec![0],
            embedding_dim: 32,
            groups: 4,
            ..UNetConfig::default()
        },
    ];
    for config in configs {
        config.validate().unwrap();
        let built = config.init(&common::device()).num_params();
        assert_eq!(config.parameter_count(), Some(built), "{config:?}");
    }
}

#[test]
fn configs_beyond_the_limits_are_refused_naming_the_field() {
    let too_wide = UNetConfig {
        base_channels: 3_200_000,
        ..UNetConfig::default()
    };
    assert!(
        too_wide
            .validate()
            .unwrap_err()
            .contains("model.base_channels")
    );
    // Each setting within its own bound, the whole too large: refused by the parameter budget.
    let too_large = UNetConfig {
        base_channels: 512,
        channel_mults: vec![1, 2, 4],
        blocks_per_level: 8,
        ..UNetConfig::default()
    };
    let err = too_large.validate().unwrap_err();
    assert!(err.contains("parameters"), "{err}");
}
