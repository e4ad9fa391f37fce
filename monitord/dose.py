"""Dose arithmetic. Pure functions; units are in every name."""

from __future__ import annotations


def dose_rate_mg_kg_h(rate_ml_h: float, concentration_mg_ml: float, weight_kg: float) -> float:
    """mg/kg/h from the pump rate, the syringe concentration and the patient's weight."""
    return rate_ml_h * concentration_mg_ml / weight_kg


def rate_ml_h_for(dose_mg_kg_h: float, weight_kg: float, concentration_mg_ml: float) -> float:
    """The pump rate that delivers ``dose_mg_kg_h`` (how a drug library converts)."""
    return dose_mg_kg_h * weight_kg / concentration_mg_ml


def bolus_mg_kg(bolus_ml: float, concentration_mg_ml: float, weight_kg: float) -> float:
    return bolus_ml * concentration_mg_ml / weight_kg


def volume_delta_ml(previous_ml: float | None, current_ml: float) -> float:
    """Volume infused since the previous pump report.

    A counter that went down was reset (new syringe, pump cleared): what it shows now was
    infused since the reset.
    """
    if previous_ml is None:
        return 0.0
    if current_ml >= previous_ml:
        return current_ml - previous_ml
    return current_ml
