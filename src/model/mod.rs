//! The noise-prediction network ε_θ(x_t, t, y): a U-Net (Ronneberger et al. 2015) in the shape
//! of Ho et al.'s, built from the blocks in [`blocks`].

pub mod blocks;
pub mod unet;

pub use unet::{UNet, UNetConfig};
