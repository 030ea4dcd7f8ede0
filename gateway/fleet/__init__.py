"""`gateway simulate`: a simulated fleet of EV telematics units (model, encoders, units, runner)."""
