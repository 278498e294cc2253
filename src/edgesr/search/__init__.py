"""FGNAS (paper 001): supernet, straight-through gates, budgets, extraction of the searched subnet."""
