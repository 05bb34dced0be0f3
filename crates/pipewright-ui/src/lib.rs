#![doc = include_str!("../README.md")]

mod assets;
pub mod graph;

pub use assets::{Asset, asset, names};
pub use graph::{EdgeIn, Layout, NodeIn, layout};
