//! SPI flash settings as encoded in byte 2 (mode) and byte 3 (size and frequency) of every image
//! header, ESP32 and ESP8266 alike.

/// SPI flash mode (header byte 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashMode {
    Qio,
    Qout,
    Dio,
    Dout,
    FastRead,
    SlowRead,
}

impl FlashMode {
    /// The header byte.
    pub fn code(self) -> u8 {
        match self {
            FlashMode::Qio => 0,
            FlashMode::Qout => 1,
            FlashMode::Dio => 2,
            FlashMode::Dout => 3,
            FlashMode::FastRead => 4,
            FlashMode::SlowRead => 5,
        }
    }

    /// Parses `qio`, `qout`, `dio`, `dout`, `fast-read`, `slow-read`.
    pub fn parse(s: &str) -> Option<FlashMode> {
        match s.to_ascii_lowercase().as_str() {
            "qio" => Some(FlashMode::Qio),
            "qout" => Some(FlashMode::Qout),
            "dio" => Some(FlashMode::Dio),
            "dout" => Some(FlashMode::Dout),
            "fast-read" | "fast_read" => Some(FlashMode::FastRead),
            "slow-read" | "slow_read" => Some(FlashMode::SlowRead),
            _ => None,
        }
    }
}

/// ESP32-family flash size (high nibble of header byte 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashSize {
    Mb1,
    Mb2,
    Mb4,
    Mb8,
    Mb16,
    Mb32,
    Mb64,
    Mb128,
}

impl FlashSize {
    /// The nibble value.
    pub fn code(self) -> u8 {
        match self {
            FlashSize::Mb1 => 0,
            FlashSize::Mb2 => 1,
            FlashSize::Mb4 => 2,
            FlashSize::Mb8 => 3,
            FlashSize::Mb16 => 4,
            FlashSize::Mb32 => 5,
            FlashSize::Mb64 => 6,
            FlashSize::Mb128 => 7,
        }
    }

    /// Parses `1MB` .. `128MB` (case-insensitive, `M` alone accepted).
    pub fn parse(s: &str) -> Option<FlashSize> {
        let s = s.to_ascii_uppercase();
        let digits = s.trim_end_matches('B').trim_end_matches('M');
        match digits {
            "1" => Some(FlashSize::Mb1),
            "2" => Some(FlashSize::Mb2),
            "4" => Some(FlashSize::Mb4),
            "8" => Some(FlashSize::Mb8),
            "16" => Some(FlashSize::Mb16),
            "32" => Some(FlashSize::Mb32),
            "64" => Some(FlashSize::Mb64),
            "128" => Some(FlashSize::Mb128),
            _ => None,
        }
    }
}

/// ESP8266 flash size (high nibble of header byte 3); the table differs from the ESP32 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Esp8266FlashSize {
    Kb512,
    Kb256,
    Mb1,
    Mb2,
    Mb4,
    /// 2 MB, "c1" map (1024 KB + 1024 KB).
    Mb2C1,
    /// 4 MB, "c1" map.
    Mb4C1,
    Mb8,
    Mb16,
}

impl Esp8266FlashSize {
    /// The nibble value.
    pub fn code(self) -> u8 {
        match self {
            Esp8266FlashSize::Kb512 => 0,
            Esp8266FlashSize::Kb256 => 1,
            Esp8266FlashSize::Mb1 => 2,
            Esp8266FlashSize::Mb2 => 3,
            Esp8266FlashSize::Mb4 => 4,
            Esp8266FlashSize::Mb2C1 => 5,
            Esp8266FlashSize::Mb4C1 => 6,
            Esp8266FlashSize::Mb8 => 8,
            Esp8266FlashSize::Mb16 => 9,
        }
    }
}

/// Common flash frequency nibbles (low nibble of header byte 3). The MHz each one means depends
/// on the chip (ESP32-C2 and ESP32-H2 use other clocks), so builders take the raw nibble.
pub mod freq {
    /// 40 MHz on ESP8266/ESP32 (30 MHz on C2, 24 MHz on H2).
    pub const DIV2: u8 = 0x0;
    /// 26 MHz on ESP8266/ESP32.
    pub const DIV3: u8 = 0x1;
    /// 20 MHz on ESP8266/ESP32.
    pub const DIV4: u8 = 0x2;
    /// 80 MHz on ESP8266/ESP32 (60 MHz on C2, 48 MHz on H2).
    pub const DIV1: u8 = 0xF;
}
