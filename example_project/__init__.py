"""An example pipeline: acquisition -> treatment -> propagation to children -> reports."""
