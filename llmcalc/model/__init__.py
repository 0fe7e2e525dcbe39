"""The model: the real nn.Module every count is taken from (layers -> attention -> transformer)."""
