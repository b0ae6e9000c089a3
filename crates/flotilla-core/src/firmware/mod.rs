//! Firmware: what an image is ([`image`]), where its bytes live ([`blobs`]), who vouches for it
//! ([`signing`]), who may download it ([`token`]), and the rules of import ([`import`]).

pub mod blobs;
pub mod image;
pub mod import;
pub mod signing;
pub mod token;
