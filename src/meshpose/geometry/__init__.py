"""Pure tensor functions: rotations, cameras, Procrustes, mesh graphs."""
