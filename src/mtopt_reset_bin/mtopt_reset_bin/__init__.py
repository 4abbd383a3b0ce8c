"""Resettable bin: ResetBin action on a simulated or serial hinge motor, fake serial controller."""
