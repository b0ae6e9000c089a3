#pragma once
/* What idf.py generates from the component's Kconfig (defaults), for the compile check. */
#define CONFIG_FLOTILLA_OTA_SERVER ""
#define CONFIG_FLOTILLA_OTA_INTERVAL_SECS 600
#define CONFIG_FLOTILLA_OTA_PUBKEY_HEX "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
#define CONFIG_IDF_TARGET "esp32"
