"""The calibration warehouse's fit step: quarters, lifecycle, and publishing of fit results."""

from __future__ import annotations

from tierpool.calibration.fit_node import run_calibration_fit

__all__ = ["run_calibration_fit"]
