"""Dataloader emulation: sample datasets read the way a training job reads them (``samples``) and how
many accelerators a tier keeps busy (``emulate``)."""
