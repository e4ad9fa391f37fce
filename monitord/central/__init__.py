"""``monitord central``: a multi-bed overview for a central station, fed only by MQTT."""
