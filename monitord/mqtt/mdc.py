"""IEEE 11073-10101 (MDC) nomenclature for every quantity the feed publishes. The one table.

Each entry: the context-free code (partition * 65536 + term code), its reference id, and how it
was checked. ``checked`` entries were found, code and reference id together, in several
independent published HL7 v2 messages from monitors and pumps; ``single-source`` entries in one
published source only: confirm them against the IEEE Rosetta (RTM) tables before relying on them.
NIBP uses the cuff terms (MDC_PRESS_CUFF_*, 150301-150303): that is what NIBP monitors report;
MDC_PRESS_BLD_NONINV_* are different codes (150021-150023).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitord.readings import Vital


@dataclass(frozen=True, slots=True)
class Mdc:
    code: int
    refid: str
    checked: bool  # False: single source, confirm against RTM

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "refid": self.refid}


# --- units (MDC_DIM_*), keyed by the UCUM-style unit string the engine uses -----------------
UNITS: dict[str, Mdc] = {
    "/min": Mdc(264864, "MDC_DIM_BEAT_PER_MIN", True),
    "%": Mdc(262688, "MDC_DIM_PERCENT", True),
    "mmHg": Mdc(266016, "MDC_DIM_MMHG", True),
    "Cel": Mdc(268192, "MDC_DIM_DEGC", True),
    "mL/h": Mdc(265266, "MDC_DIM_MILLI_L_PER_HR", True),
    "mL": Mdc(263762, "MDC_DIM_MILLI_L", False),
    "mg": Mdc(263890, "MDC_DIM_MILLI_G", False),
    "mg/mL": Mdc(264306, "MDC_DIM_MILLI_G_PER_ML", False),
}
# Respiratory rate has its own unit term.
RESP_PER_MIN = Mdc(264928, "MDC_DIM_RESP_PER_MIN", True)

# --- physiological quantities ------------------------------------------------------------
VITALS: dict[Vital, Mdc] = {
    Vital.HR: Mdc(147842, "MDC_ECG_HEART_RATE", True),
    Vital.PULSE: Mdc(149530, "MDC_PULS_OXIM_PULS_RATE", True),
    Vital.SBP: Mdc(150301, "MDC_PRESS_CUFF_SYS", True),
    Vital.DBP: Mdc(150302, "MDC_PRESS_CUFF_DIA", True),
    Vital.MAP: Mdc(150303, "MDC_PRESS_CUFF_MEAN", True),
    Vital.SPO2: Mdc(150456, "MDC_PULS_OXIM_SAT_O2", True),
    Vital.RR: Mdc(151562, "MDC_RESP_RATE", True),
    Vital.ETCO2: Mdc(151708, "MDC_AWAY_CO2_ET", False),
    Vital.TEMP: Mdc(150344, "MDC_TEMP", True),
}

# --- infusion quantities -------------------------------------------------------------------
INFUSION: dict[str, Mdc] = {
    "rate": Mdc(157784, "MDC_FLOW_FLUID_PUMP", False),
    "volume_infused": Mdc(157864, "MDC_VOL_FLUID_DELIV", False),
    "volume_to_be_infused": Mdc(157884, "MDC_VOL_FLUID_TBI", False),
    "concentration": Mdc(157760, "MDC_CONC_DRUG", False),
    "dose_rate": Mdc(157924, "MDC_RATE_DOSE", False),
}


def vital_unit(vital: Vital, unit: str) -> Mdc | None:
    if vital is Vital.RR:
        return RESP_PER_MIN
    return UNITS.get(unit)
