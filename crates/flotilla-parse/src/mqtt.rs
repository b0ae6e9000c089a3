//! MQTT 3.1.1 as the embedded broker reads it: packets ([`packet`]) and the topic trees of
//! subscriptions and retained messages ([`topics`]).

pub mod packet;
pub mod topics;
