"""edgesr: search, train, quantize and ship super-resolution models for edge devices (see the README)."""
