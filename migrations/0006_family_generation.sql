-- Shelly's generations become one family told apart by `generation`; ArduinoOTA is `arduino`.
-- The `sources` column now keeps each source's first/last sighting (JSON objects); rows written
-- before keep their list of names, read as such.
ALTER TABLE devices ADD COLUMN generation INTEGER CHECK (generation IS NULL OR generation BETWEEN 1 AND 255);
UPDATE devices SET family = 'shelly', generation = 1 WHERE family = 'shelly-gen1';
UPDATE devices SET family = 'shelly', generation = 2 WHERE family = 'shelly-gen2';
UPDATE devices SET family = 'arduino' WHERE family = 'arduino-ota';
