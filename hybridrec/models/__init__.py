"""Model parts: small ``nn.Module``s (tensors in, tensors out) and the closed-form CF head."""
