// Noise: see docs. (Filled in by its issue.)
