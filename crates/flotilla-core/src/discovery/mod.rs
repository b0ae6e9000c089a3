//! Discovery: how devices find Flotilla and Flotilla finds devices. So far: advertising the
//! device server over mDNS ([`mdns`]).

pub mod mdns;
