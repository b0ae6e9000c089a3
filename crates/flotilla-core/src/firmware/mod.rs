//! Firmware: what an image is ([`image`]), where its bytes live ([`blobs`]), who vouches for it
//! ([`signing`]), who may download it ([`token`]), the rules of import ([`import`]), and how a
//! library written by an older version is brought up to today's rules ([`upgrade`]).

pub mod blobs;
pub use flotilla_parse::image;
pub mod import;
pub mod signing;
pub mod token;
pub mod upgrade;
