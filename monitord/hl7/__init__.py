"""``monitord hl7``: the MQTT feed as HL7 v2 for the EHR (IHE PCD-01 observations, PCD-04 alerts)
sent over MLLP with acknowledgement, retry and a bounded on-disk queue (docs/hl7.md)."""
