"""Model parts as small ``nn.Module``s (tensors in, tensors out)."""
