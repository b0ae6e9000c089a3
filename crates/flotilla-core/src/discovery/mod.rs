//! Discovery: how devices find Flotilla and Flotilla finds devices. Flotilla advertises its
//! device server over mDNS ([`mdns`]); it browses the services ESP firmware advertises
//! ([`browse`]) and reads vendor MQTT discovery topics ([`vendor_mqtt`]); what each says is
//! classified by [`classify`]. [`probe`] asks an address what it is over HTTP.

pub mod arp;
pub mod browse;
pub mod classify;
pub mod mdns;
pub mod probe;
pub mod vendor_mqtt;
